"""What a server leaves on the disk, tried as another local user would (issue 21, files): the data dir, each job's
folder and files and the submission journal are the server's user's alone, and `ades serve` opens no gunicorn
control socket that another server (or anyone able to reach a shared path) could take over."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ades.config import Settings
from ades.jobs.folder import DataDir, JobFolder
from tests.e2e.conftest import LiveServer, serve_app
from tests.security.serving import cleanup, served

pytestmark = pytest.mark.integration

NOBODY = 65534
SECRET = "alice's input: s3cret-value"


@pytest.fixture(scope="module")
def world_readable_root() -> Iterator[Path]:
    """A folder everyone may pass through (pytest's own tmp folders are 0700, which would hide what the server's
    modes do)."""
    root = Path(tempfile.mkdtemp(prefix="ades-files-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def server(es_url: str, world_readable_root: Path) -> Iterator[LiveServer]:
    settings = Settings(_env_file=None, es_url=es_url, index_prefix=f"sec-{uuid.uuid4().hex[:8]}-",
                        data_dir=world_readable_root / "data", event_sink="direct")
    yield from serve_app(settings, workers=1)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def as_nobody(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "sh", "-c",
                           command], capture_output=True, text=True, timeout=30)


def test_job_files_and_the_journal_are_private(server: LiveServer) -> None:
    answer = server.post("/processes/echo/execution", json={"inputs": {"message": SECRET}},
                         headers={"Prefer": "respond-async"})
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["jobID"]
    assert server.wait_status(job_id)["status"] == "successful"
    data = server.settings.data_dir
    folder = JobFolder(data, job_id)
    (journal,) = DataDir(data).journals.glob("*.jsonl")
    outputs = [p for p in folder.outputs.rglob("*")]
    assert any(p.is_file() for p in outputs), outputs

    if os.geteuid() == 0:  # another local user tries to read them (becoming one needs root)
        seen = as_nobody(f"ls {data}/jobs; cat {folder.log} {journal} {folder.path}/outputs.json; echo done")
        assert "done" in seen.stdout
        assert SECRET not in seen.stdout and job_id not in seen.stdout, seen.stdout
        assert "Permission denied" in seen.stderr, seen.stderr

    modes = {str(p.relative_to(data)): oct(mode(p)) for p in [data, data / "jobs", folder.path, folder.outputs,
                                                              *outputs, folder.log, folder.path / "process.json",
                                                              folder.path / "outputs.json", journal.parent, journal]}
    wanted = {name: oct(0o700 if (data / name).is_dir() else 0o600) for name in modes}
    assert modes == wanted


def test_no_gunicorn_control_socket(es_url: str, tmp_path: Path) -> None:
    """gunicorn 25+ opens a control socket at one path per user ($XDG_RUNTIME_DIR or ~/.gunicorn): a second server
    replaced the first one's, and its stop deleted it. ades uses none."""
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    first = served(es_url, tmp_path, XDG_RUNTIME_DIR=str(runtime))
    second = served(es_url, tmp_path, XDG_RUNTIME_DIR=str(runtime))
    try:
        assert first.start().outcome() is None, first.output()
        assert second.start().outcome() is None, second.output()
        sockets = [p for root in (runtime, Path(first.env["HOME"])) for p in root.rglob("*") if p.is_socket()]
        assert not sockets, (sockets, first.output(), second.output())
        assert "Control socket" not in first.output() + second.output()
    finally:
        cleanup(second)
        cleanup(first)
