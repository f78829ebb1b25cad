"""Where a job's log goes so that any node can read it (ADES_LOG_STORE): the job-logs index beside object storage.
Writes benchmarks/results/logs.json.

- a chunk stored: 4 KiB (a second of a chatty job) through ades.store.logs.LogStore.append into Elasticsearch, and
  as one S3 object per chunk (put_object into moto): wall time, this process's CPU per chunk, the ES node's CPU per
  chunk (from /proc), bytes on disk per chunk in the index;
- a log read back: 64 chunks (256 KiB), LogStore.read beside an S3 listing and a get per object;
- an echo job end to end (submit -> successful, `ades serve` with 1 worker and 2 job workers, direct sink) with
  logs shipped and without, alternating, in the same run: what shipping costs a job.

Usage: python benchmarks/logs.py [--chunks 500] [--jobs 20] [--port 5094] [--out FILE]
Needs the local services (`ades services start`: Elasticsearch and moto); talks only to 127.0.0.1.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from common import ades_server, ms_summary, write_figures
from common import parser as benchmark_parser

from ades.config import Settings
from ades.events.aws import client as aws_client
from ades.services import elasticsearch
from ades.store import ensure_indexes, make_client
from ades.store.logs import LogStore
from ades.store.setup import drop_indexes


def log_lines(size: int, seed: int = 7) -> str:
    """Lines that look like a tool's log (timestamps, words, numbers), so that they compress as a log does."""
    rng = random.Random(seed)
    words = ["INFO", "reading", "tile", "band", "writing", "chunk", "ndvi", "done", "warning", "scene", "pixels"]
    lines, total = [], 0
    while total < size:
        line = (f"2026-12-02T10:{rng.randrange(60):02d}:{rng.randrange(60):02d} {rng.choice(words)} "
                f"{' '.join(rng.choice(words) for _ in range(6))} {rng.random():.6f} {rng.randrange(10**6)}\n")
        lines.append(line)
        total += len(line)
    return "".join(lines)[:size - 1] + "\n"


CHUNK = log_lines(4096)
"""The chunk a log read back is made of; the chunks stored are each different (identical ones compress away)."""


def cpu_seconds(pid: int | None) -> float | None:
    """CPU of a process and its descendants (the node's start script and its Java)."""
    if pid is None:
        return None
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    family, total = {pid}, 0
    for _ in range(4):
        family |= {p for p, (parent, _) in stats.items() if parent in family}
    total = sum(stats[p][1] for p in family if p in stats)
    return total / os.sysconf("SC_CLK_TCK")


