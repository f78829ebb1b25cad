"""The submission journal (ades.jobs.journal): live files are left alone, orphans are found, and a rotated file
carries over exactly the jobs still waiting (asked of the real Elasticsearch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ades.config import Settings
from ades.cwl import Package
from ades.jobs.folder import DataDir
from ades.jobs.journal import Journal, read_entries, survey
from ades.models import Job, StatusUpdate
from ades.status import Status
from ades.store import JobStore
from tests.helpers import queued, store_jobs, wait_for

pytestmark = pytest.mark.integration

ORPHAN = """
import sys
from pathlib import Path
from ades.jobs.journal import Journal
from ades.jobs.spec import QueuedJob
journal = Journal(Path(sys.argv[1]), lambda ids: {})
for line in sys.stdin:
    journal.append(QueuedJob.model_validate_json(line))
# exits without closing: the lock goes with the process, as after a kill -9
"""


def test_survey_tells_live_from_orphaned(echo: Package, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    mine = Journal(data_dir, lambda ids: {})
    live = [queued(echo, data_dir) for _ in range(3)]
    mine.append_many(live)
    gone = [queued(echo, data_dir) for _ in range(2)]
    shared = live[0]  # also in the dead process's file (a carried-over line): the live process keeps it
    lines = "".join(q.model_dump_json() + "\n" for q in [*gone, shared])
    subprocess.run([sys.executable, "-c", ORPHAN, str(data_dir)], input=lines, text=True, check=True)
    journals = DataDir(data_dir).journals
    orphan_file = next(p for p in journals.glob("*.jsonl") if p != mine.path)
    with open(orphan_file, "a") as f:
        f.write('{"spec": {"job_id": "torn')  # a write cut short by a crash

    found = survey(data_dir)
    assert found.live == {q.job_id for q in live}
    assert set(found.orphaned) == {q.job_id for q in gone}
    assert found.orphaned[gone[0].job_id] == gone[0]
    found.discard()
    assert not orphan_file.exists() and mine.path.exists()
    assert not list(journals.glob("*.new"))
    mine.close()
    # once its process is done with it (closed: the lock is released), a file is an orphan too
    again = survey(data_dir)
    assert set(again.orphaned) == {q.job_id for q in live} and not again.live
    again.discard()


def test_rotation_carries_over_the_waiting_jobs(echo: Package, settings: Settings, job_store: JobStore) -> None:
    data_dir = Path(settings.data_dir)
    journal = Journal(data_dir, job_store.statuses)
    waiting, done, started, never_indexed, last = (queued(echo, data_dir) for _ in range(5))
    store_jobs(job_store, [Job(id=q.job_id, process_id="echo", process_version="1.0.0", inputs={}, labels=[],
                               user_id="anonymous", mode="async") for q in (waiting, done, started, last)])
    job_store.apply(StatusUpdate(job_id=done.job_id, status=Status.RUNNING))
    job_store.apply(StatusUpdate(job_id=done.job_id, status=Status.SUCCEEDED))
    started.spec.folder.prepare(started.spec.workflow_file)  # what makes a job count as started
    journal.append_many([waiting, done, started, never_indexed])
    first = journal.path

    journal.rotate_bytes = first.stat().st_size + 1  # the next line passes it
    journal.append(last)
    assert journal.path != first
    wait_for(lambda: not first.exists(), 30, "the rotated journal to be compacted")
    assert set(read_entries(journal.path)) == {waiting.job_id, last.job_id}
    journal.close()


def test_a_void_line_takes_back_the_lines_before_it(echo: Package, tmp_path: Path) -> None:
    """A start of a created job that lost its race (ades.jobs.service.JobService.start) voids its line: no restart
    runs the job from it, while a later line of the same job (its start won on a second try) stands."""
    data_dir = tmp_path / "data"
    journal = Journal(data_dir, lambda ids: {})
    lost, kept, again = queued(echo, data_dir), queued(echo, data_dir), queued(echo, data_dir)
    journal.append_many([lost, kept, again])
    journal.void(lost.job_id)
    journal.void(again.job_id)
    journal.append(again)
    assert read_entries(journal.path) == {kept.job_id: kept, again.job_id: again}
    journal.close()
