"""What reconciliation does with each unfinished job (ades.jobs.reconcile.verdict), as a pure function of what is
known of it: whose journal holds it, its folder, its process record and whether that group still lives."""

from __future__ import annotations

import pytest

from ades.jobs.folder import ProcessRecord
from ades.jobs.reconcile import Verdict, verdict

HERE = "host-a"


def _started(host: str = HERE, pgid: int = 4242) -> ProcessRecord:
    return ProcessRecord(pid=pgid, pgid=pgid, host=host, started=0.0)


def _alive(*groups: int):
    return lambda pgid: pgid in groups


@pytest.mark.parametrize(("journaled_live", "orphaned", "has_folder", "expected"), [
    (True, False, False, Verdict.LEAVE),     # queued in a live process of this server: hands off
    (True, True, True, Verdict.LEAVE),       # carried over to a live journal: the live process has it
    (False, True, False, Verdict.REQUEUE),   # its process is gone: run it again
    (False, True, True, Verdict.REQUEUE),
    (False, False, True, Verdict.FAIL),      # a folder but no journal line: lost before it started
    (False, False, False, Verdict.IGNORE),   # another data dir's job (servers may share a store)
])
def test_a_job_that_never_started(journaled_live: bool, orphaned: bool, has_folder: bool,
                                  expected: Verdict) -> None:
    assert verdict(journaled_live, orphaned, has_folder, None, HERE, _alive()) is expected


def test_a_started_job_is_watched_while_its_group_lives_and_failed_once_it_is_gone() -> None:
    assert verdict(False, False, True, _started(pgid=7), HERE, _alive(7)) is Verdict.WATCH
    assert verdict(False, False, True, _started(pgid=7), HERE, _alive()) is Verdict.FAIL
    # a journal line left over from before it started does not matter once it has a process record
    assert verdict(True, True, True, _started(pgid=7), HERE, _alive(7)) is Verdict.WATCH


def test_a_job_started_on_another_host_is_left_while_a_live_worker_holds_it() -> None:
    # its group cannot be seen from here, so "not alive here" must not read as lost: the executor is asked
    elsewhere = _started(host="host-b", pgid=7)
    assert verdict(False, False, True, elsewhere, HERE, _alive(), held_elsewhere=True) is Verdict.LEAVE
    assert verdict(False, False, True, elsewhere, HERE, _alive(7), held_elsewhere=False) is Verdict.FAIL
    # an executor that knows only this host cannot tell: the job is failed, so that none stays running forever
    assert verdict(False, False, True, elsewhere, HERE, _alive(7)) is Verdict.FAIL


def test_a_beat_is_fresh_until_it_is_stale_after_seconds_old() -> None:
    from ades.jobs.heartbeat import STALE_SECONDS, is_fresh

    assert is_fresh(100.0, 100.0 + STALE_SECONDS - 0.1)
    assert not is_fresh(100.0, 100.0 + STALE_SECONDS)
    assert not is_fresh(None, 100.0)
