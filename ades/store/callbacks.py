"""The `jobs` index as the notifier (ades.jobs.notifier) sees it: jobs whose subscriber is due to be told something,
and conditional writes of their delivery record.

Every write is conditional on the `_seq_no`/`_primary_term` the job was read with and goes to the index it was read
from (as ades.store.jobs writes status): a node's claim fails when another node claimed first or a status writer
changed the job meanwhile, and a delivery record never overwrites a newer status.
"""

from __future__ import annotations

from typing import Any

from elasticsearch import ApiError, ConflictError, Elasticsearch, NotFoundError, TransportError

from ades.config import Settings
from ades.store.client import StoreUnavailable
from ades.store.job_edits import Versioned

DUE_QUERY = {"range": {"callback-due": {"lte": "now"}}}
"""Jobs due now. Few or no documents carry the field, so with nothing pending the search finds an empty range."""


class CallbackStore:
    def __init__(self, client: Elasticsearch, settings: Settings) -> None:
        self.client = client
        self.index = settings.jobs_alias

    def due(self, size: int) -> list[Versioned]:
        """Up to `size` jobs due now, the longest due first (as of the last refresh)."""
        try:
            answer = self.client.search(index=self.index, query=DUE_QUERY, size=size, seq_no_primary_term=True,
                                        sort=[{"callback-due": "asc"}], track_total_hits=False)
        except (TransportError, ApiError) as err:
            raise StoreUnavailable(f"could not search jobs due a callback: {err}") from err
        return [Versioned(h["_source"], h["_seq_no"], h["_primary_term"], h["_index"]) for h in answer["hits"]["hits"]]

    def get(self, job_id: str) -> Versioned | None:
        """The job as it is now (a realtime get), or None when it is gone."""
        try:
            found = self.client.get(index=self.index, id=job_id)
        except NotFoundError:
            return None
        except (TransportError, ApiError) as err:
            raise StoreUnavailable(f"could not read job {job_id}: {err}") from err
        return Versioned(found["_source"], found["_seq_no"], found["_primary_term"], found["_index"])

    def write(self, read: Versioned, doc: dict[str, Any]) -> Versioned | None:
        """`doc` in place of the version `read`, or None when the job changed since (or is gone)."""
        try:
            answer = self.client.index(index=read.index, id=read.source["id"], document=doc, if_seq_no=read.seq_no,
                                       if_primary_term=read.primary_term, refresh=False)
        except (ConflictError, NotFoundError):
            return None
        except (TransportError, ApiError) as err:
            raise StoreUnavailable(f"could not write job {read.source['id']}: {err}") from err
        return Versioned(doc, answer["_seq_no"], answer["_primary_term"], read.index)
