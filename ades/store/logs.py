"""LogStore: jobs' logs in the `job-logs` index, so any node reads (and follows) the log of a job that runs on
another host's disk (ADES_LOG_STORE=elasticsearch).

A log is stored as chunks: one document per chunk, id `<job id>:<offset>` (the bytes of the log before it), so a
chunk shipped twice (a retry after a timeout) is the same document, and reading a log is a search for its job's
chunks in offset order. The host that runs the job writes the chunks (ades.jobs.logship); the last has `final: true`,
which tells a reader following the log that nothing more comes. Why Elasticsearch and not object storage: see
benchmarks/README.md ("A job's log from any node").
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from elasticsearch import ApiError, Elasticsearch, TransportError
from pydantic import BaseModel, ConfigDict, Field

from ades.config import Settings
from ades.models import iso, utcnow
from ades.store.client import StoreUnavailable

PAGE = 500
"""Chunks read per search."""
CHUNK_BYTES = 256 * 1024
"""The largest chunk a shipper stores (a second of a very chatty job)."""


class LogShipConfig(BaseModel):
    """Where the host running a job ships its log: it travels in the RunSpec to job processes and Dask workers."""

    model_config = ConfigDict(extra="forbid")

    es_url: str
    index_prefix: str = ""
    max_bytes: int = Field(default=16 * 1024 * 1024, ge=4096)

    @classmethod
    def from_settings(cls, settings: Settings) -> LogShipConfig | None:
        if settings.log_store != "elasticsearch":
            return None
        return cls(es_url=settings.elasticsearch_url, index_prefix=settings.index_prefix,
                   max_bytes=settings.log_ship_max_bytes)

    def settings(self) -> Settings:
        # only what the spec says counts, as for the event sink: a services.env in a job's folder must not redirect
        return Settings(_env_file=None, es_url=self.es_url, index_prefix=self.index_prefix,
                        log_store="elasticsearch", log_ship_max_bytes=self.max_bytes)


@dataclass
class LogRead:
    text: str
    next_offset: int
    """the offset after the last chunk read: where the next read starts"""
    final: bool
    """the last chunk (the job's end) was read: nothing more comes"""


class LogStore:
    def __init__(self, client: Elasticsearch, settings: Settings) -> None:
        self.client = client
        self.index = settings.logs_alias
        self.host = socket.gethostname()

    def append(self, job_id: str, offset: int, text: str, *, final: bool = False, refresh: bool = False) -> None:
        """Store one chunk; raises StoreUnavailable (the shipper tries again with the same offset)."""
        document = {"job-id": job_id, "offset": offset, "text": text, "final": final, "host": self.host,
                    "time": iso(utcnow())}
        try:
            self.client.index(index=self.index, id=f"{job_id}:{offset}", document=document,
                              refresh="true" if refresh else None)
        except (ApiError, TransportError) as err:
            raise StoreUnavailable(f"could not store a log chunk of job {job_id}: {err}") from err

    def read(self, job_id: str, offset: int = 0, max_chunks: int = PAGE) -> LogRead:
        """The job's log from byte `offset` on (chunks starting before it are cut), as far as it was shipped."""
        text: list[str] = []
        position, final, after = offset, False, None
        while True:
            hits = self._page(job_id, offset, after, min(PAGE, max_chunks))
            for hit in hits:
                source = hit["_source"]
                start, chunk = int(source["offset"]), str(source.get("text") or "")
                if start > position:
                    # a gap: a chunk not stored yet (shipped out of order after a retry): stop before it
                    return LogRead("".join(text), position, False)
                encoded = chunk.encode("utf-8")
                final = bool(source.get("final"))
                if start + len(encoded) <= position and not (final and start == position):
                    continue  # all before `offset`
                text.append(encoded[position - start:].decode("utf-8", errors="replace"))
                position = start + len(encoded)
            max_chunks -= len(hits)
            if len(hits) < PAGE or final or max_chunks <= 0:
                return LogRead("".join(text), position, final)
            after = hits[-1]["sort"]

    def _page(self, job_id: str, offset: int, after: list[Any] | None, size: int) -> list[dict[str, Any]]:
        # every chunk that ends after `offset`: the one holding it may start before
        query = {"bool": {"filter": [{"term": {"job-id": job_id}}]}}
        try:
            result = self.client.search(index=self.index, query=query, sort=[{"offset": "asc"}], size=size,
                                        search_after=after, track_total_hits=False,
                                        post_filter=None if offset == 0 else _ends_after(offset))
        except (ApiError, TransportError) as err:
            raise StoreUnavailable(f"could not read the log of job {job_id}: {err}") from err
        return list(result["hits"]["hits"])

    def delete(self, job_ids: Iterable[str]) -> int:
        """Remove the chunks of these jobs (retention); how many went. Without _delete_by_query: find, then bulk."""
        ids = list(job_ids)
        removed = 0
        try:
            for start in range(0, len(ids), 100):
                query = {"terms": {"job-id": ids[start:start + 100]}}
                after = None
                while True:  # a long job's log has many chunks: page through them, deleting each page
                    found = self.client.search(index=self.index, query=query, size=PAGE, source=False,
                                               sort=[{"job-id": "asc"}, {"offset": "asc"}], search_after=after,
                                               track_total_hits=False)["hits"]["hits"]
                    if not found:
                        break
                    self.client.bulk(operations=[{"delete": {"_index": h["_index"], "_id": h["_id"]}}
                                                 for h in found])
                    removed += len(found)
                    after = found[-1]["sort"]
        except (ApiError, TransportError) as err:
            raise StoreUnavailable(f"could not remove shipped logs: {err}") from err
        return removed


def whole_characters(data: bytes) -> int:
    """How many bytes of `data` hold whole UTF-8 characters: a character still being written is left out."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # the first byte of the last character (or ASCII)
            needed = 1 if byte < 0x80 else 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4
            return len(data) - back if needed > back else len(data)
    return len(data)


def _ends_after(offset: int) -> dict[str, Any]:
    # chunks are at most CHUNK_BYTES: one starting that far before `offset` may still hold it
    return {"range": {"offset": {"gt": offset - CHUNK_BYTES}}}
