"""HostStore: the `hosts` index, one lease document per API node and per Dask worker (ades.jobs.leases).

A lease is written whole on every beat (one `index` request, no refresh): readers use a realtime `mget` for the
leases they ask about, and a search of the small index for the fresh ones. The sweep for lost jobs reads the
leases with `fresh_and_expired` and asks the `jobs` index for the unfinished jobs of every other host in one search
(`lost_jobs_query`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from elasticsearch import ApiError, Elasticsearch, TransportError
from pydantic import BaseModel, ConfigDict, Field

from ades.config import Settings
from ades.models import ID_PATTERN, UtcDatetime, iso
from ades.status import Status
from ades.store.client import StoreUnavailable

MAX_HOSTS = 10_000
"""Leases read per search: far more API nodes and Dask workers than one cluster has."""


class LeaseDoc(BaseModel):
    """One host's lease as the `hosts` index holds it."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(pattern=ID_PATTERN)
    kind: str = Field(description="`api` (an API node) or `dask-worker`")
    hostname: str
    url: str | None = Field(default=None, description="how clients reach it (an API node's public URL)")
    pid: int | None = None
    started: UtcDatetime
    beat: UtcDatetime
    expires: UtcDatetime

    def fresh(self, now: datetime) -> bool:
        return self.expires > now

    def document(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json"), "started": iso(self.started), "beat": iso(self.beat),
                "expires": iso(self.expires)}


def lost_jobs_query(fresh: Sequence[str], expired: Sequence[str], missing_before: datetime) -> dict[str, Any]:
    """Unfinished jobs whose `host` holds no fresh lease: held by an expired lease, or by a lease that does not exist
    (never written, or removed) for a job not updated since `missing_before` (a node answers for jobs it accepted
    a moment before its first beat is searchable)."""
    gone: list[dict[str, Any]] = [{"range": {"updated": {"lt": iso(missing_before)}}}]
    if expired:
        gone.insert(0, {"terms": {"host": list(expired)}})
    return {"bool": {
        "filter": [{"terms": {"status": [Status.SUBMITTED.value, Status.RUNNING.value]}}, {"exists": {"field": "host"}},
                   {"bool": {"should": gone, "minimum_should_match": 1}}],
        # a batch never runs: it ends when its children have, whichever node settles it (ades.jobs.batches)
        "must_not": [{"exists": {"field": "batch-size"}}, *([{"terms": {"host": list(fresh)}}] if fresh else [])],
    }}


class HostStore:
    def __init__(self, client: Elasticsearch, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.index = settings.hosts_alias

    def put(self, lease: LeaseDoc) -> None:
        """Write (or renew) the lease: one index request."""
        try:
            # require_alias: a beat before ensure_indexes made the index must fail, not auto-create a plain index
            # named like the alias (which would then keep ensure_indexes from ever making it)
            self.client.index(index=self.index, id=lease.id, document=lease.document(), refresh=False,
                              require_alias=True)
        except (TransportError, ApiError) as err:
            raise StoreUnavailable(f"could not renew the lease of {lease.id}: {err}") from err

    def get(self, lease_ids: Sequence[str]) -> dict[str, LeaseDoc | None]:
        """Each lease (None: no such lease), in one realtime mget."""
        if not lease_ids:
            return {}
        try:
            answer = self.client.mget(index=self.index, ids=list(lease_ids))
        except (TransportError, ApiError) as err:
            raise StoreUnavailable(f"could not read leases: {err}") from err
        return {d["_id"]: LeaseDoc.model_validate(d["_source"]) if d.get("found") else None for d in answer["docs"]}

    def fresh_and_expired(self, now: datetime) -> tuple[list[LeaseDoc], list[LeaseDoc]]:
        """Every lease, split into those still running at `now` and those expired."""
        try:
            answer = self.client.search(index=self.index, size=MAX_HOSTS, query={"match_all": {}},
                                        track_total_hits=False)
        except (TransportError, ApiError) as err:
            raise StoreUnavailable(f"could not read leases: {err}") from err
        leases = [LeaseDoc.model_validate(hit["_source"]) for hit in answer["hits"]["hits"]]
        return [lease for lease in leases if lease.fresh(now)], [lease for lease in leases if not lease.fresh(now)]

    def lost_jobs(self, jobs_index: str, fresh: Sequence[str], expired: Sequence[str], missing_before: datetime,
                  size: int) -> list[dict[str, Any]]:
        """Up to `size` unfinished jobs of hosts without a fresh lease (`lost_jobs_query`), oldest first, each with
        its `_seq_no`, `_primary_term` and `_index` (an adoption writes on that condition)."""
        try:
            answer = self.client.search(index=jobs_index, query=lost_jobs_query(fresh, expired, missing_before),
                                        size=size, sort=[{"created": "asc"}], seq_no_primary_term=True,
                                        track_total_hits=False)
        except (TransportError, ApiError) as err:
            raise StoreUnavailable(f"could not search for lost jobs: {err}") from err
        return [{**hit["_source"], "_seq_no": hit["_seq_no"], "_primary_term": hit["_primary_term"],
                 "_index": hit["_index"]} for hit in answer["hits"]["hits"]]

    def remove(self, lease_id: str) -> None:
        self.client.options(ignore_status=404).delete(index=self.index, id=lease_id, refresh=False)


def expiry(now: datetime, length: float) -> datetime:
    return now + timedelta(seconds=length)
