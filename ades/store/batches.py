"""Batch reads on the `jobs` index: a batch's counts, the batches not ended, the children waiting to be fed.

A batch's state is read, never written per child: its leaves (the children that run, at any depth) carry the batch's
id in `ancestors`, so one search with a `terms` aggregation on `status` counts them, however deep the nesting. A
child that is itself a batch carries `batch-size` and is left out of the counts: its own leaves are counted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import ApiError, Elasticsearch, TransportError

from ades.status import Status
from ades.store.client import StoreUnavailable

FAILED_LISTED = 20
"""Failed children a batch's status document lists (by index in the batch); the count says how many there are."""
UNENDED = [Status.SUBMITTED.value, Status.RUNNING.value]
_IS_BATCH = {"exists": {"field": "batch-size"}}


@dataclass(frozen=True)
class BatchCounts:
    """The leaves of a batch by status, as of the last refresh; `total` from the batch's own document (its leaves
    indexed so far may not all be searchable yet: they count as submitted)."""

    total: int | None
    counts: dict[str, int]
    failed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def seen(self) -> int:
        return sum(self.counts.values())

    @property
    def ended(self) -> int:
        return sum(n for status, n in self.counts.items() if Status(status).terminal)

    @property
    def all_counts(self) -> dict[str, int]:
        """Every status word a batch's job can have (never `created`: a batch's jobs run at once) with its count;
        leaves not searchable yet count as submitted, so they sum to total."""
        counts = {status.value: self.counts.get(status.value, 0) for status in Status if status is not Status.CREATED}
        if self.total is not None and self.total > self.seen:
            counts[Status.SUBMITTED.value] += self.total - self.seen
        return counts

    @property
    def progress(self) -> int:
        """Ended leaves out of all, in percent (floored, so 100 means every leaf ended)."""
        total = self.total if self.total is not None else self.seen
        return 100 * self.ended // total if total else 0

    @property
    def ended_all(self) -> bool:
        return self.total is not None and self.ended >= self.total

    @property
    def outcome(self) -> Status:
        """What the batch ends as once every leaf ended: succeeded only if every leaf did."""
        return Status.SUCCEEDED if self.counts.get(Status.SUCCEEDED.value, 0) >= (self.total or 0) else Status.FAILED


def _search(client: Elasticsearch, index: str, **body: Any) -> dict[str, Any]:
    try:
        return client.search(index=index, **body)
    except (TransportError, ApiError) as err:
        raise StoreUnavailable(f"could not read batches: {err}") from err


def leaves_query(batch_id: str) -> dict[str, Any]:
    return {"bool": {"filter": [{"term": {"ancestors": batch_id}}], "must_not": [_IS_BATCH]}}


def counts_body(batch_id: str, listed: int = FAILED_LISTED) -> dict[str, Any]:
    """One search: the leaves by status, and the first `listed` failed ones (by index) with their reasons."""
    return {
        "size": 0,
        "track_total_hits": False,
        "query": leaves_query(batch_id),
        "aggs": {
            "status": {"terms": {"field": "status", "size": 10}},
            "failed": {"filter": {"term": {"status": Status.FAILED.value}},
                       "aggs": {"first": {"top_hits": {"size": listed, "sort": [{"batch-index": "asc"}],
                                                       "_source": ["id", "message", "batch-index", "parent-id"]}}}},
        },
    }


def counts_of(answer: dict[str, Any], total: int | None) -> BatchCounts:
    aggs = answer["aggregations"]
    counts = {b["key"]: b["doc_count"] for b in aggs["status"]["buckets"]}
    failed = [{"jobID": h["_source"]["id"], "index": h["_source"].get("batch-index"),
               "parentID": h["_source"].get("parent-id"), "reason": h["_source"].get("message") or ""}
              for h in aggs["failed"]["first"]["hits"]["hits"]]
    return BatchCounts(total=total, counts=counts, failed=failed)


