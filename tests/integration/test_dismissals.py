"""Finding the jobs another node dismissed (ades/jobs/dismissals.py) against the real store: only jobs held here,
dismissed since the last round, are stopped; a round costs one search whatever the number of jobs held."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ades.jobs.dismissals import LAG_SECONDS, DismissalWatch
from ades.jobs.lifecycle import HostState, JobTable
from ades.models import Job, StatusUpdate
from ades.status import Status
from ades.store import JobStore
from tests.helpers import store_jobs

pytestmark = pytest.mark.integration


def test_only_jobs_held_here_and_dismissed_lately_are_stopped(job_store: JobStore, es) -> None:
    names = ("held-dismissed", "held-running", "not-held-dismissed", "held-dismissed-long-ago")
    now = datetime.now(UTC)
    long_ago = now - timedelta(seconds=LAG_SECONDS * 4)
    jobs = {name: Job(process_id="echo", created=long_ago if "long-ago" in name else now) for name in names}
    store_jobs(job_store, list(jobs.values()))
    for name, at in (("held-dismissed", now), ("not-held-dismissed", now),
                     ("held-dismissed-long-ago", long_ago)):
        job_store.apply(StatusUpdate(job_id=jobs[name].id, status=Status.DISMISSED, timestamp=at))
    job_store.apply(StatusUpdate(job_id=jobs["held-running"].id, status=Status.RUNNING, timestamp=now))
    job_store.refresh()
    table = JobTable()
    for name in ("held-dismissed", "held-running", "held-dismissed-long-ago"):
        table.transition(jobs[name].id, HostState.JOURNALED, "accepted")
    table.transition(jobs["held-running"].id, HostState.QUEUED, "handed on")
    table.transition(jobs["held-running"].id, HostState.STARTED, "runs")
    stopped: list[str] = []
    watch = DismissalWatch(job_store, table, stopped.append, interval=3600)
    try:
        assert watch.check() == [jobs["held-dismissed"].id] == stopped
    finally:
        watch.close()
