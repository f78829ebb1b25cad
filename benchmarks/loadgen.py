"""A small HTTP/1.1 load generator: keep-alive connections on asyncio, each sending the same request back to back,
timing every answer. Used against both servers of a comparison, so the client costs them the same.

Why not threads with http.client: on 2 cores the client competes with the servers it measures. Threads with
http.client cost about 0.35-0.6 ms of CPU per request (measured); one asyncio loop over raw streams costs a
fraction of that, which leaves the cores to the servers.

Only 127.0.0.1 is ever the target.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import dataclass, field
from typing import Any


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


def post_load(port: int, path: str, body: bytes, count: int, connections: int, *, processes: int = 1,
              headers: dict[str, str] | None = None, ok: frozenset[int] = frozenset({200, 201})) -> Outcome:
    """POST `body` to 127.0.0.1:`port``path` `count` times over `connections` keep-alive connections spread over
    `processes` client processes. Every answer's status outside `ok` counts as an error."""
    request = build_request(port, path, body, {"Content-Type": "application/json", **(headers or {})})
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
