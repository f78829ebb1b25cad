"""Writes of a whole job document that must not race (OGC API Processes Part 4: a `created` job is edited, then
started): read it with its version, write it back only if nobody wrote it since.

The version is Elasticsearch's `_seq_no`/`_primary_term` of the read; the write goes to the index the document was
read from (not through the alias), for the reason ades.store.jobs gives. A write that lost the race is told so
(`replace` answers False) and writes nothing: the caller reads again and decides again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from elasticsearch import ApiError, ConflictError, NotFoundError, TransportError

from ades.store.client import StoreUnavailable
from ades.store.jobs import JobExists, JobNotFound, JobStore


@dataclass(frozen=True)
class Versioned:
    """A job document as read, and the version a conditional write of it is checked against."""

    source: dict[str, Any]
    seq_no: int
    primary_term: int
    index: str


def read_versioned(store: JobStore, job_id: str) -> Versioned:
    """The job as stored now (a realtime get). Raises JobNotFound or StoreUnavailable."""
    try:
        found = store.client.get(index=store.index, id=job_id)
    except NotFoundError:
        raise JobNotFound(job_id) from None
    except (TransportError, ApiError) as err:
        raise StoreUnavailable(f"could not read job {job_id}: {err}") from err
    return Versioned(found["_source"], found["_seq_no"], found["_primary_term"], found["_index"])


def replace(store: JobStore, read: Versioned, document: dict[str, Any]) -> bool:
    """Write `document` over the job read as `read`, unless the job was written (or removed) since: then False and
    nothing written. Raises StoreUnavailable (a write block of a migration included: the caller answers 503)."""
    try:
        store.client.index(index=read.index, id=document["id"], document=document, if_seq_no=read.seq_no,
                           if_primary_term=read.primary_term)
    except ConflictError:
        return False
    except NotFoundError:  # its index is gone (a migration dropped it): the job is not where it was read
        return False
    except (TransportError, ApiError) as err:
        raise StoreUnavailable(f"could not write job {document['id']}: {err}") from err
    return True


def create_one(store: JobStore, document: dict[str, Any]) -> None:
    """Index a new job document as it is (its status included), never over an existing one. Raises
    StoreUnavailable; a taken id (job ids are random uuids) is JobExists."""
    try:
        store.client.create(index=store.index, id=document["id"], document=document)
    except ConflictError:
        raise JobExists(document["id"]) from None
    except (TransportError, ApiError) as err:
        raise StoreUnavailable(f"could not store job {document['id']}: {err}") from err
