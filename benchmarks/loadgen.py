"""A small HTTP/1.1 load generator: keep-alive connections, each sending the same request back to back, timing every
answer. Used against every server of a comparison, so the client costs them the same.

On 2 cores the client competes with the servers it measures, so it has to be cheap. Threads with http.client cost
about 0.35-0.6 ms of CPU per request (measured); one asyncio loop over raw streams about 0.13 ms; the same client in
Go (loadgen_go/main.go, goroutines over raw connections) less again. `client="auto"` builds and uses the Go one when
a Go toolchain is on the PATH (built once per source version into ~/.cache/ades), asyncio otherwise.

Only 127.0.0.1 is ever the target.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import multiprocessing
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GO_SOURCE = Path(__file__).with_name("loadgen_go") / "main.go"
CLIENTS = ("auto", "go", "asyncio")


@dataclass
class Outcome:
    samples: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    first_error: str | None = None
    seconds: float = 0.0

    def merge(self, other: Outcome) -> None:
        self.samples.extend(other.samples)
        for status, n in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + n
        self.errors += other.errors
        self.first_error = self.first_error or other.first_error
        self.seconds = max(self.seconds, other.seconds)


def build_request(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}",
             *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, keep-alive) of one response, body read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    chunked = False
    keep_alive = True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            keep_alive = False
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, keep_alive


async def _connection(port: int, request: bytes, count: int, outcome: Outcome, ok: set[int]) -> None:
    reader = writer = None
    for _ in range(count):
        started = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            status, keep_alive = await asyncio.wait_for(_read_response(reader), 120)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, TimeoutError) as err:
            outcome.errors += 1
            outcome.first_error = outcome.first_error or repr(err)
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        outcome.samples.append(time.perf_counter() - started)
        outcome.statuses[status] = outcome.statuses.get(status, 0) + 1
        if status not in ok:
            outcome.errors += 1
        if not keep_alive:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _run(port: int, request: bytes, count: int, connections: int, ok: set[int]) -> Outcome:
    outcome = Outcome()
    share = [count // connections + (1 if i < count % connections else 0) for i in range(connections)]
    started = time.perf_counter()
    await asyncio.gather(*(_connection(port, request, n, outcome, ok) for n in share if n))
    outcome.seconds = time.perf_counter() - started
    return outcome


def _process(args: tuple[int, bytes, int, int, frozenset[int]]) -> Outcome:
    port, request, count, connections, ok = args
    return asyncio.run(_run(port, request, count, connections, set(ok)))


@functools.cache
def go_client() -> Path | None:
    """The Go client, built once per version of its source (looked up once per run); None without a Go toolchain or
    if it does not build."""
    go = shutil.which("go")
    if go is None:
        return None
    digest = hashlib.sha256(GO_SOURCE.read_bytes()).hexdigest()[:12]
    binary = Path.home() / ".cache" / "ades" / f"loadgen-{digest}"
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f"{binary.name}.partial")
    built = subprocess.run([go, "build", "-o", str(partial), str(GO_SOURCE)], capture_output=True, text=True)
    if built.returncode != 0:
        print(f"loadgen: the Go client did not build, using asyncio:\n{built.stderr}", file=sys.stderr)
        return None
    partial.replace(binary)
    return binary


def _require_go() -> Path:
    binary = go_client()
    if binary is None:
        raise RuntimeError("the Go client needs a Go toolchain on the PATH (`go`)")
    return binary


def client_kind(client: str = "auto") -> str:
    """What `post_load(client=...)` runs: "go" or "asyncio". Raises RuntimeError for "go" without Go."""
    if client not in CLIENTS:
        raise ValueError(f"client must be one of {', '.join(CLIENTS)}")
    if client == "asyncio":
        return "asyncio"
    if client == "go":
        _require_go()
        return "go"
    return "go" if go_client() is not None else "asyncio"


def _go_load(port: int, request: bytes, count: int, connections: int, ok: frozenset[int]) -> Outcome:
    binary = _require_go()
    done = subprocess.run([str(binary), "-port", str(port), "-count", str(count), "-connections", str(connections),
                           "-ok", ",".join(str(s) for s in sorted(ok))], input=request, capture_output=True,
                          check=True)
    figures = json.loads(done.stdout)
    return Outcome(samples=figures["samples"], statuses={int(k): v for k, v in figures["statuses"].items()},
                   errors=figures["errors"], first_error=figures["first_error"], seconds=figures["seconds"])


def post_load(port: int, path: str, body: bytes, count: int, connections: int, *, processes: int = 1,
              headers: dict[str, str] | None = None, ok: frozenset[int] = frozenset({200, 201}),
              client: str = "auto") -> Outcome:
    """POST `body` to 127.0.0.1:`port``path` `count` times over `connections` keep-alive connections: from the Go
    client (`client_kind`), or from `processes` asyncio client processes. Every answer's status outside `ok` counts
    as an error. The client's CPU is this process's own (asyncio, one process) or its children's."""
    request = build_request(port, path, body, {"Content-Type": "application/json", **(headers or {})})
    if client_kind(client) == "go":
        return _go_load(port, request, count, connections, ok)
    per_process = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    conns = max(1, connections // processes)
    if processes == 1:
        return _process((port, request, count, conns, ok))
    outcome = Outcome()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        for part in pool.map(_process, [(port, request, n, conns, ok) for n in per_process]):
            outcome.merge(part)
    return outcome


def summary(outcome: Outcome, count: int) -> dict[str, Any]:
    from common import ms_summary

    return {"jobs": count, "errors": outcome.errors, "statuses": {str(k): v for k, v in outcome.statuses.items()},
            "first_error": outcome.first_error, "seconds": round(outcome.seconds, 2),
            "jobs_per_s": round(count / outcome.seconds, 1) if outcome.seconds else None,
            "latency": ms_summary(outcome.samples) if outcome.samples else None}
