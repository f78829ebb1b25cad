"""Host leases on a real Elasticsearch: a Lease renews its document; the sweep finds the unfinished jobs of hosts
whose lease expired (or never existed) in one search, fails them with the reason, or adopts each exactly once when
two live nodes sweep at the same moment; an existing `jobs` index gets the new `host` field."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from elasticsearch import ConflictError, Elasticsearch

from ades.config import Settings
from ades.events.sinks import SinkConfig
from ades.jobs.adoption import LostJobSweep, claim
from ades.jobs.leases import DASK_WORKER, Lease
from ades.jobs.publisher import Publisher
from ades.jobs.spec import QueuedJob
from ades.models import Job, StatusUpdate, utcnow
from ades.store import JobStore, StoreUnavailable
from ades.store.hosts import HostStore, LeaseDoc
from ades.store.setup import drop_indexes, ensure_indexes
from tests.helpers import store_jobs, wait_for


def _dead(hosts: HostStore, lease_id: str, kind: str = "api") -> None:
    now = utcnow()
    hosts.put(LeaseDoc(id=lease_id, kind=kind, hostname="gone", started=now - timedelta(minutes=5),
                       beat=now - timedelta(minutes=1), expires=now - timedelta(seconds=30)))


def _sweep(hosts: HostStore, store: JobStore, settings: Settings, node: str, adopt: bool,
           taken: list[str]) -> LostJobSweep:
    def rebuild(doc: dict, delay: float) -> QueuedJob:
        return QueuedJob.model_validate({"spec": {
            "job_id": doc["id"], "data_dir": str(settings.data_dir), "workflow_file": "/dev/null", "job_order": {},
            "sink": SinkConfig.from_settings(settings).model_dump()}, "depends_on": doc["depends-on"],
            "delay": delay})

    return LostJobSweep(hosts, store, node, 30.0, adopt, rebuild, lambda queued: None,
                        lambda queued: taken.append(queued.job_id), Publisher(SinkConfig.from_settings(settings)))


def test_a_lease_is_renewed_and_read(es: Elasticsearch, settings: Settings) -> None:
    hosts = HostStore(es, settings)
    lease = Lease(hosts, "node-beating", url="http://127.0.0.1:1", length=0.6).start()
    try:
        wait_for(lambda: lease.beats >= 3, 10, "three beats")
        found = hosts.get(["node-beating", "node-never"])
        assert found["node-never"] is None
        doc = found["node-beating"]
        assert doc is not None and doc.kind == "api" and doc.url == "http://127.0.0.1:1"
        assert doc.started == lease.started.replace(microsecond=doc.started.microsecond) and doc.fresh(utcnow())
    finally:
        lease.close()
    wait_for(lambda: not hosts.get(["node-beating"])["node-beating"].fresh(utcnow()), 5, "the lease to expire")


def test_the_sweep_fails_the_jobs_of_lost_hosts_and_leaves_live_ones(es: Elasticsearch, settings: Settings,
                                                                     job_store: JobStore) -> None:
    hosts = HostStore(es, settings)
    _dead(hosts, "node-dead")
    _dead(hosts, "worker-dead", DASK_WORKER)
    live = Lease(hosts, "node-live", length=30).start()
    old = utcnow() - timedelta(minutes=2)
    jobs = {name: Job(process_id="echo", host=host, created=old)
            for name, host in [("waiting", "node-dead"), ("on-worker", "worker-dead"), ("live", "node-live"),
                               ("mine", "node-me"), ("no-lease", "node-vanished"), ("legacy", None)]}
    store_jobs(job_store, list(jobs.values()), refresh=True)
    job_store.apply(StatusUpdate(job_id=jobs["on-worker"].id, status="running", host="worker-dead"))
    job_store.refresh()
    es.indices.refresh(index=settings.hosts_alias)  # the dead leases expired long ago: searchable by now
    try:
        report = _sweep(hosts, job_store, settings, "node-me", False, []).round()
        failed = {jobs[n].id for n in ("waiting", "on-worker", "no-lease")}
        assert set(report.failed) == failed
        statuses = job_store.statuses([j.id for j in jobs.values()])
        assert {i for i, s in statuses.items() if s == "failed"} == failed
        waiting = job_store.get(jobs["waiting"].id)["message"]
        assert "host lost: api node-dead (gone) stopped renewing its lease" in waiting
        assert "running there" in job_store.get(jobs["on-worker"].id)["message"]
    finally:
        live.close()


def test_two_nodes_sweeping_at_once_adopt_a_lost_job_once(es: Elasticsearch, settings: Settings,
                                                          job_store: JobStore) -> None:
    hosts = HostStore(es, settings)
    _dead(hosts, "node-dead")
    jobs = [Job(process_id="echo", host="node-dead", depends_on=[], delay=3600,
                created=utcnow() - timedelta(seconds=600)) for _ in range(20)]
    store_jobs(job_store, jobs, refresh=True)
    es.indices.refresh(index=settings.hosts_alias)
    taken: dict[str, list[str]] = {"node-b": [], "node-c": []}
    sweeps = [_sweep(hosts, job_store, settings, node, True, taken[node]) for node in taken]
    barrier = threading.Barrier(2)

    def sweep(one: LostJobSweep) -> None:
        barrier.wait()
        one.round()

    threads = [threading.Thread(target=sweep, args=(one,)) for one in sweeps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    ids = {j.id for j in jobs}
    assert sorted(taken["node-b"] + taken["node-c"]) == sorted(ids)  # each exactly once
    for job_id in ids:
        doc = job_store.get(job_id)
        owner = "node-b" if job_id in taken["node-b"] else "node-c"
        assert doc["host"] == owner and doc["adopted"]["from"] == "node-dead" and doc["status"] == "submitted"
    # the adopter's own lease is missing too: once found lost again, an adopted job is failed, never adopted twice
    job_store.refresh()
    again: list[str] = []
    report = _sweep(hosts, job_store, settings, "node-d", True, again).round(utcnow() + timedelta(minutes=5))
    assert not again and set(report.failed) == ids


def test_an_existing_jobs_index_gets_the_host_field(es: Elasticsearch, settings: Settings) -> None:
    older = settings.model_copy(update={"index_prefix": f"test-{uuid.uuid4().hex[:10]}-"})
    old_index = f"{older.jobs_alias}-v1"
    try:
        es.indices.create(index=old_index, aliases={older.jobs_alias: {"is_write_index": True}},
                          mappings={"dynamic": False, "properties": {"id": {"type": "keyword"},
                                                                     "status": {"type": "keyword"}}})
        ensure_indexes(es, older)
        properties = es.indices.get_mapping(index=old_index)[old_index]["mappings"]["properties"]
        assert properties["host"] == {"type": "keyword"} and properties["id"] == {"type": "keyword"}
        assert es.indices.exists(index=f"{older.hosts_alias}-v1")
    finally:
        drop_indexes(es, older)


def test_a_beat_before_the_index_exists_fails_and_creates_nothing(es: Elasticsearch, settings: Settings) -> None:
    early = settings.model_copy(update={"index_prefix": f"test-{uuid.uuid4().hex[:10]}-"})
    lease = Lease(HostStore(es, early), "node-early", length=30)
    with pytest.raises(StoreUnavailable):
        lease.beat()
    assert not es.indices.exists(index=early.hosts_alias)  # ensure_indexes can still make the alias later


def test_a_restart_claiming_its_job_and_a_sweep_adopting_it_never_both_win(es: Elasticsearch, settings: Settings,
                                                                           job_store: JobStore) -> None:
    hosts = HostStore(es, settings)
    _dead(hosts, "node-a")
    mine = Job(process_id="echo", host="node-a", created=utcnow() - timedelta(minutes=5))
    store_jobs(job_store, [mine], refresh=True)
    es.indices.refresh(index=settings.hosts_alias)
    found = hosts.lost_jobs(job_store.index, ["node-b"], ["node-a"], utcnow(), 10)  # what B's sweep read
    assert [d["id"] for d in found] == [mine.id]
    assert claim(job_store, mine.id, "node-a")  # node A restarts first: the job stays A's (same content)
    with pytest.raises(ConflictError):  # B's adoption writes on what it read, and is refused
        es.update(index=found[0]["_index"], id=mine.id, doc={"host": "node-b"}, if_seq_no=found[0]["_seq_no"],
                  if_primary_term=found[0]["_primary_term"])
    assert job_store.get(mine.id)["host"] == "node-a"
    other = Job(process_id="echo", host="node-b")
    store_jobs(job_store, [other], refresh=True)
    assert not claim(job_store, other.id, "node-a")  # another node's job is never claimed