def batch_counts(client: Elasticsearch, index: str, doc: dict[str, Any]) -> BatchCounts:
    """The counts of the batch whose document is `doc`."""
    return counts_of(_search(client, index, **counts_body(doc["id"])), doc.get("batch-leaves"))


def many_counts(client: Elasticsearch, index: str, docs: Sequence[dict[str, Any]]) -> list[BatchCounts]:
    """The counts of several batches in one `_msearch`."""
    if not docs:
        return []
    searches: list[dict[str, Any]] = []
    for doc in docs:
        searches.extend(({"index": index}, counts_body(doc["id"])))
    try:
        answers = client.msearch(searches=searches)["responses"]
    except (TransportError, ApiError) as err:
        raise StoreUnavailable(f"could not read batches: {err}") from err
    results = []
    for doc, answer in zip(docs, answers, strict=True):
        if "error" in answer:
            raise StoreUnavailable(f"could not count batch {doc['id']}: {answer['error']}")
        results.append(counts_of(answer, doc.get("batch-leaves")))
    return results


def open_batches(client: Elasticsearch, index: str, size: int = 500) -> list[dict[str, Any]]:
    """Batch documents not ended yet (oldest first)."""
    answer = _search(client, index, size=size, sort=[{"created": "asc"}, {"id": "asc"}],
                     query={"bool": {"filter": [_IS_BATCH, {"terms": {"status": UNENDED}}]}},
                     source_includes=["id", "status", "batch-size", "batch-leaves", "created"])
    return [h["_source"] for h in answer["hits"]["hits"]]


def waiting_leaves(client: Elasticsearch, index: str, host: str, skip: Sequence[str],
                   size: int) -> list[dict[str, Any]]:
    """Leaves accepted on `host` still `submitted`, oldest batch first, in batch order; `skip`: those fed already."""
    query = {"bool": {"filter": [{"exists": {"field": "parent-id"}}, {"term": {"host": host}},
                                 {"term": {"status": Status.SUBMITTED.value}}],
                      "must_not": [_IS_BATCH, {"ids": {"values": list(skip)}}]}}
    answer = _search(client, index, size=size, query=query,
                     sort=[{"created": "asc"}, {"parent-id": "asc"}, {"batch-index": "asc"}])
    return [h["_source"] for h in answer["hits"]["hits"]]


def unended_under(client: Elasticsearch, index: str, batch_id: str, page: int = 5000) -> Iterator[list[str]]:
    """The ids of every job under the batch (children, nested batches, their leaves) not ended, a page at a time."""
    after: list[Any] | None = None
    query = {"bool": {"filter": [{"term": {"ancestors": batch_id}}, {"terms": {"status": UNENDED}}]}}
    while True:
        extra = {"search_after": after} if after is not None else {}
        answer = _search(client, index, size=page, query=query, sort=[{"id": "asc"}], source=False,
                         track_total_hits=False, **extra)
        hits = answer["hits"]["hits"]
        if not hits:
            return
        yield [h["_id"] for h in hits]
        if len(hits) < page:
            return
        after = hits[-1]["sort"]


def failed_leaves(client: Elasticsearch, index: str, batch_id: str, page: int = 5000) -> Iterator[dict[str, Any]]:
    """The failed leaves under the batch (inputs, labels, place), in batch order (parent, then index)."""
    query = leaves_query(batch_id)
    query["bool"]["filter"].append({"term": {"status": Status.FAILED.value}})
    after: list[Any] | None = None
    while True:
        extra = {"search_after": after} if after is not None else {}
        answer = _search(client, index, size=page, query=query, track_total_hits=False,
                         sort=[{"parent-id": "asc"}, {"batch-index": "asc"}, {"id": "asc"}],
                         source_includes=["id", "inputs", "labels", "parent-id", "batch-index"], **extra)
        hits = answer["hits"]["hits"]
        yield from (h["_source"] for h in hits)
        if len(hits) < page:
            return
        after = hits[-1]["sort"]
