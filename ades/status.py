"""The job status vocabulary, defined once.

ES documents carry the seed words (created, submitted, running, succeeded, failed, dismissed); the OGC API speaks
created/accepted/running/successful/failed/dismissed. Ranks order them: a job only ever moves to a higher rank, and a
terminal job never changes again. `created` (OGC API Processes Part 4, job management) is a job that was made but
not started: it never runs until it is started (then `submitted`), and nothing on a host holds it.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    CREATED = "created"
    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DISMISSED = "dismissed"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def terminal(self) -> bool:
        return self.rank == TERMINAL_RANK

    @property
    def ogc(self) -> str:
        """The word OGC API Processes uses in `statusInfo.status`."""
        return _TO_OGC[self]

    @classmethod
    def from_ogc(cls, word: str) -> Status:
        try:
            return _FROM_OGC[word]
        except KeyError:
            raise ValueError(f"unknown OGC job status {word!r}; expected one of {sorted(_FROM_OGC)}") from None

    @classmethod
    def parse(cls, word: str) -> Status:
        """Accept either vocabulary (stored or OGC)."""
        if word in cls._value2member_map_:
            return cls(word)
        return cls.from_ogc(word)


TERMINAL_RANK = 2

# `created` ranks below 0 rather than moving the others up: ranks are written into the `merge-clock` keys stored in
# every job document (ades.merge.event_key), and renumbering would change what the keys already stored mean. A
# negative rank still sorts first as a string ("-1|" < "0|").
_RANK: dict[Status, int] = {
    Status.CREATED: -1,
    Status.SUBMITTED: 0,
    Status.RUNNING: 1,
    Status.SUCCEEDED: TERMINAL_RANK,
    Status.FAILED: TERMINAL_RANK,
    Status.DISMISSED: TERMINAL_RANK,
}

_TO_OGC: dict[Status, str] = {
    Status.CREATED: "created",
    Status.SUBMITTED: "accepted",
    Status.RUNNING: "running",
    Status.SUCCEEDED: "successful",
    Status.FAILED: "failed",
    Status.DISMISSED: "dismissed",
}
_FROM_OGC: dict[str, Status] = {ogc: status for status, ogc in _TO_OGC.items()}


def can_move(current: Status, new: Status) -> bool:
    """Whether a job in `current` may take `new` as its status (equal-rank `running` is a progress update)."""
    if current.terminal:
        return False
    if new.rank > current.rank:
        return True
    return current is Status.RUNNING and new is Status.RUNNING


def tells_nothing(current: Status, new: Status) -> bool:
    """Whether an event with status `new` can tell a job in `current` nothing at all: `created` (no event makes a
    job), `submitted` to a job past `created` (every other job is created so), or a second end (the first terminal
    status stands). Any other event may still carry news, even one that cannot move the status: a `running` event
    arriving after the end still says when the job started."""
    if new is Status.CREATED:
        return True
    if new is Status.SUBMITTED:
        return current is not Status.CREATED
    return new.terminal and current.terminal
