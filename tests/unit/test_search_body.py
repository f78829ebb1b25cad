from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from ades.models import JobQuery, StatusUpdate
from ades.status import Status
from ades.store.jobs import build_search


def test_empty_query_matches_all_sorted_newest_first_with_tiebreak():
    body = build_search(JobQuery())
    assert body["query"] == {"match_all": {}}
    assert body["sort"] == [{"created": {"order": "desc", "missing": "_last"}}, {"id": {"order": "desc"}}]


def test_labels_all_of_and_any_of():
    body = build_search(JobQuery(labels_all=["a", "b"], labels_any=["x", "y"]))
    filters = body["query"]["bool"]["filter"]
    assert {"term": {"labels": "a"}} in filters
    assert {"term": {"labels": "b"}} in filters
    assert {"terms": {"labels": ["x", "y"]}} in filters


def test_status_time_ranges_and_paging():
    q = JobQuery(
        statuses=[Status.RUNNING, Status.SUBMITTED],
        created_from=datetime(2026, 1, 1, tzinfo=UTC),
        updated_to=datetime(2026, 2, 1, tzinfo=UTC),
        min_duration=5,
        search_after=[1, "x"],
        size=50,
    )
    body = build_search(q)
    filters = body["query"]["bool"]["filter"]
    assert {"terms": {"status": ["running", "submitted"]}} in filters
    assert {"range": {"created": {"gte": "2026-01-01T00:00:00.000000Z"}}} in filters
    assert {"range": {"updated": {"lte": "2026-02-01T00:00:00.000000Z"}}} in filters
    assert {"range": {"duration": {"gte": 5}}} in filters
    assert body["search_after"] == [1, "x"]
    assert body["size"] == 50


def test_query_rejects_unknown_sort_field():
    with pytest.raises(ValidationError):
        JobQuery(sort="inputs")


@pytest.mark.parametrize(
    "payload",
    [
        {"job_id": "../etc", "status": "running"},
        {"job_id": "j1", "status": "finished"},
        {"job_id": "j1", "status": "running", "progress": 101},
        {"job_id": "j1", "status": "running", "timestamp": "2026-01-01T00:00:00"},
    ],
)
def test_status_update_rejects_bad_messages(payload):
    with pytest.raises(ValidationError):
        StatusUpdate.model_validate(payload)


def test_status_update_accepts_ogc_words_and_normalises_time():
    u = StatusUpdate.model_validate(
        {"job_id": "j1", "status": "successful", "timestamp": "2026-01-01T02:00:00+02:00"}
    )
    assert u.status is Status.SUCCEEDED
    assert u.timestamp == datetime(2026, 1, 1, tzinfo=UTC)
