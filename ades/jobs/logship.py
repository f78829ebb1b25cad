"""Shipping a running job's log to the `job-logs` index (ADES_LOG_STORE=elasticsearch), from the host that runs it.

The launcher (ades.jobs.launcher) starts one LogShipper per job beside the job's process: once a second (every 5 s
after the first minute) it sends what the log gained since the last send, cut at a line end, and at the job's end
it sends the rest with `final`. It never fails a job: while the store is away the bytes wait in the log file and go
with the next send. Past `max_bytes` the shipped log ends with a line that says so; the whole log stays in the
job's folder.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from ades.store import make_client
from ades.store.client import StoreUnavailable
from ades.store.logs import CHUNK_BYTES, LogShipConfig, LogStore, whole_characters

log = logging.getLogger(__name__)
SHIP_SECONDS = 1.0
LATER_SHIP_SECONDS = 5.0
AFTER_SECONDS = 60.0
"""A job that has run this long ships every LATER_SHIP_SECONDS: a long job's log is not thousands of tiny chunks."""
FINAL_TRIES_SECONDS = 10.0
"""How long the last chunk is tried at a job's end while the store does not answer."""


def next_chunk(data: bytes, final: bool, limit: int = CHUNK_BYTES) -> bytes:
    """The part of `data` (the log's unsent bytes) to send now: at most `limit` bytes, ending at a line end unless
    this is the job's end or one line is longer than `limit`, and never inside a UTF-8 character."""
    piece = data[:limit]
    if not final or len(data) > limit:
        cut = piece.rfind(b"\n") + 1
        if cut:
            return piece[:cut]
        if len(data) <= limit:
            return b""  # a line still being written: it goes whole with the next send
    return piece[:whole_characters(piece)]


class LogShipper:
    def __init__(self, config: LogShipConfig, job_id: str, path: Path) -> None:
        self.job_id = job_id
        self.path = path
        self.max_bytes = config.max_bytes
        self.client = make_client(config.settings().model_copy(update={"es_max_retries": 1,
                                                                       "es_request_timeout": 5}))
        self.store = LogStore(self.client, config.settings())
        self.sent = 0
        self._cut = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ades-logship-{job_id[:8]}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(SHIP_SECONDS if time.monotonic() - started < AFTER_SECONDS
                                  else LATER_SHIP_SECONDS):
            try:
                self.ship(final=False)
            except StoreUnavailable as err:
                log.info("log of job %s not shipped yet: %s", self.job_id, err)

    def close(self) -> None:
        """At the job's end (its last lines written): send the rest, marked final."""
        self._stop.set()
        self._thread.join()
        deadline = time.monotonic() + FINAL_TRIES_SECONDS
        try:
            while True:
                try:
                    self.ship(final=True)
                    return
                except StoreUnavailable as err:
                    if time.monotonic() > deadline:
                        log.warning("the end of job %s's log was not shipped: %s", self.job_id, err)
                        return
                    self._stop.wait(0.5)
        finally:
            self.client.close()

    def ship(self, final: bool) -> None:
        """Send what the log gained (all of it if `final`, in as many chunks as it takes)."""
        while not self._cut:
            unsent = self._unsent()
            room = self.max_bytes - self.sent
            if len(unsent) > room:
                self._cut_here(unsent[:room])
                break
            chunk = next_chunk(unsent, final)
            last = final and len(chunk) == len(unsent)
            if chunk or last:
                self.store.append(self.job_id, self.sent, chunk.decode("utf-8", errors="replace"), final=last)
                self.sent += len(chunk)
            if last or not chunk:
                return
        if final:
            self.store.append(self.job_id, self.sent, "", final=True)

    def _cut_here(self, head: bytes) -> None:
        """The log passed max_bytes: its last whole lines within, then a line that says where the rest is."""
        chunk = next_chunk(head, final=False)
        if chunk:
            self.store.append(self.job_id, self.sent, chunk.decode("utf-8", errors="replace"))
            self.sent += len(chunk)
        note = (f"ades: the log is cut here: past {self.max_bytes} bytes (ADES_LOG_SHIP_MAX_BYTES) it is kept only "
                "in the job's folder on the host that ran it\n")
        self.store.append(self.job_id, self.sent, note)
        self.sent += len(note.encode())
        self._cut = True

    def _unsent(self) -> bytes:
        try:
            with self.path.open("rb") as f:
                f.seek(self.sent)
                return f.read(CHUNK_BYTES * 4)
        except OSError:  # not made yet
            return b""
