"""The host-side life of a job (ades.jobs.lifecycle), against its table: every pair of states is tried, every move
the table lists is taken, every other one is refused and leaves the job as it was."""

from __future__ import annotations

import itertools
import threading

import pytest

from ades.jobs.lifecycle import TRANSITIONS, HostState, JobTable, TransitionRefused, check
from ades.status import Status

# The shortest road from "not held" to each state, through moves the table allows.
ROADS: dict[HostState, list[HostState]] = {
    HostState.RELEASED: [],
    HostState.JOURNALED: [HostState.JOURNALED],
    HostState.WAITING: [HostState.JOURNALED, HostState.WAITING],
    HostState.DELAYED: [HostState.JOURNALED, HostState.DELAYED],
    HostState.QUEUED: [HostState.JOURNALED, HostState.QUEUED],
    HostState.HELD: [HostState.JOURNALED, HostState.QUEUED, HostState.HELD],
    HostState.STARTED: [HostState.JOURNALED, HostState.QUEUED, HostState.STARTED],
    HostState.ENDED: [HostState.JOURNALED, HostState.QUEUED, HostState.STARTED, HostState.ENDED],
}
PAIRS = list(itertools.product(HostState, HostState))


def _fields(to: HostState) -> dict:
    return {"outcome": Status.SUCCEEDED} if to is HostState.ENDED else {}


def _table_with_job_in(state: HostState) -> JobTable:
    table = JobTable()
    for step in ROADS[state]:
        table.transition("job", step, "on the road", **_fields(step))
    assert table.state("job") is state
    return table


def test_every_state_has_a_road_and_the_table_only_names_states() -> None:
    assert set(ROADS) == set(HostState)
    assert all(a in HostState and b in HostState for a, b in TRANSITIONS)


@pytest.mark.parametrize(("start", "to"), [p for p in PAIRS if p in TRANSITIONS], ids=lambda s: str(s))
def test_an_allowed_move_is_taken(start: HostState, to: HostState) -> None:
    table = _table_with_job_in(start)
    job = table.transition("job", to, "the stimulus", **_fields(to))
    assert job.state is to and job.reason == "the stimulus"
    assert table.state("job") is to
    assert check(start, to) == TRANSITIONS[(start, to)]


@pytest.mark.parametrize(("start", "to"), [p for p in PAIRS if p not in TRANSITIONS], ids=lambda s: str(s))
def test_a_move_the_table_does_not_list_is_refused(start: HostState, to: HostState) -> None:
    table = _table_with_job_in(start)
    before = table.get("job")
    with pytest.raises(TransitionRefused, match=f"from {start} to {to}"):
        table.transition("job", to, "the stimulus", **_fields(to))
    assert table.get("job") == before


def test_the_table_covers_every_pair_once() -> None:
    allowed = [p for p in PAIRS if p in TRANSITIONS]
    assert len(allowed) == len(TRANSITIONS) == 22  # of 64 pairs; the other 42 are refused
    assert not any(start is to for start, to in TRANSITIONS)  # staying put is no move
    assert not any(start is HostState.ENDED for start, _ in TRANSITIONS)  # an end is final


def test_an_end_needs_a_terminal_outcome() -> None:
    table = _table_with_job_in(HostState.STARTED)
    for outcome in (None, Status.RUNNING, "succeeded"):
        with pytest.raises(TransitionRefused, match="terminal outcome"):
            table.transition("job", HostState.ENDED, "ended", outcome=outcome)
    assert table.state("job") is HostState.STARTED


def test_entries_carry_their_fields_and_a_release_forgets_the_job() -> None:
    table = JobTable()
    table.transition("a", HostState.JOURNALED, "accepted", payload="spec")
    table.transition("a", HostState.QUEUED, "queued", handle="future")
    started = table.transition("a", HostState.STARTED, "forked", pgid=42)
    assert (started.payload, started.handle, started.pgid) == ("spec", "future", 42)
    table.transition("b", HostState.JOURNALED, "accepted")
    table.transition("b", HostState.RELEASED, "closing")
    assert table.get("b").reason == "not held by this process"
    assert [job.job_id for job in table.in_state(HostState.STARTED)] == ["a"]


def test_ended_jobs_are_remembered_up_to_a_bound() -> None:
    table = JobTable(remember_ended=2)
    for job_id in ("a", "b", "c"):
        table.transition(job_id, HostState.QUEUED, "handed on")
        table.transition(job_id, HostState.ENDED, "done", outcome=Status.FAILED)
    assert table.state("a") is HostState.RELEASED  # forgotten: the store has it
    assert [job.job_id for job in table.in_state(HostState.ENDED)] == ["b", "c"]
    assert table.wait_ended("c", 0) is Status.FAILED


def test_waiting_wakes_on_the_move_not_on_a_timer() -> None:
    table = _table_with_job_in(HostState.QUEUED)
    started = threading.Event()

    def run() -> None:
        started.set()
        table.transition("job", HostState.STARTED, "forked", pgid=7)
        table.transition("job", HostState.ENDED, "done", outcome=Status.DISMISSED)

    assert table.wait_ended("job", 0) is None
    threading.Thread(target=run).start()
    assert started.wait(5)
    assert table.wait_ended("job", 5) is Status.DISMISSED
    assert table.wait_started("job", 0) is None  # it ended: no process group to give


def test_wait_started_gives_the_process_group() -> None:
    table = _table_with_job_in(HostState.QUEUED)
    threading.Timer(0.01, table.transition, args=("job", HostState.STARTED, "forked"), kwargs={"pgid": 9}).start()
    assert table.wait_started("job", 5) == 9
