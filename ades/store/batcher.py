"""Group commit for job submissions: concurrent requests share one bulk request and one refresh.

Indexing a job alone with a refresh (so `GET /jobs` lists it at once) costs a round trip and a refresh each; under
load the server would spend its time on refreshes. Here each request hands its job to one writer thread and waits;
the writer indexes whatever has gathered meanwhile in one `bulk` with `refresh=true`. Alone, a request pays what it
paid before; under load the batch grows by itself (no timer, no added latency) while each request still returns only
once its job is stored and visible to searches.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Protocol

from ades.models import Job
from ades.store.client import StoreUnavailable

MAX_BATCH = 500


class _Writer(Protocol):
    def create_batch(self, jobs: Sequence[Job], *, refresh: bool = True) -> list[Exception | None]: ...


class CreateBatcher:
    def __init__(self, store: _Writer, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self.max_batch = max_batch
        self._pending: list[tuple[Job, Future[None]]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.jobs = 0

    def create(self, job: Job, timeout: float = 60.0) -> None:
        """Store the job (visible to searches on return). Raises JobExists or StoreUnavailable."""
        future: Future[None] = Future()
        with self._cond:
            if self._closed:
                raise StoreUnavailable("the server is shutting down")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ades-create-batcher", daemon=True)
                self._thread.start()
            self._pending.append((job, future))
            self._cond.notify()
        try:
            future.result(timeout)
        except TimeoutError:
            raise StoreUnavailable(f"storing job {job.id} took over {timeout:.0f} s") from None

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
            try:
                results = self.store.create_batch([job for job, _ in batch])
            except Exception as err:  # the writer must outlive any error; the waiting requests get it
                results = [StoreUnavailable(f"could not store jobs: {err}")] * len(batch)
            self.batches += 1
            self.jobs += len(batch)
            for (_, future), error in zip(batch, results, strict=True):
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
