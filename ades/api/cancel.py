"""Cancelling a job that another server process on this host started (Linux only).

Under gunicorn each worker process has its own LocalExecutor, and a DELETE may reach a worker that does not own
the job. The job's folder is shared, though: we leave the executor's cancel marker there (a queued job is then
dismissed before it starts; a running one is reported dismissed, not failed, once it dies) and kill the process
groups of the processes working inside the folder — the job child made itself a group leader, so its group is
the whole job.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path

from ades.execute.local import CANCEL_MARKER
from ades.services.base import group_alive

GRACE = 5.0


def _groups_working_in(folder: Path) -> set[int]:
    root = str(folder.resolve())
    groups: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and (cwd == root or cwd.startswith(root + os.sep)):
            groups.add(int(fields[2]))
    # never our own group, nor init's: only job groups (the job child called setsid)
    groups.discard(os.getpgrp())
    groups.discard(0)
    groups.discard(1)
    return groups


def _stop(groups: set[int]) -> None:
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    while groups and time.monotonic() < deadline:
        time.sleep(0.1)
        groups = {g for g in groups if group_alive(g)}
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def cancel_elsewhere(workdir: Path) -> int:
    """Mark the job cancelled and stop whatever runs in its folder; returns how many process groups were hit."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / CANCEL_MARKER).write_text(json.dumps({"requested": time.time(), "by": os.getpid()}), encoding="utf-8")
    groups = _groups_working_in(workdir)
    if groups:
        threading.Thread(target=_stop, args=(groups,), name="ades-cancel", daemon=True).start()
    return len(groups)
