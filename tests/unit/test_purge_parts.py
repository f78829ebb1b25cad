"""The pure parts of retention: durations as operators write them, which jobs a purge selects (the ES query), the
purge filter refusing unfinished statuses, the retention settings, and `ades jobs purge` refusing bad arguments
before it touches anything."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from ades.cli import main
from ades.config import Settings
from ades.durations import format_duration, parse_duration
from ades.status import Status
from ades.store.purge import FINISHED, PURGEABLE, PurgeFilter, build_purge_query

NOW = datetime(2025, 3, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "seconds"), [
    ("30d", 30 * 86_400), ("12h", 12 * 3600), ("90m", 5400), ("45s", 45), ("2w", 14 * 86_400),
    ("1d12h", 36 * 3600), ("1.5h", 5400), (" 7D ", 7 * 86_400), ("0s", 0), ("3600", 3600), ("1.5", 1.5), (60, 60),
])
def test_durations_read_as_operators_write_them(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30x", "30", "d", "", "-1d", "1.d", "30 d", "1d-2h", "inf", "nan", "thirty days"])
def test_a_bad_duration_says_what_to_write(text: str) -> None:
    if text == "30":  # a plain number is seconds: fine
        assert parse_duration(text) == 30
        return
    with pytest.raises(ValueError, match="is not a duration") as caught:
        parse_duration(text)
    assert "30d" in str(caught.value)  # the example of what to write


@pytest.mark.parametrize("seconds", [0, 1.5, 45, 3600, 5400, 30 * 86_400, 36 * 3600 + 61])
def test_a_formatted_duration_reads_back(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
    assert format_duration(30 * 86_400) == "30d"


def test_the_query_selects_old_finished_jobs_by_end_or_by_creation_without_an_end() -> None:
    query = build_purge_query(PurgeFilter(older_than=30 * 86_400), NOW)
    statuses, age = query["bool"]["filter"]
    assert statuses == {"terms": {"status": ["created", "succeeded", "failed", "dismissed"]}}
    cutoff = {"lt": "2025-03-01T12:00:00.000000Z"}
    assert age == {"bool": {"minimum_should_match": 1, "should": [
        {"range": {"stop-time": cutoff}},
        {"bool": {"must_not": [{"exists": {"field": "stop-time"}}], "filter": [{"range": {"created": cutoff}}]}},
    ]}}


def test_the_query_narrows_by_status_and_by_every_label() -> None:
    purge = PurgeFilter(older_than=3600, statuses=["failed", "successful"], labels=["a", "b"])
    filters = build_purge_query(purge, NOW)["bool"]["filter"]
    assert filters[0] == {"terms": {"status": ["failed", "succeeded"]}}
    assert filters[2:] == [{"term": {"labels": "a"}}, {"term": {"labels": "b"}}]
    assert filters[1]["bool"]["should"][0] == {"range": {"stop-time": {"lt": "2025-03-31T11:00:00.000000Z"}}}


@pytest.mark.parametrize("status", ["running", "submitted", "accepted", Status.RUNNING])
def test_the_filter_never_selects_unfinished_jobs(status: str) -> None:
    with pytest.raises(ValidationError, match="never purged"):
        PurgeFilter(older_than=0, statuses=[status])
    assert set(PurgeFilter(older_than=0).statuses) == set(PURGEABLE) == {Status.CREATED, *FINISHED}


def test_created_jobs_never_started_are_purged_by_age_as_jobs_never_ended() -> None:
    """A job made by POST /jobs and never started (OGC API Processes Part 4) has no end: its creation counts."""
    purge = PurgeFilter(older_than=3600, statuses=["created"])
    filters = build_purge_query(purge, NOW)["bool"]["filter"]
    assert filters[0] == {"terms": {"status": ["created"]}}


def test_retention_settings_take_durations_and_are_off_by_default() -> None:
    assert Settings().retention is None
    assert Settings(retention="").retention is None
    settings = Settings(retention="30d", retention_interval="1h30m")
    assert parse_duration(settings.retention) == 30 * 86_400
    assert parse_duration(settings.retention_interval) == 5400
    for bad in ({"retention": "30 days"}, {"retention_interval": "0s"}, {"retention_interval": "soon"}):
        with pytest.raises(ValidationError):
            Settings(**bad)


@pytest.mark.parametrize(("arguments", "said"), [
    (["--older-than", "30x"], "argument --older-than: '30x' is not a duration"),
    (["--older-than", "-3d"], "argument --older-than"),
    ([], "the following arguments are required: --older-than"),
    (["--older-than", "30d", "--status", "running"], "'running' jobs are never purged"),
    (["--older-than", "30d", "--status", "succeeded,lost"], "'lost' is not a job status"),
])
def test_a_bad_purge_command_is_a_usage_error_naming_the_argument(
        arguments: list[str], said: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # nowhere to reach: a command that got as far as the store would fail differently
    monkeypatch.setenv("ADES_ES_URL", "http://127.0.0.1:9")
    with pytest.raises(SystemExit) as exited:
        main(["jobs", "purge", *arguments])
    assert exited.value.code == 2
    assert said in capsys.readouterr().err
