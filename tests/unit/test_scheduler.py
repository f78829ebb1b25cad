"""What the scheduler of waiting jobs does in one round (ades.jobs.scheduler.decide), as a pure function of the
jobs it holds, the stored statuses, the cancel requests and the time; and how it takes jobs in."""

from __future__ import annotations

from pathlib import Path

from ades.events.sinks import SinkConfig
from ades.jobs.lifecycle import HostJob, HostState, JobTable
from ades.jobs.scheduler import JobScheduler, blocking, decide
from ades.jobs.spec import QueuedJob, RunSpec
from ades.status import Status

NOW = 1000.0


def _queued(job_id: str, depends_on: list[str] | None = None, delay: float = 0.0) -> QueuedJob:
    spec = RunSpec(job_id=job_id, data_dir=Path("/nowhere"), workflow_file=Path("/nowhere/w.cwl"), job_order={},
                   sink=SinkConfig(es_url="http://127.0.0.1:1"))
    return QueuedJob(spec=spec, depends_on=depends_on or [], delay=delay)


def _waiting(job_id: str, depends_on: list[str], delay: float = 0.0) -> HostJob:
    return HostJob(job_id, HostState.WAITING, "waits", payload=_queued(job_id, depends_on, delay))


def _delayed(job_id: str, ready_at: float) -> HostJob:
    return HostJob(job_id, HostState.DELAYED, "delayed", payload=_queued(job_id, delay=5), ready_at=ready_at)


def _moves(steps) -> list[tuple[str, HostState, Status | None]]:
    return [(s.job_id, s.to, s.outcome) for s in steps]


def test_a_job_waits_while_a_dependency_is_unfinished() -> None:
    for status in ("submitted", "running"):
        assert decide([_waiting("j", ["d"])], {"j": "submitted", "d": status}, set(), NOW) == []


def test_dependencies_succeeded_start_the_job_or_its_delay() -> None:
    statuses = {"j": "submitted", "k": "submitted", "d": "succeeded", "e": "succeeded"}
    steps = decide([_waiting("j", ["d", "e"]), _waiting("k", ["d"], delay=5)], statuses, set(), NOW)
    assert _moves(steps) == [("j", HostState.QUEUED, None), ("k", HostState.DELAYED, None)]
    assert steps[1].ready_at == NOW + 5 and steps[1].publish is None


def test_a_delay_is_counted_and_then_the_job_starts() -> None:
    assert decide([_delayed("j", NOW + 0.1)], {"j": "submitted"}, set(), NOW) == []
    assert _moves(decide([_delayed("j", NOW)], {"j": "submitted"}, set(), NOW)) == [("j", HostState.QUEUED, None)]


def test_a_failed_dismissed_or_missing_dependency_fails_the_job_with_the_reason() -> None:
    for status, why in (("failed", "dependency d ended failed"), ("dismissed", "dependency d ended dismissed"),
                        (None, "dependency d does not exist")):
        [step] = decide([_waiting("j", ["d"])], {"j": "submitted", "d": status}, set(), NOW)
        assert (step.to, step.outcome) == (HostState.ENDED, Status.FAILED)
        assert step.publish is not None and step.publish.status is Status.FAILED
        assert why in step.reason and step.publish.message == step.reason
    assert blocking(["ok", "d"], {"ok": "succeeded", "d": "failed"}) == "dependency d ended failed: this job cannot run"


def test_a_dismissal_wins_over_everything_else() -> None:
    # asked through its folder (another server process took the DELETE): it ends dismissed, and that is published
    [step] = decide([_waiting("j", ["d"])], {"j": "submitted", "d": "succeeded"}, {"j"}, NOW)
    assert (step.to, step.outcome, step.publish.status) == (HostState.ENDED, Status.DISMISSED, Status.DISMISSED)
    # already ended in the store (dismissed through the API): dropped, nothing to publish
    [step] = decide([_delayed("j", NOW)], {"j": "dismissed"}, set(), NOW)
    assert (step.to, step.outcome, step.publish) == (HostState.ENDED, Status.DISMISSED, None)


