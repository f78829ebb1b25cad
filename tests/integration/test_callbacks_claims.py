"""The notifier against a real Elasticsearch and a real receiver: two nodes that found the same due job send it once
(the claim is a conditional write), and a status change made while a delivery is in flight is delivered next
(the record, a conditional write too, lands on the job as it is then)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ades.config import Settings
from ades.fetch import Fetcher, FetchPolicy
from ades.jobs.notifier import Notifier
from ades.models import Job, StatusUpdate
from ades.status import Status
from ades.store import JobStore
from ades.store.callbacks import CallbackStore


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.on_post: Callable[[dict[str, Any]], None] = lambda body: None
        self.lock = threading.Lock()
        self.port = 0

    def url(self) -> str:
        return f"http://localhost:{self.port}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with rec.lock:
                rec.bodies.append(body)
            rec.on_post(body)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    thread.join(5)


def notifier(job_store: JobStore, settings: Settings, node: str) -> Notifier:
    return Notifier(CallbackStore(job_store.client, settings), Fetcher(FetchPolicy(allow=["localhost"])),
                    lambda doc: {"jobID": doc["id"], "status": doc["status"]}, node, settings)


def subscribed_job(job_store: JobStore, receiver: Receiver, *statuses: Status) -> str:
    job = Job(process_id="echo", subscriber={"successUri": receiver.url(), "inProgressUri": receiver.url()})
    assert job_store.create([job]) == [None]
    for status in statuses:
        assert job_store.apply(StatusUpdate(job_id=job.id, status=status)).ok
    job_store.refresh()
    return job.id


def test_two_nodes_that_found_the_same_job_send_it_once(job_store: JobStore, settings: Settings,
                                                        receiver: Receiver) -> None:
    job_id = subscribed_job(job_store, receiver, Status.RUNNING, Status.SUCCEEDED)
    a, b = notifier(job_store, settings, "node-a"), notifier(job_store, settings, "node-b")
    found_a, found_b = a.store.due(10), b.store.due(10)
    assert [f.source["id"] for f in found_a] == [f.source["id"] for f in found_b] == [job_id]
    start = threading.Barrier(2)

    def deliver(n: Notifier, found: Any) -> None:
        start.wait()
        n.deliver(found)

    threads = [threading.Thread(target=deliver, args=(n, f[0])) for n, f in ((a, found_a), (b, found_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert receiver.bodies == [{"jobID": job_id, "status": "succeeded"}]
    assert a.sent + b.sent == 1
    doc = job_store.get(job_id)
    assert doc["callback"]["status"] == "succeeded" and doc["callback-due"] is None
    job_store.refresh()
    assert a.store.due(10) == []  # nothing left to find: the poll finds an empty range


def test_a_change_made_while_a_delivery_is_in_flight_goes_next(job_store: JobStore, settings: Settings,
                                                               receiver: Receiver) -> None:
    job_id = subscribed_job(job_store, receiver, Status.RUNNING)
    # the job ends while its subscriber is being told that it runs
    receiver.on_post = lambda body: body["status"] == "running" and job_store.apply(
        StatusUpdate(job_id=job_id, status=Status.SUCCEEDED))
    n = notifier(job_store, settings, "node-a")
    assert n.run_once() == 1
    doc = job_store.get(job_id)
    assert doc["status"] == "succeeded" and doc["callback"]["status"] == "running"
    assert "claimed" not in doc["callback"] and doc["callback-due"] is not None  # due again at once
    job_store.refresh()
    assert n.run_once() == 1
    assert [b["status"] for b in receiver.bodies] == ["running", "succeeded"]
    job_store.refresh()
    assert n.run_once() == 0
