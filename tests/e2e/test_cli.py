"""The `ades` client commands as people and scripts run them: `.venv/bin/ades …` in a subprocess against a live
server with real cwltool jobs. Exit codes, --json, logs --follow ending with the job, results --download, and
progress bars only on a terminal (a real pseudo-terminal here)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
import uuid
from pathlib import Path

import pytest

from ades.cli_client import UsageError, parse_input, parse_inputs
from tests.e2e.conftest import LiveServer
from tests.helpers import EXAMPLES

pytestmark = pytest.mark.integration

ADES = Path(sys.executable).with_name("ades")  # the console script of this venv


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ADES_URL", "ADES_TOKEN")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1"
    return env


def ades(live: LiveServer, *args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(ADES), *args, "--url", live.url], capture_output=True, text=True, env=_env(),
                          cwd=cwd, timeout=timeout, check=False)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


@pytest.fixture(scope="module")
def deployed(live: LiveServer) -> LiveServer:
    files = [str(EXAMPLES / "two-step" / "two-step.cwl"), str(EXAMPLES / "failing" / "failing.cwl")]
    result = ok(ades(live, "deploy", *files))
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0] == "deployed two-step:1.2.0" and lines[1].startswith("deployed failing:")
    summary = json.loads(ok(ades(live, "deploy", str(EXAMPLES / "sleep" / "sleep.cwl"), "--json")).stdout)
    assert summary["id"] == "sleep"
    return live


def test_deploy_again_is_an_error_and_processes_lists(deployed: LiveServer) -> None:
    again = ades(deployed, "deploy", str(EXAMPLES / "sleep" / "sleep.cwl"))
    assert again.returncode == 1 and "409 Duplicated process" in again.stderr, again.stderr
    missing = ades(deployed, "deploy", "no-such-file.cwl")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    listed = json.loads(ok(ades(deployed, "processes", "--json")).stdout)
    assert {"echo", "two-step", "failing", "sleep"} <= {p["id"] for p in listed}
    assert "two-step:1.2.0" in ok(ades(deployed, "processes")).stdout


def test_execute_wait_json_then_list_by_label_and_status(deployed: LiveServer) -> None:
    label = f"cli-{uuid.uuid4().hex[:8]}"
    result = ok(ades(deployed, "execute", "two-step", "-i", "message=hello cli", "--label", label, "-l", "cli",
                     "--wait", "--json"))
    info = json.loads(result.stdout)  # stdout is exactly one JSON document
    assert info["status"] == "successful" and info["labels"] == [label, "cli"] and info["progress"] == 100
    assert "%|" not in result.stderr and "\r" not in result.stderr  # no bar into a pipe

    deployed.context.job_store.refresh()  # searches see a status once ES refreshes (1 s); do not wait for it
    listed = json.loads(ok(ades(deployed, "jobs", "list", "--label", label, "--json")).stdout)
    assert [job["jobID"] for job in listed] == [info["jobID"]]
    assert json.loads(ok(ades(deployed, "jobs", "list", "--label", label, "--status", "running", "--json")).stdout) \
        == []
    assert len(json.loads(ok(ades(deployed, "jobs", "list", "-l", label, "-s", "running,successful",
                                  "--json")).stdout)) == 1
    plain = ok(ades(deployed, "jobs", "list", "--label", label, "--status", "succeeded")).stdout.splitlines()
    assert len(plain) == 1 and plain[0].startswith(info["jobID"]) and "successful" in plain[0] and label in plain[0]
    status = ok(ades(deployed, "jobs", "status", info["jobID"])).stdout
    assert "successful" in status and "two-step:1.2.0" in status


def test_failing_job_exit_code(deployed: LiveServer) -> None:
    result = ades(deployed, "execute", "failing", "-i", "reason=cli", "--wait")
    assert result.returncode == 1, result
    job_id, status = result.stdout.split()[:2]
    assert status == "failed"
    waited = ades(deployed, "jobs", "wait", job_id, "--json")
    assert waited.returncode == 1 and json.loads(waited.stdout)["status"] == "failed"
    logs = ok(ades(deployed, "jobs", "logs", job_id))
    assert "failing on purpose: no input data (cli)" in logs.stdout
    results = ades(deployed, "jobs", "results", job_id)
    assert results.returncode == 1 and "Results not ready" in results.stderr


def test_logs_follow_ends_when_the_job_ends(deployed: LiveServer) -> None:
    job_id = ok(ades(deployed, "execute", "sleep", "-i", "seconds=2")).stdout.strip()
    followed = ok(ades(deployed, "jobs", "logs", job_id, "--follow", "--poll", "0.2"))
    # returning means the job had ended: the server says so right after, with nothing left to add to the log
    assert deployed.get(f"/jobs/{job_id}").json()["status"] == "successful"
    assert followed.stdout.strip() and followed.stdout == deployed.get(f"/jobs/{job_id}/logs").text

    failing = ok(ades(deployed, "execute", "failing", "-i", "reason=followed")).stdout.strip()
    result = ades(deployed, "jobs", "logs", failing, "--follow", "--poll", "0.2", "--json")
    assert result.returncode == 1  # following is waiting: the job's outcome is the exit code
    body = json.loads(result.stdout)
    assert body["status"] == "failed" and "failing on purpose: no input data (followed)" in body["log"]


def test_results_download_writes_the_files(deployed: LiveServer, tmp_path: Path) -> None:
    message = tmp_path / "message.json"
    message.write_text(json.dumps("from a file"))
    run = json.loads(ok(ades(deployed, "execute", "two-step", "-i", f"message=@{message}", "--wait",
                             "--json")).stdout)
    job_id = run["jobID"]
    document = json.loads(ok(ades(deployed, "jobs", "results", job_id)).stdout)
    assert document["shouted"]["href"].endswith(f"/jobs/{job_id}/results/shouted")

    out = tmp_path / "out"
    written = ok(ades(deployed, "jobs", "results", job_id, "--download", str(out))).stdout.splitlines()
    files = [Path(line) for line in written]
    assert all(path.parent == out and path.is_file() for path in files) and len(files) == 2
    [data] = [path for path in files if path.name != "results.json"]
    assert data.read_text().strip() == "FROM A FILE"
    assert json.loads((out / "results.json").read_text()) == document

    again = json.loads(ok(ades(deployed, "jobs", "results", job_id, "-d", str(tmp_path / "j"), "--json")).stdout)
    assert sorted(Path(p).name for p in again) == sorted(p.name for p in files)


def test_dismiss_a_running_job(deployed: LiveServer) -> None:
    job_id = ok(ades(deployed, "execute", "sleep", "-i", "seconds=300")).stdout.strip()
    deployed.wait_status(job_id, ("running",), timeout=60)
    result = ok(ades(deployed, "jobs", "dismiss", job_id))
    assert result.stdout.strip() == f"{job_id} dismissed"
    assert deployed.get(f"/jobs/{job_id}").json()["status"] == "dismissed"
    waited = ades(deployed, "jobs", "wait", job_id)
    assert waited.returncode == 1 and "dismissed" in waited.stdout


def test_errors_are_one_line(deployed: LiveServer) -> None:
    unknown = ades(deployed, "jobs", "status", "no-such-job")
    assert unknown.returncode == 1 and unknown.stderr.strip() == \
        "ades: error: 404 No such job: jobId: no job 'no-such-job'", unknown.stderr
    bad_input = ades(deployed, "execute", "echo", "-i", "message")
    assert bad_input.returncode == 2 and "expected name=value" in bad_input.stderr
    invalid = ades(deployed, "execute", "two-step", "-i", "nope=1", "--wait")
    assert invalid.returncode == 1 and "400" in invalid.stderr
    nowhere = subprocess.run([str(ADES), "jobs", "list", "--url", "http://127.0.0.1:9"], capture_output=True,
                             text=True, env=_env(), timeout=60, check=False)
    assert nowhere.returncode == 1 and "cannot reach the ades server at http://127.0.0.1:9" in nowhere.stderr


def _on_a_terminal(live: LiveServer, *args: str) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (as in a shell); (exit code, stdout, what the terminal showed)."""
    main, secondary = pty.openpty()
    # a terminal has a size; a fresh pty is 0x0, and tqdm draws nothing in zero columns
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    shown: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the other end is closed
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        process = subprocess.run([str(ADES), *args, "--url", live.url], stdout=subprocess.PIPE, stderr=secondary,
                                 text=True, env=_env(), timeout=300, check=False)
    finally:
        os.close(secondary)
        reader.join(10)
        os.close(main)
    return process.returncode, process.stdout, b"".join(shown).decode(errors="replace")


