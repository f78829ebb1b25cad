"""The order queued jobs start in: fair across users, not first-in first-out.

First-in first-out let one client that queued 9,000 jobs hold every other user's job `accepted` for minutes.
Start-time fair queuing (Goyal, Vin and Cheng, 1996) fixes that with one number per job: its start tag. A user's
next job is tagged max(virtual time, the finish tag of the user's previous job); its finish tag is that plus
1 / weight (the user's share, ADES_USER_SHARES; 1 by default). Jobs start in order of start tag (first in first out
among equal tags), and the virtual time follows the tag of the jobs being started. So each user's jobs keep their
own order, users with something queued take turns (a user of weight 2 gets two turns to another's one), and a user
who was idle starts at the current virtual time: idling earns no credit, and a long backlog is no debt either.

`FairShare` hands out the tags; `FairQueue` holds jobs and pops them in tag order (the local executor's queue). The
Dask executor hands every job to the Dask scheduler at once with the negated tag as its priority, and the scheduler
does the ordering.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class FairShare:
    """Start tags for jobs of users. `weights`: user -> share (users not in it have 1)."""

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        self.weights = dict(weights or {})
        self.vtime = 0.0
        self._finish: dict[str, float] = {}
        self._prune_at = 1024

    def tracked(self) -> int:
        """How many users' finish tags are kept (those ahead of the virtual time, and some not yet pruned)."""
        return len(self._finish)

    def weight(self, user: str) -> float:
        return self.weights.get(user, 1.0)

    def tag(self, user: str) -> float:
        """The start tag of the user's next job (taking its place: call once per job)."""
        start = max(self.vtime, self._finish.get(user, 0.0))
        self._finish[user] = start + 1.0 / self.weight(user)
        if len(self._finish) >= self._prune_at:
            self._prune()
        return start

    def advance(self, tag: float) -> None:
        """A job of this start tag starts (or, where starts are not seen, ended): virtual time moves up to it."""
        if tag > self.vtime:
            self.vtime = tag

    def _prune(self) -> None:
        # a user whose last finish tag the virtual time has passed is tagged as one never seen: forget them
        self._finish = {user: finish for user, finish in self._finish.items() if finish > self.vtime}
        self._prune_at = max(1024, 2 * len(self._finish))


class FairQueue(Generic[T]):
    """Items of users, popped in start-tag order (ties: first in, first out)."""

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        self.share = FairShare(weights)
        self._heap: list[tuple[float, int, T]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, user: str, item: T) -> float:
        """Queue `item` of `user`; its start tag."""
        tag = self.share.tag(user)
        heapq.heappush(self._heap, (tag, next(self._seq), item))
        return tag

    def pop(self) -> T:
        """The item to start next (IndexError when empty)."""
        tag, _, item = heapq.heappop(self._heap)
        self.share.advance(tag)
        return item
