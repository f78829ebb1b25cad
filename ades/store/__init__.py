"""Elasticsearch access: client, index setup, the job store and the process store."""

from ades.store.client import StoreUnavailable, make_client
from ades.store.jobs import JobExists, JobNotFound, JobStore
from ades.store.processes import ProcessExists, ProcessNotFound, ProcessStore
from ades.store.setup import ensure_indexes

__all__ = [
    "JobExists",
    "JobNotFound",
    "JobStore",
    "ProcessExists",
    "ProcessNotFound",
    "ProcessStore",
    "StoreUnavailable",
    "ensure_indexes",
    "make_client",
]
