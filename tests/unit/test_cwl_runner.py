"""The pure parts of ades-cwl-runner: a job order's references made absolute as cwltool reads them, the packed
process renamed, a results document read back as a CWL output object, the exit code of a refusal."""

from __future__ import annotations

from pathlib import Path

from ades.client import ApiError
from ades.cwl_runner import EXIT_FAILED, EXIT_UNSUPPORTED, declared, exit_code, pack, parameter_imported, renamed
from ades.cwl_runner_files import job_inputs, results_to_outputs


def test_job_order_references_become_absolute_against_the_job_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    job = tmp_path / "sub" / "job.yml"
    job.write_text("""\
$namespaces: {edam: "http://edamontology.org/"}
file: {class: File, location: a.txt, format: "edam:format_2330"}
by_path: {class: File, path: ../b.txt, secondaryFiles: [{class: File, location: b.txt.idx}]}
literal: {class: File, basename: x.txt, contents: "hi"}
remote: {class: File, location: "http://example.org/c.txt"}
folder: {class: Directory, listing: [{class: File, location: d/e.txt}]}
record: {inner: [{class: Directory, location: "dir with space"}]}
number: 3
cwl:requirements: [{class: EnvVarRequirement, envDef: {X: "1"}}]
""")
    inputs = job_inputs(job)
    sub = (tmp_path / "sub").as_uri()
    assert "$namespaces" not in inputs and inputs["number"] == 3
    assert inputs["file"] == {"class": "File", "location": f"{sub}/a.txt", "format": "http://edamontology.org/format_2330"}
    assert inputs["by_path"]["location"] == (tmp_path / "b.txt").as_uri() and "path" not in inputs["by_path"]
    assert inputs["by_path"]["secondaryFiles"] == [{"class": "File", "location": f"{sub}/b.txt.idx"}]
    assert inputs["literal"] == {"class": "File", "basename": "x.txt", "contents": "hi"}
    assert inputs["remote"]["location"] == "http://example.org/c.txt"
    assert inputs["folder"] == {"class": "Directory", "listing": [{"class": "File", "location": f"{sub}/d/e.txt"}]}
    assert inputs["record"]["inner"][0]["location"] == f"{sub}/dir%20with%20space"
    assert inputs["cwl:requirements"] == [{"class": "EnvVarRequirement", "envDef": {"X": "1"}}]


def test_the_packed_main_process_is_renamed_everywhere() -> None:
    packed = {"$graph": [{"id": "#main", "class": "Workflow", "inputs": [{"id": "#main/x"}],
                          "steps": [{"id": "#main/s", "run": "#tool.cwl", "in": [{"source": "#main/x"}]}]},
                         {"id": "#tool.cwl", "class": "CommandLineTool", "inputs": [{"id": "#tool.cwl/x"}]}]}
    doc = renamed(packed, "p1")
    workflow = doc["$graph"][0]
    assert workflow["id"] == "#p1" and workflow["steps"][0]["in"][0]["source"] == "#p1/x"
    assert workflow["steps"][0]["run"] == "#tool.cwl" and doc["$graph"][1]["inputs"][0]["id"] == "#tool.cwl/x"
    assert renamed("#mainly", "p1") == "#mainly"
    assert declared(doc, "p1") == {"x"}
    assert declared({"id": "#p1", "inputs": {"a": "File", "b": "int"}}, "p1") == {"a", "b"}
    assert declared({"id": "#p1", "outputs": [{"id": "#p1/o"}]}, "p1", "outputs") == {"o"}


def test_results_become_cwl_objects() -> None:
    document = {
        "link": {"href": "http://h/jobs/1/results/link", "type": "text/plain"},
        "files": [{"href": "http://h/jobs/1/files/a.txt"}],
        "plain": {"value": 42},
        "record": {"value": {"f": {"class": "File", "location": "http://h/f", "checksum": "sha1$x"}, "n": None}},
        "cwl": {"class": "Directory", "href": "http://h/d", "basename": "d",
                "listing": [{"class": "File", "location": "http://h/d/e", "format": "http://f/x"}]},
    }
    outputs = results_to_outputs(document)
    assert outputs["link"] == {"class": "File", "location": "http://h/jobs/1/results/link"}
    assert outputs["files"] == [{"class": "File", "location": "http://h/jobs/1/files/a.txt"}]
    assert outputs["plain"] == 42
    assert outputs["record"] == {"f": {"class": "File", "location": "http://h/f", "checksum": "sha1$x"}, "n": None}
    assert outputs["cwl"] == {"class": "Directory", "location": "http://h/d", "basename": "d",
                              "listing": [{"class": "File", "location": "http://h/d/e", "format": "http://f/x"}]}


def test_a_refused_requirement_is_cwltests_unsupported_feature() -> None:
    refused = ApiError(400, "Unsupported requirement", "cwl:requirements: DockerRequirement is not honoured",
                       "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/unsupported-requirement")
    assert exit_code(refused) == EXIT_UNSUPPORTED
    assert exit_code(ApiError(400, "Invalid input", "input 'x': expected a string")) == EXIT_FAILED
    assert exit_code(ApiError(503, "Unsupported requirement", "")) == EXIT_FAILED


def test_a_job_orders_format_may_use_the_tools_namespaces(tmp_path: Path) -> None:
    job = tmp_path / "job.json"
    job.write_text('{"input": {"class": "File", "location": "whale.txt", "format": "edam:format_2330"}}')
    inputs = job_inputs(job, {"edam": "http://edamontology.org/"})
    assert inputs["input"]["format"] == "http://edamontology.org/format_2330"
    assert job_inputs(job)["input"]["format"] == "edam:format_2330"  # no namespace known: left as written


def test_packing_keeps_an_output_named_as_an_input(tmp_path: Path) -> None:
    """cwltool's pack folds an object whose id it met before into an `$import`: with two such tools in a workflow, a
    tool's output named as its input lost its type and binding."""
    tool = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: "true"
inputs: {folder: Directory}
outputs: {folder: {type: Directory, outputBinding: {glob: x}}}
"""
    (tmp_path / "one.cwl").write_text(tool)
    (tmp_path / "two.cwl").write_text(tool)
    (tmp_path / "wf.cwl").write_text("""\
cwlVersion: v1.2
class: Workflow
inputs: {folder: Directory}
outputs: {out: {type: Directory, outputSource: second/folder}}
steps:
  first: {run: one.cwl, in: {folder: folder}, out: [folder]}
  second: {run: two.cwl, in: {folder: first/folder}, out: [folder]}
""")
    packed = pack(str(tmp_path / "wf.cwl"))
    tools = {p["id"]: p for p in packed["$graph"] if p["class"] == "CommandLineTool"}
    for name in ("#one.cwl", "#two.cwl"):
        assert tools[name]["outputs"] == [{"type": "Directory", "outputBinding": {"glob": "x"}, "id": f"{name}/folder"}]
    assert not parameter_imported(packed)
