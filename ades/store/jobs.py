"""JobStore: the `jobs` index. Creation, lookup, search, and the monotonic application of status updates.

Updates are merged in Python by `ades.merge` and written back with `if_seq_no`/`if_primary_term`, so two writers
can never silently overwrite each other: the loser re-reads and merges again (bounded retries with backoff).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from elasticsearch import ApiError, Elasticsearch, NotFoundError, TransportError

from ades.config import Settings
from ades.merge import Outcome, merge
from ades.models import Job, JobPage, JobQuery, StatusUpdate, iso
from ades.status import Status
from ades.store.blocks import HeldWrites, blocked_index
from ades.store.bulk import BulkConnection, ndjson_text
from ades.store.client import StoreUnavailable, backoff

CREATE_CHUNK = 1000
_BACKOFF_BASE = 0.02
_BACKOFF_CAP = 0.5


class JobNotFound(LookupError):
    pass


class JobExists(ValueError):
    pass


class _Held(StoreUnavailable):
    """A write an index's write block refused (`index`): sent again while a migration holds it."""

    def __init__(self, index: str, message: str) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class UpdateResult:
    """What happened to one update: applied, stale (changed nothing), duplicate (seen before) or failed."""

    event_id: str
    job_id: str
    outcome: Outcome
    reason: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the update is settled (a queue message carrying it may be deleted)."""
        return self.outcome is not Outcome.FAILED


@dataclass
class _Current:
    source: dict[str, Any]
    seq_no: int
    primary_term: int
    index: str
    """The index the document was read from: its write goes there, not through the alias, so that `if_seq_no`
    never meets a document of another index (after a migration moved the alias) that has the same numbers."""


@dataclass
class _Round:
    """What one read-merge-write round left to do: updates that lost a race, updates a write block held."""

    conflicted: list[int] = dataclasses.field(default_factory=list)
    held: list[int] = dataclasses.field(default_factory=list)
    held_indexes: set[str] = dataclasses.field(default_factory=set)


class JobStore:
    def __init__(self, client: Elasticsearch, settings: Settings, *, bulk: BulkConnection | None = None) -> None:
        """`bulk`: the connection `create` uses; by default one to the settings' node, opened by the first `create`
        in the process that uses it."""
        self.client = client
        self.settings = settings
        self.index = settings.jobs_alias
        self._bulk = bulk
        self._bulk_lock = threading.Lock()
        self.conflicts = 0
        """Write races lost so far (each one cost another read-merge-write round); a metric, not a limit."""
        self.held = 0
        """Writes an index write block refused so far (those a migration held went again, ades.store.blocks); a
        metric."""

    # --- create / read -----------------------------------------------------------------------------------
    def create(self, jobs: Sequence[Job], *, refresh: bool = False) -> list[Exception | None]:
        """Index new jobs as `submitted`, never overwriting one (a taken id is JobExists); per job None (stored),
        JobExists or StoreUnavailable. One bulk request per CREATE_CHUNK jobs or ADES_ES_BULK_MAX_BYTES, whichever
        comes first (a larger job goes alone), over the store's own connection (ades.store.bulk); with `refresh`,
        searches see them on return."""
        results: list[Exception | None] = [None] * len(jobs)
        pending = list(range(len(jobs)))
        held = HeldWrites(self.client)
        while pending:
            again: list[int] = []
            indexes: set[str] = set()
            done = 0
            for chunk, body in self._chunks([jobs[i] for i in pending]):
                for i, result in zip(pending[done:done + len(chunk)], self._create_chunk(chunk, body, refresh),
                                     strict=True):
                    results[i] = result
                    if isinstance(result, _Held):
                        self.held += 1
                        again.append(i)
                        indexes.add(result.index)
                done += len(chunk)
            pending = again if again and held.again(indexes) else []
        return results

    def _chunks(self, jobs: Sequence[Job]) -> Iterator[tuple[list[Job], bytes]]:
        # by bytes too: jobs of up to ADES_MAX_BODY_BYTES each, submitted together, made one request past the node's
        # http.max_content_length (100 MB), and ES refused the whole batch
        limit = self.settings.es_bulk_max_bytes
        chunk: list[Job] = []
        texts: list[str] = []
        size = 0
        for job in jobs:
            text = ndjson_text(({"create": {"_index": self.index, "_id": job.id}}, job.to_document()))
            if chunk and (len(chunk) >= CREATE_CHUNK or size + len(text) > limit):
                yield chunk, "".join(texts).encode()
                chunk, texts, size = [], [], 0
            chunk.append(job)
            texts.append(text)
            size += len(text)
        if chunk:
            yield chunk, "".join(texts).encode()

    def _create_chunk(self, jobs: Sequence[Job], body: bytes, refresh: bool) -> list[Exception | None]:
        try:
            # only what is read back: the full answer has ~10 fields per job, and parsing it was a measurable share
            answer = self._connection().bulk(body, refresh="true" if refresh else "false",
                                             filter_path="items.*.status,items.*.error")
        except StoreUnavailable as err:
            failure = StoreUnavailable(f"could not store jobs: {err}")
            return [failure for _ in jobs]
        results: list[Exception | None] = []
        for job, item in zip(jobs, answer.body["items"], strict=True):
            outcome = item["create"]
            if outcome.get("status", 500) < 300:
                results.append(None)
            elif outcome["status"] == 409 and answer.resent:
                results.append(None)  # job ids are random: the send whose answer was lost stored it
            elif outcome["status"] == 409:
                results.append(JobExists(job.id))
            elif (index := blocked_index(outcome.get("error"))) is not None:
                results.append(_Held(index, f"could not store job {job.id}: {outcome.get('error')}"))
            else:
                results.append(StoreUnavailable(f"could not store job {job.id}: {outcome.get('error')}"))
        return results

    def _connection(self) -> BulkConnection:
        if self._bulk is None:
            with self._bulk_lock:  # two first callers must share one connection (it serializes their requests)
                if self._bulk is None:
                    self._bulk = BulkConnection.from_settings(self.settings)
        return self._bulk

    def close(self) -> None:
        """Close the bulk connection of `create` (the elasticsearch-py client is its owner's to close)."""
        if self._bulk is not None:
            self._bulk.close()

    def get(self, job_id: str) -> dict[str, Any]:
        try:
            return self.client.get(index=self.index, id=job_id)["_source"]
        except NotFoundError:
            raise JobNotFound(job_id) from None
        except (TransportError, ApiError) as err:
            raise StoreUnavailable(f"could not read job {job_id}: {err}") from err

    def statuses(self, job_ids: Sequence[str]) -> dict[str, str | None]:
        """Stored status of each job (None: no such job), in one realtime mget."""
        return {i: d["status"] if d else None for i, d in self.heads(job_ids).items()}

    def heads(self, job_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """`status` and `user-id` of each job (None: no such job), in one realtime mget."""
        if not job_ids:
            return {}
        try:
            response = self.client.mget(index=self.index, ids=list(job_ids), source_includes=["status", "user-id"])
        except (TransportError, ApiError) as err:
            raise StoreUnavailable(f"could not read jobs: {err}") from err
        failed = [d for d in response["docs"] if "error" in d]
        if failed:
            # a document mget could not read (a shard not ready, an alias over several indexes) is not "no such
            # job": a dependency taken for missing would fail the job that waits on it
            raise StoreUnavailable(f"could not read job {failed[0]['_id']}: {failed[0]['error']}")
        return {d["_id"]: d["_source"] if d.get("found") else None for d in response["docs"]}

    def count(self, statuses: Sequence[Status], *, user_id: str | None = None) -> int:
        """How many jobs (of `user_id`, if given) have one of these statuses (as of the last refresh)."""
        query: dict[str, Any] = {"terms": {"status": [s.value for s in statuses]}}
        if user_id is not None:
            query = {"bool": {"filter": [query, {"term": {"user-id": user_id}}]}}
        try:
            response = self.client.count(index=self.index, query=query)
        except (TransportError, ApiError) as err:
            raise StoreUnavailable(f"could not count jobs: {err}") from err
        return int(response["count"])

    def available(self) -> bool:
        """Whether the jobs index can be read and written right now (one quick call, no retries).

        Not merely whether the node answers: a node just restarted answers while its shards are still recovering,
        and reads of their documents fail until then (red health). A missing index answers 408: not available."""
        try:
            health = self.client.options(request_timeout=2, max_retries=0).cluster.health(index=self.index,
                                                                                           timeout="1s")
        except Exception:  # any failure means "not now"; callers only decide whether to wait
            return False
        return health.get("status") in ("green", "yellow")

    def refresh(self) -> None:
        self.client.indices.refresh(index=self.index)

    # --- search ------------------------------------------------------------------------------------------
    def search(self, query: JobQuery) -> JobPage:
        body = build_search(query, self.settings.jobs_track_total_hits)
        try:
            res = self.client.search(index=self.index, **body)
        except (TransportError, ApiError) as err:
            raise StoreUnavailable(f"could not search jobs: {err}") from err
        hits = res["hits"]["hits"]
        total = res["hits"]["total"]
        next_after = hits[-1]["sort"] if len(hits) == query.size else None
        return JobPage(
            jobs=[h["_source"] for h in hits],
            total=total["value"],
            total_is_exact=total["relation"] == "eq",
            next_after=next_after,
        )

    # --- status updates ----------------------------------------------------------------------------------
    def apply(self, update: StatusUpdate) -> UpdateResult:
        return self.apply_many([update])[0]

    def apply_many(self, updates: Sequence[StatusUpdate]) -> list[UpdateResult]:
        """Merge a batch of updates: one `mget` and one `bulk` per round; conflicted jobs go another round.

        Results come back in the order of `updates`. Updates of the same job are folded in order in memory,
        so a batch with 100 updates of one job costs one write.
        """
        results: list[UpdateResult | None] = [None] * len(updates)
        pending = list(range(len(updates)))
        held = HeldWrites(self.client)
        conflict_rounds = 0
        while pending:
            left = self._apply_round(updates, pending, results)
            if left.held and not held.again(left.held_indexes):
                left.held = []  # their results say why: the block's reason
            if left.conflicted:
                conflict_rounds += 1
                if conflict_rounds > self.settings.conflict_retries:
                    for i in left.conflicted:
                        u = updates[i]
                        results[i] = UpdateResult(u.event_id, u.job_id, Outcome.FAILED,
                                                  "write conflicts persisted; retry later")
                    left.conflicted = []
                else:
                    backoff(conflict_rounds, _BACKOFF_BASE, _BACKOFF_CAP)
            pending = sorted(left.conflicted + left.held)
        return [r for r in results if r is not None]

    def _apply_round(
        self, updates: Sequence[StatusUpdate], pending: list[int], results: list[UpdateResult | None]
    ) -> _Round:
        """One read-merge-write round over `pending`; returns what is left: updates that lost a write race, and
        updates a write block held (their results hold the block's reason, in case they are not sent again)."""
        groups: dict[str, list[int]] = {}
        for i in pending:
            groups.setdefault(updates[i].job_id, []).append(i)
        try:
            current, unreadable = self._mget(groups)
        except StoreUnavailable as err:
            for i in pending:
                results[i] = UpdateResult(updates[i].event_id, updates[i].job_id, Outcome.FAILED, str(err))
            return _Round()

        actions: list[dict[str, Any]] = []
        staged: dict[str, list[tuple[int, UpdateResult]]] = {}
        for job_id, indexes in groups.items():
            found = current.get(job_id)
            if found is None:
                reason = unreadable.get(job_id, f"unknown job {job_id}")
                for i in indexes:
                    results[i] = UpdateResult(updates[i].event_id, job_id, Outcome.FAILED, reason)
                continue
            doc, changed, outcomes = found.source, False, []
            for i in indexes:
                outcome, doc_after = merge(doc, updates[i])
                if outcome is Outcome.APPLIED:
                    doc, changed = doc_after, True
                outcomes.append((i, UpdateResult(updates[i].event_id, job_id, outcome)))
            if not changed:
                for i, result in outcomes:
                    results[i] = result
                continue
            staged[job_id] = outcomes
            actions.append(
                {"index": {"_index": found.index, "_id": job_id, "if_seq_no": found.seq_no,
                           "if_primary_term": found.primary_term}}
            )
            actions.append(doc)
        if not actions:
            return _Round()
        return self._bulk_write(actions, staged, updates, results)

    def _bulk_write(
        self,
        actions: list[dict[str, Any]],
        staged: dict[str, list[tuple[int, UpdateResult]]],
        updates: Sequence[StatusUpdate],
        results: list[UpdateResult | None],
    ) -> _Round:
        left = _Round()
        try:
            res = self.client.bulk(operations=actions)
        except (TransportError, ApiError) as err:
            for outcomes in staged.values():
                for i, _ in outcomes:
                    results[i] = UpdateResult(updates[i].event_id, updates[i].job_id, Outcome.FAILED,
                                              f"store unavailable: {err}")
            return left
        for item in res["items"]:
            op = item["index"]
            outcomes = staged[op["_id"]]
            status = op.get("status", 500)
            if status in (200, 201):
                for i, result in outcomes:
                    results[i] = result
                continue
            if status == 409:
                self.conflicts += 1
                left.conflicted.extend(i for i, _ in outcomes)
                continue
            reason = str(op.get("error", {}).get("reason", f"HTTP {status}"))
            for i, _ in outcomes:
                results[i] = UpdateResult(updates[i].event_id, updates[i].job_id, Outcome.FAILED, reason)
            if (index := blocked_index(op.get("error"))) is not None:
                self.held += 1
                left.held.extend(i for i, _ in outcomes)
                left.held_indexes.add(index)
        return left

    def _mget(self, job_ids: Iterable[str]) -> tuple[dict[str, _Current], dict[str, str]]:
        """The jobs found, and the reason for each job whose shard could not answer. mget reports such a job with
        an `error` instead of `found` (e.g. no_shard_available_action_exception while a restarted node recovers):
        the store is away for it, which must not read as an unknown job."""
        try:
            res = self.client.mget(index=self.index, ids=list(job_ids))
        except (TransportError, ApiError) as err:
            raise StoreUnavailable(f"store unavailable: {err}") from err
        found: dict[str, _Current] = {}
        unreadable: dict[str, str] = {}
        for d in res["docs"]:
            if d.get("found"):
                found[d["_id"]] = _Current(d["_source"], d["_seq_no"], d["_primary_term"], d["_index"])
            elif "error" in d:
                error = d["error"] if isinstance(d["error"], dict) else {"reason": str(d["error"])}
                unreadable[d["_id"]] = f"store unavailable: {error.get('type', 'error')}: {error.get('reason')}"
        return found, unreadable


def build_search(query: JobQuery, track_total_hits: int = 10_000) -> dict[str, Any]:
    """The ES search body for a JobQuery (a pure function, tested on its own); totals exact up to
    `track_total_hits` unless the query asks for an exact one."""
    filters: list[dict[str, Any]] = []
    if query.statuses:
        filters.append({"terms": {"status": [s.value for s in query.statuses]}})
    if query.process_id:
        filters.append({"term": {"process-id": query.process_id}})
    if query.parent_id:
        filters.append({"term": {"parent-id": query.parent_id}})
    if query.user_id:
        filters.append({"term": {"user-id": query.user_id}})
    filters.extend({"term": {"labels": label}} for label in query.labels_all)
    if query.labels_any:
        filters.append({"terms": {"labels": query.labels_any}})
    for field, lo, hi in (
        ("created", query.created_from, query.created_to),
        ("updated", query.updated_from, query.updated_to),
    ):
        if lo or hi:
            bounds = {}
            if lo:
                bounds["gte"] = iso(lo)
            if hi:
                bounds["lte"] = iso(hi)
            filters.append({"range": {field: bounds}})
    if query.min_duration is not None or query.max_duration is not None:
        bounds = {}
        if query.min_duration is not None:
            bounds["gte"] = query.min_duration
        if query.max_duration is not None:
            bounds["lte"] = query.max_duration
        filters.append({"range": {"duration": bounds}})
    order = "desc" if query.descending else "asc"
    sort: list[dict[str, Any]] = [{query.sort: {"order": order, "missing": "_last"}}]
    if query.sort != "id":
        sort.append({"id": {"order": order}})
    body: dict[str, Any] = {
        "query": {"bool": {"filter": filters}} if filters else {"match_all": {}},
        "sort": sort,
        "size": query.size,
        "track_total_hits": True if query.exact_total else track_total_hits,
    }
    if query.search_after is not None:
        body["search_after"] = query.search_after
    return body
