"""What the access log may show of a request (the live check is tests/security/test_auth.py)."""

from __future__ import annotations

import pytest

from ades.serve import elide_query, redact_target, redact_url


@pytest.mark.parametrize(("query", "shown"), [("", ""), ("labels=a&limit=5", "labels=*&limit=*"),
                                              ("access_token=s3cret", "access_token=*"), ("s3cret", "*"),
                                              ("a=1&s3cret&b=", "a=*&*&b=*")])
def test_query_values_are_elided(query: str, shown: str) -> None:
    assert elide_query(query) == shown


def test_targets_and_referers() -> None:
    assert redact_target("/jobs") == "/jobs"
    assert redact_target("/jobs?token=s3cret") == "/jobs?token=*"
    assert redact_url("https://user:s3cret@host.example:8443/page?key=s3cret#access_token=s3cret") == \
        "https://host.example:8443/page?key=*"
