"""What callbacks cost: the notifier's poll when nothing is due (one search, every ADES_CALLBACK_POLL_INTERVAL, over
a `jobs` index of many jobs), one job's delivery (claim, POST to a receiver on 127.0.0.1, record: two conditional
writes and a request), and, over HTTP against `ades serve`, an echo job's submit -> `successful` with and without a
subscriber (alternating, same run) and submit -> callback received. Writes benchmarks/results/callbacks.json.

Usage: python benchmarks/callbacks.py [--jobs 20000] [--deliveries 200] [--runs 20] [--port 5095] [--out FILE]
Talks only to 127.0.0.1.
"""

from __future__ import annotations

import http.server
import json
import statistics
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime

from common import ades_server, ms_summary, store_all, write_figures
from common import parser as benchmark_parser

from ades.config import Settings
from ades.fetch import Fetcher, FetchPolicy
from ades.jobs.notifier import Notifier
from ades.models import Job, StatusUpdate
from ades.status import Status
from ades.store import JobStore, ensure_indexes, make_client
from ades.store.callbacks import CallbackStore
from ades.store.setup import drop_indexes


class Receiver:
    """An HTTP server on 127.0.0.1 that answers 204 and notes when each job's callback came."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.arrived = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.arrived:
                    receiver.seen.setdefault(body["jobID"], time.perf_counter())
                    receiver.arrived.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://localhost:{self.server.server_port}/hook"

    def wait(self, job_id: str, timeout: float = 60) -> float:
        with self.arrived:
            if not self.arrived.wait_for(lambda: job_id in self.seen, timeout):
                raise TimeoutError(f"no callback for {job_id}")
            return self.seen[job_id]


def store_side(settings: Settings, receiver: Receiver, jobs: int, deliveries: int) -> dict[str, object]:
    client = make_client(settings)
    ensure_indexes(client, settings)
    store = JobStore(client, settings)
    try:
        for start in range(0, jobs, 10_000):
            store_all(store, [Job(process_id="echo") for _ in range(min(10_000, jobs - start))])
        subscribed = [Job(process_id="echo", subscriber={"successUri": receiver.url}) for _ in range(deliveries)]
        store_all(store, subscribed)
        store.refresh()
        callbacks = CallbackStore(client, settings)
        idle = []
        for _ in range(300):
            t = time.perf_counter()
            assert callbacks.due(100) == []
            idle.append(time.perf_counter() - t)
        results = store.apply_many([StatusUpdate(job_id=j.id, status=Status.SUCCEEDED) for j in subscribed])
        assert all(r.ok for r in results)
        store.refresh()
        notifier = Notifier(callbacks, Fetcher(FetchPolicy(allow=["localhost"])),
                            lambda doc: {"jobID": doc["id"], "status": doc["status"]}, "bench", settings)
        one = []
        for found in callbacks.due(deliveries):
            t = time.perf_counter()
            notifier.deliver(found)
            one.append(time.perf_counter() - t)
        assert notifier.sent == deliveries, (notifier.sent, deliveries)
        return {"jobs_in_index": jobs + deliveries, "idle_poll": ms_summary(idle), "one_delivery": ms_summary(one)}
    finally:
        store.close()
        drop_indexes(client, settings)
        client.close()


def _call(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET",
                                     headers={"Content-Type": "application/json", "Prefer": "respond-async"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def echo_jobs(port: int, receiver: Receiver, runs: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"plain": [], "subscribed": [], "subscribed_to_callback": []}
    prefix = f"bench-cb-{uuid.uuid4().hex[:6]}-"
    with (tempfile.TemporaryDirectory() as data,
          ades_server(port, data, index_prefix=prefix, fetch_allow='["localhost"]') as base):
        for i in range(runs + 3):
            for kind in (("plain", "subscribed") if i % 2 == 0 else ("subscribed", "plain")):
                body: dict = {"inputs": {"message": f"hi {i}"}}
                if kind == "subscribed":
                    body["subscriber"] = {"successUri": receiver.url}
                t = time.perf_counter()
                job_id = _call(f"{base}/processes/echo/execution", body)["jobID"]
                while _call(f"{base}/jobs/{job_id}")["status"] not in ("successful", "failed"):
                    time.sleep(0.005)
                ended = time.perf_counter()
                if i < 3:
                    continue  # warm-up: workers load cwltool and the echo tool
                samples[kind].append(ended - t)
                if kind == "subscribed":
                    samples["subscribed_to_callback"].append(receiver.wait(job_id) - t)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, "callbacks")
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs without subscriber in the index")
    parser.add_argument("--deliveries", type=int, default=200, help="callbacks delivered one by one")
    parser.add_argument("--runs", type=int, default=20, help="echo jobs per kind over HTTP")
    parser.add_argument("--port", type=int, default=5095, help="port of the benchmark server")
    args = parser.parse_args(argv)
    settings = Settings(index_prefix=f"bench-callbacks-{uuid.uuid4().hex[:6]}-")
    receiver = Receiver()
    store = store_side(settings, receiver, args.jobs, args.deliveries)
    echo = echo_jobs(args.port, receiver, args.runs)
    e2e = statistics.median(echo["plain"])
    one = store["one_delivery"]["p50_ms"] / 1000  # type: ignore[index]
    idle = store["idle_poll"]["p50_ms"] / 1000  # type: ignore[index]
    figures = {
        "started": datetime.now(UTC).isoformat(),
        **store,
        "echo_submit_to_successful": ms_summary(echo["plain"]),
        "echo_submit_to_successful_with_subscriber": ms_summary(echo["subscribed"]),
        "echo_submit_to_callback_received": ms_summary(echo["subscribed_to_callback"]),
        "ratio_one_delivery_over_echo_job": round(one / e2e, 4),
        "ratio_idle_poll_over_echo_job": round(idle / e2e, 4),
        "idle_poll_share_of_one_second": round(idle / 1.0, 4),
        "ratio_echo_with_subscriber_over_without": round(statistics.median(echo["subscribed"]) / e2e, 3),
    }
    write_figures(args.out, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
