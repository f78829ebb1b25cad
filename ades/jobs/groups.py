"""Process groups: every job runs as the leader of its own group (so do the local services), and is watched and
stopped as a group, and what it printed is read from the end of its log. Stdlib only: the service launchers use it
too and must start fast.

Stopping is `stop`: SIGTERM, a grace period for the group to leave (and, when given, for whoever watches it to see
the end), then SIGKILL. It is the one place a group is stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path

POLL_SECONDS = 0.05


def alive(pgid: int) -> bool:
    """Whether any process of the group lives (a group of another user's counts as alive)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _proc_fields(entry: Path) -> list[str] | None:
    """The fields after `(comm)` of /proc/<pid>/stat: state, ppid, pgrp, ... (comm may hold spaces or ')')."""
    try:
        return (entry / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of the group."""
    found = []
    for entry in Path("/proc").iterdir():
        fields = _proc_fields(entry) if entry.name.isdigit() else None
        if fields and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


def working_in(folder: Path) -> set[int]:
    """Process groups of the live processes whose working directory is `folder` or below it; never this process's
    own group nor init's (a job's processes run in its folder, in the group its child made)."""
    root = str(folder.resolve())
    groups: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        fields = _proc_fields(entry)
        if fields and fields[0] != "Z" and (cwd == root or cwd.startswith(root + os.sep)):
            groups.add(int(fields[2]))
    return groups - {os.getpgrp(), 0, 1}


def kill(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Signal the whole group; a group that is gone (or not ours to signal) is left alone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _reap(pgid: int) -> None:
    # a group leader that is our own child stays a zombie, hence "alive", until it is collected
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pgid, os.WNOHANG)


def gone(pgid: int) -> bool:
    """Whether no process of the group runs any more (zombies nobody reaped yet do not count)."""
    _reap(pgid)
    return not alive(pgid) or not members(pgid)


def stop(pgids: int | Iterable[int], grace: float, seen_end: Callable[[], bool] | None = None,
         wait_killed: float = 10.0) -> bool:
    """SIGTERM the groups, give them `grace` seconds to leave (and `seen_end()`, when given, to become true: the
    job's watcher has seen it end), then SIGKILL whatever is left and wait up to `wait_killed` seconds for it to go.
    True if a SIGKILL was needed."""
    left = {pgids} if isinstance(pgids, int) else set(pgids)
    for pgid in left:
        kill(pgid, signal.SIGTERM)
    left = wait_gone(left, grace, seen_end)
    if not left:
        return False
    for pgid in left:
        kill(pgid, signal.SIGKILL)
    wait_gone(left, wait_killed)
    return True


def wait_gone(left: set[int], timeout: float, seen_end: Callable[[], bool] | None = None) -> set[int]:
    """Wait until every group of `left` is gone (and `seen_end()` holds); the groups still there at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        left = {pgid for pgid in left if not gone(pgid)}
        if (not left and (seen_end is None or seen_end())) or time.monotonic() >= deadline:
            return left
        time.sleep(POLL_SECONDS)


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log (read from its last 64 KiB); empty when it cannot be read."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
