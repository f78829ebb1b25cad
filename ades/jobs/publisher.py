"""Publishing a host's job events: one sink per configuration, an outage logged instead of raised, and the one
way a failure is told (the reason, then the last lines of the job log).

Whoever settles a job on a host (a worker, the scheduler, reconciliation) is usually already handling a failure
when it publishes: a sink outage must not take it down too. The consumer side makes events idempotent, and
reconciliation settles a job whose end was never published.
"""

from __future__ import annotations

import logging
import threading

from ades.events.sinks import EventSink, SinkConfig, make_sink
from ades.jobs.folder import JobFolder
from ades.models import StatusUpdate
from ades.status import Status

MAX_MESSAGE_CHARS = 9_000
"""Longest failure message published (StatusUpdate allows 10,000 characters)."""
MAX_SINKS = 32
log = logging.getLogger(__name__)


def failure_message(reason: str, log_tail: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """A failed job's message: the reason, then the last lines of its log, cut to `limit` characters."""
    message = f"{reason}\n--- last lines of the job log ---\n{log_tail}" if log_tail else reason
    return message if len(message) <= limit else message[: limit - 3] + "..."


class Publisher:
    """Sinks are made on first use, one per configuration (a Dask worker serves jobs of several servers), and never
    shared across a fork: a child process makes its own Publisher. `default` is where events of jobs whose spec is
    not at hand go (reconciliation, the scheduler)."""

    def __init__(self, default: SinkConfig | None = None) -> None:
        self.default = default
        self._sinks: dict[str, EventSink] = {}
        self._lock = threading.Lock()

    def sink(self, config: SinkConfig | None = None) -> EventSink:
        config = config or self.default
        if config is None:
            raise ValueError("no sink configured for this event")
        key = config.model_dump_json()
        with self._lock:
            sink = self._sinks.get(key)
            if sink is None:
                if len(self._sinks) >= MAX_SINKS:
                    self._sinks.clear()
                sink = self._sinks[key] = make_sink(config.settings())
            return sink

    def publish(self, update: StatusUpdate, config: SinkConfig | None = None) -> bool:
        """Publish, or log why not; whether it was published."""
        return self._publish(update, config) is None

    def _publish(self, update: StatusUpdate, config: SinkConfig | None) -> Exception | None:
        try:
            self.sink(config).publish(update)
        except Exception as err:  # every sink error is handled alike: logged, and settled by reconciliation
            log.error("could not publish %s for job %s: %s", update.status.value, update.job_id, err)
            return err
        return None

    def dismissed(self, job_id: str, message: str, config: SinkConfig | None = None) -> Status:
        self.publish(StatusUpdate(job_id=job_id, status=Status.DISMISSED, message=message), config)
        return Status.DISMISSED

    def failed(self, folder: JobFolder, reason: str, config: SinkConfig | None = None) -> str:
        """Publish `failed` with the reason and the log's tail; returns the message. When it cannot be published,
        the job's log says so too."""
        message = failure_message(reason, folder.log_tail())
        error = self._publish(StatusUpdate(job_id=folder.job_id, status=Status.FAILED, message=message), config)
        if error is not None:
            folder.append_log(f"ades: could not publish the failure: {error}")
        return message
