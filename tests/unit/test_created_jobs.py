"""The documents of a job made without running it (ades.jobs.created): what an edit and a start change."""

from __future__ import annotations

from datetime import UTC, datetime

from ades.jobs.created import created_document, edited_document, started_document
from ades.models import Job

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LATER = datetime(2026, 1, 2, tzinfo=UTC)


def test_a_created_document_is_held_by_no_host_and_says_how_to_start_it() -> None:
    doc = created_document(Job(id="job-1", process_id="echo", created=T0, host="node-a"))
    assert doc["status"] == "created" and doc["host"] is None
    assert "POST /jobs/job-1/results" in doc["message"]


def test_an_edit_changes_the_request_only() -> None:
    doc = {**created_document(Job(id="job-1", process_id="echo", created=T0, user_id="alice")),
           "applied-events": ["e1"]}
    edit = Job(id="other", process_id="other", inputs={"message": "new"}, labels=["b"], depends_on=["job-0"],
               delay=3, user_id="bob", results_request={"response": "raw", "outputs": None})
    after = edited_document(doc, edit, LATER)
    assert (after["inputs"], after["labels"], after["depends-on"], after["delay"]) == ({"message": "new"}, ["b"],
                                                                                       ["job-0"], 3)
    assert after["results-request"] == {"response": "raw", "outputs": None}
    assert (after["id"], after["process-id"], after["user-id"], after["status"]) == ("job-1", "echo", "alice",
                                                                                     "created")
    assert after["applied-events"] == ["e1"] and after["updated"] == "2026-01-02T00:00:00.000000Z"
    assert "subscriber" not in after


def test_an_edit_whose_request_sets_no_subscriber_drops_the_old_one() -> None:
    """A field the document holds only when set (OGC callbacks' `subscriber`) goes when the edited request has
    none: the edit replaces the whole request (ades.api.job_management gives it the old one unless changed)."""
    doc = {**created_document(Job(id="job-1", process_id="echo", created=T0)),
           "subscriber": {"successUri": "https://example.org/done"}}
    assert "subscriber" not in edited_document(doc, Job(process_id="echo"), LATER)


def test_a_start_makes_it_submitted_for_this_node_and_keeps_the_rest() -> None:
    doc = edited_document(created_document(Job(id="job-1", process_id="echo", created=T0)),
                          Job(process_id="echo", inputs={"message": "m"}), LATER)
    started = started_document(doc, "waiting 5 s before it starts", "node-b", LATER)
    assert (started["status"], started["host"], started["message"]) == ("submitted", "node-b",
                                                                        "waiting 5 s before it starts")
    assert {k: v for k, v in started.items() if k not in ("status", "host", "message")} == \
        {k: v for k, v in doc.items() if k not in ("status", "host", "message")}
