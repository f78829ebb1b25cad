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


def test_created_ranks_before_submitted_and_speaks_its_own_ogc_word():
    assert Status.CREATED.rank < Status.SUBMITTED.rank < Status.RUNNING.rank
    assert Status.CREATED.ogc == "created" and Status.from_ogc("created") is Status.CREATED
    assert Status.parse("created") is Status.CREATED
    assert not Status.CREATED.terminal
    # every stored merge-clock key keeps its meaning: the ranks of the other statuses did not move
    assert [s.rank for s in (Status.SUBMITTED, Status.RUNNING, Status.SUCCEEDED)] == [0, 1, 2]


@pytest.mark.parametrize(
    ("current", "new", "allowed", "nothing"),
    [
        (Status.CREATED, Status.SUBMITTED, True, False),
        (Status.CREATED, Status.RUNNING, True, False),
        (Status.CREATED, Status.DISMISSED, True, False),
        (Status.CREATED, Status.CREATED, False, True),
        (Status.SUBMITTED, Status.CREATED, False, True),
        (Status.RUNNING, Status.CREATED, False, True),
        (Status.SUBMITTED, Status.SUBMITTED, False, True),
        (Status.RUNNING, Status.SUBMITTED, False, True),
        (Status.DISMISSED, Status.SUBMITTED, False, True),
    ],
)
def test_created_transitions(current, new, allowed, nothing):
    from ades.status import tells_nothing

    assert can_move(current, new) is allowed
    assert tells_nothing(current, new) is nothing
