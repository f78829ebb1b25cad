"""`ades index migrate` under load: jobs in an index of the old layout (jobs-v1, unsorted), migrated to jobs-v2
while consumer streams apply every job's status events, the API path submits new jobs, the real `ades consumer`
applies events it reads from moto's SQS, and a direct sink (a worker's path) writes while the writes are held.
Afterwards every job equals what the same events give without a migration, and the alias is on the new index.

CI runs 1,000 jobs; `ADES_MIGRATE_JOBS=100000` runs the acceptance size and writes its figures to
benchmarks/results/migrate.json."""

from __future__ import annotations

import copy
import json
import os
import queue
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from ades.config import Settings
from ades.events.aws import client as aws_client
from ades.events.consumer import process_event
from ades.events.sinks import DirectSink, SnsSink
from ades.merge import fold, public_view
from ades.models import Job, StatusUpdate
from ades.status import Status
from ades.store import JobStore, ensure_indexes, make_client
from ades.store.blocks import MIGRATION_META
from ades.store.migrate import migrate
from ades.store.setup import alias_indexes, drop_indexes, mapping
from tests.helpers import job_life, store_jobs, wait_for

pytestmark = pytest.mark.integration

N_JOBS = int(os.environ.get("ADES_MIGRATE_JOBS", "1000"))
WRITERS = 3
PACE = 10  # status updates the consumer streams must apply between two batches of the copy
MOTO_JOBS = 20  # jobs whose events go through SNS -> SQS -> `ades consumer` (moto slows down with a long queue)
LATE_JOBS = 10  # jobs whose events the direct sink publishes only once writes are held
T0 = datetime(2026, 7, 1, tzinfo=UTC)
FIGURES = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "migrate.json"


def legacy_jobs_index(es: Elasticsearch, settings: Settings) -> str:
    """`<prefix>jobs-v1` as ades made it before the sorted layout (same mapping, no index sorting), behind the
    alias: the state of an existing install."""
    body = mapping("jobs")
    index_settings = {k: v for k, v in body["settings"].items() if not k.startswith("index.sort")}
    mappings = copy.deepcopy(body["mappings"])
    mappings["_meta"]["schema"] = "ades jobs v1"
    mappings["_meta"].pop("sorted", None)
    name = f"{settings.jobs_alias}-v1"
    es.indices.create(index=name, settings=index_settings, mappings=mappings,
                      aliases={settings.jobs_alias: {"is_write_index": True}})
    ensure_indexes(es, settings)  # the processes index, and the current templates
    return name


def events_for(job_id: str, rng: random.Random) -> list[StatusUpdate]:
    """A job's life: five progress events, then its end (with outputs when it succeeds)."""
    return job_life(job_id, rng, T0, steps=5, step_progress=20, output="out")


class Streams:
    """Consumer streams: each applies its jobs' events in order, ten messages of ten different jobs a batch,
    through the consumer's handler (what the Lambda and `ades consumer` run) on a store of its own."""

    def __init__(self, settings: Settings, n: int) -> None:
        self.stores = [JobStore(make_client(settings), settings) for _ in range(n)]
        self.inboxes: list[queue.Queue[tuple[str, deque[StatusUpdate]]]] = [queue.Queue() for _ in range(n)]
        self.applied = 0
        self.failures: list[dict[str, Any]] = []
        self.finish = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(n)]

    def add(self, job_id: str, events: list[StatusUpdate]) -> None:
        self.inboxes[hash(job_id) % len(self.inboxes)].put((job_id, deque(events)))

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    @property
    def held(self) -> int:
        return sum(store.held for store in self.stores)

    def _run(self, k: int) -> None:
        store, inbox = self.stores[k], self.inboxes[k]
        ring: deque[tuple[str, deque[StatusUpdate]]] = deque()
        while True:
            while not inbox.empty():
                ring.append(inbox.get_nowait())
            if not ring:
                if self.finish.is_set():
                    return
                try:
                    ring.append(inbox.get(timeout=0.05))
                except queue.Empty:
                    continue
            taken = [ring.popleft() for _ in range(min(10, len(ring)))]
            batch = [events.popleft() for _, events in taken]
            event = {"Records": [{"messageId": u.event_id, "body": u.model_dump_json()} for u in batch]}
            answer = process_event(event, store)
            with self._lock:
                self.applied += len(batch)
                if answer["batchItemFailures"]:
                    self.failures.append(answer)
            ring.extend((job_id, events) for job_id, events in taken if events)


