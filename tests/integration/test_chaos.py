"""Chaos: 10,000 updates for 1,000 jobs, each published 3 times and shuffled, through the real moto SNS/SQS into
an Elasticsearch node of this test's own. Consumer processes are SIGKILLed 5 times and restarted, and the node is
stopped and started again mid-run. Afterwards every job equals the truth, no job was ever seen going backwards,
and the dead-letter queue holds exactly the malformed messages sent on purpose."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ades.config import Settings
from ades.events.aws import client
from ades.events.pipeline import ensure_pipeline
from ades.merge import fold, public_view
from ades.models import Job, StatusUpdate
from ades.services import elasticsearch, moto
from ades.status import Status
from ades.store import JobStore, ensure_indexes, make_client
from ades.store.setup import drop_indexes
from tests.conftest import free_port
from tests.helpers import job_life, store_jobs, wait_for

pytestmark = pytest.mark.integration

# CI runs an eightieth of the acceptance (12 jobs, 385 messages, still every act of chaos mid-stream);
# `ADES_CHAOS_JOBS=1000` runs it whole (30,025 messages, several minutes)
# and writes its figures to benchmarks/results/chaos.json.
N_JOBS = int(os.environ.get("ADES_CHAOS_JOBS", "12"))
EVENTS_PER_JOB = 10
COPIES = 3
MALFORMED = 25
PUBLISHERS = 3
T0 = datetime(2026, 6, 1, tzinfo=UTC)
FIGURES = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "chaos.json"

# moto's SQS walks every message its queue holds, several times over, for each message sent, received or deleted,
# so its rate falls as the backlog grows (one client on this 2-core machine: ~150 msgs/s with 20 queued, ~57 with
# 100, ~10 with 800). Published unpaced, the full stream piles up thousands and crawls, so the publishers pause
# above BACKLOG_HIGH until the consumers bring the queue under BACKLOG_LOW. Arrival order stays as mixed as before:
# the whole stream is shuffled before publishing, so each job's 30 messages are spread across all of it.
BACKLOG_HIGH = 60
BACKLOG_LOW = 30
# The acts of chaos fall on evenly spaced marks of the stream, and publishing holds at the next mark until its act
# is done: every kill and the restart happen while messages are still being published, whatever the size.
CHAOS = ("kill", "kill", "kill", "restart-es", "kill", "kill")
MIN_GAP = 2.0  # seconds between two acts, so that a restarted consumer is running before the next kill
STALL = 180.0  # seconds with nothing published and the backlog unchanged: the run is stuck, not slow


def truth_for(job_id: str, rng: random.Random) -> list[StatusUpdate]:
    return job_life(job_id, rng, T0, steps=EVENTS_PER_JOB - 1, step_progress=10, output="result")


def sent_back(log_text: str) -> dict[str, int]:
    """How many times the consumers handed a message back to the queue, by cause (from their log lines)."""
    causes = {"rejected (malformed)": 0, "store unavailable": 0, "unknown job": 0, "write conflicts": 0, "other": 0}
    for line in log_text.splitlines():
        if " rejected: " in line:
            causes["rejected (malformed)"] += 1
        elif " not applied: " in line:
            reason = line.split(" not applied: ", 1)[1]
            cause = next((c for c in ("store unavailable", "unknown job", "write conflicts") if reason.startswith(c)),
                         "other")
            causes[cause] += 1
    return causes


@pytest.fixture
def chaos_node(spare_node: Settings) -> Iterator[Settings]:
    """The spare node (tests/conftest.py), so stopping it does not disturb other tests; this test's indexes are
    dropped afterwards."""
    url = elasticsearch.ensure_running(spare_node)
    node = spare_node.model_copy(update={"es_url": url, "index_prefix": f"chaos-{os.getpid()}-"})
    yield node
    with contextlib.suppress(Exception):  # the node may be down if the test failed mid-restart
        client = make_client(node)
        drop_indexes(client, node)
        client.close()


@pytest.fixture
def chaos_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh moto server of our own. The shared one serves every other test from a single process and keeps all
    their queues; a full-size run through it published ~4 msgs/s."""
    own = Settings(moto_port=free_port(), data_dir=tmp_path_factory.mktemp("chaos-moto"))
    url = moto.ensure_running(own)
    yield url
    moto.stop(own)