def measure_es(settings: Settings, chunks: int) -> dict[str, Any]:
    client = make_client(settings)
    ensure_indexes(client, settings)
    store = LogStore(client, settings)
    pid = elasticsearch.status(settings).get("pid")
    texts = [log_lines(len(CHUNK), seed=i) for i in range(chunks)]
    walls, cpu0, es0 = [], time.process_time(), cpu_seconds(pid)
    for i, text in enumerate(texts):
        started = time.perf_counter()
        store.append(f"job-{i % 50}", (i // 50) * len(CHUNK), text)
        walls.append(time.perf_counter() - started)
    cpu, es_cpu = time.process_time() - cpu0, cpu_seconds(pid)
    client.indices.refresh(index=settings.logs_alias)
    client.indices.flush(index=settings.logs_alias)
    size = client.indices.stats(index=settings.logs_alias)["_all"]["primaries"]["store"]["size_in_bytes"]
    for i in range(64):
        store.append("read-me", i * len(CHUNK), CHUNK)
    client.indices.refresh(index=settings.logs_alias)
    reads = []
    for _ in range(20):
        started = time.perf_counter()
        assert len(store.read("read-me").text) == 64 * len(CHUNK)
        reads.append(time.perf_counter() - started)
    drop_indexes(client, settings)
    client.close()
    return {"append_ms": ms_summary(walls), "client_cpu_ms_per_chunk": round(cpu / chunks * 1000, 3),
            "es_cpu_ms_per_chunk": None if es_cpu is None or es0 is None else round((es_cpu - es0) / chunks * 1000, 3),
            "disk_bytes_per_chunk": round(size / chunks), "read_64_chunks_ms": ms_summary(reads)}


def measure_s3(settings: Settings, chunks: int) -> dict[str, Any]:
    s3 = aws_client("s3", settings)
    bucket = f"bench-logs-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    texts = [log_lines(len(CHUNK), seed=i).encode() for i in range(chunks)]
    walls, cpu0 = [], time.process_time()
    for i, text in enumerate(texts):
        started = time.perf_counter()
        s3.put_object(Bucket=bucket, Key=f"logs/job-{i % 50}/{(i // 50) * len(CHUNK):012d}", Body=text)
        walls.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu0
    for i in range(64):
        s3.put_object(Bucket=bucket, Key=f"logs/read-me/{i * len(CHUNK):012d}", Body=CHUNK.encode())
    reads = []
    for _ in range(20):
        started = time.perf_counter()
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="logs/read-me/")["Contents"]]
        text = b"".join(s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in sorted(keys))
        assert len(text) == 64 * len(CHUNK)
        reads.append(time.perf_counter() - started)
    return {"append_ms": ms_summary(walls), "client_cpu_ms_per_chunk": round(cpu / chunks * 1000, 3),
            "read_64_chunks_ms": ms_summary(reads), "note": "moto's own CPU is not S3's: only the client side and "
            "the request count carry over"}


def measure_jobs(jobs: int, port: int) -> dict[str, Any]:
    prefix = f"bench-logs-{uuid.uuid4().hex[:8]}-"
    results: dict[str, list[float]] = {"local": [], "elasticsearch": []}
    with tempfile.TemporaryDirectory() as tmp, \
            ades_server(port, f"{tmp}/a", index_prefix=prefix, log_store="local") as plain, \
            ades_server(port + 1, f"{tmp}/b", index_prefix=prefix, log_store="elasticsearch") as shipped:
        http = requests.Session()
        for i in range(jobs + 2):  # two warm-up jobs each
            for mode, base in (("local", plain), ("elasticsearch", shipped)):
                started = time.perf_counter()
                job = http.post(f"{base}/processes/echo/execution", json={"inputs": {"message": f"m{i}"}},
                                headers={"Prefer": "respond-async"}, timeout=30).json()["jobID"]
                while http.get(f"{base}/jobs/{job}", timeout=30).json()["status"] not in ("successful", "failed"):
                    time.sleep(0.01)
                if i >= 2:
                    results[mode].append(time.perf_counter() - started)
        client = make_client(Settings(index_prefix=prefix))
        drop_indexes(client, Settings(index_prefix=prefix, log_store="elasticsearch"))
        client.close()
    plain_ms, shipped_ms = ms_summary(results["local"]), ms_summary(results["elasticsearch"])
    return {"local": plain_ms, "elasticsearch": shipped_ms,
            "p50_ratio_shipped_to_local": round(shipped_ms["p50_ms"] / plain_ms["p50_ms"], 3)}


def main() -> None:
    parser = benchmark_parser(__doc__, "logs")
    parser.add_argument("--chunks", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--port", type=int, default=5094)
    args = parser.parse_args()
    settings = Settings(index_prefix=f"bench-logs-{uuid.uuid4().hex[:8]}-", log_store="elasticsearch")
    figures = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "chunk_bytes": len(CHUNK),
               "chunks": args.chunks, "elasticsearch": measure_es(settings, args.chunks),
               "s3_moto": measure_s3(settings, args.chunks), "echo_job": measure_jobs(args.jobs, args.port)}
    write_figures(Path(args.out), figures)


if __name__ == "__main__":
    main()