def test_each_job_is_decided_on_its_own() -> None:
    statuses = {"a": "submitted", "b": "submitted", "c": "submitted", "ok": "succeeded", "bad": "failed",
                "slow": "running"}
    jobs = [_waiting("a", ["ok"]), _waiting("b", ["bad"]), _waiting("c", ["slow"])]
    assert _moves(decide(jobs, statuses, set(), NOW)) == [("a", HostState.QUEUED, None),
                                                          ("b", HostState.ENDED, Status.FAILED)]


class _Executor:
    """Takes jobs as an executor's submit does (moving them to QUEUED in the table)."""

    def __init__(self, table: JobTable, refuse: bool = False) -> None:
        self.table = table
        self.refuse = refuse
        self.started: list[str] = []

    def submit(self, spec: RunSpec) -> None:
        if self.refuse:
            raise RuntimeError("the executor is closed")
        self.table.transition(spec.job_id, HostState.QUEUED, "handed on")
        self.started.append(spec.job_id)


def test_add_hands_a_job_with_nothing_to_wait_for_on_at_once_and_holds_the_others() -> None:
    table = JobTable()
    executor = _Executor(table)
    unfinished = {i: "submitted" for i in ("now", "after", "later")}  # what the scheduler's own rounds find
    scheduler = JobScheduler(table, lambda ids: {i: unfinished.get(i) for i in ids}, executor.submit,
                             publisher=None)  # type: ignore[arg-type]
    for job in (_queued("now"), _queued("after", ["now"]), _queued("later", delay=30)):
        table.transition(job.job_id, HostState.JOURNALED, "accepted", payload=job)
    try:
        scheduler.add(_queued("now"))
        scheduler.add(_queued("after", ["now"]))
        scheduler.add(_queued("later", delay=30))
        assert executor.started == ["now"]
        assert [table.state(j) for j in ("now", "after", "later")] == [HostState.QUEUED, HostState.WAITING,
                                                                     HostState.DELAYED]
        assert sorted(scheduler.waiting()) == ["after", "later"]
    finally:
        scheduler.close()
    # closing lets the waiting jobs go: they stay journaled for the next start
    assert [table.state(j) for j in ("after", "later")] == [HostState.RELEASED, HostState.RELEASED]


def test_a_job_the_executor_refuses_is_let_go_and_the_error_raised() -> None:
    table = JobTable()
    scheduler = JobScheduler(table, lambda ids: {}, _Executor(table, refuse=True).submit,
                             publisher=None)  # type: ignore[arg-type]
    table.transition("j", HostState.JOURNALED, "accepted")
    try:
        scheduler.add(_queued("j"))
    except RuntimeError as err:
        assert "closed" in str(err)
    else:
        raise AssertionError("the refusal was swallowed")
    assert table.state("j") is HostState.RELEASED


def test_a_round_takes_the_steps_it_decides() -> None:
    table = JobTable()
    executor = _Executor(table)
    statuses = {"j": "submitted", "d": "succeeded"}
    scheduler = JobScheduler(table, lambda ids: {i: statuses.get(i) for i in ids}, executor.submit,
                             publisher=None)  # type: ignore[arg-type]
    job = _queued("j", ["d"], delay=2)
    table.transition("j", HostState.JOURNALED, "accepted", payload=job)
    table.transition("j", HostState.WAITING, "waits", payload=job)
    assert _moves(scheduler.round(NOW)) == [("j", HostState.DELAYED, None)]
    assert table.get("j").ready_at == NOW + 2
    assert scheduler.round(NOW + 1) == []
    assert _moves(scheduler.round(NOW + 2)) == [("j", HostState.QUEUED, None)]
    assert executor.started == ["j"] and table.state("j") is HostState.QUEUED
