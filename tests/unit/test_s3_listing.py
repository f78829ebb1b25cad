"""Which S3 prefixes a batch listing may name (ades.s3_listing): only those under an operator's allowed prefix."""

from __future__ import annotations

import pytest

from ades.s3_listing import ListingError, allowed, split_uri


def test_a_uri_splits_into_bucket_and_prefix() -> None:
    assert split_uri("s3://data/in/") == ("data", "in/")
    assert split_uri("s3://data") == ("data", "")


@pytest.mark.parametrize("uri", ["data/in/", "https://data/in/", "s3:///in/", "s3://data/in/../out/"])
def test_a_malformed_or_climbing_uri_is_refused(uri: str) -> None:
    with pytest.raises(ListingError):
        split_uri(uri)


@pytest.mark.parametrize(("uri", "expected"), [
    ("s3://data/in/", True),
    ("s3://data/in/2026/", True),
    ("s3://data/", False),  # above the allowed prefix
    ("s3://data/inbox/", False),  # a sibling that merely starts alike: the allowed prefix ends with /
    ("s3://results/in/", False),  # another bucket
    ("s3://whole/any/thing", True),
])
def test_only_prefixes_under_an_allowed_one_are_listed(uri: str, expected: bool) -> None:
    assert allowed(uri, ["s3://data/in/", "s3://whole/"]) is expected


def test_nothing_is_listed_by_default() -> None:
    assert not allowed("s3://data/in/", [])
