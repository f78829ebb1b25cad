"""Per-job costs for the capacity model (docs/capacity.md), measured at two sizes so that the small run's prediction
can be checked against the large one. Writes benchmarks/results/capacity.json.

Every cost is CPU time (user + system seconds from /proc, children that ended included), not a rate: this host has
2 cores shared with other work, so wall-clock rates say more about the neighbours than about ades. Per size N:

- `submit`: N async submissions of echo (inputs and labels as below) over HTTP to `ades serve` (2 gunicorn workers,
  16 threads, execution paused as on an API node whose jobs run elsewhere, direct sink), from the Go or asyncio
  client of benchmarks/loadgen.py: CPU of the server's processes and of the ES node per submission.
- `updates`: N job documents with varied inputs, labels and users stored through JobStore.create (the server's
  bulk path), then `--updates-per-job` status updates per job (running, progress, ..., succeeded with outputs shaped
  like a real echo job's) through the consumer's handler (`process_event`, what the Lambda runs; SQS batches of
  10): CPU of this process (the consumer) and of the ES node per update.
- `store`: after the updates, the index force-merged to one segment: primary store bytes / documents.

And once per `--echo-jobs` size, `run`: echo jobs through the local executor (2 warm workers, direct sink): CPU of
the workers (with the job processes and tools they reaped) and of the executor's parent per job, against cwltool
running the same tool in-process in a warm interpreter (`cwltool_in_process`: cwltool's own work), and ES CPU per
job run (its status writes).

The ES node is shared with other work on this host: its CPU is read from its JVM process, and the CPU it spent in
the same length of time just before each phase (`es_background_cpu_s_per_s`) is subtracted (`net`); both are kept.
`--store-only` measures the `store` figures alone (updates applied in batches of 1,000, no CPU read), into
`store_recheck` of an existing --out, with the small size's prediction of the large one.

Usage: python benchmarks/capacity.py [--sizes 20000,200000] [--submit-sizes 20000,100000] [--echo-jobs 100,400]
[--updates-per-job 3] [--store-only]
Talks only to 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import ECHO, cpu_seconds, listening_pid, process_tree, require_free, store_all, wait_until_up, write_figures
from common import parser as benchmark_parser
from loadgen import client_kind, post_load, summary

from ades.config import Settings
from ades.events.consumer import process_event
from ades.models import Job, StatusUpdate
from ades.status import Status
from ades.store import JobStore, ensure_indexes, make_client
from ades.store.setup import alias_indexes, drop_indexes

BACKGROUND_S = 5.0
STATS_SETTLE_S = 11.0
"""Seconds to wait before reading the merged store's size: a node may serve an index's store size from a cache
refreshed every 10 s (`index.store.stats_refresh_interval`), and one run read the same size to the byte before and
after its merge. The sum of the primary segments' sizes is read too, as a check."""
LABELS = 3
# the CPU one SQS batch (10 messages, the Lambda default) of updates costs is measured as the Lambda would run it
SQS_BATCH = 10


class Meter:
    """CPU seconds of named process groups between `start` and `stop`, with the ES node's background subtracted."""

    def __init__(self, es_pid: int, **groups: list[int]) -> None:
        self.es_pid = es_pid
        self.groups = groups
        self.background_before = self.background()

    def background(self) -> float:
        """ES CPU seconds per second while this benchmark does nothing: the shared node's other work."""
        before = cpu_seconds([self.es_pid])
        time.sleep(BACKGROUND_S)
        return (cpu_seconds([self.es_pid]) - before) / BACKGROUND_S

    def start(self) -> None:
        self.started = time.perf_counter()
        self.self_before = time.process_time()
        self.before = {name: cpu_seconds(pids) for name, pids in self.groups.items()} | {
            "elasticsearch": cpu_seconds([self.es_pid])}

    def stop(self, per: int) -> dict[str, Any]:
        wall = time.perf_counter() - self.started
        spent = {name: cpu_seconds(pids) - self.before[name] for name, pids in self.groups.items()}
        spent["elasticsearch"] = cpu_seconds([self.es_pid]) - self.before["elasticsearch"]
        spent["this_process"] = time.process_time() - self.self_before
        around = [self.background_before, self.background()]  # just before and just after
        es_net = max(0.0, spent["elasticsearch"] - sum(around) / 2 * wall)
        ms = {name: round(seconds * 1000 / per, 4) for name, seconds in spent.items()}
        ms["elasticsearch_net"] = round(es_net * 1000 / per, 4)
        return {"wall_s": round(wall, 2), "cpu_ms_each": ms,
                "es_background_cpu_s_per_s": [round(x, 3) for x in around]}


