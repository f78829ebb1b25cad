"""`GET /jobs/{id}/logs`: a job's log from this node's disk when the job ran here, else from the `job-logs` index
(ADES_LOG_STORE=elasticsearch), where the host running it ships it; `offset` reads on from a byte, `tail` the last
lines, `follow` streams what comes until the job ends."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from flask import Request

from ades.api.errors import problem
from ades.jobs.folder import JobFolder
from ades.store.logs import LogRead, LogStore, whole_characters

MAX_FOLLOW_SECONDS = 300.0
"""The longest one following request holds its thread; a client follows on with `offset`."""
POLL_SECONDS = 0.5
END_GRACE_SECONDS = 15.0
"""How long a follower waits for the shipped log's last chunk after the job ended (its host ships it after)."""

Reader = Callable[[int], LogRead]


@dataclass
class LogQuery:
    offset: int = 0
    tail: int | None = None
    follow: bool = False
    seconds: float = MAX_FOLLOW_SECONDS

    @classmethod
    def of(cls, request: Request) -> LogQuery:
        args = request.args
        query = cls(offset=_count(args.get("offset"), "offset", 0) or 0, tail=_count(args.get("tail"), "tail", 1))
        follow = (args.get("follow") or "false").lower()
        if follow not in ("true", "false"):
            raise problem(400, "invalid-parameter", f"follow: must be true or false, got {args.get('follow')!r}")
        query.follow = follow == "true"
        if "timeout" in args:
            seconds = _count(args.get("timeout"), "timeout", 1)
            query.seconds = min(float(seconds or MAX_FOLLOW_SECONDS), MAX_FOLLOW_SECONDS)
        if query.tail is not None and (query.offset or query.follow):
            raise problem(400, "invalid-parameter", "tail: cannot be combined with offset or follow")
        return query


def _count(raw: str | None, name: str, least: int) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < least:
        raise problem(400, "invalid-parameter", f"{name}: must be a whole number >= {least}, got {raw!r}")
    return int(raw)


@dataclass
class LogSource:
    read: Reader
    end_grace: float
    """how long after the job's end its log may still grow here"""


def source_of(folder: JobFolder, store: LogStore | None) -> LogSource:
    """Where this node reads the job's log: its own disk if the job ran here (whole once the job ended), else the
    chunks its host shipped (the last ones may still be on their way)."""
    if folder.log.exists() or store is None:
        return LogSource(lambda offset: _read_file(folder, offset), 0.0)
    return LogSource(lambda offset: store.read(folder.job_id, offset), END_GRACE_SECONDS)


def _read_file(folder: JobFolder, offset: int) -> LogRead:
    try:
        with folder.log.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:  # not started, or its files were removed
        return LogRead("", offset, False)
    whole = data[:whole_characters(data)]  # a character being written goes with the next read
    return LogRead(whole.decode("utf-8", errors="replace"), offset + len(whole), False)


def last_lines(text: str, lines: int) -> str:
    kept = text.splitlines(keepends=True)[-lines:]
    return "".join(kept)


def follow(source: LogSource, ended: Callable[[], bool], offset: int, seconds: float,
           stop: threading.Event | None = None) -> Iterator[str]:
    """The log from `offset` as it grows, until its last chunk was read, the job ended (and its source's grace
    passed without the last chunk), or `seconds` passed."""
    stop = stop or threading.Event()
    deadline = time.monotonic() + seconds
    ended_at: float | None = None
    while True:
        got = source.read(offset)
        if got.text:
            offset = got.next_offset
            yield got.text
        if got.final:
            return
        now = time.monotonic()
        if ended_at is None and ended():
            ended_at = now
            continue  # what the job wrote before its end: read once more at once
        if now >= deadline or (ended_at is not None and now - ended_at >= source.end_grace):
            return
        if stop.wait(POLL_SECONDS):
            return
