"""Jobs made without running them (OGC API Processes Part 4, job management): `created`, edited, then started.

A created job is a document in the store and nothing else: no journal line, no folder, no place in any host's
table, no `host` (no node answers for it), so nothing that looks after unfinished jobs (reconciliation, the lost-job
sweep, admission and quotas, which count `submitted` and `running` jobs) ever sees it. Starting it turns it into a
submitted job like any other (ades.jobs.service.JobService.start); every edit and the start are conditional writes
of the document as read (ades.store.job_edits), so two of them never both win.

The documents are pure functions of what was read and of a Job the API validated as an execute request would be.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ades.models import Job, iso, utcnow
from ades.status import Status

EDITABLE = ("inputs", "labels", "depends-on", "delay", "message", "results-request")
"""What an edit of a created job may change: what its execute request said (ades.api.job_management)."""
EDITABLE_WHEN_SET = ("subscriber",)
"""Editable fields a job document holds only when its request set them (OGC callbacks' `subscriber`)."""


def created_message(job_id: str) -> str:
    return f"created: it runs once started (POST /jobs/{job_id}/results)"


def created_document(job: Job) -> dict[str, Any]:
    """The `jobs` document of a job made but not started."""
    doc = job.to_document()
    doc.update(status=Status.CREATED.value, host=None, message=created_message(job.id))
    return doc


def edited_document(doc: dict[str, Any], job: Job, now: datetime | None = None) -> dict[str, Any]:
    """`doc` (a created job) with what `job` (the edited request, validated) says of the editable fields."""
    edited = job.to_document()
    stamp = iso(now or utcnow())
    changed = {field: edited[field] for field in EDITABLE}
    changed["message"] = created_message(doc["id"])
    after = {**doc, **changed, "updated": max(stamp, doc.get("updated") or "")}
    for field in EDITABLE_WHEN_SET:
        if edited.get(field) is None:
            after.pop(field, None)
        else:
            after[field] = edited[field]
    return after


def started_document(doc: dict[str, Any], message: str | None, node: str,
                     now: datetime | None = None) -> dict[str, Any]:
    """`doc` (a created job) started: `submitted`, answered for by `node` (its lease id, ades.jobs.leases), saying
    what it waits for, if anything."""
    stamp = iso(now or utcnow())
    return {**doc, "status": Status.SUBMITTED.value, "host": node, "message": message,
            "updated": max(stamp, doc.get("updated") or "")}
