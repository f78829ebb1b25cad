"""The files of jobs on this host: the only code that knows their names.

    <data_dir>/jobs/<job id>/            a job's folder (JobFolder)
        job.log                          cwltool's messages and what the tools print
        work/  tmp/  outputs/            cwltool's step folders, temporary files and final outputs
        inputs/                          http(s) inputs, fetched by ades.fetch before cwltool starts
        outputs.json                     cwltool's output object, written before `succeeded` is published
        wrapped.cwl                      the workflow that ran, for people reading the folder
        process.json                     who runs the job (host, pid, process group), written as it starts and
                                         touched while it runs (its heartbeat: ades.jobs.heartbeat)
        cancel-requested                 a dismissal was asked for; whoever runs the job reads it
        dask-attempts.jsonl              each Dask worker that took the job (a lost worker is told by it)
        dask-ended                       the outcome, for a task Dask reschedules after the job ended
    <data_dir>/queue/                    submission journals (ades.jobs.journal)
    <data_dir>/cache/wrapped/            wrapped workflows, named by their content
    <data_dir>/execution.paused          the pause switch (ades.jobs.pause)
    <data_dir>/reconcile.lock            held by the process that reconciles the data dir
    <data_dir>/node-id                   this node's lease id (ades.jobs.leases), made once, kept across restarts
    <data_dir>/quota/                    per-user ledgers of the submission quota (ades.jobs.quota)
    <data_dir>/quota/sync/               per-user places of synchronous executes, locked while taken
    <data_dir>/<prefix>jobs.written      when this host last wrote new jobs (ades.store.freshness)

Everything here is the server's user's alone: a job's folder holds its user's inputs, outputs and log, the journal
every user's inputs. The data dir is made 0700 (an existing one loses group and other read and write; their search
bit stays, which a local Elasticsearch run as another user may need to reach its files below), the folders made here
0700 and the files 0600, whatever the umask. A sandboxed tool gets its own folders bound into its sandbox
(ades.execute.sandbox), so it needs no way through these.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ades.jobs.groups import tail
from ades.status import Status

LOG_TAIL_LINES = 20
RUN_FOLDERS = ("work", "tmp", "outputs")
PRIVATE_FOLDERS = ("jobs", "queue", "quota", "cache")
"""The data dir's folders that hold what users submitted: only the server's user may enter them."""


def private_folder(path: Path) -> None:
    """Make `path` (and any missing folder above it) a folder only its owner may enter."""
    if not path.parent.is_dir():
        private_folder(path.parent)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)


def write_private(path: Path, data: str | bytes, append: bool = False) -> None:
    """Write (or append) to a file made 0600 when it is created."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    with os.fdopen(os.open(path, flags, 0o600), "ab" if append else "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def make_tree_private(root: Path) -> None:
    """Files under `root` 0600 and folders 0700 (what a tool wrote, with the modes it chose); links are left alone."""
    for folder, folders, files in os.walk(root):
        for name in folders:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(folder, name), 0o700, follow_symlinks=False)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.chmod(path, 0o600)


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

    @property
    def inputs(self) -> Path:
        """Made when the first http(s) input is fetched: most jobs have none."""
        return self.path / "inputs"

    def exists(self) -> bool:
        return self.path.is_dir()

    def make(self) -> None:
        private_folder(self.path)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    # --- a run -----------------------------------------------------------------------------------------------
    def prepare(self, workflow_file: Path) -> None:
        """Make the run folders, record who runs the job (this process, the leader of its group) and keep a copy
        of the workflow. The record is what makes the job count as started."""
        for name in RUN_FOLDERS:
            private_folder(self.path / name)
        write_private(self.log, "", append=True)  # made private before anything (cwltool, the tools) writes to it
        self.record_process(ProcessRecord.here())
        with contextlib.suppress(OSError):  # a missing workflow fails the job when it is loaded, with the reason
            write_private(self.path / "wrapped.cwl", workflow_file.read_bytes())

    def clear_run(self) -> None:
        """Remove what a run left in the run folders and its fetched inputs: an earlier attempt's (a job run again
        after its worker was lost), or one that wrote more than it may."""
        for name in (*RUN_FOLDERS, "inputs"):
            shutil.rmtree(self.path / name, ignore_errors=True)

    def written_bytes(self) -> int:
        """What the job has written so far: every file of its folder (log, working and temporary files, outputs)."""
        return tree_bytes(self.path)

    def record_process(self, record: ProcessRecord) -> None:
        write_private(self.path / "process.json", record.model_dump_json())

    def beat(self) -> None:
        os.utime(self.path / "process.json")

    def last_beat(self) -> float | None:
        """When the job's process last said it runs (None: it never started here)."""
        try:
            return (self.path / "process.json").stat().st_mtime
        except OSError:
            return None

    def has_started(self) -> bool:
        return (self.path / "process.json").exists()

    def process(self) -> ProcessRecord | None:
        try:
            return ProcessRecord.model_validate_json((self.path / "process.json").read_text(encoding="utf-8"))
        except (OSError, ValidationError):
            return None

    def save_outputs(self, outputs: dict[str, Any]) -> None:
        """Keep cwltool's output object, and make the output files private (the tools chose their modes)."""
        make_tree_private(self.outputs)
        write_private(self.path / "outputs.json", json.dumps(outputs, indent=1))

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
        write_private(self.log, text if text.endswith("\n") else text + "\n", append=True)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return tail(self.log, lines)

    # --- cancelling ------------------------------------------------------------------------------------------
    def request_cancel(self) -> None:
        """Ask whoever runs (or will run) the job to stop it: a job not started yet is dismissed when it would
        start, a running one is reported dismissed, not failed, once its process group is gone."""
        self.make()
        record = {"requested": time.time(), "by": os.getpid()}
        write_private(self.path / "cancel-requested", json.dumps(record))

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
        write_private(self.path / "dask-attempts.jsonl", json.dumps(record) + "\n", append=True)

    def mark_ended(self, outcome: Status) -> None:
        write_private(self.path / "dask-ended", outcome.value)

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

    def make_private(self) -> list[Path]:
        """Make the data dir (0700 when new) and the folders holding what users submitted private; the folders whose
        modes had to be narrowed (an older data dir, or one made by hand)."""
        narrowed = []
        if not self.root.is_dir():
            private_folder(self.root)
        elif (mode := stat.S_IMODE(self.root.stat().st_mode)) & 0o066:
            os.chmod(self.root, mode & ~0o066)
            narrowed.append(self.root)
        for name in PRIVATE_FOLDERS:
            folder = self.root / name
            with contextlib.suppress(FileNotFoundError):
                if stat.S_IMODE(folder.stat().st_mode) & 0o077:
                    os.chmod(folder, 0o700)
                    narrowed.append(folder)
        return narrowed

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
    def node_id_file(self) -> Path:
        return self.root / "node-id"

    @property
    def quota(self) -> Path:
        return self.root / "quota"

    @property
    def sync_slots(self) -> Path:
        return self.quota / "sync"

    def write_marks(self, index_prefix: str) -> Path:
        return self.root / f"{index_prefix}jobs.written"
