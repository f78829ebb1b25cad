"""The fair order of queued jobs (ades.jobs.fairshare) as pure logic: turns across users, shares, FIFO within a user,
no credit for idling, and what the settings make of the per-user caps."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ades.config import DEFAULT_RUNNING_JOBS_PER_USER, DEFAULT_SYNC_EXECUTES_PER_USER, Settings
from ades.jobs.fairshare import FairQueue, FairShare


def drain(queue: FairQueue[str]) -> list[str]:
    return [queue.pop() for _ in range(len(queue))]


def test_one_user_alone_is_first_in_first_out() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(5):
        queue.push("alice", f"a{i}")
    assert drain(queue) == [f"a{i}" for i in range(5)]


def test_a_late_user_goes_next_not_behind_the_backlog() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(1000):
        queue.push("alice", f"a{i}")
    assert queue.pop() == "a0"  # started before bob came
    queue.push("bob", "b0")
    queue.push("bob", "b1")
    # bob's first job comes right after the one of alice's already started, then they take turns
    assert [queue.pop() for _ in range(5)] == ["b0", "a1", "b1", "a2", "a3"]


def test_users_take_turns_in_the_order_they_came() -> None:
    queue: FairQueue[str] = FairQueue()
    for user in ("alice", "bob", "carol"):
        for i in range(3):
            queue.push(user, f"{user[0]}{i}")
    assert drain(queue) == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]


def test_a_share_of_two_gets_two_turns_to_one() -> None:
    queue: FairQueue[str] = FairQueue({"alice": 2.0})
    for i in range(6):
        queue.push("alice", f"a{i}")
        queue.push("bob", f"b{i}")
    order = drain(queue)
    assert order[:9] == ["a0", "b0", "a1", "b1", "a2", "a3", "b2", "a4", "a5"]  # ties: first pushed first


def test_idling_earns_no_credit() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("bob", "b0")
    assert queue.pop() == "b0"
    for i in range(100):
        queue.push("alice", f"a{i}")
    for _ in range(50):
        queue.pop()
    # bob was idle while alice's 50 jobs ran: he gets the next turn, not 50 turns in a row
    for i in range(1, 4):
        queue.push("bob", f"b{i}")
    assert [queue.pop() for _ in range(6)] == ["b1", "a50", "b2", "a51", "b3", "a52"]


def test_the_tags_of_a_queue_kept_elsewhere_follow_the_ends() -> None:
    # the Dask executor: tags become priorities, and the virtual time follows the jobs that ended
    share = FairShare()
    alice = [share.tag("alice") for _ in range(100)]
    assert alice == [float(i) for i in range(100)]
    share.advance(alice[9])  # ten of alice's jobs ended
    assert share.tag("bob") == 9.0  # ahead of alice's 90 still queued (higher priority: -9 > -10)
    assert share.tag("alice") == 100.0


def test_forgotten_users_are_those_the_virtual_time_passed() -> None:
    share = FairShare()
    for i in range(3000):
        share.tag(f"user-{i}")
    share.advance(5.0)
    for i in range(3000):
        share.tag(f"other-{i}")
    assert share.tracked() < 3100  # the table of users stays the size of the active ones


def test_per_user_caps_are_on_by_default_with_auth_only(tmp_path) -> None:
    open_server = Settings(_env_file=None)
    assert (open_server.running_jobs_cap, open_server.sync_executes_cap) == (0, 0)
    tokens = tmp_path / "tokens.yaml"
    for secured in (Settings(_env_file=None, auth_tokens_file=tokens), Settings(_env_file=None, auth_jwt_key="k" * 32)):
        assert secured.auth_configured
        assert secured.running_jobs_cap == DEFAULT_RUNNING_JOBS_PER_USER
        assert secured.sync_executes_cap == DEFAULT_SYNC_EXECUTES_PER_USER
    explicit = Settings(_env_file=None, auth_tokens_file=tokens, max_running_jobs_per_user=0,
                        max_sync_executes_per_user=5)
    assert (explicit.running_jobs_cap, explicit.sync_executes_cap) == (0, 5)
    with pytest.raises(ValidationError, match="'bob'"):
        Settings(_env_file=None, user_shares={"alice": 2, "bob": 0})
