"""The pure parts of a Dask task on a worker with a data dir of its own: the spec rewritten into that dir (the
wrapped workflow written there from the task's text), and the attempts recorded on the scheduler's task metadata."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from ades.jobs.dask_checks import ATTEMPTS, claim_on_scheduler
from ades.jobs.dask_worker import localized
from ades.jobs.folder import DataDir

SPEC = {"job_id": "j1", "data_dir": "/srv/server-data", "workflow_file": "/srv/server-data/cache/wrapped/ab12.cwl"}


def test_a_worker_with_its_own_data_dir_runs_the_job_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "worker"
    monkeypatch.setenv("ADES_DATA_DIR", str(own))
    fields = json.loads(localized(json.dumps(SPEC), "class: Workflow\n"))
    wrapped = DataDir(own).wrapped_cache / "ab12.cwl"
    assert fields == {**SPEC, "data_dir": str(own), "workflow_file": str(wrapped)}
    assert wrapped.read_text() == "class: Workflow\n"
    wrapped.write_text("kept")  # named by its content: an existing file is not written again
    localized(json.dumps(SPEC), "class: Workflow\n")
    assert wrapped.read_text() == "kept"


def test_a_worker_without_one_runs_the_job_where_the_server_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADES_DATA_DIR", raising=False)
    spec = {**SPEC, "workflow_file": __file__}  # present: nothing to write
    assert json.loads(localized(json.dumps(spec), "unused")) == spec


def test_each_attempt_learns_the_starts_before_it() -> None:
    scheduler = SimpleNamespace(task_metadata={})
    assert claim_on_scheduler("ades-job-j1", {"worker": "a"}, dask_scheduler=scheduler) == []
    assert claim_on_scheduler("ades-job-j1", {"worker": "b"}, dask_scheduler=scheduler) == [{"worker": "a"}]
    assert claim_on_scheduler("ades-job-j2", {"worker": "b"}, dask_scheduler=scheduler) == []
    assert scheduler.task_metadata["ades-job-j1"][ATTEMPTS] == [{"worker": "a"}, {"worker": "b"}]