def test_progress_bar_only_on_a_terminal(deployed: LiveServer, tmp_path: Path) -> None:
    code, stdout, terminal = _on_a_terminal(deployed, "execute", "echo", "-i", "message=bar", "--wait")
    assert code == 0 and stdout.split()[1] == "successful"
    assert "100%" in terminal and "successful" in terminal  # the bar, drawn to the end
    job_id = stdout.split()[0]
    code, stdout, terminal = _on_a_terminal(deployed, "jobs", "results", job_id, "--download", str(tmp_path))
    assert code == 0 and "out.txt" in terminal and "B/s" in terminal  # a download bar per file

    code, stdout, terminal = _on_a_terminal(deployed, "execute", "echo", "-i", "message=quiet", "--wait", "--quiet")
    assert code == 0 and "%" not in terminal and terminal.strip() == ""


def test_parse_inputs(tmp_path: Path) -> None:
    # a pure function: no server needed
    assert parse_input("n=42") == ("n", 42)
    assert parse_input("flag=true") == ("flag", True)
    assert parse_input("message=hello world") == ("message", "hello world")
    assert parse_input('s="42"') == ("s", "42")
    assert parse_input('f={"href": "file:///x"}') == ("f", {"href": "file:///x"})
    assert parse_input("eq=a=b") == ("eq", "a=b")
    assert parse_inputs(["x=1", "x=2", "x=3", "y=a"]) == {"x": [1, 2, 3], "y": "a"}
    (tmp_path / "v.json").write_text('{"a": [1, 2]}')
    assert parse_input(f"v=@{tmp_path / 'v.json'}") == ("v", {"a": [1, 2]})
    for bad in ("novalue", "=x", f"v=@{tmp_path / 'missing.json'}"):
        with pytest.raises(UsageError):
            parse_input(bad)
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(UsageError, match="is not JSON"):
        parse_input(f"v=@{tmp_path / 'bad.json'}")
