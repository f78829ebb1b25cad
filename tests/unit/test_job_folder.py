"""A job's folder (ades.jobs.folder) and how a failure is told (ades.jobs.publisher.failure_message): the names
live in one place, and every reader goes through them."""

from __future__ import annotations

from pathlib import Path

from ades.jobs.folder import DataDir, JobFolder, ProcessRecord
from ades.jobs.publisher import MAX_MESSAGE_CHARS, failure_message
from ades.status import Status


def test_a_folder_records_its_run(tmp_path: Path) -> None:
    folder = DataDir(tmp_path).job("j1")
    assert not folder.exists() and not folder.has_started() and folder.process() is None
    assert folder.read_log() == "" and folder.saved_outputs() is None and folder.ended() is None
    workflow = tmp_path / "w.cwl"
    workflow.write_text("{}")
    folder.prepare(workflow)
    assert folder.has_started() and isinstance(folder.process(), ProcessRecord)
    assert all(p.is_dir() for p in (folder.work, folder.tmp, folder.outputs))
    folder.save_outputs({"out": 1})
    assert folder.saved_outputs() == {"out": 1}
    folder.append_log("one")
    folder.append_log("two\n")
    assert folder.read_log() == "one\ntwo\n" and folder.log_tail(1) == "two"
    folder.clear_run()
    assert not folder.outputs.exists() and folder.has_started()
    folder.remove()
    assert not folder.exists()


def test_cancel_requests_attempts_and_ends(tmp_path: Path) -> None:
    folder = JobFolder(tmp_path, "j2")
    assert not folder.cancel_requested()
    folder.request_cancel()
    assert folder.cancel_requested()
    folder.record_attempt({"attempt": 1, "worker": "w1"})
    folder.record_attempt({"attempt": 1, "pgid": 12})
    folder.record_attempt({"attempt": 2, "worker": "w2"})
    assert folder.attempts() == [{"attempt": 1, "worker": "w1", "pgid": 12}, {"attempt": 2, "worker": "w2"}]
    folder.mark_ended(Status.DISMISSED)
    assert folder.ended() is Status.DISMISSED


def test_files_outside_the_folder_are_not_served(tmp_path: Path) -> None:
    folder = JobFolder(tmp_path, "j3")
    folder.outputs.mkdir(parents=True)
    (folder.outputs / "a.txt").write_text("a")
    (tmp_path / "secret").write_text("s")
    (folder.outputs / "link").symlink_to(tmp_path / "secret")
    assert folder.output_file("a.txt") == (folder.outputs / "a.txt").resolve()
    assert folder.file(folder.outputs / "a.txt") is not None
    for bad in ("../../secret", "link", "/etc/passwd", "nul\x00byte", "missing.txt"):
        assert folder.output_file(bad) is None
    assert folder.file(tmp_path / "secret") is None


def test_the_data_dir_lists_its_job_folders(tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    assert data.folders() == []
    for job_id in ("b", "a"):
        data.job(job_id).make()
    assert [f.job_id for f in data.folders()] == ["a", "b"]


def test_a_failure_message_carries_the_log_tail_and_is_bounded() -> None:
    assert failure_message("it broke", "") == "it broke"
    told = failure_message("it broke", "line 1\nline 2")
    assert told == "it broke\n--- last lines of the job log ---\nline 1\nline 2"
    long = failure_message("it broke", "x" * 20_000)
    assert len(long) == MAX_MESSAGE_CHARS and long.endswith("...")
