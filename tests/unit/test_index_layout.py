"""Pure parts of the index layout and its migration: names of index generations, the layout a mapping names, which
refusals are a migration's held writes, and that the sorted jobs index sorts as the job listing does."""

from __future__ import annotations

import pytest

from ades.models import JobQuery
from ades.store.blocks import blocked_index
from ades.store.jobs import build_search
from ades.store.setup import LAYOUTS, family_of, generation, mapping, physical_index, schema_layout


def test_generations_are_named_alias_dash_v_number() -> None:
    assert generation("t-1-jobs", "t-1-jobs-v12") == 12
    assert generation("jobs", "jobs-v1") == 1
    for other in ("t-1-jobs-v", "t-1-jobs-v1x", "t-1-jobsv1", "x-t-1-jobs-v1", "t-1-processes-v1"):
        assert generation("t-1-jobs", other) is None, other


def test_a_fresh_install_creates_the_layout_of_the_template() -> None:
    assert physical_index("t-1-jobs") == f"t-1-jobs-v{LAYOUTS['jobs']}" == "t-1-jobs-v3"
    assert physical_index("processes") == "processes-v1"
    assert family_of("a.b-processes") == "processes"
    with pytest.raises(ValueError):
        family_of("t-1-other")
    for family, layout in LAYOUTS.items():
        assert schema_layout(mapping(family)["mappings"]["_meta"]["schema"]) == layout


def test_the_layout_comes_from_the_mapping_schema_name() -> None:
    assert schema_layout("ades jobs v2") == 2
    assert schema_layout("ades jobs v1") == 1
    assert schema_layout(None) == 1
    assert schema_layout("ades jobs") == 1
    assert schema_layout("ades jobs vX") == 1


@pytest.mark.parametrize("reason", ["index [t-jobs-v1] blocked by: [FORBIDDEN/8/index write (api)];",
                                    "index [t-jobs-v1] blocked by: [FORBIDDEN/8/moving to block index write (api)];"])
def test_a_write_block_names_its_index(reason: str) -> None:
    error = {"type": "cluster_block_exception", "reason": reason}
    assert blocked_index(error) == "t-jobs-v1"  # a bulk item's error
    assert blocked_index({"error": {"root_cause": [error], **error}, "status": 403}) == "t-jobs-v1"  # an answer


@pytest.mark.parametrize("error", [
    {"type": "cluster_block_exception",
     "reason": "index [t-jobs-v1] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, "
               "index has read-only-allow-delete block];"},
    {"type": "version_conflict_engine_exception", "reason": "[x]: version conflict"},
    {"type": "cluster_block_exception", "reason": "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered];"},
    None, "a string", {"error": "a string"},
])
def test_other_refusals_are_not_held_writes(error: object) -> None:
    assert blocked_index(error) is None


def test_the_jobs_index_is_sorted_as_the_job_listing_sorts() -> None:
    """Only then can a first page stop early: the listing's sort must be a prefix of the index sort, field, order
    and missing value alike."""
    settings = mapping("jobs")["settings"]
    sort = build_search(JobQuery())["sort"]
    assert [next(iter(s)) for s in sort] == settings["index.sort.field"]
    assert [next(iter(s.values()))["order"] for s in sort] == settings["index.sort.order"]
    assert sort[0]["created"]["missing"] == "_last" and set(settings["index.sort.missing"]) == {"_last"}


def test_totals_are_counted_up_to_the_setting() -> None:
    assert build_search(JobQuery())["track_total_hits"] == 10_000
    assert build_search(JobQuery(), 500)["track_total_hits"] == 500
    assert build_search(JobQuery(exact_total=True), 500)["track_total_hits"] is True
