"""Warm launcher processes of a Dask worker, and the line protocol between them.

cwltool does not run in the Dask worker process itself: that process is threaded (its event loop, the task
threads), and a child forked from a threaded process can inherit a lock another thread held. Each worker keeps warm
single-threaded *launchers* instead (cwltool imported, loaded tools cached) that run the launcher's `run_one` (fork
a child that makes itself a process-group leader and runs the job) and report over a pipe, one JSON line each:
`ready` once warm, `started` with the job's process group, `ended` with its outcome. A task thread borrows one
launcher for its job, so a worker with N threads runs N jobs at a time.

A launcher whose worker dies (SIGKILL, out of memory) sees its parent change and kills its job's group: the job must
not run on unwatched, maybe twice over once Dask reschedules the task.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from ades.jobs import groups
from ades.jobs.launcher import run_one, warm_up
from ades.jobs.publisher import Publisher
from ades.jobs.spec import RunSpec
from ades.status import Status

PARENT_POLL = 0.2
"""Seconds between a launcher's checks that its worker still lives."""


# --- the launcher process (single-threaded but for its parent watch) -------------------------------------------
class _Running:
    """The process group of the job a launcher runs now, shared with its parent watch and its signal handler."""

    pgid: int | None = None

    def kill(self) -> None:
        if self.pgid:
            groups.kill(self.pgid)


def _watch_parent(parent: int, running: _Running) -> None:
    # polling getppid: a death signal would follow the worker *thread* that started us, not the worker process
    while True:
        time.sleep(PARENT_POLL)
        if os.getppid() != parent:
            running.kill()
            os._exit(1)


def launcher_main() -> None:
    """Body of a launcher: read RunSpecs (one JSON line each) on stdin, run them one at a time, report on stdout."""
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # whatever else prints goes to the worker's log, not into the protocol
    running = _Running()

    def stop(signum: int, frame: Any) -> None:
        # `ades services stop` terminates the worker's process group (us too); the job made its own group
        running.kill()
        os._exit(128 + signum)

    def started(pgid: int) -> None:
        running.pgid = pgid
        out.write(json.dumps({"event": "started", "pid": pgid}) + "\n")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on `ades dask worker`: the worker stops us in order
    threading.Thread(target=_watch_parent, args=(os.getppid(), running), daemon=True).start()
    warm_up()
    publisher = Publisher()
    out.write(json.dumps({"event": "ready", "pid": os.getpid()}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        spec = RunSpec.model_validate_json(line)
        try:
            outcome = run_one(spec, publisher, started)
        except Exception as err:  # a bug in ades itself: this job fails with the reason, the launcher stays
            traceback.print_exc()
            publisher.failed(spec.folder, f"the launcher could not run the job: {type(err).__name__}: {err}",
                             spec.sink)
            outcome = Status.FAILED
        running.pgid = None
        out.write(json.dumps({"event": "ended", "outcome": outcome.value}) + "\n")


# --- the worker's end ------------------------------------------------------------------------------------------
class Launcher:
    """A launcher process and the worker's end of its pipes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=None)
        self._buffer = b""
        self._ready = False

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def _message(self) -> dict[str, Any] | None:
        """The next message, or None once the launcher is dead."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            readable, _, _ = select.select([fd], [], [], 1.0)
            if not readable:
                if not self.alive:
                    return None
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def run(self, spec_json: str, on_started: Callable[[int], None]) -> Status | None:
        """Run one job; its outcome, or None if the launcher died under it."""
        assert self.proc.stdin is not None
        while not self._ready:
            message = self._message()
            if message is None:
                return None
            self._ready = message.get("event") == "ready"
        try:
            self.proc.stdin.write(spec_json.encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            return None
        while (message := self._message()) is not None:
            if message["event"] == "started":
                on_started(int(message["pid"]))
            elif message["event"] == "ended":
                return Status(message["outcome"])
        return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin:
                self.proc.stdin.close()  # end of input: it leaves its loop after the job in hand
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)


class LauncherPool:
    """Idle launchers of a worker; a task borrows one, or starts one when none is idle."""

    def __init__(self) -> None:
        self._idle: list[Launcher] = []
        self._lock = threading.Lock()

    def prestart(self, count: int) -> None:
        with self._lock:
            while len(self._idle) < count:
                self._idle.append(Launcher())

    def acquire(self) -> Launcher:
        with self._lock:
            while self._idle:
                launcher = self._idle.pop()
                if launcher.alive:
                    return launcher
        return Launcher()

    def release(self, launcher: Launcher) -> None:
        if launcher.alive:
            with self._lock:
                self._idle.append(launcher)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for launcher in idle:
            launcher.close()


if __name__ == "__main__":
    launcher_main()
