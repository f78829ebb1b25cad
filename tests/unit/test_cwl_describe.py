"""OGC process descriptions derived from CWL input/output shapes."""

from __future__ import annotations

import textwrap

import pytest

from ades.cwl import describe, load_package

SHAPES = textwrap.dedent(
    """\
    cwlVersion: v1.2
    class: CommandLineTool
    id: shapes
    label: Shapes
    $namespaces:
      s: https://schema.org/
      iana: https://www.iana.org/assignments/media-types/
      edam: http://edamontology.org/
    s:softwareVersion: 0.3.1
    requirements:
      SchemaDefRequirement:
        types:
          - name: "#Point"
            type: record
            fields:
              x: float
              y: float
    baseCommand: echo
    inputs:
      text: {type: string, label: Text, doc: Some text.}
      count: int?
      big: long
      ratio: double
      flag: boolean
      words: string[]
      image: {type: File, format: "iana:image/tiff"}
      table: {type: File, format: "edam:format_3752"}
      images: File[]?
      folder: Directory
      colour:
        type: {type: enum, symbols: [red, green]}
        default: red
      either: ["null", int, string]
      pair:
        type:
          type: record
          fields:
            a: int
            b: string?
      where: "#Point"
      threshold: {type: float, default: 0.5}
      ades_job_id: string
      ades_sink: string
    outputs:
      result: {type: File, format: "iana:text/csv", outputBinding: {glob: out.csv}}
      many: {type: "File[]", outputBinding: {glob: "*.txt"}}
      note: {type: string, outputBinding: {outputEval: $(inputs.text)}}
    """
)


@pytest.fixture(scope="module")
def description():
    return describe(load_package(SHAPES, "application/cwl"))


def test_header(description):
    assert description["id"] == "shapes" and description["version"] == "0.3.1"
    assert description["title"] == "Shapes"
    assert description["jobControlOptions"] == ["async-execute", "sync-execute"]
    assert description["outputTransmission"] == ["value", "reference"]


def test_hidden_inputs_are_not_described(description):
    assert "ades_job_id" not in description["inputs"] and "ades_sink" not in description["inputs"]


def test_order_follows_the_cwl(description):
    assert list(description["inputs"])[:3] == ["text", "count", "big"]


@pytest.mark.parametrize(
    ("name", "schema", "min_occurs", "max_occurs"),
    [
        ("text", {"type": "string"}, 1, 1),
        ("count", {"type": "integer"}, 0, 1),
        ("big", {"type": "integer"}, 1, 1),
        ("ratio", {"type": "number"}, 1, 1),
        ("flag", {"type": "boolean"}, 1, 1),
        ("words", {"type": "array", "items": {"type": "string"}}, 1, "unbounded"),
        ("image", {"type": "string", "format": "uri", "contentMediaType": "image/tiff"}, 1, 1),
        ("table", {"type": "string", "format": "uri", "x-cwl-format": "http://edamontology.org/format_3752"}, 1, 1),
        ("images", {"type": "array", "items": {"type": "string", "format": "uri"}}, 0, "unbounded"),
        ("folder", {"type": "string", "format": "uri", "x-cwl-class": "Directory"}, 1, 1),
        ("colour", {"type": "string", "enum": ["red", "green"], "default": "red"}, 0, 1),
        ("either", {"oneOf": [{"type": "integer"}, {"type": "string"}]}, 0, 1),
        (
            "pair",
            {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"oneOf": [{"type": "string"}, {"type": "null"}]}},
                "required": ["a"],
                "additionalProperties": False,
            },
            1,
            1,
        ),
        (
            "where",
            {
                "type": "object",
                "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                "required": ["x", "y"],
                "additionalProperties": False,
            },
            1,
            1,
        ),
        ("threshold", {"type": "number", "default": 0.5}, 0, 1),
    ],
)
def test_input_shapes(description, name, schema, min_occurs, max_occurs):
    described = description["inputs"][name]
    assert described["schema"] == schema
    assert described["minOccurs"] == min_occurs
    assert described["maxOccurs"] == max_occurs


def test_titles_and_descriptions(description):
    assert description["inputs"]["text"]["title"] == "Text"
    assert description["inputs"]["text"]["description"] == "Some text."
    assert description["inputs"]["big"]["title"] == "big"  # no label: the id


def test_outputs(description):
    outputs = description["outputs"]
    assert outputs["result"]["schema"] == {"type": "string", "format": "uri", "contentMediaType": "text/csv"}
    assert outputs["many"]["schema"] == {"type": "array", "items": {"type": "string", "format": "uri"}}
    assert outputs["note"]["schema"] == {"type": "string"}
