"""Group commit of submissions (ades.jobs.acceptance) against the real Elasticsearch and a real journal: each batch is
journaled with one write before its bulk, each stored job is handed on after it, and a failure at either end
reaches exactly the requests it concerns."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ades.cwl import Package
from ades.jobs.acceptance import CreateBatcher
from ades.jobs.journal import Journal, read_entries
from ades.jobs.spec import QueuedJob
from ades.models import Job
from ades.store import JobStore
from ades.store.jobs import JobNotFound
from tests.helpers import queued, wait_for

pytestmark = pytest.mark.integration


def _accepted(package: Package, data_dir: Path) -> tuple[Job, QueuedJob]:
    job = Job(process_id="echo", process_version="1.0.0", inputs={"message": "hi"})
    return job, queued(package, data_dir, job.id)


def _stored(job_store: JobStore, job_id: str) -> bool:
    try:
        job_store.get(job_id)
    except JobNotFound:
        return False
    return True


def test_a_batch_is_journaled_in_one_write_before_its_bulk_and_handed_on_after(
        job_store: JobStore, echo: Package, tmp_path: Path) -> None:
    journal = Journal(tmp_path, lambda ids: {})
    writes: list[list[str]] = []
    first_write_started, release_first = threading.Event(), threading.Event()
    handed_on: list[tuple[str, bool]] = []

    def journal_batch(batch: list[QueuedJob]) -> None:
        writes.append([q.job_id for q in batch])
        assert not any(_stored(job_store, q.job_id) for q in batch)  # journaled before it is indexed
        journal.append_many(batch)
        if len(writes) == 1:  # hold the writer so that the next requests gather into one batch
            first_write_started.set()
            assert release_first.wait(10)

    def hand_on(queued: QueuedJob) -> None:
        handed_on.append((queued.job_id, _stored(job_store, queued.job_id)))

    batcher: CreateBatcher[QueuedJob] = CreateBatcher(job_store, journal=journal_batch, then=hand_on)
    accepted = [_accepted(echo, tmp_path) for _ in range(6)]
    try:
        first = threading.Thread(target=batcher.create, args=accepted[0])
        first.start()
        assert first_write_started.wait(10)
        others = [threading.Thread(target=batcher.create, args=pair) for pair in accepted[1:]]
        for thread in others:
            thread.start()
        wait_for(lambda: batcher.waiting() == 5, 10, "five requests waiting behind the held write", interval=0.01)
        release_first.set()
        for thread in [first, *others]:
            thread.join(10)
    finally:
        batcher.close()
        journal.close()

    ids = [job.id for job, _ in accepted]
    assert len(writes) == 2 and writes[0] == ids[:1]
    assert sorted(writes[1]) == sorted(ids[1:])  # the five that gathered (in any order): one journal write, one bulk
    assert batcher.batches == 2
    assert sorted(handed_on) == sorted((job_id, True) for job_id in ids)  # each handed on once, once stored
    assert set(read_entries(journal.path)) == set(ids)


def test_a_journal_that_refuses_fails_the_batch_and_indexes_nothing(
        job_store: JobStore, echo: Package, tmp_path: Path) -> None:
    def full_disk(batch: list[QueuedJob]) -> None:
        raise OSError(28, "No space left on device")

    handed_on: list[QueuedJob] = []
    batcher: CreateBatcher[QueuedJob] = CreateBatcher(job_store, journal=full_disk, then=handed_on.append)
    job, queued = _accepted(echo, tmp_path)
    try:
        with pytest.raises(OSError, match="No space left"):
            batcher.create(job, queued)
    finally:
        batcher.close()
    assert not _stored(job_store, job.id)
    assert handed_on == []


def test_a_job_that_cannot_be_handed_on_fails_its_request_alone_and_stays_stored(
        job_store: JobStore, echo: Package, tmp_path: Path) -> None:
    journal = Journal(tmp_path, lambda ids: {})
    good, bad = _accepted(echo, tmp_path), _accepted(echo, tmp_path)
    started: list[str] = []

    def start(queued: QueuedJob) -> None:
        if queued.job_id == bad[0].id:
            raise RuntimeError("the executor is closed")
        started.append(queued.job_id)

    batcher: CreateBatcher[QueuedJob] = CreateBatcher(job_store, journal=journal.append_many, then=start)
    try:
        batcher.create(*good)
        with pytest.raises(RuntimeError, match="the executor is closed"):
            batcher.create(*bad)
    finally:
        batcher.close()
        journal.close()
    assert started == [good[0].id]
    # stored and journaled: reconciliation re-queues it when the server starts again
    assert _stored(job_store, bad[0].id)
    assert bad[0].id in read_entries(journal.path)
