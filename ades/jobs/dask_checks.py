"""What a Dask task learns before it starts its job, from what the hosts share (Elasticsearch and the scheduler), so
that a worker needs no folder in common with the server that submitted the job.

- The store, in one realtime mget: the job's status (a job already ended or dismissed does not run: a node that
  restarted and submitted the same job again, a dismissal made while the task was on its way) and the store-wide
  pause switch (ades.jobs.pause), which holds every worker serving the store.
- The scheduler: the starts recorded on the task itself (its metadata, which the scheduler drops with the task).
  A start recorded by an earlier attempt means the worker running that attempt was lost; the record is written
  right before the launch, after any pause, so a worker killed while its job was held is not counted.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

from elasticsearch import ApiError, TransportError
from pydantic import BaseModel, ConfigDict, Field

from ades.config import Settings
from ades.jobs.folder import DataDir
from ades.jobs.pause import PAUSE_ID, PauseState, control_index
from ades.status import Status

log = logging.getLogger(__name__)
ATTEMPTS = "ades-attempts"
"""The task metadata entry (on the scheduler) that lists the attempts that launched the job."""


class StoreAddress(BaseModel):
    """The store a Dask task checks before it starts its job: sent with each task, never journaled."""

    model_config = ConfigDict(extra="forbid")

    es_url: str
    index_prefix: str = ""
    host_lease: float = Field(default=30.0, gt=0, description="how long the worker's lease in this store lasts "
                              "(the nodes' ADES_HOST_LEASE)")

    @classmethod
    def from_settings(cls, settings: Settings) -> StoreAddress:
        return cls(es_url=settings.elasticsearch_url, index_prefix=settings.index_prefix,
                   host_lease=settings.host_lease)

    def settings(self) -> Settings:
        # only what the task says counts: a services.env where the worker runs must not redirect the check
        return Settings(_env_file=None, es_url=self.es_url, index_prefix=self.index_prefix,
                        host_lease=self.host_lease)


class StartCheck(BaseModel):
    status: Status | None = None
    """The job's stored status (None: not found, or the store did not answer)."""
    paused: PauseState | None = None


_CLIENTS: dict[tuple[str, str], tuple[Any, str, str]] = {}
_CLIENTS_LOCK = threading.Lock()


def _client(address: StoreAddress) -> tuple[Any, str, str]:
    """(Elasticsearch client, jobs alias, control index) of the address, made once per worker process."""
    key = (address.es_url, address.index_prefix)
    with _CLIENTS_LOCK:
        found = _CLIENTS.get(key)
        if found is None:
            from ades.store.client import make_client

            settings = address.settings()
            found = _CLIENTS[key] = (make_client(settings), settings.jobs_alias, control_index(address.index_prefix))
        return found


def check_store(address: StoreAddress, job_id: str) -> StartCheck:
    """The job's status and the pause switch, in one round trip. A store that does not answer holds nothing back:
    the job's own events will wait for it as they always do."""
    client, jobs, control = _client(address)
    try:
        docs = client.mget(docs=[{"_index": jobs, "_id": job_id, "_source": ["status"]},
                                 {"_index": control, "_id": PAUSE_ID}])["docs"]
    except (ApiError, TransportError) as err:
        log.warning("job %s starts unchecked: the store did not answer (%s)", job_id, err)
        return StartCheck()
    job, pause = docs
    status = Status(job["_source"]["status"]) if job.get("found") else None
    return StartCheck(status=status, paused=PauseState.model_validate(pause["_source"]) if pause.get("found") else None)


def paused_now(address: StoreAddress | None, data_dir: Path) -> bool:
    """Whether execution is paused for this worker: store-wide, or in its own data dir."""
    if DataDir(data_dir).pause_file.exists():
        return True
    if address is None:
        return False
    client, _, control = _client(address)
    try:
        return bool(client.exists(index=control, id=PAUSE_ID))
    except (ApiError, TransportError):
        return True  # while the store is away a pause cannot be seen to end: keep holding


def claim_on_scheduler(key: str, record: dict[str, Any], dask_scheduler: Any = None) -> list[dict[str, Any]]:
    """Run on the scheduler (its event loop: one at a time): record this attempt's start on the task and return the
    starts recorded before it."""
    metadata = dask_scheduler.task_metadata.setdefault(key, {})
    if not isinstance(metadata, dict):  # someone else's value under the task's key: keep it
        metadata = dask_scheduler.task_metadata[key] = {"value": metadata}
    starts = metadata.setdefault(ATTEMPTS, [])
    earlier = list(starts)
    starts.append(record)
    return earlier


def claim_start(key: str, worker: str) -> list[dict[str, Any]]:
    """Record on the scheduler that this attempt launches the job; the attempts that did so before it."""
    from distributed import get_client

    record = {"worker": worker, "host": socket.gethostname(), "at": time.time()}
    return get_client().run_on_scheduler(claim_on_scheduler, key, record)
