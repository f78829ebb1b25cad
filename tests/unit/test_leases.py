"""Host leases, as pure decisions (ades.jobs.leases): which unfinished jobs a live node takes for lost and what it
does with each, how much of an adopted job's delay is left, the sweep's query, the node id kept in the data dir,
and reconciliation leaving a job whose `host` is another node's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ades.jobs.leases import API, DASK_WORKER, Fate, delay_left, fate, lost_reason, node_id
from ades.jobs.reconcile import Verdict, verdict
from ades.models import iso
from ades.store.hosts import LeaseDoc, lost_jobs_query
from ades.store.setup import missing_fields

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ME = "node-me"


def _lease(host: str = "node-a", expires_in: float = -1.0, kind: str = API) -> LeaseDoc:
    return LeaseDoc(id=host, kind=kind, hostname="box-a", started=NOW - timedelta(hours=1), beat=NOW,
                    expires=NOW + timedelta(seconds=expires_in))


def _job(status: str = "submitted", host: str | None = "node-a", **extra) -> dict:
    return {"id": "job-1", "status": status, "host": host, "created": iso(NOW - timedelta(seconds=10)), **extra}


@pytest.mark.parametrize(("doc", "lease", "adopt", "expected"), [
    (_job(), _lease(), True, Fate.ADOPT),                        # waiting on a dead node: taken over
    (_job(), _lease(), False, Fate.FAIL),                        # ... or failed where adoption is off
    (_job(), None, True, Fate.ADOPT),                            # no lease at all: the same
    (_job("running"), _lease(), True, Fate.FAIL),                # its run was on the lost disk: failed either way
    (_job(adopted={"from": "node-z"}), _lease(), True, Fate.FAIL),  # adopted once already: never twice
    (_job(), _lease(expires_in=5), True, Fate.LEAVE),            # a fresh lease: hands off
    (_job("running", "worker-1"), _lease("worker-1", 5, DASK_WORKER), True, Fate.LEAVE),  # a live Dask worker
    (_job(host=ME), _lease(ME), True, Fate.LEAVE),               # this node's own job
    (_job(host=None), None, True, Fate.LEAVE),                   # a job from before leases: reconciliation's
    (_job("succeeded"), _lease(), True, Fate.LEAVE),             # ended meanwhile
    # created (OGC API Processes Part 4), even with a host named: nothing runs it or waits to, so nothing is lost
    (_job("created"), _lease(), True, Fate.LEAVE),
    (_job("created"), None, False, Fate.LEAVE),
])
def test_what_a_live_node_does_with_a_job_of_a_lost_host(doc: dict, lease: LeaseDoc | None, adopt: bool,
                                                         expected: Fate) -> None:
    assert fate(doc, lease, NOW, ME, adopt) is expected


def test_a_job_the_dask_scheduler_still_holds_is_left_though_its_worker_lease_expired() -> None:
    doc, lease = _job("running", "worker-1"), _lease("worker-1", kind=DASK_WORKER)
    assert fate(doc, lease, NOW, ME, False, dask_knows=True) is Fate.LEAVE
    assert fate(doc, lease, NOW, ME, False, dask_knows=False) is Fate.FAIL
    assert fate(doc, lease, NOW, ME, False, dask_knows=None) is Fate.FAIL  # no Dask executor here


def test_the_reason_names_the_lost_host() -> None:
    reason = lost_reason(_job("running"), _lease())
    assert "host lost" in reason and "api node-a (box-a)" in reason and "running there" in reason
    assert "node-a holds no lease" in lost_reason(_job(), None)


def test_an_adopted_delay_counts_from_the_document() -> None:
    created = iso(NOW - timedelta(seconds=10))
    assert delay_left({"delay": 30, "created": created}, {}, NOW) == pytest.approx(20)
    assert delay_left({"delay": 5, "created": created}, {}, NOW) == 0.0
    assert delay_left({"delay": 0, "created": created}, {}, NOW) == 0.0
    deps = {"a": {"status": "succeeded", "stop-time": iso(NOW - timedelta(seconds=4))},
            "b": {"status": "succeeded", "stop-time": iso(NOW - timedelta(seconds=8))}}
    doc = {"delay": 10, "created": created, "depends-on": ["a", "b"]}
    assert delay_left(doc, deps, NOW) == pytest.approx(6)  # from the last dependency's success
    assert delay_left(doc, {**deps, "b": {"status": "running"}}, NOW) == 10  # starts when it succeeds
    assert delay_left(doc, {"a": deps["a"]}, NOW) == 10


def test_the_sweep_query_skips_fresh_leases_and_gives_missing_ones_a_grace() -> None:
    query = lost_jobs_query(["node-me", "node-b"], ["node-a"], NOW)["bool"]
    # a batch's parent never runs, so it is never adopted or failed as lost: its children settle it
    assert query["must_not"] == [{"exists": {"field": "batch-size"}}, {"terms": {"host": ["node-me", "node-b"]}}]
    gone = query["filter"][2]["bool"]["should"]
    assert gone == [{"terms": {"host": ["node-a"]}}, {"range": {"updated": {"lt": iso(NOW)}}}]
    assert query["filter"][0] == {"terms": {"status": ["submitted", "running"]}}


def test_a_node_keeps_its_id_across_restarts(tmp_path) -> None:
    from ades.jobs import leases

    first = node_id(tmp_path / "data")
    leases._node_ids.clear()  # a new process
    assert node_id(tmp_path / "data") == first and first.startswith("node-")
    assert node_id(tmp_path / "other") != first


def test_reconciliation_leaves_what_it_would_requeue_or_fail_when_another_host_holds_it() -> None:
    alive = lambda pgid: False  # noqa: E731
    assert verdict(False, True, False, None, "box", alive, None, lives_elsewhere=True) is Verdict.LEAVE
    assert verdict(False, False, True, None, "box", alive, None, lives_elsewhere=True) is Verdict.LEAVE
    assert verdict(False, True, False, None, "box", alive, None, lives_elsewhere=False) is Verdict.REQUEUE


def test_new_fields_are_added_to_an_existing_mapping_and_nothing_else() -> None:
    current = {"id": {"type": "keyword"}, "delay": {"type": "float"}}
    wanted = {**current, "host": {"type": "keyword"}, "delay": {"type": "double"}}
    assert missing_fields(current, wanted) == {"host": {"type": "keyword"}}



def test_the_sweep_never_searches_created_jobs() -> None:
    """A created job never runs until started: the lost-job sweep searches only submitted and running jobs."""
    terms = lost_jobs_query([], ["node-a"], NOW)["bool"]["filter"][0]["terms"]["status"]
    assert terms == ["submitted", "running"]
