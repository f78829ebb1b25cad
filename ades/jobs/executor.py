"""The Executor protocol: where jobs run once they may start. Two transports implement it over the same launcher
(ades.jobs.launcher): warm worker processes of this server (ades.jobs.local) and a Dask cluster
(ades.jobs.dask_server). Both move the jobs they are given through the host's JobTable (queued, started, ended)."""

from __future__ import annotations

from typing import Protocol

from ades.jobs.lifecycle import JobTable
from ades.jobs.spec import RunSpec
from ades.status import Status

DEFAULT_GRACE = 5.0
"""Seconds a cancelled job's process group gets between SIGTERM and SIGKILL."""


class Executor(Protocol):
    table: JobTable

    def submit(self, spec: RunSpec) -> None:
        """Queue the job (it is QUEUED in the table); it starts once a worker is free."""

    def cancel(self, job_id: str) -> bool:
        """Request the job's cancel and stop it if it runs; whether this executor holds the job."""

    def close(self) -> None:
        """Stop taking jobs and stop the workers."""

    def wait(self, job_id: str, timeout: float) -> Status | None:
        """The job's outcome once it has ended, or None after `timeout` seconds."""
