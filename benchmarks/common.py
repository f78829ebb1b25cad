"""What every benchmark script shares: percentiles, running batches in concurrent streams, a server to measure."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


ECHO = Path(__file__).resolve().parents[1] / "cwl" / "examples" / "echo.cwl"


def bare_echo(message: str) -> float:
    """Seconds bare `cwltool --no-container` takes to run echo.cwl once. A job file, not `--message`: cwltool's
    command line makes echo's optional bounding-box record a record of nulls, which its own validation refuses."""
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        job = Path(out) / "job.json"
        job.write_text(json.dumps({"message": message}))
        started = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "cwltool"), "--quiet", "--no-container", "--outdir", out,
                        str(ECHO), str(job)], check=True, capture_output=True)
        return time.perf_counter() - started


def store_settings(**update: Any) -> Any:
    """The settings (ADES_* as set) with `update` applied, once the local Elasticsearch node they name is running
    (started by `ades services start` otherwise); an external cluster (ADES_ES_URL) is used as it is."""
    from ades.config import Settings

    base = Settings()
    if not base.uses_external_es:
        from ades.services.elasticsearch import ensure_running

        ensure_running(base)
    return base.model_copy(update=update)


def es_version(client: Any) -> str:
    """The node's version, from the nodes API: the integ-test-zip answers `GET /` only with ades' own plugin."""
    return str(next(iter(client.nodes.info(node_id="_local")["nodes"].values()))["version"])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ms_summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(pct(samples, 50) * 1000, 2),
        "p99_ms": round(pct(samples, 99) * 1000, 2),
        "mean_ms": round(sum(samples) / len(samples) * 1000, 2),
        "n": len(samples),
    }


def run_streams(batches: Sequence[T], streams: int, apply: Callable[[T], int]) -> tuple[float, int]:
    """Apply every batch, spread over `streams` threads (as concurrent Lambdas or consumers would run).
    `apply` returns how many items of its batch failed. Returns (seconds, failures)."""
    failures = 0
    lock = threading.Lock()

    def run(part: Sequence[T]) -> None:
        nonlocal failures
        for batch in part:
            bad = apply(batch)
            with lock:
                failures += bad

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(batches[k::streams],)) for k in range(streams)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - started, failures


def parser(doc: str | None, name: str) -> argparse.ArgumentParser:
    """The benchmark's command line, with `--out` defaulting to benchmarks/results/<name>.json."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / f"{name}.json",
                   help="where the JSON of figures goes")
    return p


def write_figures(path: Path, figures: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


def require_free(*ports: int) -> None:
    """Fail unless nothing listens on these 127.0.0.1 ports: a server left over from another run would answer, and
    be measured, instead of the benchmark's own (it happened once, to the plain Flask floor)."""
    import socket

    for port in ports:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                raise SystemExit(f"port {port} is in use: stop what listens there, or choose another port")


def wait_until_up(url: str, process: Any, timeout: float = 90.0) -> None:
    """Poll `url` until it answers (any HTTP status); fail if `process` (a Popen) exits first."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the benchmark server at {url} did not start") from None
            time.sleep(0.3)


@contextlib.contextmanager
def ades_server(port: int, data_dir: str, **settings: str) -> Iterator[str]:
    """`ades serve` on 127.0.0.1:`port` (1 server process, 2 job workers, status straight to Elasticsearch) with
    more settings (`index_prefix="x-"` is ADES_INDEX_PREFIX=x-); its URL once it answers."""
    base = f"http://127.0.0.1:{port}"
    env = os.environ | {"ADES_EVENT_SINK": "direct", "ADES_PUBLIC_URL": base, "ADES_DATA_DIR": data_dir}
    env |= {f"ADES_{name.upper()}": value for name, value in settings.items()}
    server = subprocess.Popen([sys.executable, "-m", "ades.cli", "-q", "serve", "--port", str(port), "--workers", "1",
                               "--job-workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"{base}/processes", server, 60)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def store_all(store: Any, jobs: Sequence[Any], refresh: bool = False) -> None:
    """Index new jobs (JobStore.create), raising if any is refused: a benchmark must not measure a failure."""
    errors = [error for error in store.create(jobs, refresh=refresh) if error is not None]
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(jobs)} jobs could not be stored: {errors[0]}")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes (and of their reaped children)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def listening_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:`port` (the ES node, local or "external" on this machine), from /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{cols[9]}]")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") in inodes for fd in fds):
                return int(entry)
        except OSError:
            continue
    return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""
