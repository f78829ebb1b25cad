"""Group commit of accepted jobs: concurrent submissions share one journal write and one bulk request.

Every Elasticsearch request has a fixed cost larger than indexing one small document, so each request thread hands
its job to one writer thread and waits; the writer stores whatever has gathered meanwhile at once. Alone, a request
pays one round trip; under load the batch grows by itself (no timer, no added latency), up to MAX_BATCH jobs, sent
in bulk requests of at most ADES_ES_BULK_MAX_BYTES each (ades.store.jobs: ~11 jobs of 10 MiB were one request over
the node's 100 MB limit, and failed together). A request returns once its
job is durably stored (ES acknowledges a bulk after its translog is synced), so a realtime get finds it at once.
There is no refresh per bulk: listings see new jobs after the index's next refresh, or at once on this host
(ades.store.freshness).

The writer also does what must come right before and right after storing, for the whole batch: `journal` (one
write for every line, before the bulk, so a job indexed as `submitted` can always be re-queued after a crash) and
`then` (hand each stored job on), before the waiting requests are answered. Done per request instead, each of those
would be a contended hand-off between request threads (benchmarks/README.md has the figures).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from ades.models import Job
from ades.store import StoreUnavailable

MAX_BATCH = 500
log = logging.getLogger(__name__)
P = TypeVar("P")


class _Slot:
    """One waiting request: a lock taken at birth that the writer releases (cheaper than a Future, whose
    set_result goes through a Condition; this runs once per submission)."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()
        self.error: Exception | None = None


class _Writer(Protocol):
    def create(self, jobs: Sequence[Job], *, refresh: bool = False) -> list[Exception | None]: ...


class CreateBatcher(Generic[P]):
    """`create(job, payload)` stores the job; `journal(payloads)` runs before the bulk that holds them and
    `then(payload)` after it, for each job stored, all on the writer thread."""

    def __init__(self, store: _Writer, max_batch: int = MAX_BATCH,
                 on_written: Callable[[], None] | None = None,
                 journal: Callable[[list[P]], None] | None = None,
                 then: Callable[[P], None] | None = None) -> None:
        self.store = store
        self.max_batch = max_batch
        self.on_written = on_written
        self.journal = journal
        self.then = then
        self._pending: list[tuple[Job, P | None, _Slot]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.jobs = 0

    def create(self, job: Job, payload: P | None = None, timeout: float = 60.0) -> None:
        """Store the job (durable, readable by id on return), journaling `payload` before and handing it to `then`
        after. Raises JobExists, StoreUnavailable, or what `journal` or `then` raised."""
        slot = _Slot()
        with self._cond:
            if self._closed:
                raise StoreUnavailable("the server is shutting down")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ades-create-batcher", daemon=True)
                self._thread.start()
            self._pending.append((job, payload, slot))
            self._cond.notify()
        if not slot.done.acquire(timeout=timeout):
            raise StoreUnavailable(f"storing job {job.id} took over {timeout:.0f} s")
        if slot.error is not None:
            raise slot.error

    def waiting(self) -> int:
        """How many requests wait for the writer to take them."""
        with self._cond:
            return len(self._pending)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            results = self._write(batch)
            self.batches += 1
            self.jobs += len(batch)
            for (_, payload, slot), error in zip(batch, results, strict=True):
                if error is None and payload is not None and self.then is not None:
                    try:
                        self.then(payload)
                    except Exception as err:  # stored and journaled: reconciliation re-queues it at the next start
                        log.exception("could not hand on a stored job")
                        error = err
                slot.error = error
                slot.done.release()

    def _write(self, batch: list[tuple[Job, P | None, _Slot]]) -> list[Exception | None]:
        """Journal, then index the batch: an error per job (None: stored)."""
        payloads = [payload for _, payload, _ in batch if payload is not None]
        if payloads and self.journal is not None:
            try:
                self.journal(payloads)
            except Exception as err:  # nothing indexed: the requests fail as a whole, with the journal's error
                return [err] * len(batch)
        try:
            results = self.store.create([job for job, _, _ in batch], refresh=False)
        except Exception as err:  # the writer must outlive any error; the waiting requests get it
            return [StoreUnavailable(f"could not store jobs: {err}")] * len(batch)
        if self.on_written is not None and any(error is None for error in results):
            try:
                self.on_written()
            except OSError as err:  # listings then wait for the periodic refresh; the jobs are stored
                log.warning("could not mark new jobs for listings: %s", err)
        return results
