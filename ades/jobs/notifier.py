"""The notifier: tells jobs' subscribers (OGC callbacks) what became of their jobs.

The writer of status (the consumer, ades.merge) only marks a job whose subscriber has news (`callback-due`); it calls
no one, so the status-consumer Lambda stays free of outbound HTTP. This loop runs in the one server process of a data
dir that holds its reconcile lock, and every `ADES_CALLBACK_POLL_INTERVAL` seconds:

1. searches for jobs due now (one range search; with nothing pending it finds nothing, cheaply);
2. claims each with a conditional write (`callback.claimed`, due again when the claim runs out): of two nodes that
   found the same job, one wins; a status change meanwhile makes the claim fail, and the job is found again;
3. POSTs the job's status document to the URI its status asks for, through the fetcher (no private address unless
   ADES_FETCH_ALLOW allows it; the address checked is the one connected to; no redirect followed), signed;
4. records the outcome on the job (ades.callbacks.delivered) with a conditional write; if the job changed while it
   was being delivered, on the job as it is now, which is then due again at once.

At least once: a node that dies between the POST and the record leaves the claim to run out, and the state is sent
again (with the same `Ades-Delivery` id). Failures are retried with a doubling delay, up to ADES_CALLBACK_ATTEMPTS.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ades.callbacks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    claimed,
    delivered,
    delivery_id,
    next_due,
    pending,
    sign,
)
from ades.config import Settings
from ades.fetch import Fetcher, FetchError
from ades.models import utcnow
from ades.store.callbacks import CallbackStore
from ades.store.job_edits import Versioned

log = logging.getLogger(__name__)
BATCH = 100
"""Jobs taken from one search; a full batch is followed by another search at once."""
THREADS = 8
"""Deliveries in flight at once: one slow subscriber holds one thread, not the others' callbacks."""
CLAIM_MARGIN = 5.0
"""Seconds a claim outlasts the POST's own time limit (the record's write after it)."""
RECORD_TRIES = 8


class Notifier:
    """Delivers due callbacks until closed. `render`: a job document -> the JSON body its subscriber gets."""

    def __init__(self, store: CallbackStore, fetcher: Fetcher, render: Callable[[dict[str, Any]], dict[str, Any]],
                 node: str, settings: Settings) -> None:
        self.store = store
        self.fetcher = fetcher
        self.render = render
        self.node = node
        self.settings = settings
        secret = settings.callback_secret
        self.secret = secret.get_secret_value().encode() if secret is not None else None
        self.polls = 0
        self.sent = 0
        self.failed = 0
        self._closed = threading.Event()
        self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="ades-callback")
        self._thread = threading.Thread(target=self._loop, name="ades-notifier", daemon=True)

    def start(self) -> Notifier:
        self._thread.start()
        atexit.register(self.close)
        return self

    def close(self, timeout: float = 10.0) -> None:
        self._closed.set()
        atexit.unregister(self.close)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self._closed.is_set():
            found = 0
            try:
                found = self.run_once()
            except Exception as err:  # the store away for a while: the next poll tries again
                log.warning("callbacks: %s", err)
            if found < BATCH and self._closed.wait(self.settings.callback_poll_interval):
                return

    def run_once(self) -> int:
        """One search and the deliveries it found due (waited for); how many jobs it found."""
        self.polls += 1
        due = self.store.due(BATCH)
        for future in [self._pool.submit(self.deliver, found) for found in due]:
            try:
                future.result()
            except Exception as err:  # one job's trouble (the store away mid-way) is not the others'
                log.warning("callbacks: %s", err)
        return len(due)

    def deliver(self, found: Versioned) -> None:
        """Claim, POST and record one job's due callback (or, with nothing left to tell, clear its mark)."""
        doc = found.source
        target = pending(doc)
        if target is None:
            self.store.write(found, {**doc, "callback-due": next_due(doc, utcnow())})
            return
        claim = self.store.write(found, claimed(doc, self.node, utcnow(), self.settings.callback_timeout +
                                                CLAIM_MARGIN))
        if claim is None:
            return  # another node claimed it, or its status changed: found again, as it is now, by the next search
        error = self.post(target[1], doc)
        if error is None:
            self.sent += 1
        else:
            self.failed += 1
            log.info("callbacks: job %s, %s: %s", doc["id"], target[0], error)
        self._record(claim, doc, error)

    def post(self, uri: str, doc: dict[str, Any]) -> str | None:
        """POST the job's document to `uri`; None when the subscriber took it, else why not."""
        body = json.dumps(self.render(doc), separators=(",", ":")).encode()
        stamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: stamp, DELIVERY_HEADER: delivery_id(doc)}
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.secret, stamp, body)
        try:
            self.fetcher.post(uri, body, headers, self.settings.callback_timeout)
        except FetchError as err:
            return str(err)
        return None

    def _record(self, claim: Versioned, sent: dict[str, Any], error: str | None) -> None:
        s = self.settings
        current: Versioned | None = claim
        for _ in range(RECORD_TRIES):
            if current is None:
                return  # the job is gone (purged)
            new = delivered(current.source, sent, error, utcnow(), s.callback_retry_delay, s.callback_attempts,
                            s.callback_progress_interval)
            if self.store.write(current, new) is not None:
                return
            current = self.store.get(sent["id"])  # a status writer was first: record on the job as it is now
        log.warning("callbacks: job %s: the delivery could not be recorded (write conflicts); it goes again once "
                    "its claim runs out", sent["id"])
