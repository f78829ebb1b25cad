"""The workflow wrapper's output is CWL that cwltool accepts, with the steps in the right order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ades.cwl import load_package
from ades.cwl.loader import load_process
from ades.execute.containers import docker_requirements
from ades.execute.wrapper import WRAPPER_ID, WrapError, update_job_tool, wrap

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "cwl" / "examples"


def load_wrapped(doc, tmp_path):
    path = tmp_path / "wrapped.cwl"
    path.write_text(json.dumps(doc))
    return load_process(f"{path.as_uri()}#{WRAPPER_ID}")


@pytest.mark.parametrize("name", ["echo.cwl", "two-step/two-step.cwl", "failing/failing.cwl", "sleep/sleep.cwl"])
def test_wrapped_examples_validate_with_cwltool(name, tmp_path):
    package = load_package((EXAMPLES / name).read_text(), "application/cwl")
    tool = load_wrapped(wrap(package), tmp_path)
    names = sorted(p["id"].rsplit("/", 1)[-1] for p in tool.tool["inputs"])
    assert names == sorted([*(p for p in package.inputs), "ades_job_id", "ades_sink"])
    assert sorted(p["id"].rsplit("/", 1)[-1] for p in tool.tool["outputs"]) == sorted(package.outputs)


def test_steps_are_ordered_by_data(tmp_path):
    package = load_package((EXAMPLES / "echo.cwl").read_text(), "application/cwl")
    doc = wrap(package, "http://127.0.0.1:5000/")
    steps = doc["$graph"][0]["steps"]
    assert steps["main"]["in"]["ades_wrapper_after_start"] == "start/receipt"
    assert steps["finish"]["in"]["ades_wrapper_after_out"] == "main/out"
    assert steps["start"]["in"]["status"] == {"default": "running"}
    assert json.loads(steps["finish"]["in"]["outputs"]["valueFrom"])["out"] == (
        "http://127.0.0.1:5000/jobs/$(self)/results/out"
    )


def test_author_inputs_for_update_job_are_passed_through(tmp_path):
    href = {"executionUnit": {"href": (EXAMPLES / "progress" / "progress.cwl").as_uri()}}
    package = load_package(href, "application/ogcapppkg+json", allowed_roots=[ROOT / "cwl"])
    doc = wrap(package)
    main_in = doc["$graph"][0]["steps"]["main"]["in"]
    assert main_in["ades_job_id"] == "ades_job_id" and main_in["ades_sink"] == "ades_sink"
    load_wrapped(doc, tmp_path)


def test_enums_records_and_defaults_validate(tmp_path):
    text = """\
cwlVersion: v1.0
class: CommandLineTool
id: shapes
baseCommand: echo
inputs:
  colour: {type: {type: enum, symbols: [red, green]}, default: red, inputBinding: {}}
  pair: {type: {type: record, fields: {a: int}}}
  n: {type: int, default: 3}
outputs: {out: stdout}
"""
    load_wrapped(wrap(load_package(text, "application/cwl")), tmp_path)


def test_reserved_ids_and_bad_urls_are_refused():
    package = load_package((EXAMPLES / "echo.cwl").read_text(), "application/cwl")
    with pytest.raises(WrapError):
        wrap(package, "http://127.0.0.1/$(inputs.x)")
    reserved = package.model_copy(update={"cwl": {**package.cwl, "id": "ades-wrapper"}})
    with pytest.raises(WrapError, match="reserved"):
        wrap(reserved)


def test_shipped_update_job_matches_the_repository_copy():
    from ades.cwl.package import parse_cwl_text

    assert update_job_tool() == parse_cwl_text((ROOT / "cwl" / "update-job.cwl").read_text())


def test_docker_requirements_are_found_only_under_requirements():
    doc = {"$graph": [{"requirements": {"DockerRequirement": {"dockerPull": "alpine"}}},
                      {"hints": [{"class": "DockerRequirement", "dockerPull": "debian"}]},
                      {"steps": {"s": {"run": {"requirements": [{"class": "DockerRequirement", "dockerPull": "x"}]}}}}]}
    assert docker_requirements(doc) == ["alpine", "x"]
