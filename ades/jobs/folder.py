"""The files of jobs on this host: the only code that knows their names.

    <data_dir>/jobs/<job id>/            a job's folder (JobFolder)
        job.log                          cwltool's messages and what the tools print
        work/  tmp/  outputs/            cwltool's step folders, temporary files and final outputs
        outputs.json                     cwltool's output object, written before `succeeded` is published
        wrapped.cwl                      the workflow that ran, for people reading the folder
        process.json                     who runs the job (host, pid, process group), written as it starts
        cancel-requested                 a dismissal was asked for; whoever runs the job reads it
        dask-attempts.jsonl              each Dask worker that took the job (a lost worker is told by it)
        dask-ended                       the outcome, for a task Dask reschedules after the job ended
    <data_dir>/queue/                    submission journals (ades.jobs.journal)
    <data_dir>/cache/wrapped/            wrapped workflows, named by their content
    <data_dir>/execution.paused          the pause switch (ades.jobs.pause)
    <data_dir>/reconcile.lock            held by the process that reconciles the data dir
    <data_dir>/quota/                    per-user ledgers of the submission quota (ades.jobs.quota)
    <data_dir>/quota/sync/               per-user places of synchronous executes, locked while taken
    <data_dir>/<prefix>jobs.written      when this host last wrote new jobs (ades.store.freshness)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ades.jobs.groups import tail
from ades.status import Status

LOG_TAIL_LINES = 20
RUN_FOLDERS = ("work", "tmp", "outputs")


class ProcessRecord(BaseModel):
    """Who runs a job: reconciliation tells a started job from a queued one, and a live one from a lost one."""

    pid: int
    pgid: int
    host: str
    started: float

    @classmethod
    def here(cls) -> ProcessRecord:
        return cls(pid=os.getpid(), pgid=os.getpgrp(), host=socket.gethostname(), started=time.time())


def inside(root: Path, candidate: str | Path) -> Path | None:
    """`candidate` (relative to `root`, symlinks followed) if it is a file inside `root`, else None."""
    resolved_root = root.resolve()
    try:
        path = (resolved_root / candidate).resolve()
        if not path.is_relative_to(resolved_root) or not path.is_file():
            return None
    except (ValueError, OSError):  # a NUL byte, a name too long: no such file either
        return None
    return path


def tree_bytes(root: Path) -> int:
    """The sizes of the regular files under `root` added up (symbolic links not followed; what vanishes while it
    is counted is not counted)."""
    total = 0
    folders = [root]
    while folders:
        try:
            with os.scandir(folders.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            folders.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


class JobFolder:
    """`<data_dir>/jobs/<job id>/`. Made by the worker that runs the job (a submission only journals it)."""

    def __init__(self, data_dir: Path, job_id: str) -> None:
        self.data_dir = Path(data_dir)
        self.job_id = job_id
        self.path = self.data_dir / "jobs" / job_id

    def __repr__(self) -> str:
        return f"JobFolder({self.path})"

    @property
    def log(self) -> Path:
        return self.path / "job.log"

    @property
    def work(self) -> Path:
        return self.path / "work"

    @property
    def tmp(self) -> Path:
        return self.path / "tmp"

    @property
    def outputs(self) -> Path:
        return self.path / "outputs"

    def exists(self) -> bool:
        return self.path.is_dir()

    def make(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    # --- a run -----------------------------------------------------------------------------------------------
    def prepare(self, workflow_file: Path) -> None:
        """Make the run folders, record who runs the job (this process, the leader of its group) and keep a copy
        of the workflow. The record is what makes the job count as started."""
        for name in RUN_FOLDERS:
            (self.path / name).mkdir(parents=True, exist_ok=True)
        self.record_process(ProcessRecord.here())
        with contextlib.suppress(OSError):  # a missing workflow fails the job when it is loaded, with the reason
            shutil.copyfile(workflow_file, self.path / "wrapped.cwl")

    def clear_run(self) -> None:
        """Remove what a run left in the run folders: an earlier attempt's (a job run again after its worker was
        lost), or one that wrote more than it may."""
        for name in RUN_FOLDERS:
            shutil.rmtree(self.path / name, ignore_errors=True)

    def written_bytes(self) -> int:
        """What the job has written so far: every file of its folder (log, working and temporary files, outputs)."""
        return tree_bytes(self.path)

    def record_process(self, record: ProcessRecord) -> None:
        (self.path / "process.json").write_text(record.model_dump_json(), encoding="utf-8")

    def has_started(self) -> bool:
        return (self.path / "process.json").exists()

    def process(self) -> ProcessRecord | None:
        try:
            return ProcessRecord.model_validate_json((self.path / "process.json").read_text(encoding="utf-8"))
        except (OSError, ValidationError):
            return None

    def save_outputs(self, outputs: dict[str, Any]) -> None:
        (self.path / "outputs.json").write_text(json.dumps(outputs, indent=1), encoding="utf-8")

    def saved_outputs(self) -> dict[str, Any] | None:
        """cwltool's output object as the run saved it; None when this host has no copy."""
        try:
            return json.loads((self.path / "outputs.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def file(self, candidate: str | Path) -> Path | None:
        """A file inside the folder (an output's `path`), or None."""
        return inside(self.path, candidate)

    def output_file(self, relative: str) -> Path | None:
        """A file inside the outputs folder, by its path relative to it, or None."""
        return inside(self.outputs, relative)

    # --- the log ---------------------------------------------------------------------------------------------
    def read_log(self) -> str:
        """The whole log; empty while the job has not started or after its files were removed."""
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def append_log(self, text: str) -> None:
        self.make()
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return tail(self.log, lines)

    # --- cancelling ------------------------------------------------------------------------------------------
    def request_cancel(self) -> None:
        """Ask whoever runs (or will run) the job to stop it: a job not started yet is dismissed when it would
        start, a running one is reported dismissed, not failed, once its process group is gone."""
        self.make()
        record = {"requested": time.time(), "by": os.getpid()}
        (self.path / "cancel-requested").write_text(json.dumps(record), encoding="utf-8")

    def cancel_requested(self) -> bool:
        return (self.path / "cancel-requested").exists()

    # --- Dask attempts ---------------------------------------------------------------------------------------
    def attempts(self) -> list[dict[str, Any]]:
        """Earlier attempts at the job on Dask workers, folded: attempt number -> its worker, host, process group."""
        folded: dict[int, dict[str, Any]] = {}
        with contextlib.suppress(OSError):
            for line in (self.path / "dask-attempts.jsonl").read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError, KeyError):
                    record = json.loads(line)
                    folded.setdefault(int(record["attempt"]), {}).update(record)
        return [folded[n] for n in sorted(folded)]

    def record_attempt(self, record: dict[str, Any]) -> None:
        with open(self.path / "dask-attempts.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def mark_ended(self, outcome: Status) -> None:
        (self.path / "dask-ended").write_text(outcome.value, encoding="utf-8")

    def ended(self) -> Status | None:
        """The outcome a Dask task left, or None while the job has not ended there."""
        try:
            word = (self.path / "dask-ended").read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return Status(word) if word in Status._value2member_map_ else Status.FAILED


class DataDir:
    """The host's data dir: job folders and the files every server process and worker sharing it sees."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def job(self, job_id: str) -> JobFolder:
        return JobFolder(self.root, job_id)

    def folders(self) -> list[JobFolder]:
        """The job folders on this host."""
        jobs = self.root / "jobs"
        return [JobFolder(self.root, p.name) for p in sorted(jobs.iterdir()) if p.is_dir()] if jobs.is_dir() else []

    @property
    def journals(self) -> Path:
        return self.root / "queue"

    @property
    def wrapped_cache(self) -> Path:
        return self.root / "cache" / "wrapped"

    @property
    def pause_file(self) -> Path:
        return self.root / "execution.paused"

    @property
    def reconcile_lock(self) -> Path:
        return self.root / "reconcile.lock"

    @property
    def quota(self) -> Path:
        return self.root / "quota"

    @property
    def sync_slots(self) -> Path:
        return self.quota / "sync"

    def write_marks(self, index_prefix: str) -> Path:
        return self.root / f"{index_prefix}jobs.written"
