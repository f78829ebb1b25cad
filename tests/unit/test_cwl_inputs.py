"""Execute inputs -> cwltool job order: conversion and the errors people see."""

from __future__ import annotations

import os

import pytest

from ades.cwl import InputError, load_package, to_job_order, wpst_inputs_to_map

TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
id: inputs
$namespaces: {iana: "https://www.iana.org/assignments/media-types/"}
baseCommand: echo
inputs:
  message: string
  n: int?
  ratio: {type: float, default: 1.5}
  flag: boolean?
  words: string[]?
  image: {type: "File?", format: "iana:image/tiff"}
  images: File[]?
  folder: Directory?
  colour: {type: {type: enum, symbols: [red, green]}, default: red}
  pair:
    type:
      - "null"
      - type: record
        fields:
          a: int
          b: string?
  anything: Any?
  ades_job_id: string?
outputs:
  out: stdout
"""


@pytest.fixture(scope="module")
def package():
    return load_package(TOOL, "application/cwl")


@pytest.fixture
def root(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.tif").write_bytes(b"II*")
    (tmp_path / "data" / "sub").mkdir()
    return tmp_path / "data"


def job(package, root, **inputs):
    return to_job_order(package, {"message": "hi", **inputs}, [root])


def test_plain_and_qualified_values(package, root):
    order = job(package, root, n={"value": "7"}, flag="true", words="one", colour="green")
    assert order == {"message": "hi", "n": 7, "flag": True, "words": ["one"], "colour": "green"}
    assert job(package, root, ratio=2)["ratio"] == 2
    assert job(package, root, words=["a", "b"])["words"] == ["a", "b"]


def test_files_as_hrefs(package, root):
    file_uri = (root / "a.tif").as_uri()
    order = job(package, root, image={"href": file_uri}, images=[file_uri, "https://example.org/b.tif"])
    assert order["image"] == {"class": "File", "location": file_uri, "format": "https://www.iana.org/assignments/media-types/image/tiff"}
    assert order["images"][1] == {"class": "File", "location": "https://example.org/b.tif"}
    folder = job(package, root, folder=str(root / "sub"))["folder"]
    assert folder == {"class": "Directory", "location": (root / "sub").as_uri()}


def test_record(package, root):
    assert job(package, root, pair={"a": "3"})["pair"] == {"a": 3}
    with pytest.raises(InputError, match=r"input 'pair': .*missing field 'a'"):
        job(package, root, pair={"b": "x"})


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"n": "abc"}, "input 'n': expected an integer, got 'abc'"),
        ({"n": True}, "input 'n': expected an integer, got True"),
        ({"ratio": "fast"}, "input 'ratio': expected a number, got 'fast'"),
        ({"flag": "maybe"}, "input 'flag': expected true or false, got 'maybe'"),
        ({"colour": "blue"}, "input 'colour': expected one of ['red', 'green'], got 'blue'"),
        ({"words": ["a", 3]}, "input 'words': item 1: expected a string, got 3"),
        ({"foo": 1}, "unknown input 'foo'"),
        ({"ades_job_id": "x"}, "unknown input 'ades_job_id'"),
        ({"image": "ftp://host/a.tif"}, "input 'image': expected a file://, http:// or https:// URL"),
        ({"image": "http://[::1"}, "input 'image': 'http://[::1' is not a usable URL: Invalid IPv6 URL"),
    ],
)
def test_errors_name_the_input_and_the_problem(package, root, inputs, message):
    with pytest.raises(InputError) as err:
        job(package, root, **inputs)
    assert str(err.value).startswith(message)


def test_missing_required(package, root):
    with pytest.raises(InputError, match="missing required input 'message'"):
        to_job_order(package, {}, [root])
    with pytest.raises(InputError, match="missing required input 'message'"):
        to_job_order(package, {"message": None}, [root])


def test_paths_outside_the_roots(package, root, tmp_path):
    (tmp_path / "secret.tif").write_bytes(b"x")
    with pytest.raises(InputError, match="outside the directories"):
        job(package, root, image=(tmp_path / "secret.tif").as_uri())
    with pytest.raises(InputError, match=r"must not contain '\.\.'"):
        job(package, root, image=f"file://{root}/../secret.tif")
    os.symlink(tmp_path / "secret.tif", root / "link.tif")
    with pytest.raises(InputError, match="outside the directories"):
        job(package, root, image=(root / "link.tif").as_uri())
    with pytest.raises(InputError, match="no such file"):
        job(package, root, image=(root / "missing.tif").as_uri())
    with pytest.raises(InputError, match="another host"):
        job(package, root, image="file://evil.example/etc/passwd")


def test_wpst_array_form():
    items = [{"id": "message", "data": "hi"}, {"id": "words", "data": "a"}, {"id": "words", "data": "b"},
             {"id": "words", "data": "c"}, {"id": "image", "href": "https://example.org/a.tif"}]
    assert wpst_inputs_to_map(items) == {
        "message": "hi",
        "words": ["a", "b", "c"],
        "image": {"href": "https://example.org/a.tif"},
    }
    with pytest.raises(InputError, match="has no `data`"):
        wpst_inputs_to_map([{"id": "x"}])


def test_files_inside_any_are_checked_wherever_they_are(package, root, tmp_path):
    (tmp_path / "secret.tif").write_bytes(b"x")
    secret = {"class": "File", "location": (tmp_path / "secret.tif").as_uri()}
    inside = (root / "a.tif").as_uri()
    for value, where in [
        (secret, ""),
        ({"class": "File", "path": str(tmp_path / "secret.tif")}, ""),
        ({"class": "Directory", "location": tmp_path.as_uri()}, ""),
        ([1, {"x": [secret]}], "item 1: field 'x': item 0: "),
        ({"class": "File", "location": inside, "secondaryFiles": [secret]}, "secondaryFiles item 0: "),
        ({"class": "Directory", "basename": "d", "listing": [secret]}, "listing item 0: "),
    ]:
        with pytest.raises(InputError) as err:
            job(package, root, anything=value)
        assert str(err.value).startswith(f"input 'anything': {where}") and "outside the directories" in str(err.value)


def test_files_inside_any_that_pass_are_normalized(package, root):
    located = job(package, root, anything={"class": "File", "path": str(root / "a.tif"), "dirname": "/etc",
                                           "format": "x"})
    assert located["anything"] == {"class": "File", "location": (root / "a.tif").as_uri(), "format": "x"}
    literal = {"class": "File", "basename": "a.txt", "contents": "hi"}
    assert job(package, root, anything={"list": [literal]})["anything"] == {"list": [literal]}
    assert job(package, root, anything={"plain": "file:///etc/passwd"})["anything"] == {"plain": "file:///etc/passwd"}
    for bad, problem in [({"class": "File", "basename": "../x", "contents": ""}, "plain file name"),
                         ({"class": "File"}, "needs a `location`"),
                         ({"class": "File", "location": "x", "path": "y"}, "must be one URL"),
                         ({"class": "File", "location": (root / "a.tif").as_uri(), "listing": []},
                          "`listing` of a File"),
                         ({"class": "Directory", "location": "https://example.org/d/"}, "cannot be fetched")]:
        with pytest.raises(InputError, match=problem):
            job(package, root, anything=bad)


def test_http_references_are_checked_by_the_fetcher(package, root):
    from ades.fetch import Fetcher

    with pytest.raises(InputError, match=r"input 'images': item 0: http://169.254.169.254/x: .*cloud metadata"):
        to_job_order(package, {"message": "hi", "images": ["http://169.254.169.254/x"]}, [root], Fetcher())
    with pytest.raises(InputError, match=r"input 'anything': .*loopback"):
        to_job_order(package, {"message": "hi", "anything": {"class": "File", "location": "http://127.0.0.1/"}},
                     [root], Fetcher())
