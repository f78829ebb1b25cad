"""Host leases: each API node and each Dask worker holds a lease in the `hosts` index (ades.store.hosts), renewed
every sixth of ADES_HOST_LEASE; a host whose lease expired is taken for dead.

An API node's lease id is its node id, made once and kept in its data dir (`node_id`), so a restarted node has the
same one. Per node, one process beats: the one holding the data dir's reconcile lock (ades.jobs.service), so a node
costs one ES write per beat however many server processes it runs; if that process dies, the gunicorn worker that
replaces it takes the lock and the beat. The job document's `host` says which lease answers for the job: the node
that accepted it, then the host that runs it (the running event carries `current_id()` of the process that runs
the job), then a node that adopted it (ades.jobs.adoption).

`fate` is what a live node does with an unfinished job whose host holds no fresh lease (a pure function).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from ades.jobs.folder import DataDir, write_private
from ades.models import iso, utcnow
from ades.status import Status
from ades.store.hosts import HostStore, LeaseDoc, expiry

API = "api"
DASK_WORKER = "dask-worker"
BEATS_PER_LEASE = 6
"""A lease is renewed six times within its length: a busy host or a slow ES answer is not taken for a dead host."""
log = logging.getLogger(__name__)

_current: str | None = None
_node_ids: dict[Path, str] = {}


def node_id(data_dir: Path) -> str:
    """This node's lease id, kept in its data dir: made by the first process that asks, the same ever after."""
    root = Path(data_dir)
    known = _node_ids.get(root)
    if known is not None:
        return known
    path = DataDir(root).node_id_file
    try:
        found = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        found = ""
    if not found:
        root.mkdir(parents=True, exist_ok=True)
        made = f"node-{uuid.uuid4().hex[:16]}"
        partial = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}")
        write_private(partial, made + "\n")
        try:
            os.link(partial, path)  # the first process to link wins; the others read its id
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(OSError):
                partial.unlink()
        found = path.read_text(encoding="utf-8").strip()
    _node_ids[root] = found
    return found


def set_current(lease_id: str | None) -> None:
    """The lease that answers for jobs this process (and the job processes it forks) runs."""
    global _current
    _current = lease_id


LEASE_ENV = "ADES_PROCESS_LEASE_ID"
"""Set by a Dask worker for the launcher processes it starts (fresh interpreters): the lease their jobs run under."""


def current_id(data_dir: Path) -> str:
    """The lease id a job run in this process reports as its host: the lease this process holds (a Dask worker's),
    or its Dask worker's (LEASE_ENV), else the node id of the data dir the job runs in (a local worker of an API
    node)."""
    return _current or os.environ.get(LEASE_ENV) or node_id(data_dir)


class Lease:
    """One host's lease, renewed by a thread from `start()` to `close()`. Usable in any process: an API node's
    reconciling process holds the node's, a Dask worker its own (kind DASK_WORKER, id from its address)."""

    def __init__(self, hosts: HostStore, lease_id: str, kind: str = API, url: str | None = None,
                 length: float = 30.0) -> None:
        self.hosts = hosts
        self.id = lease_id
        self.kind = kind
        self.url = url
        self.length = length
        self.every = length / BEATS_PER_LEASE
        self.started = utcnow()
        self.beats = 0
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def document(self, now: datetime) -> LeaseDoc:
        return LeaseDoc(id=self.id, kind=self.kind, hostname=socket.gethostname(), url=self.url, pid=os.getpid(),
                        started=self.started, beat=now, expires=expiry(now, self.length))

    def beat(self) -> LeaseDoc:
        """Renew the lease now (one ES write). Raises StoreUnavailable."""
        doc = self.document(utcnow())
        self.hosts.put(doc)
        self.beats += 1
        return doc

    def start(self) -> Lease:
        """Beat at once (raising if the store cannot take it), then every `every` seconds on a thread. A Dask
        worker's lease answers for the jobs its process runs (`current_id`); an API node's jobs name their data dir's
        node id, whichever process runs them (several nodes may live in one process: tests, embedded use)."""
        self.beat()
        if self.kind != API:
            set_current(self.id)
        self._thread = threading.Thread(target=self._run, name="ades-lease", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._closed.wait(self.every):
            try:
                self.beat()
            except Exception as err:  # the store is away for a moment: the next beat tries again
                log.warning("lease %s not renewed: %s", self.id, err)

    def close(self) -> None:
        """Stop renewing. The lease is left to expire, not removed: jobs of a stopped node (waiting ones stay
        journaled, running ones go on) are settled by its restart, or by another node once it expired."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


class Fate(StrEnum):
    LEAVE = "leave"
    ADOPT = "adopt"
    FAIL = "fail"


def lost_reason(doc: dict[str, Any], lease: LeaseDoc | None) -> str:
    host = doc.get("host")
    where = "running there" if doc.get("status") == Status.RUNNING.value else "waiting there to start"
    if lease is None:
        return f"host lost: {host} holds no lease (ADES_HOST_LEASE) while the job was {where}"
    return (f"host lost: {lease.kind} {host} ({lease.hostname}) stopped renewing its lease, which expired at "
            f"{iso(lease.expires)}, while the job was {where}")


def fate(doc: dict[str, Any], lease: LeaseDoc | None, now: datetime, self_id: str, adopt: bool,
         dask_knows: bool | None = None) -> Fate:
    """What a live node (`self_id`) does with an unfinished job whose `host` may be lost, given that host's lease
    (None: there is none), whether this node adopts lost jobs, and whether the Dask scheduler still knows the job's
    task (None: no Dask executor here).

    A job of this node, of a fresh lease, or one a Dask scheduler still holds is left. A job that never started is
    adopted where configured, once (a job adopted before fails); a job that was running fails: its work and files
    were on the lost host's disk, and it may have had effects a second run would repeat."""
    host = doc.get("host")
    status = Status(doc["status"])
    if not host or host == self_id or status.terminal or status is Status.CREATED:
        return Fate.LEAVE
    if lease is not None and lease.fresh(now):
        return Fate.LEAVE
    if dask_knows:
        return Fate.LEAVE
    if adopt and status is Status.SUBMITTED and not doc.get("adopted"):
        return Fate.ADOPT
    return Fate.FAIL


def _stamp(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def delay_left(doc: dict[str, Any], dependencies: dict[str, dict[str, Any] | None], now: datetime) -> float:
    """Seconds of the job's delay still to run when it is adopted at `now`, counted as its first node counted it:
    from its creation (no dependencies), or from the moment its last dependency succeeded; its whole delay while a
    dependency has not succeeded yet (the delay then starts when it does)."""
    delay = float(doc.get("delay") or 0.0)
    if delay <= 0:
        return 0.0
    depends = doc.get("depends-on") or []
    if depends:
        found = [dependencies.get(dep) for dep in depends]
        if any(d is None or d.get("status") != Status.SUCCEEDED.value or not d.get("stop-time") for d in found):
            return delay
        start = max(_stamp(d["stop-time"]) for d in found if d is not None)  # type: ignore[type-var]
    else:
        start = _stamp(doc.get("created"))
    if start is None:
        return delay
    return max(0.0, delay - (now - start).total_seconds())
