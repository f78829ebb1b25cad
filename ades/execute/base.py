"""The Executor protocol: how the server hands jobs to whatever runs them (local warm workers, Dask, ...)."""

from __future__ import annotations

import threading
import time
from typing import Protocol

from ades.execute.runner import RunSpec


class Executor(Protocol):
    def submit(self, spec: RunSpec) -> None:
        """Queue the job; returns at once. The job reports its own progress through its sink."""

    def cancel(self, job_id: str) -> bool:
        """Stop the job (queued or running) and have it reported `dismissed`. False if the executor does not have
        the job (unknown or already finished)."""

    def close(self) -> None:
        """Stop taking jobs and stop the workers."""


def wait_ended(changed: threading.Condition, ended: dict[str, str], job_id: str, timeout: float) -> str | None:
    """Block on `changed` until `ended` holds the job's outcome; the outcome, or None after `timeout` seconds.
    Shared by the executors' `wait()` (the server's sync mode, tests)."""
    deadline = time.monotonic() + timeout
    with changed:
        while job_id not in ended:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            changed.wait(left)
        return ended[job_id]
