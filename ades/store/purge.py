"""Finding and deleting old finished jobs in the `jobs` index (retention: ades.jobs.retention drives it).

This distribution of Elasticsearch has no `_delete_by_query`: matching jobs are read page by page through a point in
time (`search_after` on `_shard_doc`, which stops early on every page, however deep) and deleted with `_bulk`. Each
delete is conditional on the `_seq_no` and `_primary_term` its search hit carried, so it removes exactly the version
that was found finished and matching: a job written to since (a late event, a status some writer changed, the
consumer or the API) is kept, whatever the write was. Deletes go through the alias, so a job the alias no longer
leads to that version of (an index migration moved it) is kept too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from elasticsearch import ApiError, Elasticsearch, TransportError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ades.config import Settings
from ades.models import iso
from ades.status import Status
from ades.store.bulk import BulkConnection
from ades.store.client import StoreUnavailable

FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.DISMISSED)
PURGEABLE = (Status.CREATED, *FINISHED)
"""What a purge may remove: finished jobs, and created ones (OGC API Processes Part 4) that were never started."""
PAGE_SIZE = 1000
KEEP_ALIVE = "5m"
"""How long the point in time outlives the last page read from it (a page's deletes and file removals)."""


class PurgeFilter(BaseModel):
    """Which jobs a purge removes: finished or created (of `statuses`), holding every label of `labels`, and ended
    (`stop-time`) more than `older_than` seconds ago, or, without a recorded end, created that long ago."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    older_than: float = Field(ge=0, description="seconds since the job's end (or creation, without an end)")
    statuses: tuple[Status, ...] = Field(default=PURGEABLE, min_length=1)
    labels: tuple[str, ...] = ()

    @field_validator("statuses", mode="before")
    @classmethod
    def _finished_only(cls, value: Any) -> Any:
        words = [value] if isinstance(value, str) else list(value)
        statuses = []
        for word in words:
            status = Status.parse(word) if isinstance(word, str) else Status(word)
            if status not in PURGEABLE:
                raise ValueError(f"{status.value!r} jobs are never purged: only finished or created ones "
                                 f"({', '.join(s.value for s in PURGEABLE)})")
            statuses.append(status)
        return tuple(dict.fromkeys(statuses))

    def cutoff(self, now: datetime) -> datetime:
        return now - timedelta(seconds=self.older_than)


def build_purge_query(purge: PurgeFilter, now: datetime) -> dict[str, Any]:
    """The ES query of the jobs `purge` removes at `now` (a pure function, tested on its own)."""
    before = {"lt": iso(purge.cutoff(now))}
    ended_long_ago = {"range": {"stop-time": before}}
    created_long_ago_never_ended = {"bool": {"must_not": [{"exists": {"field": "stop-time"}}],
                                             "filter": [{"range": {"created": before}}]}}
    filters: list[dict[str, Any]] = [
        {"terms": {"status": [s.value for s in purge.statuses]}},
        {"bool": {"should": [ended_long_ago, created_long_ago_never_ended], "minimum_should_match": 1}},
    ]
    filters.extend({"term": {"labels": label}} for label in purge.labels)
    return {"bool": {"filter": filters}}


@dataclass(frozen=True)
class Found:
    """A job a search found, and the version it found (what its delete is conditional on)."""

    job_id: str
    status: str
    seq_no: int
    primary_term: int
    index: str | None = None
    """the index it was found in: its delete goes there, never through the alias, which a migration may have moved
    to a copy whose sequence numbers could match by chance (ades.store.migrate)"""


@dataclass
class Deleted:
    """What became of the jobs of one `delete`."""

    deleted: list[Found] = field(default_factory=list)
    """removed by this delete"""
    gone: list[Found] = field(default_factory=list)
    """no longer in the index (another purge removed it meanwhile)"""
    kept: list[Found] = field(default_factory=list)
    """written to since it was found: not removed"""
    failed: dict[str, str] = field(default_factory=dict)
    """job id -> why Elasticsearch refused the delete"""

    @property
    def removed(self) -> list[Found]:
        """The jobs no longer in the store: their files may go."""
        return [*self.deleted, *self.gone]


class Scan:
    """The jobs matching a query as of one point in time: their count by status, then their pages."""

    def __init__(self, client: Elasticsearch, pit: str, query: dict[str, Any], page_size: int) -> None:
        self.client = client
        self.pit = pit
        self.query = query
        self.page_size = page_size

    def counts(self) -> dict[str, int]:
        """How many jobs match, by status."""
        answer = self._search(size=0, track_total_hits=True,
                              aggs={"statuses": {"terms": {"field": "status", "size": len(Status)}}})
        return {b["key"]: int(b["doc_count"]) for b in answer["aggregations"]["statuses"]["buckets"]}

    def pages(self) -> Iterator[list[Found]]:
        after: list[Any] | None = None
        while True:
            extra = {"search_after": after} if after is not None else {}
            answer = self._search(size=self.page_size, sort=[{"_shard_doc": "asc"}], seq_no_primary_term=True,
                                  source_includes=["status"], track_total_hits=False, **extra)
            hits = answer["hits"]["hits"]
            if not hits:
                return
            yield [Found(h["_id"], h["_source"].get("status", ""), h["_seq_no"], h["_primary_term"], h.get("_index"))
                   for h in hits]
            if len(hits) < self.page_size:
                return
            after = hits[-1]["sort"]

    def _search(self, **body: Any) -> Any:
        try:
            answer = self.client.search(pit={"id": self.pit, "keep_alive": KEEP_ALIVE}, query=self.query, **body)
        except (TransportError, ApiError) as err:
            raise StoreUnavailable(f"could not search jobs to purge: {err}") from err
        self.pit = answer.get("pit_id", self.pit)  # the node may hand back a new id; the latest is the one to use
        return answer


class JobPurger:
    """Scans and conditional deletes on the `jobs` alias. `bulk`: the connection deletes go over (by default one of
    its own to the settings' node, closed by `close`)."""

    def __init__(self, client: Elasticsearch, settings: Settings, *, bulk: BulkConnection | None = None,
                 page_size: int = PAGE_SIZE) -> None:
        self.client = client
        self.index = settings.jobs_alias
        self.settings = settings
        self.page_size = page_size
        self._bulk = bulk

    @contextlib.contextmanager
    def scan(self, query: dict[str, Any]) -> Iterator[Scan]:
        """The jobs matching `query` as of now (a point in time, closed when the block ends)."""
        try:
            pit = self.client.open_point_in_time(index=self.index, keep_alive=KEEP_ALIVE)["id"]
        except (TransportError, ApiError) as err:
            raise StoreUnavailable(f"could not search jobs to purge: {err}") from err
        scan = Scan(self.client, pit, query, self.page_size)
        try:
            yield scan
        finally:
            with contextlib.suppress(TransportError, ApiError):  # it expires by itself anyway
                self.client.close_point_in_time(id=scan.pit)

    def delete(self, found: Sequence[Found]) -> Deleted:
        """Delete each job if it is still the version found; one `_bulk` request."""
        outcome = Deleted()
        if not found:
            return outcome
        lines = [{"delete": {"_index": f.index or self.index, "_id": f.job_id, "if_seq_no": f.seq_no,
                             "if_primary_term": f.primary_term}} for f in found]
        if self._bulk is None:
            self._bulk = BulkConnection.from_settings(self.settings)
        answer = self._bulk.bulk(lines, filter_path="items.*.status,items.*.error.type,items.*.error.reason")
        conflicts: list[Found] = []
        for job, item in zip(found, answer.body["items"], strict=True):
            result = item["delete"]
            status = result.get("status", 500)
            if status < 300:
                outcome.deleted.append(job)
            elif status == 404:
                (outcome.deleted if answer.resent else outcome.gone).append(job)
            elif status == 409:
                conflicts.append(job)
            else:
                error = result.get("error") or {}
                outcome.failed[job.job_id] = f"{error.get('type', status)}: {error.get('reason', '')}"
        if conflicts:
            self._tell_conflicts(conflicts, outcome, answer.resent)
        return outcome

    def _tell_conflicts(self, conflicts: list[Found], outcome: Deleted, resent: bool) -> None:
        # a conditional delete of a job no longer there is a conflict too: a realtime read tells it from a job
        # written to since it was found
        try:
            docs = self.client.mget(index=self.index, ids=[f.job_id for f in conflicts], source=False)["docs"]
        except (TransportError, ApiError) as err:
            raise StoreUnavailable(f"could not read jobs back after their deletes: {err}") from err
        still_there = {d["_id"] for d in docs if d.get("found")}
        for job in conflicts:
            if job.job_id in still_there:
                outcome.kept.append(job)
            else:
                # a resent request's first send may have been the one that deleted it
                (outcome.deleted if resent else outcome.gone).append(job)

    def refresh(self) -> None:
        with contextlib.suppress(TransportError, ApiError):  # searches see the deletes within a second anyway
            self.client.indices.refresh(index=self.index)

    def close(self) -> None:
        if self._bulk is not None:
            self._bulk.close()
            self._bulk = None