@pytest.mark.timeout(max(600, N_JOBS // 40))
def test_migration_under_load_loses_and_regresses_nothing(aws_settings: Settings, es_url: str,
                                                          children: list[subprocess.Popen]) -> None:
    settings = aws_settings
    es = make_client(settings)
    try:
        _run_acceptance(es, settings, children)
    finally:
        drop_indexes(es, settings)
        es.close()


class Load:
    """Everything that writes while the migration runs, and the migration's progress hook that paces the copy so
    that writes land between every two of its batches:

    - consumer streams (Streams) with the events of most jobs;
    - the API's path: five new jobs submitted at every batch (JobStore.create is what acceptance calls), whose
      events then go to the streams too;
    - the real `ades consumer`, reading the events of MOTO_JOBS jobs from moto's SQS, queued beforehand;
    - a worker's direct sink, publishing the events of LATE_JOBS jobs only once writes are held."""

    def __init__(self, settings: Settings, events: dict[str, list[StatusUpdate]], initial: dict[str, Any],
                 moto_ids: list[str], late_ids: list[str]) -> None:
        self.settings, self.events, self.initial, self.late_ids = settings, events, initial, late_ids
        self.rng = random.Random(25)
        self.streams = Streams(settings, WRITERS)
        for job_id in events:
            if job_id not in moto_ids and job_id not in late_ids:
                self.streams.add(job_id, events[job_id])
        sns = SnsSink(settings)
        for job_id in moto_ids:
            for update in events[job_id]:
                sns.publish(update)
        self.sqs = aws_client("sqs", settings)
        self.api = JobStore(make_client(settings), settings)
        self.sink = DirectSink(settings)
        self.created: list[Job] = []
        self.errors: list[str] = []
        self.phases: dict[str, dict[str, int]] = {}
        self.moto_backlog = self.backlog()
        self.ticks = threading.Semaphore(0)
        self.migrating, self.late = threading.Event(), threading.Event()
        self.helpers = [threading.Thread(target=self._submit, daemon=True),
                        threading.Thread(target=self._publish_late, daemon=True)]

    def backlog(self) -> int:
        attrs = self.sqs.get_queue_attributes(QueueUrl=self.settings.sqs_queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def start(self, consumers: list[subprocess.Popen]) -> None:
        s = self.settings
        env = {**os.environ, "ADES_ES_URL": s.elasticsearch_url, "ADES_INDEX_PREFIX": s.index_prefix,
               "ADES_AWS_ENDPOINT_URL": s.aws_endpoint_url or "", "ADES_SQS_QUEUE_URL": s.sqs_queue_url or "",
               "ADES_SNS_TOPIC_ARN": s.sns_topic_arn or ""}
        log = Path(s.data_dir) / "consumer.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        consumers.append(subprocess.Popen([sys.executable, "-m", "ades.cli", "consumer", "--wait", "1"], env=env,
                                          stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=s.data_dir))
        self.migrating.set()
        for thread in self.helpers:
            thread.start()
        self.streams.start()

    def stop(self, consumers: list[subprocess.Popen]) -> None:
        """After the migration: let every writer finish its events."""
        self.migrating.clear()
        self.late.set()
        for thread in self.helpers:
            thread.join(timeout=120)
        self.streams.finish.set()
        for thread in self.streams.threads:
            thread.join(timeout=max(300, N_JOBS // 100))
        wait_for(lambda: self.backlog() == 0, 120, "the moto queue to drain", interval=0.2)
        consumers[0].terminate()
        consumers[0].wait(timeout=30)

    def progress(self, phase: str, written: int) -> None:
        streams = self.streams
        seen = self.phases.setdefault(phase, {"batches": 0, "applied_from": streams.applied,
                                              "moto_backlog_from": self.moto_backlog})
        seen["batches"] += 1
        self.ticks.release()
        if phase == "held":
            self.late.set()
            wait_for(lambda: self.api.held and self.sink.store.held, 60, "a submission and an update to be held")
            return
        target = streams.applied + PACE
        wait_for(lambda: streams.applied >= target or not any(t.is_alive() for t in streams.threads), 60,
                 "the consumer streams to apply updates", interval=0.002)
        if self.moto_backlog > 0:
            wait_for(lambda: self.backlog() < self.moto_backlog, 60, "the moto consumer to apply a message",
                     interval=0.02)
            self.moto_backlog = self.backlog()
        seen["applied_to"], seen["moto_backlog_to"] = streams.applied, self.moto_backlog

    def _submit(self) -> None:
        while self.migrating.is_set():
            if not self.ticks.acquire(timeout=0.05):
                continue
            batch = [Job(process_id="echo", labels=["during"], created=datetime.now(UTC)) for _ in range(5)]
            refused = [repr(e) for e in self.api.create(batch) if e is not None]
            if refused:
                self.errors.extend(refused)
                return
            for job in batch:
                self.events[job.id] = events_for(job.id, self.rng)
                self.initial[job.id] = job.to_document()
                self.streams.add(job.id, self.events[job.id])
            self.created.extend(batch)

    def _publish_late(self) -> None:
        self.late.wait()
        for job_id in self.late_ids:
            for update in self.events[job_id]:
                try:
                    self.sink.publish(update)
                except Exception as err:  # reported by the test's thread
                    self.errors.append(repr(err))


def wrong_jobs(es: Elasticsearch, alias: str, initial: dict[str, Any], events: dict[str, list[StatusUpdate]],
               unordered: list[str]) -> list[tuple[str, Any]]:
    """Every job that differs from the fold of its events (the run without a migration): status, progress,
    outputs, message, times, the events applied, the merge clock; for `unordered` jobs (their events came in any
    order) the public view only, since which events changed something then depends on their order."""
    wrong: list[tuple[str, Any]] = []
    ids = list(initial)
    for start in range(0, len(ids), 1000):
        for doc in es.mget(index=alias, ids=ids[start:start + 1000])["docs"]:
            expected = fold(initial[doc["_id"]], events[doc["_id"]])
            got = doc.get("_source")
            if doc["_id"] in unordered:
                expected, got = public_view(expected), got and public_view(got)
            if got != expected:
                wrong.append((doc["_id"], got and {k: (got.get(k), expected.get(k)) for k in expected
                                                   if got.get(k) != expected.get(k)}))
    return wrong


def _run_acceptance(es: Elasticsearch, settings: Settings, consumers: list[subprocess.Popen]) -> None:
    rng = random.Random(24)
    source = legacy_jobs_index(es, settings)
    loader = JobStore(es, settings)
    jobs = [Job(process_id="echo", labels=[f"campaign-{i % 100}"], created=T0 + timedelta(milliseconds=i))
            for i in range(N_JOBS)]
    for start in range(0, N_JOBS, 5000):
        store_jobs(loader, jobs[start:start + 5000])
    loader.refresh()
    events = {j.id: events_for(j.id, rng) for j in jobs}
    initial = {j.id: j.to_document() for j in jobs}
    moto_ids, late_ids = [j.id for j in jobs[:MOTO_JOBS]], [j.id for j in jobs[MOTO_JOBS:MOTO_JOBS + LATE_JOBS]]
    load = Load(settings, events, initial, moto_ids, late_ids)
    load.start(consumers)
    began = time.monotonic()
    applied_before = load.streams.applied
    try:
        done = migrate(es, settings, settings.jobs_alias, batch=max(100, N_JOBS // 100), progress=load.progress)
    finally:
        applied_during = load.streams.applied - applied_before
        load.stop(consumers)
    drained = time.monotonic()

    assert not load.streams.failures, load.streams.failures[:3]
    assert not load.errors, load.errors[:3]
    assert alias_indexes(es, settings.jobs_alias) == [done.target] and done.source == source
    target_settings = es.indices.get_settings(index=done.target, flat_settings=True)[done.target]["settings"]
    assert target_settings["index.sort.field"] == ["created", "id"]
    source_settings = es.indices.get_settings(index=source, flat_settings=True)[source]["settings"]
    assert source_settings["index.blocks.write"] == "true"  # kept, and written by no one
    marker = es.indices.get_mapping(index=source)[source]["mappings"]["_meta"][MIGRATION_META]
    assert marker["to"] == done.target

    # Writes were made in every phase: between the copy's batches, in the catch-up passes, and held ones.
    phases = load.phases
    assert phases["copy"]["applied_to"] > phases["copy"]["applied_from"], phases
    assert done.recopied > 0 and done.passes >= 2, done
    assert load.api.held and load.sink.store.held and load.created, (load.api.held, load.sink.store.held)
    assert phases["copy"]["moto_backlog_from"] > phases["copy"]["moto_backlog_to"], phases  # the real consumer too

    load.api.refresh()
    wrong = wrong_jobs(es, settings.jobs_alias, initial, events, moto_ids)
    assert not wrong, (len(wrong), wrong[:3])
    assert es.count(index=settings.jobs_alias)["count"] == N_JOBS + len(load.created)

    figures = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"), "machine_cores": os.cpu_count(),
        "jobs": N_JOBS, "created_during": len(load.created), "documents": done.documents, "copied": done.copied,
        "recopied": done.recopied, "passes": done.passes, "deleted": done.deleted,
        "migration_s": round(done.seconds, 1), "writes_held_ms": round(done.held_s * 1000),
        "copied_per_s": round(done.documents / done.seconds), "updates_applied_during_migration": applied_during,
        "updates_total": sum(len(e) for e in events.values()), "all_updates_applied_after_s": round(drained - began, 1),
        "held_writes": {"consumer_streams": load.streams.held, "api": load.api.held,
                        "direct_sink": load.sink.store.held},
        "phases": phases,
    }
    print(f"\nmigrate: {json.dumps(figures)}")
    if N_JOBS >= 100_000:
        FIGURES.write_text(json.dumps(figures, indent=2) + "\n")


def test_a_job_read_before_the_move_is_never_written_over_its_copy(settings: Settings, es_url: str) -> None:
    """A status update whose document was read from the old index and which is written after the alias moved must
    not land on the new index's copy, though that copy may carry the same `_seq_no` and primary term: it would
    overwrite what happened since (here: the update read progress 10 and would write 30 over 60)."""
    es = make_client(settings)
    try:
        legacy_jobs_index(es, settings)
        writer_client = make_client(settings)
        writer, other = JobStore(writer_client, settings), JobStore(es, settings)
        job = Job(process_id="echo", created=T0)
        store_jobs(other, [job])

        def running(second: int, progress: int) -> StatusUpdate:
            return StatusUpdate(job_id=job.id, status=Status.RUNNING, timestamp=T0 + timedelta(seconds=second),
                                progress=progress, event_id=str(uuid.uuid4()))

        first, slow, second, third = running(1, 10), running(2, 30), running(3, 50), running(4, 60)
        assert other.apply(first).ok  # seq_no 1 in jobs-v1
        real_bulk = writer_client.bulk
        moved: list[Any] = []

        def bulk_after_a_migration(**kwargs: Any) -> Any:
            # The slow writer has read the job (seq_no 1) and merged; before its write arrives, others update the
            # job and the index is migrated. Its copy in jobs-v2 is written twice (the copy, then the catch-up
            # after `third`), so it has seq_no 1 there too.
            if not moved:
                assert other.apply(second).ok
                moved.append(migrate(es, settings, settings.jobs_alias, batch=10,
                                     progress=lambda phase, n: phase == "copy" and other.apply(third)))
            return real_bulk(**kwargs)

        writer_client.bulk = bulk_after_a_migration  # type: ignore[method-assign]
        result = writer.apply(slow)
        assert moved and moved[0].recopied == 1, moved
        assert result.ok, result
        doc = other.get(job.id)
        expected = fold(job.to_document(), [first, second, third, slow])
        assert public_view(doc) == public_view(expected), (doc["progress"], expected["progress"])
        assert doc["progress"] == 60
        writer_client.close()
    finally:
        drop_indexes(es, settings)
        es.close()
