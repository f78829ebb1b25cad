"""Floats keep their spelling from the text a client sends to what cwltool writes on a command line."""

from __future__ import annotations

import copy
import json
import pickle

import pytest
from cwltool.builder import Builder
from ruamel.yaml import YAML

from ades import floats
from ades.floats import SpelledFloat


def on_command_line(value: object) -> str:
    """What cwltool writes for `value` as a command-line argument (its own formatting function)."""
    return Builder.tostr(None, value)  # type: ignore[arg-type]


def as_cwltool_reads(text: str) -> object:
    return YAML(typ="rt", pure=True).load(text)


@pytest.mark.parametrize("text", ["1.23e5", "4.5e6", "2.50", "3.0E-2", "1e2", "10.50", "-7.000", "1.e5"])
def test_a_spelling_python_would_not_write_is_kept_and_reaches_cwltool_as_written(text: str) -> None:
    kept = floats.keep_spelling(float(text), text)
    assert isinstance(kept, SpelledFloat) and kept == float(text)
    assert on_command_line(floats.for_cwltool(kept)) == on_command_line(as_cwltool_reads(text))
    # a plain float would say something else on the command line: that is why the spelling is kept
    assert on_command_line(float(text)) != on_command_line(as_cwltool_reads(text))


@pytest.mark.parametrize("text", ["0.5", "1e-05", "0.00001", "123000.0", "3.25", "+1.5", ".5"])
def test_a_spelling_python_writes_alike_stays_a_plain_float(text: str) -> None:
    kept = floats.keep_spelling(float(text), text)
    assert type(kept) is float
    # in memory, cwltool writes a plain float as Python does (`1e-05`); from a job file, as a decimal
    assert on_command_line(floats.for_cwltool(kept)) == on_command_line(as_cwltool_reads(text))


def test_json_text_round_trips_with_its_spellings() -> None:
    text = '{"a": 1.23e5, "b": [2.50, 0.5, 7], "c": {"d": 1E+2}, "e": "1.23e5"}'
    value = floats.loads(text)
    assert isinstance(value["a"], SpelledFloat) and type(value["b"][1]) is float
    again = json.loads(floats.dumps(value, indent=1, sort_keys=True, ensure_ascii=False).replace("E+", "e"))
    assert again == json.loads(text)
    written = floats.dumps(value)
    assert '"a": 1.23E+5' in written and "[2.50, 0.5, 7]" in written and '"e": "1.23e5"' in written
    assert floats.plain(value) == value and floats.spellings(floats.plain(value)) == floats.spellings(value)


def test_yaml_and_cwltools_own_floats_keep_their_spelling() -> None:
    doc = floats.safe_yaml().load("inputs:\n  x: {type: float, default: 1.23e5}\n  y: 0.25\n")
    assert doc["inputs"]["x"]["default"].spelling == "1.23E+5" and type(doc["inputs"]["y"]) is float
    from_cwltool = as_cwltool_reads("a: 4.5e6\nb: 2.5\n")
    assert floats.dumps(from_cwltool) == '{"a": 4.5E+6, "b": 2.5}'


def test_spellings_are_stored_beside_a_document_and_put_back() -> None:
    doc = floats.loads('{"in": {"a/b": {"default": 1.23e5}, "list": [1, 2.50]}, "t~x": 3.0E-2}')
    found = floats.spellings(doc)
    assert found == {"/in/a~1b/default": "1.23E+5", "/in/list/1": "2.50", "/t~0x": "0.030"}
    stored = json.loads(json.dumps(doc))  # what Elasticsearch's client gives back: plain floats
    assert floats.spellings(stored) == {}
    assert floats.spellings(floats.respell(stored, found)) == found


def test_a_spelling_whose_number_changed_is_not_put_back() -> None:
    changed = {"x": 2.0, "y": "text", "z": [1.5]}
    floats.respell(changed, {"/x": "1.23E+5", "/y": "2.50", "/z/4": "1.0", "/w/v": "1.0"})
    assert changed == {"x": 2.0, "y": "text", "z": [1.5]} and floats.spellings(changed) == {}


def test_a_spelled_float_survives_copies_and_pickles() -> None:
    value = {"v": floats.keep_spelling(4.5e6, "4.5e6")}
    for copied in (copy.deepcopy(value), pickle.loads(pickle.dumps(value))):
        assert copied["v"].spelling == "4.5E+6" and copied == value


def test_a_string_that_looks_like_the_marker_is_written_as_it_is() -> None:
    value = {"s": "\x00ades-float-0-0\x00", "f": floats.keep_spelling(2.5, "2.50")}
    assert json.loads(floats.dumps(value))["s"] == value["s"]
