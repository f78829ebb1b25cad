import pytest

from ades.status import Status, can_move


def test_ogc_words_round_trip():
    for status in Status:
        assert Status.from_ogc(status.ogc) is status
    assert Status.SUBMITTED.ogc == "accepted"
    assert Status.SUCCEEDED.ogc == "successful"


def test_parse_accepts_both_vocabularies_and_rejects_others():
    assert Status.parse("accepted") is Status.SUBMITTED
    assert Status.parse("succeeded") is Status.SUCCEEDED
    with pytest.raises(ValueError, match="unknown OGC job status"):
        Status.parse("finished")


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        (Status.SUBMITTED, Status.RUNNING, True),
        (Status.SUBMITTED, Status.SUCCEEDED, True),
        (Status.RUNNING, Status.RUNNING, True),
        (Status.RUNNING, Status.SUBMITTED, False),
        (Status.RUNNING, Status.FAILED, True),
        (Status.SUCCEEDED, Status.FAILED, False),
        (Status.DISMISSED, Status.RUNNING, False),
        (Status.SUBMITTED, Status.SUBMITTED, False),
    ],
)
def test_transitions(current, new, allowed):
    assert can_move(current, new) is allowed
