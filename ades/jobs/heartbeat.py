"""Job heartbeats: the process that runs a job touches its process record every few seconds while it runs, on
whatever host it is (a local worker's child, a Dask worker's). Reconciliation on another host sharing the data dir
reads it: a job with a fresh beat is still running there and is left to finish; it is failed only once the beat has
gone stale (its process is really gone). The beat is the job's own, so a job that outlives its server (a graceful
stop leaves jobs running) keeps beating."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from ades.jobs.folder import JobFolder

BEAT_SECONDS = 5.0
STALE_SECONDS = 30.0
"""A beat older than this is a job whose process stopped: six missed beats, so a busy host is not taken for a dead
one."""


def is_fresh(last_beat: float | None, now: float, stale_after: float = STALE_SECONDS) -> bool:
    return last_beat is not None and now - last_beat < stale_after


def beating(folder: JobFolder, stale_after: float = STALE_SECONDS) -> bool:
    """Whether the job's process beat within `stale_after` seconds."""
    return is_fresh(folder.last_beat(), time.time(), stale_after)


@contextlib.contextmanager
def beats(folder: JobFolder, every: float = BEAT_SECONDS) -> Iterator[None]:
    """Beat for the job every `every` seconds while the block runs."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every):
            with contextlib.suppress(OSError):  # a full disk for a moment, a folder removed by a dismissal
                folder.beat()

    thread = threading.Thread(target=run, name="ades-job-beat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
