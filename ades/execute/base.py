"""The Executor protocol: how the server hands jobs to whatever runs them (local warm workers, Dask, ...)."""

from __future__ import annotations

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