def varied_job(k: int) -> Job:
    """A job as users submit them: a message, a few numbers, a bounding box, labels, one of 200 users."""
    return Job(process_id="echo", process_version="1.0.0", user_id=f"user-{k % 200:03d}",
               inputs={"message": f"capacity run {k}: scene S2B_MSIL2A_{20260000 + k % 9973}_T31UFQ",
                       "numbers": [k % 97, k % 89, k % 83],
                       "area": {"bbox": [round(4 + k % 100 / 37, 4), round(50 + k % 60 / 41, 4),
                                         round(5 + k % 100 / 37, 4), round(51 + k % 60 / 41, 4)],
                                "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}},
               labels=[f"project-{k % 50}", f"campaign-2026-{k % 12:02d}", "priority-normal"][:LABELS])


def outputs_like(template: dict[str, Any], template_id: str, job: Job) -> dict[str, Any]:
    """A real echo job's outputs (`template`, from the `run` phase) moved to `job`: its id in every location, and a
    checksum and size of its own message."""
    message = job.inputs["message"] + "\n"
    text = json.dumps(template).replace(template_id, job.id)
    outputs = json.loads(text)
    for value in outputs.values():
        if isinstance(value, dict) and "checksum" in value:
            value["checksum"] = "sha1$" + hashlib.sha1(message.encode()).hexdigest()
            value["size"] = len(message.encode())
    return outputs


def store_bytes(client: Any, alias: str) -> dict[str, Any]:
    """Primary store bytes and documents of the index behind `alias`, force-merged to one segment without the
    replaced versions of updated documents. Those stay (soft-deleted) until the shard's peer-recovery retention lease
    moves past them, which it does every 30 s or so: merged before that, the index kept 3 old versions per job."""
    index = alias_indexes(client, alias)[0]
    client.indices.flush(index=index)
    before = client.indices.stats(index=index, metric="store,docs")["_all"]["primaries"]
    started = time.perf_counter()
    while True:
        client.options(request_timeout=1800).indices.forcemerge(index=index, max_num_segments=1)
        after = client.indices.stats(index=index, metric="store,docs")["_all"]["primaries"]
        if not after["docs"]["deleted"] or time.perf_counter() - started > 300:
            break
        time.sleep(5)
    time.sleep(STATS_SETTLE_S)
    after = client.indices.stats(index=index, metric="store,docs")["_all"]["primaries"]
    segments = client.indices.segments(index=index)["indices"][index]["shards"]
    segment_bytes = sum(seg["size_in_bytes"] for copies in segments.values() for copy in copies
                        if copy["routing"]["primary"] for seg in copy["segments"].values())
    docs = after["docs"]["count"]
    hits = client.search(index=index, size=200, query={"match_all": {}})["hits"]["hits"]
    source = sum(len(json.dumps(h["_source"], separators=(",", ":"))) for h in hits) / max(1, len(hits))
    return {"docs": docs, "deleted_docs_after_merge": after["docs"]["deleted"],
            "store_bytes_before_merge": before["store"]["size_in_bytes"],
            "deleted_docs_before_merge": before["docs"]["deleted"],
            "store_bytes": after["store"]["size_in_bytes"],
            "bytes_per_doc": round(after["store"]["size_in_bytes"] / docs, 1), "segment_bytes": segment_bytes,
            "source_json_bytes_per_doc": round(source, 1), "merge_s": round(time.perf_counter() - started, 1)}


def step_update(job: Job, step: int, per_job: int, template: tuple[dict[str, Any], str],
                t0: datetime) -> StatusUpdate:
    """The job's `step`-th status update of `per_job`: running with progress, the last one succeeded with outputs."""
    last = step == per_job - 1
    return StatusUpdate(job_id=job.id, status=Status.SUCCEEDED if last else Status.RUNNING,
                        progress=None if last else step * 100 // per_job,
                        outputs=outputs_like(*template, job) if last else None,
                        message="done" if last else f"step {step + 1} of {per_job}",
                        timestamp=t0 + timedelta(seconds=step))


def store_only(settings: Settings, n: int, per_job: int, template: tuple[dict[str, Any], str]) -> dict[str, Any]:
    """The `updates` phase's documents and updates, applied in batches of 1,000 (no CPU measured: quicker), then
    the store's bytes per document."""
    client = make_client(settings)
    drop_indexes(client, settings)
    ensure_indexes(client, settings)
    store = JobStore(client, settings)
    try:
        jobs = [varied_job(k) for k in range(n)]
        for i in range(0, n, 1000):
            store_all(store, jobs[i:i + 1000])
        t0 = datetime.now(UTC)
        for step in range(per_job):
            for i in range(0, n, 1000):
                failed = [r for r in store.apply_many([step_update(job, step, per_job, template, t0)
                                                       for job in jobs[i:i + 1000]]) if not r.ok]
                if failed:
                    raise RuntimeError(f"{len(failed)} updates failed: {failed[0].reason}")
        return {"jobs": n, "updates_per_job": per_job, "store": store_bytes(client, settings.jobs_alias)}
    finally:
        store.close()
        drop_indexes(client, settings)
        client.close()


def bench_updates(settings: Settings, es_pid: int, n: int, per_job: int, template: tuple[dict[str, Any], str]
                  ) -> dict[str, Any]:
    client = make_client(settings)
    drop_indexes(client, settings)
    ensure_indexes(client, settings)
    store = JobStore(client, settings)
    try:
        jobs = [varied_job(k) for k in range(n)]
        meter = Meter(es_pid)
        meter.start()
        for i in range(0, n, 1000):
            store_all(store, jobs[i:i + 1000])
        created = meter.stop(n)
        t0 = datetime.now(UTC)
        bodies = []
        for step in range(per_job):
            bodies += [step_update(job, step, per_job, template, t0).model_dump_json() for job in jobs]
        events = [{"Records": [{"messageId": str(k), "body": b} for k, b in enumerate(bodies[i:i + SQS_BATCH])]}
                  for i in range(0, len(bodies), SQS_BATCH)]
        meter = Meter(es_pid)
        meter.start()
        failed = sum(len(process_event(event, store)["batchItemFailures"]) for event in events)
        applied = meter.stop(len(bodies))
        applied["cpu_ms_each"]["consumer"] = applied["cpu_ms_each"].pop("this_process")
        return {"jobs": n, "updates": len(bodies), "updates_per_job": per_job, "failed": failed,
                "create_bulk_of_1000": created, "consumer_batch_of_10": applied,
                "store": store_bytes(client, settings.jobs_alias)}
    finally:
        store.close()
        drop_indexes(client, settings)
        client.close()


def bench_submit(settings: Settings, es_pid: int, n: int, port: int, work: Path) -> dict[str, Any]:
    """N async submissions to one `ades serve` whose execution is paused from the start."""
    from ades.jobs.pause import pause

    data_dir = work / f"submit-{n}"
    pause(data_dir, "benchmarks/capacity.py")
    base = f"http://127.0.0.1:{port}"
    env = os.environ | {"ADES_EVENT_SINK": "direct", "ADES_INDEX_PREFIX": settings.index_prefix,
                        "ADES_PUBLIC_URL": base, "ADES_DATA_DIR": str(data_dir),
                        "ADES_MAX_QUEUED_JOBS": str(2 * n + 10_000)}
    with (work / f"submit-{n}.log").open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "ades.cli", "-q", "serve", "--port", str(port),
                                   "--workers", "2", "--threads", "16", "--job-workers", "1", "--no-access-log"],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    job = varied_job(1)
    body = json.dumps({"inputs": job.inputs, "labels": job.labels}).encode()
    client = make_client(settings)
    try:
        wait_until_up(f"{base}/processes", server)
        post_load(port, "/processes/echo/execution", body, 1000, 8, headers={"Prefer": "respond-async"})
        pids = process_tree(server.pid)
        meter = Meter(es_pid, server=pids)
        meter.start()
        outcome = post_load(port, "/processes/echo/execution", body, n, 16, headers={"Prefer": "respond-async"})
        figures = summary(outcome, n) | meter.stop(n)
        figures["cpu_ms_each"].pop("this_process")  # the load client's, not ades'
        figures["store"] = store_bytes(client, settings.jobs_alias)
        return figures
    finally:
        server.terminate()
        server.wait(timeout=120)
        drop_indexes(client, settings)
        client.close()


CWLTOOL_LOOP = """
import json, os, sys, tempfile, time
import cwltool.main
echo, runs = sys.argv[1], int(sys.argv[2])
def once(i):
    with tempfile.TemporaryDirectory() as out:
        job = os.path.join(out, "job.json")
        with open(job, "w") as f:
            json.dump({"message": f"hello {i}"}, f)
        assert cwltool.main.main(["--quiet", "--no-container", "--outdir", out, echo, job]) == 0
once(-1)
t = os.times()
for i in range(runs):
    once(i)
u = os.times()
print("\\nCPU", json.dumps({"cpu_s": (u[0] + u[1] + u[2] + u[3]) - (t[0] + t[1] + t[2] + t[3]), "runs": runs}))
"""


def cwltool_in_process(runs: int) -> dict[str, Any]:
    """CPU per echo run of cwltool in one warm interpreter (the tool's `sh` included): cwltool's own work."""
    done = subprocess.run([sys.executable, "-c", CWLTOOL_LOOP, str(ECHO), str(runs)], capture_output=True,
                          text=True, check=True)
    figures = json.loads(next(line[4:] for line in done.stdout.splitlines() if line.startswith("CPU {")))
    return {"runs": runs, "cpu_ms_each": round(figures["cpu_s"] * 1000 / runs, 2)}


def bench_run(base: Settings, es_pid: int, n: int, work: Path) -> tuple[dict[str, Any], tuple[dict[str, Any], str]]:
    """N echo jobs through the local executor (2 warm workers); figures, and one succeeded job's outputs and id."""
    from throughput import echo_specs, run_all

    from ades.jobs.local import LocalExecutor

    settings = base.model_copy(update={"event_sink": "direct", "data_dir": work / f"run-{n}"})
    client = make_client(settings)
    drop_indexes(client, settings)
    ensure_indexes(client, settings)
    try:
        executor = LocalExecutor(2)
        try:
            run_all(executor, echo_specs(settings, 6, "warm-up"))
            specs = echo_specs(settings, n, "hello")
            me = os.getpid()
            meter = Meter(es_pid, workers=[p for p in process_tree(me) if p != me])
            meter.start()
            _, outcomes = run_all(executor, specs)
            figures = {"jobs": n, "outcomes": outcomes} | meter.stop(n)
        finally:
            executor.close()
        figures["cpu_ms_each"]["executor_parent"] = figures["cpu_ms_each"].pop("this_process")
        sample = JobStore(client, settings).get(specs[0].job_id)
        return figures, (sample.get("outputs") or {}, specs[0].job_id)
    finally:
        drop_indexes(client, settings)
        client.close()


def predicted(small: dict[str, Any], large: dict[str, Any]) -> dict[str, Any]:
    """The large run as the small one predicts it (per-job figures constant, bytes per document constant), and the
    error."""
    def err(pred: float, seen: float) -> float:
        return round((seen - pred) / pred * 100, 1) if pred else 0.0

    out: dict[str, Any] = {}
    for phase in ("submit", "updates"):
        s, g = small[phase], large[phase]
        cpu_s = s["cpu_ms_each"] if phase == "submit" else s["consumer_batch_of_10"]["cpu_ms_each"]
        cpu_g = g["cpu_ms_each"] if phase == "submit" else g["consumer_batch_of_10"]["cpu_ms_each"]
        out[phase] = {"cpu_ms_each": {k: {"predicted": v, "measured": cpu_g.get(k), "error_pct": err(v, cpu_g[k])}
                                      for k, v in cpu_s.items() if k in cpu_g}}
        pred_bytes = s["store"]["bytes_per_doc"] * g["store"]["docs"]
        out[phase]["store_bytes"] = {"predicted": round(pred_bytes), "measured": g["store"]["store_bytes"],
                                     "error_pct": err(pred_bytes, g["store"]["store_bytes"])}
    return out


def store_prediction(recheck: dict[str, Any], sizes: list[int]) -> dict[str, Any]:
    """The large size's store bytes as the small size's bytes per document predict them, and the error."""
    small, large = recheck[str(sizes[0])]["store"], recheck[str(sizes[-1])]["store"]
    pred = small["bytes_per_doc"] * large["docs"]
    return {"store_bytes": {"predicted": round(pred), "measured": large["store_bytes"],
                            "error_pct": round((large["store_bytes"] - pred) / pred * 100, 1)}}


def recheck_store(args: Any) -> int:
    figures = json.loads(args.out.read_text())
    template = (figures["outputs_template"], figures["outputs_template"]["out"].split("/")[-3])
    started, clock = datetime.now(UTC).isoformat(), time.perf_counter()
    recheck: dict[str, Any] = {"started": started}
    for n in (int(s) for s in args.sizes.split(",")):
        print(f"store: {n} jobs x {args.updates_per_job} ...", file=sys.stderr)
        settings = Settings().model_copy(update={"index_prefix": f"bench-capacity-store-{n}-"})
        recheck[str(n)] = store_only(settings, n, args.updates_per_job, template)
    recheck["seconds"] = round(time.perf_counter() - clock, 1)
    recheck["small_predicts_large"] = store_prediction(recheck, [int(s) for s in args.sizes.split(",")])
    figures["store_recheck"] = recheck
    write_figures(args.out, figures)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, "capacity")
    parser.add_argument("--sizes", default="20000,200000", help="jobs per size, small first (default 20000,200000)")
    parser.add_argument("--submit-sizes", default=None,
                        help="submissions per size over HTTP, if not --sizes (the slow part: about 2 ms of server "
                             "CPU each)")
    parser.add_argument("--echo-jobs", default="100,400", help="echo jobs run per size (default 100,400)")
    parser.add_argument("--updates-per-job", type=int, default=3, help="status updates per job (default 3: "
                        "running, progress, succeeded)")
    parser.add_argument("--cwltool-runs", type=int, default=30, help="in-process cwltool runs (default 30)")
    parser.add_argument("--port", type=int, default=5097, help="port of the ades server")
    parser.add_argument("--store-only", action="store_true",
                        help="measure only the store's bytes per document at --sizes (updates in batches of 1,000), "
                             "into `store_recheck` of the existing --out")
    args = parser.parse_args(argv)
    if args.store_only:
        return recheck_store(args)
    sizes = [int(s) for s in args.sizes.split(",")]
    submit_sizes = [int(s) for s in (args.submit_sizes or args.sizes).split(",")]
    echo_sizes = [int(s) for s in args.echo_jobs.split(",")]
    require_free(args.port)
    base = Settings()
    es_port = urllib.parse.urlsplit(base.elasticsearch_url).port or 9200
    es_pid = listening_pid(es_port)
    if es_pid is None:
        raise SystemExit(f"no Elasticsearch process listens on port {es_port} here: its CPU cannot be read")
    started = datetime.now(UTC)
    clock = time.perf_counter()
    timings: dict[str, float] = {}
    figures: dict[str, Any] = {"started": started.isoformat(), "cpus": os.cpu_count(),
                               "load_average_before": [round(x, 2) for x in os.getloadavg()],
                               "client": client_kind("auto"), "updates_per_job": args.updates_per_job,
                               "sizes": sizes, "submit_sizes": submit_sizes, "echo_sizes": echo_sizes}
    with tempfile.TemporaryDirectory(prefix="ades-capacity-") as tmp:
        work = Path(tmp)
        runs: list[dict[str, Any]] = []
        template: tuple[dict[str, Any], str] = ({}, "")
        for n in echo_sizes:
            t = time.perf_counter()
            print(f"run: {n} echo jobs ...", file=sys.stderr)
            run, template = bench_run(base.model_copy(update={"index_prefix": f"bench-capacity-run-{n}-"}),
                                      es_pid, n, work)
            runs.append(run)
            timings[f"run_{n}"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        figures["cwltool_in_process"] = cwltool_in_process(args.cwltool_runs)
        timings["cwltool_in_process"] = round(time.perf_counter() - t, 1)
        figures["run"] = runs
        figures["outputs_template"] = template[0]
        by_size: dict[str, dict[str, Any]] = {}
        for n, n_submit in zip(sizes, submit_sizes, strict=True):
            t = time.perf_counter()
            print(f"updates: {n} jobs x {args.updates_per_job} ...", file=sys.stderr)
            updates = bench_updates(base.model_copy(update={"index_prefix": f"bench-capacity-upd-{n}-"}), es_pid, n,
                                    args.updates_per_job, template)
            timings[f"updates_{n}"] = round(time.perf_counter() - t, 1)
            t = time.perf_counter()
            print(f"submit: {n_submit} submissions ...", file=sys.stderr)
            submit = bench_submit(base.model_copy(update={"index_prefix": f"bench-capacity-sub-{n_submit}-"}),
                                  es_pid, n_submit, args.port, work)
            timings[f"submit_{n_submit}"] = round(time.perf_counter() - t, 1)
            by_size[str(n)] = {"updates": updates, "submit": submit}
    figures["by_size"] = by_size
    if len(sizes) > 1:
        small, large = by_size[str(sizes[0])], by_size[str(sizes[-1])]
        figures["small_predicts_large"] = predicted(small, large)
        if len(runs) > 1:
            figures["small_predicts_large"]["run"] = {
                k: {"predicted": v, "measured": runs[-1]["cpu_ms_each"].get(k),
                    "error_pct": round((runs[-1]["cpu_ms_each"][k] - v) / v * 100, 1) if v else 0.0}
                for k, v in runs[0]["cpu_ms_each"].items()}
    timings["total"] = round(time.perf_counter() - clock, 1)
    figures["seconds"] = timings
    figures["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    write_figures(args.out, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
