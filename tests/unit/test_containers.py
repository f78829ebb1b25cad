"""The container policy's pure parts: which documents a server refuses, what cwltool is told, how ades edits the
`podman run` line cwltool builds, and that the runtime travels in a RunSpec's JSON (to job processes, Dask workers)."""

from __future__ import annotations

import os
from pathlib import Path

from ades.events.sinks import SinkConfig
from ades.execute.containers import refusal, runtime_options
from ades.execute.sandbox import Confinement, Sandbox, container_arguments
from ades.jobs.spec import RunSpec

REQUIRED = {"class": "CommandLineTool", "requirements": [{"class": "DockerRequirement", "dockerPull": "eo/ndvi:2"}]}
HINTED = {"class": "CommandLineTool", "hints": {"DockerRequirement": {"dockerPull": "eo/ndvi:2"}}}


def test_only_a_required_image_without_runtime_or_leave_is_refused() -> None:
    why = refusal(REQUIRED, "none", False)
    assert why is not None and "eo/ndvi:2" in why and "ADES_CONTAINER_RUNTIME" in why
    assert refusal(HINTED, "none", False) is None
    assert refusal(REQUIRED, "podman", False) is None
    assert refusal(REQUIRED, "none", True) is None
    assert refusal({"$graph": [REQUIRED, REQUIRED]}, "none", False).count("eo/ndvi:2") == 1  # type: ignore[union-attr]


def test_each_runtime_selects_cwltools_own_options() -> None:
    assert runtime_options("none") == {"use_container": False, "podman": False, "singularity": False}
    assert runtime_options("docker") == {"use_container": True, "podman": False, "singularity": False}
    assert runtime_options("podman") == {"use_container": True, "podman": True, "singularity": False}
    assert runtime_options("apptainer") == runtime_options("singularity") == {"use_container": True, "podman": False,
                                                                               "singularity": True}


def test_a_sandboxed_container_runs_as_the_job_user_without_network() -> None:
    # what cwltool's create_runtime returns: the options, before it appends the image and the command
    line = ["podman", "run", "-i", "--userns=keep-id", "--read-only=true", "--user=0:0", "--rm"]
    confined = Confinement(read_only=[], network=True, uid=995, gid=994)
    args = container_arguments(line, confined, network=False)
    assert "--user=995:994" in args and "--user=0:0" not in args and "--net=none" in args
    assert "--security-opt=no-new-privileges" in args and "--cap-drop=ALL" in args
    assert "--net=none" not in container_arguments(line, confined, network=True)  # declared, and allowed
    never = Confinement(read_only=[], network=False, uid=995, gid=994)
    assert "--net=none" in container_arguments(line, never, network=True)  # ADES_JOB_NETWORK=never
    # unconfined: cwltool's line, less what rootful podman refuses, and an init that ends the tool with the job
    rootless = [a for a in line if not (os.geteuid() == 0 and a == "--userns=keep-id")]
    assert container_arguments(line, None, network=False) == [*rootless, "--init"]


def test_the_runtime_travels_in_the_specs_json(tmp_path: Path) -> None:
    spec = RunSpec(job_id="j1", data_dir=tmp_path, workflow_file=tmp_path / "w.cwl", job_order={},
                   sink=SinkConfig.model_validate({}), sandbox=Sandbox(container="podman", without_container=False))
    again = RunSpec.model_validate_json(spec.model_dump_json())
    assert again.sandbox.container == "podman" and again.sandbox.without_container is False
    assert RunSpec.model_validate_json(spec.model_dump_json(exclude={"sandbox": {"container"}})).sandbox.container \
        == "none"  # a journal line written before the setting existed
