"""Read-your-writes without a refresh per write: job listings and process resolution across server processes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ades.jobs.acceptance import CreateBatcher
from ades.models import Job, JobQuery
from ades.store import ProcessStore
from ades.store.freshness import WriteMarks
from ades.store.processes import DeployedProcess, ProcessNotFound
from tests.helpers import wait_for

pytestmark = pytest.mark.integration
PKG = {"cwlVersion": "v1.2", "class": "CommandLineTool"}


def _deployed(store: ProcessStore, ref: str) -> bool:
    try:
        store.get(ref)
    except ProcessNotFound:
        return False
    return True


def _listed(job_store, label: str) -> set[str]:
    return {d["id"] for d in job_store.search(JobQuery(labels_all=[label], size=100)).jobs}


def test_batched_jobs_are_readable_at_once_and_listed_after_a_marked_refresh(job_store, settings, tmp_path):
    # the index refreshes itself every second: turn that off so only our refreshes can make the jobs searchable
    job_store.client.indices.put_settings(index=job_store.index, settings={"index.refresh_interval": "-1"})
    marks = WriteMarks(tmp_path / "jobs.written", job_store.refresh)
    batcher = CreateBatcher(job_store, on_written=marks.mark)
    try:
        jobs = [Job(process_id="echo", labels=["fresh"]) for _ in range(3)]
        for job in jobs:
            batcher.create(job)
        assert all(job_store.get(j.id)["status"] == "submitted" for j in jobs)  # realtime get, no refresh
        assert _listed(job_store, "fresh") == set()  # no refresh happened: a search does not see them yet

        other_process = WriteMarks(tmp_path / "jobs.written", job_store.refresh)  # another worker of this host
        other_process.before_search()
        assert other_process.refreshes == 1
        assert _listed(job_store, "fresh") == {j.id for j in jobs}
        other_process.before_search()
        assert other_process.refreshes == 1  # nothing written since: no refresh

        late = Job(process_id="echo", labels=["fresh"])
        batcher.create(late)
        other_process.before_search()
        assert other_process.refreshes == 2
        assert late.id in _listed(job_store, "fresh")
    finally:
        batcher.close()


def test_a_change_made_through_another_server_is_seen_within_the_ttl(es, settings, process_store, tmp_path):
    """Two servers (two data dirs) sharing the store: no stamp file in common, so the other one trusts its cache
    for at most `process_cache_ttl` seconds before it reads the generation again."""
    there = ProcessStore(es, settings.model_copy(update={"data_dir": tmp_path / "other", "process_cache_ttl": 0.3}))
    when = datetime(2026, 1, 1, tzinfo=UTC)
    process_store.deploy(DeployedProcess(id="tool", version="1.0", package=PKG, title="one", deployed=when))
    assert there.get("tool").title == "one"
    process_store.deploy(DeployedProcess(id="tool", version="1.0", package=PKG, title="two", deployed=when),
                         replace=True)
    # seen once the other server's cache is older than its ttl: within 0.3 s, whenever it looks
    wait_for(lambda: there.get("tool").title == "two", 0.4, "the replaced process to be seen", interval=0.02)
    process_store.delete("tool")
    wait_for(lambda: not _deployed(there, "tool"), 0.4, "the undeployed process to be gone", interval=0.02)
    with pytest.raises(ProcessNotFound):
        there.get("tool")