class Valve:
    """Where each publisher waits before a batch: while moto's backlog is high (`open`), and at the next chaos mark
    (`limit`) until that act is done. `abort()` releases them for good when the test gives up."""

    def __init__(self, limit: int) -> None:
        self._cond = threading.Condition()
        self._open = True
        self._aborted = False
        self._limit = limit
        self._reserved = 0
        self.published = 0

    def take(self, n: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._aborted or (self._open and self._reserved < self._limit))
            if self._aborted:
                raise RuntimeError("publishing aborted")
            self._reserved += n

    def sent(self, n: int) -> None:
        with self._cond:
            self.published += n

    def set_open(self, flag: bool) -> None:
        with self._cond:
            self._open = flag
            self._cond.notify_all()

    def set_limit(self, limit: int) -> None:
        with self._cond:
            self._limit = limit
            self._cond.notify_all()

    def abort(self) -> None:
        with self._cond:
            self._aborted = True
            self._cond.notify_all()


@pytest.mark.timeout(max(1800, N_JOBS * 5))
def test_chaos(chaos_node: Settings, chaos_moto: str, children: list[subprocess.Popen]) -> None:
    began = datetime.now(UTC)
    rng = random.Random(2026)
    node_settings = chaos_node.model_copy(update={"es_url": None})
    settings = chaos_node.model_copy(
        update={
            "aws_endpoint_url": chaos_moto,
            "status_topic_name": f"chaos-{os.getpid()}-{int(time.time())}",
            "status_queue_name": f"chaos-{os.getpid()}-{int(time.time())}",
            "queue_visibility_timeout": 5,
            "event_sink": "sns",
        }
    )
    pipeline = ensure_pipeline(settings)
    settings = settings.model_copy(update={"sns_topic_arn": pipeline.topic_arn, "sqs_queue_url": pipeline.queue_url,
                                           "sqs_dlq_url": pipeline.dlq_url})
    es = make_client(settings)
    ensure_indexes(es, settings)
    store = JobStore(es, settings)
    jobs = [Job(process_id="chaos", created=T0 - timedelta(seconds=1)) for _ in range(N_JOBS)]
    store_jobs(store, jobs, refresh=True)
    truth = {j.id: truth_for(j.id, rng) for j in jobs}
    expected = {j.id: public_view(fold(j.to_document(), truth[j.id])) for j in jobs}

    bodies = [e.model_dump_json() for events in truth.values() for e in events] * COPIES
    bodies += [f"malformed {i}: not a status update" for i in range(MALFORMED)]
    rng.shuffle(bodies)
    assert len(bodies) == N_JOBS * EVENTS_PER_JOB * COPIES + MALFORMED

    env = {
        **os.environ,
        "ADES_ES_URL": settings.elasticsearch_url,
        "ADES_INDEX_PREFIX": settings.index_prefix,
        "ADES_AWS_ENDPOINT_URL": chaos_moto,
        "ADES_SQS_QUEUE_URL": pipeline.queue_url,
        "ADES_SNS_TOPIC_ARN": pipeline.topic_arn,
        "ADES_ES_MAX_RETRIES": "1",
        "ADES_ES_REQUEST_TIMEOUT": "5",
    }
    logs = Path(settings.data_dir) / "consumers.log"
    log_handle = logs.open("ab")

    def start_consumer() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "ades.cli", "consumer", "--wait", "1"], env=env,
                                cwd=settings.data_dir, stdout=log_handle, stderr=subprocess.STDOUT)
        children.append(proc)
        return proc

    consumers = [start_consumer(), start_consumer()]

    # An observer reads every job over and over; no job may ever be seen moving backwards.
    seen: dict[str, tuple[int, int]] = {}
    regressions: list[str] = []
    observing = threading.Event()
    observing.set()
    observations = 0

    def observe() -> None:
        nonlocal observations
        watcher = make_client(settings.model_copy(update={"es_max_retries": 0, "es_request_timeout": 3}))
        ids = [j.id for j in jobs]
        while observing.is_set():
            try:
                docs = watcher.mget(index=settings.jobs_alias, ids=ids)["docs"]
            except Exception:  # the node is down on purpose for a while
                time.sleep(0.2)
                continue
            observations += 1
            for d in docs:
                if "_source" not in d:  # shard still recovering after the restart
                    continue
                src = d["_source"]
                now = (Status(src["status"]).rank, src["progress"] or 0)
                before = seen.get(d["_id"], (0, 0))
                if now[0] < before[0] or (now[0] == before[0] and now[1] < before[1]):
                    regressions.append(f"{d['_id']}: {before} -> {now}")
                seen[d["_id"]] = max(before, now)
            time.sleep(0.2)

    observer = threading.Thread(target=observe, daemon=True)
    observer.start()

    sqs = client("sqs", settings)

    def backlog() -> int:
        attrs = sqs.get_queue_attributes(
            QueueUrl=pipeline.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    marks = [len(bodies) * (k + 1) // (len(CHAOS) + 1) for k in range(len(CHAOS))]
    valve = Valve(limit=marks[0])
    pacing = threading.Event()
    pacing.set()
    last_backlog = 0
    peak_backlog = 0
    timeline: list[tuple[float, int, int]] = []  # (seconds, published, backlog) every 10 s: where the time goes

    def pace() -> None:
        nonlocal last_backlog, peak_backlog
        pacer = client("sqs", settings)  # boto3 clients are not to be shared between threads
        noted = 0.0
        while pacing.is_set():
            try:
                attrs = pacer.get_queue_attributes(
                    QueueUrl=pipeline.queue_url,
                    AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
                )["Attributes"]
            except Exception:  # moto busy for a moment: keep the valve as it is
                time.sleep(0.5)
                continue
            last_backlog = int(attrs["ApproximateNumberOfMessages"]) + int(
                attrs["ApproximateNumberOfMessagesNotVisible"])
            peak_backlog = max(peak_backlog, last_backlog)
            if time.monotonic() - noted >= 10:
                noted = time.monotonic()
                timeline.append((round(noted - started, 1), valve.published, last_backlog))
            if last_backlog >= BACKLOG_HIGH:
                valve.set_open(False)
            elif last_backlog <= BACKLOG_LOW:
                valve.set_open(True)
            time.sleep(0.2)

    publish_errors: list[str] = []

    def publish(part: list[str]) -> None:
        sns = client("sns", settings)
        try:
            for start in range(0, len(part), 10):
                chunk = part[start:start + 10]
                valve.take(len(chunk))
                res = sns.publish_batch(
                    TopicArn=pipeline.topic_arn,
                    PublishBatchRequestEntries=[{"Id": str(i), "Message": b} for i, b in enumerate(chunk)],
                )
                if res.get("Failed"):
                    raise RuntimeError(f"publish_batch failed: {res['Failed']}")
                valve.sent(len(chunk))
        except Exception as err:  # reported by the main thread, which owns the assertions
            publish_errors.append(repr(err))

    started = time.monotonic()
    pacer_thread = threading.Thread(target=pace, daemon=True)
    pacer_thread.start()
    publishers = [threading.Thread(target=publish, args=(bodies[k::PUBLISHERS],), daemon=True)
                  for k in range(PUBLISHERS)]
    for p in publishers:
        p.start()

    # Chaos while the stream flows: SIGKILL a consumer (restarted at once) or stop and restart the node, each act
    # at its mark; the valve lets publishing on to the next mark as the act begins, so messages keep coming
    # during the node's absence.
    acts: list[dict[str, Any]] = []
    last_act = started
    moved_at, last_state = started, (-1, -1)
    try:
        while any(p.is_alive() for p in publishers):
            now = time.monotonic()
            k = len(acts)
            if k < len(CHAOS) and valve.published >= marks[k] and now - last_act >= MIN_GAP:
                valve.set_limit(marks[k + 1] if k + 1 < len(CHAOS) else len(bodies))
                act: dict[str, Any] = {"act": CHAOS[k], "at_message": valve.published, "at_s": round(now - started, 1)}
                if CHAOS[k] == "kill":
                    victim = consumers[k % 2]
                    victim.send_signal(signal.SIGKILL)
                    victim.wait()
                    consumers[k % 2] = start_consumer()
                else:
                    elasticsearch.stop(node_settings)
                    time.sleep(3)
                    elasticsearch.ensure_running(node_settings)
                act["took_s"] = round(time.monotonic() - now, 1)
                acts.append(act)
                last_act = time.monotonic()
                moved_at = last_act  # the node's absence is not a stall
            state = (valve.published, last_backlog)
            if state != last_state:
                moved_at, last_state = now, state
            assert now - moved_at < STALL, (f"stream stuck for {STALL:.0f} s: {valve.published} of {len(bodies)} "
                                            f"published, backlog {last_backlog}, acts {acts}")
            time.sleep(0.1)
    finally:
        valve.abort()  # a failed assertion above must not leave publishers waiting forever
    publish_done = time.monotonic()
    assert not publish_errors, publish_errors[:3]
    assert valve.published == len(bodies)
    assert [a["act"] for a in acts] == list(CHAOS)
    assert all(a["at_message"] < len(bodies) for a in acts), acts  # every act while the stream was still flowing

    # Let the consumers drain everything (killed consumers' messages come back after the visibility timeout).
    wait_for(lambda: backlog() == 0, 300, "the queue to drain", interval=1)
    drained = time.monotonic()
    pacing.clear()
    observing.clear()
    observer.join(timeout=10)
    pacer_thread.join(timeout=10)
    for c in consumers:
        c.send_signal(signal.SIGTERM)
    exits = [c.wait(timeout=30) for c in consumers]
    log_handle.close()
    handed_back = sent_back(logs.read_text(errors="replace"))

    store.refresh()
    wrong = []
    for j in jobs:
        got = public_view(store.get(j.id))
        if got != expected[j.id]:
            wrong.append((j.id, {k: (got.get(k), expected[j.id].get(k)) for k in expected[j.id]
                                 if got.get(k) != expected[j.id].get(k)}))

    dead = []
    while True:
        batch = sqs.receive_message(QueueUrl=pipeline.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        msgs = batch.get("Messages", [])
        if not msgs:
            break
        dead.extend(m["Body"] for m in msgs)
        sqs.delete_message_batch(QueueUrl=pipeline.dlq_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
    malformed = sorted(b for b in bodies if b.startswith("malformed"))

    publish_s, drain_s = publish_done - started, drained - publish_done
    kills = [a for a in acts if a["act"] == "kill"]
    restart = next(a for a in acts if a["act"] == "restart-es")
    figures = {
        "started": began.isoformat(),
        "machine_cores": os.cpu_count(),
        "jobs": N_JOBS,
        "updates": N_JOBS * EVENTS_PER_JOB,
        "copies": COPIES,
        "malformed": MALFORMED,
        "messages": len(bodies),
        "publish_s": round(publish_s, 1),
        "drain_after_publish_s": round(drain_s, 1),
        "messages_per_s": round(len(bodies) / (drained - started), 1),
        "backlog_high": BACKLOG_HIGH,
        "backlog_peak": peak_backlog,
        "observations": observations,
        "kills": len(kills),
        "kills_at_message": [a["at_message"] for a in kills],
        "es_restart_at_message": restart["at_message"],
        "es_restart_s": restart["took_s"],
        "acts": acts,
        "jobs_wrong": len(wrong),
        "regressions": len(regressions),
        "dlq": len(dead),
        "dlq_exactly_malformed": sorted(dead) == malformed,
        "consumer_exits": exits,
        "sent_back": handed_back,
        "timeline_s_published_backlog": timeline,
    }
    print(f"\nchaos: {len(bodies)} messages ({N_JOBS} jobs), published in {publish_s:.0f} s, drained {drain_s:.0f} s "
          f"later ({figures['messages_per_s']} msgs/s), backlog peak {peak_backlog}, {observations} observations, "
          f"{len(kills)} kills at messages {figures['kills_at_message']}, ES restarted at message "
          f"{restart['at_message']} ({restart['took_s']} s), {len(wrong)} jobs wrong, {len(regressions)} "
          f"regressions, DLQ {len(dead)} (exactly the malformed: {figures['dlq_exactly_malformed']}), sent back "
          f"{handed_back}")
    if N_JOBS >= 1000:
        FIGURES.parent.mkdir(parents=True, exist_ok=True)
        FIGURES.write_text(json.dumps(figures, indent=2) + "\n")

    assert exits == [0, 0], exits
    assert not wrong, f"{len(wrong)} jobs differ from the truth, e.g. {wrong[:2]}"
    assert not regressions, regressions[:5]
    assert observations > 10
    assert sorted(dead) == malformed, json.dumps(dead[:3])
