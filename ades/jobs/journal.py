"""The submission journal: what each accepted job needs to (re)start, kept on disk until the job has started.

Every server process appends one line (a QueuedJob as JSON) per submission to its own file in the data dir's
journal folder, before the job is indexed, with one `write` per group-committed batch (ades.jobs.acceptance) on a
file it keeps open: the submission path makes no folder and no file per job (the job's folder is made by the worker
that runs it).

A process holds an exclusive `flock` on its file for as long as it lives, so reconciliation (ades.jobs.reconcile)
tells the files of live processes (their jobs are held there, hands off) from those of processes that died (their
unstarted jobs must be re-queued). A file past `rotate_bytes` is replaced by a fresh one; the old one stays locked
until the lines of jobs that are still waiting are copied over, then it is deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ades.jobs.folder import DataDir, JobFolder, private_folder
from ades.jobs.scheduler import Statuses
from ades.jobs.spec import QueuedJob
from ades.status import Status

ROTATE_BYTES = 64 * 1024 * 1024
RETRY_SECONDS = 5.0
log = logging.getLogger(__name__)


def read_entries(path: Path) -> dict[str, QueuedJob]:
    """job id -> its last line in the file, unless a later void line (`Journal.void`) took it back; lines that do
    not parse (a write torn by a machine crash) are skipped."""
    entries: dict[str, QueuedJob] = {}
    try:
        data = path.read_bytes()
    except OSError:
        return entries
    for line in data.splitlines():
        try:
            queued = QueuedJob.model_validate_json(line)
        except ValueError:
            voided = _voided(line)
            if voided is not None:
                entries.pop(voided, None)
            continue
        entries[queued.job_id] = queued
    return entries


def _voided(line: bytes) -> str | None:
    """The job id of a void line, else None."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record.get("void") if isinstance(record, dict) and isinstance(record.get("void"), str) else None


def _lock(path: Path) -> int | None:
    """An fd holding the exclusive lock of `path`, or None if a live process holds it (or it vanished)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


@dataclass
class Survey:
    """The journals of a data dir as reconciliation finds them."""

    orphaned: dict[str, QueuedJob] = field(default_factory=dict)
    """jobs of processes that are gone (their files are now locked by us)"""
    live: set[str] = field(default_factory=set)
    """jobs of live processes (this one included)"""
    _held: list[tuple[Path, int]] = field(default_factory=list)

    def discard(self) -> None:
        """Delete the orphaned files: call once their waiting jobs are re-queued (and journaled again)."""
        for path, fd in self._held:
            with contextlib.suppress(OSError):
                path.unlink()
            os.close(fd)
        self._held.clear()


class Journal:
    """This process's journal file; thread-safe."""

    def __init__(self, data_dir: Path, statuses: Statuses, rotate_bytes: int = ROTATE_BYTES) -> None:
        self.data_dir = Path(data_dir)
        self.directory = DataDir(self.data_dir).journals
        private_folder(self.directory)
        self.statuses = statuses
        self.rotate_bytes = rotate_bytes
        self._lock = threading.Lock()
        self._path, self._fd = self._open()
        self._size = 0

    def _open(self) -> tuple[Path, int]:
        # host, pid and a clock: unique across restarts and hosts sharing the directory
        name = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
        path, pending = self.directory / f"{name}.jsonl", self.directory / f"{name}.new"
        # 0600: the lines hold every user's inputs
        fd = os.open(pending, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        # locked before it has the name reconciliation looks for, so it is never seen unlocked
        os.rename(pending, path)
        return path, fd

    @property
    def path(self) -> Path:
        return self._path

    def append(self, queued: QueuedJob) -> None:
        """Journal one accepted job (before it is indexed). Raises OSError when the disk refuses."""
        self.append_many([queued])

    def append_many(self, jobs: Iterable[QueuedJob]) -> None:
        """Journal accepted jobs with one write (a batch before its bulk: ades.jobs.acceptance). Raises OSError when
        the disk refuses."""
        self._write(b"".join(queued.model_dump_json().encode() + b"\n" for queued in jobs))

    def void(self, job_id: str) -> None:
        """Take back this file's line of a job that was not accepted after all (a start of a created job that lost
        its race: ades.jobs.service), so that no restart runs it from this line. Raises OSError."""
        self._write(json.dumps({"void": job_id}).encode() + b"\n")

    def _write(self, data: bytes) -> None:
        if not data:
            return
        with self._lock:  # the write too: a rotation must not compact (and close) a file a line is going to
            written = os.write(self._fd, data)
            if written != len(data):  # a full disk: the torn line is skipped when read
                raise OSError(f"journal {self._path}: wrote {written} of {len(data)} bytes")
            self._size += written
            if self._size < self.rotate_bytes:
                return
            old = (self._path, self._fd)
            self._path, self._fd = self._open()
            self._size = 0
        threading.Thread(target=self._compact, args=old, name="ades-journal-compact", daemon=True).start()

    def _compact(self, path: Path, fd: int) -> None:
        """Copy the lines of jobs still waiting (not started, still `submitted`) to the current file, then delete
        `path`. Its lock is held throughout, so a reconciliation never takes these jobs for orphans."""
        while True:
            try:
                waiting = self.waiting(read_entries(path))
                break
            except Exception as err:  # the store is down: these jobs stay journaled in the old file meanwhile
                log.warning("journal %s: cannot compact yet (%s); retrying in %.0f s", path.name, err, RETRY_SECONDS)
                time.sleep(RETRY_SECONDS)
        self.append_many(waiting)
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)

    def waiting(self, entries: dict[str, QueuedJob]) -> list[QueuedJob]:
        """The entries whose job has not started here and is still `submitted` in the store."""
        unstarted = [q for q in entries.values() if not JobFolder(self.data_dir, q.job_id).has_started()]
        statuses: dict[str, str | None] = {}
        ids = [q.job_id for q in unstarted]
        for start in range(0, len(ids), 1000):
            statuses.update(self.statuses(ids[start:start + 1000]))
        return [q for q in unstarted if statuses.get(q.job_id) == Status.SUBMITTED.value]

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)
            self._fd = -1


def survey(data_dir: Path) -> Survey:
    """Sort the journals of `data_dir` into those of live processes and orphans (whose locks we then keep)."""
    found = Survey()
    directory = DataDir(data_dir).journals
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.jsonl")):
        fd = _lock(path)
        entries = read_entries(path)
        if fd is None:
            found.live.update(entries)
        else:
            found.orphaned.update(entries)
            found._held.append((path, fd))
    for job_id in found.live:
        found.orphaned.pop(job_id, None)
    return found
