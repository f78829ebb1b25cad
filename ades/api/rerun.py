"""Running failed jobs again in one call: a batch's failed jobs (`POST /jobs/{id}/rerun`), or every failed job
matching the job list's filters (`POST /jobs/rerun?labels=...&processID=...`). Either makes a NEW batch with one
child per failed job (its inputs and labels), under the same process; the old jobs stay as they ended (a terminal
job never changes), and a batch that ended stays ended."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from ades.api.auth import current_principal, owner_filter
from ades.api.batch import plan_rerun
from ades.api.context import AdesContext, ctx
from ades.api.errors import problem
from ades.api.jobs import parse_job_query, visible_job
from ades.api.views import status_info
from ades.status import Status
from ades.store import ProcessNotFound
from ades.store.batches import failed_leaves

bp = Blueprint("ades_rerun", __name__)
MAX_RERUN = 100_000
"""Failed jobs one call runs again at most (those past it stay for the next call)."""


@bp.post("/jobs/<job_id>/rerun")
def rerun_batch(job_id: str) -> Response:
    """201 with the new batch's status; 409 when the job is no batch, has not ended, or has no failed job."""
    c = ctx()
    doc = visible_job(c, job_id)
    if "batch-size" not in doc:
        raise problem(409, "not-a-batch", f"job {job_id} is not a batch: only a batch's failed jobs run again",
                      "Not a batch")
    if not Status(doc["status"]).terminal:
        raise problem(409, "batch-not-ended", f"batch {job_id} is {Status(doc['status']).ogc}: its failed jobs run "
                      "again once it has ended", "Batch not ended")
    c.job_store.refresh()
    failed = list(failed_leaves(c.job_store.client, c.job_store.index, job_id))
    if not failed:
        raise problem(409, "nothing-failed", f"batch {job_id} has no failed job", "Nothing failed")
    return _rerun(c, doc, failed, f"batch {job_id}")


@bp.post("/jobs/rerun")
def rerun_matching() -> Response:
    """The failed jobs the query selects (the filters of GET /jobs: labels, processID, datetime, ...; the caller's
    own jobs only) run again as one batch; they must be of one process (processID says which when they are not)."""
    c = ctx()
    query = parse_job_query(c.settings).model_copy(update={"user_id": owner_filter(), "statuses": [Status.FAILED],
                                                           "size": 1000, "descending": False})
    c.job_store.refresh()
    failed: list[dict[str, Any]] = []
    while len(failed) < MAX_RERUN:
        page = c.job_store.search(query)
        failed.extend(doc for doc in page.jobs if "batch-size" not in doc)  # a batch never runs itself
        if page.next_after is None:
            break
        query = query.model_copy(update={"search_after": page.next_after})
    if not failed:
        raise problem(409, "nothing-failed", "no failed job matches", "Nothing failed")
    refs = sorted({f"{d['process-id']}:{d.get('process-version')}" for d in failed})
    if len(refs) > 1:
        raise problem(400, "invalid-parameter", f"processID: the failed jobs that match are of {len(refs)} processes "
                      f"({', '.join(refs[:5])}): give one")
    first = failed[0]
    template = {"process-id": first["process-id"],
                "process-version": first.get("process-version"), "inputs": {}, "labels": [],
                "results-request": first.get("results-request")}
    return _rerun(c, template, failed[:MAX_RERUN], "the matching failed jobs")


def _rerun(c: AdesContext, doc: dict[str, Any], failed: list[dict[str, Any]], what: str) -> Response:
    ref = f"{doc['process-id']}:{doc.get('process-version')}"
    try:
        process = c.process_store.get(ref)
    except ProcessNotFound:
        raise problem(409, "no-such-process", f"process {ref} of {what} is no longer deployed",
                      "No such process") from None
    user = current_principal().user
    plan = plan_rerun(c, c.package_of(process), doc, failed, user, what)
    with c.jobs.quota.hold(user):
        c.jobs.submit_batch(plan.jobs)
    response = jsonify(status_info(plan.parent.to_document(), c.base_url))
    response.status_code = 201
    response.headers["Location"] = c.url(f"/jobs/{plan.parent.id}")
    return response
