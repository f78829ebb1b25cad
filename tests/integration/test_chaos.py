"""Chaos: 10,000 updates for 1,000 jobs, each published 3 times and shuffled, through the real moto SNS/SQS into
an Elasticsearch node of this test's own. Consumer processes are SIGKILLed 5 times and restarted, and the node is
stopped and started again mid-run. Afterwards every job equals the truth, no job was ever seen going backwards,
and the dead-letter queue holds exactly the malformed messages sent on purpose."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ades.config import Settings
from ades.events.aws import client
from ades.events.pipeline import ensure_pipeline
from ades.merge import fold, public_view
from ades.models import Job, StatusUpdate
from ades.services import elasticsearch, moto
from ades.status import Status
from ades.store import JobStore, ensure_indexes, make_client

pytestmark = pytest.mark.integration

# The full size of the acceptance (1,000 jobs x 10 updates x 3 copies) takes several minutes through moto, whose
# server handles few calls a second under load here; CI runs a twentieth of it, `ADES_CHAOS_JOBS=1000` runs it whole.
N_JOBS = int(os.environ.get("ADES_CHAOS_JOBS", "50"))
EVENTS_PER_JOB = 10
COPIES = 3
MALFORMED = 25
KILLS = 5
T0 = datetime(2026, 6, 1, tzinfo=UTC)


def truth_for(job_id: str, rng: random.Random) -> list[StatusUpdate]:
    events = [
        StatusUpdate(job_id=job_id, status=Status.RUNNING, timestamp=T0 + timedelta(seconds=s),
                     progress=s * 10, message=f"step {s}")
        for s in range(EVENTS_PER_JOB - 1)
    ]
    end = T0 + timedelta(seconds=EVENTS_PER_JOB)
    if rng.random() < 0.8:
        events.append(StatusUpdate(job_id=job_id, status=Status.SUCCEEDED, timestamp=end,
                                   outputs={"result": f"http://127.0.0.1:5000/jobs/{job_id}/results/result"}))
    else:
        events.append(StatusUpdate(job_id=job_id, status=Status.FAILED, timestamp=end, message="tool exited 1"))
    return events


@pytest.fixture
def chaos_node(es_url: str):
    """A node of our own on another port, so stopping it does not disturb other tests."""
    data_dir = Path(tempfile.mkdtemp(prefix="ades-chaos-", dir="/tmp"))  # not tmp_path: pytest makes it 0700
    node = Settings(es_url=None, es_port=9271, data_dir=data_dir, index_prefix="chaos-", es_heap="384m")
    url = elasticsearch.ensure_running(node)
    yield node.model_copy(update={"es_url": url})
    elasticsearch.stop(node)
    shutil.rmtree(data_dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def chaos_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh moto server of our own. The shared one serves every other test from a single process and keeps all
    their queues; a full-size run through it published ~4 msgs/s."""
    own = Settings(moto_port=_free_port(), data_dir=tmp_path_factory.mktemp("chaos-moto"))
    url = moto.ensure_running(own)
    yield url
    moto.stop(own)


@pytest.mark.timeout(max(1800, N_JOBS * 5))
def test_chaos(chaos_node: Settings, chaos_moto: str):
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
    store.create_many(jobs, refresh=True)
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
        return subprocess.Popen([sys.executable, "-m", "ades.cli", "consumer", "--wait", "1"], env=env,
                                cwd=settings.data_dir, stdout=log_handle, stderr=subprocess.STDOUT)

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

    sns = client("sns", settings)
    published = 0
    publish_lock = threading.Lock()

    def publish(part: list[str]) -> None:
        nonlocal published
        for start in range(0, len(part), 10):
            chunk = part[start:start + 10]
            res = sns.publish_batch(
                TopicArn=pipeline.topic_arn,
                PublishBatchRequestEntries=[{"Id": str(i), "Message": b} for i, b in enumerate(chunk)],
            )
            assert not res.get("Failed"), res["Failed"]
            with publish_lock:
                published += len(chunk)

    publishers = [threading.Thread(target=publish, args=(bodies[k::3],), daemon=True) for k in range(3)]
    for p in publishers:
        p.start()

    started = time.monotonic()
    sqs = client("sqs", settings)

    def backlog() -> int:
        attrs = sqs.get_queue_attributes(
            QueueUrl=pipeline.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    # Chaos while the stream flows: 5 SIGKILLs of a consumer (restarted at once) and one node restart.
    kills = 0
    restarted_es = False
    deadline = time.monotonic() + 600
    while kills < KILLS or not restarted_es:
        assert time.monotonic() < deadline, "chaos phase took too long"
        time.sleep(2.0)
        if kills < KILLS:
            victim = consumers[kills % 2]
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            consumers[kills % 2] = start_consumer()
            kills += 1
        if kills == 3 and not restarted_es:
            elasticsearch.stop(node_settings)
            time.sleep(3)
            elasticsearch.ensure_running(node_settings)
            restarted_es = True
    for p in publishers:
        p.join(timeout=1200)
    assert published == len(bodies)
    publish_done = time.monotonic()

    # Let the consumers drain everything (killed consumers' messages come back after the visibility timeout).
    deadline = time.monotonic() + 300
    while backlog() > 0:
        assert time.monotonic() < deadline, f"queue never drained: {backlog()} left"
        time.sleep(1)
    drained = time.monotonic()
    observing.clear()
    observer.join(timeout=10)
    print(f"chaos: {len(bodies)} messages, published in {publish_done - started:.0f} s, "
          f"drained {drained - publish_done:.0f} s later, {observations} observations")
    for c in consumers:
        c.send_signal(signal.SIGTERM)
    for c in consumers:
        assert c.wait(timeout=30) == 0
    log_handle.close()

    store.refresh()
    wrong = []
    for j in jobs:
        got = public_view(store.get(j.id))
        if got != expected[j.id]:
            wrong.append((j.id, {k: (got.get(k), expected[j.id].get(k)) for k in expected[j.id]
                                 if got.get(k) != expected[j.id].get(k)}))
    assert not wrong, f"{len(wrong)} jobs differ from the truth, e.g. {wrong[:2]}"
    assert not regressions, regressions[:5]
    assert observations > 10

    dead = []
    while True:
        batch = sqs.receive_message(QueueUrl=pipeline.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        msgs = batch.get("Messages", [])
        if not msgs:
            break
        dead.extend(m["Body"] for m in msgs)
        sqs.delete_message_batch(QueueUrl=pipeline.dlq_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
    assert sorted(dead) == sorted(b for b in bodies if b.startswith("malformed")), json.dumps(dead[:3])
