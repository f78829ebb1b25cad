"""`ades-cwl-runner` as cwltest calls it (`.venv/bin/ades-cwl-runner --outdir D --quiet TOOL JOB` in a subprocess)
against a live server with real cwltool jobs: a File in by a relative path, a File out downloaded into --outdir and
printed as cwltool prints it; a `$graph` member chosen by `#id`; the failure of a job and a refused input on stderr
with exit 1; nothing left deployed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ades.config import Settings
from tests.e2e.conftest import LiveServer, serve_app
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

RUNNER = Path(sys.executable).with_name("ades-cwl-runner")  # the console script of this venv

UPPER = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [tr, a-z, A-Z]
stdin: $(inputs.text.path)
stdout: upper.txt
inputs:
  text: File
outputs:
  shouted:
    type: File
    outputBinding: {glob: upper.txt}
"""

GRAPH = """\
cwlVersion: v1.2
$graph:
- id: count
  class: CommandLineTool
  baseCommand: [wc, -c]
  stdin: $(inputs.text.path)
  stdout: count.txt
  inputs: {text: File}
  outputs: {counted: {type: File, outputBinding: {glob: count.txt}}}
- id: fail
  class: CommandLineTool
  baseCommand: [sh, -c, "echo 'no luck' >&2; exit 3"]
  inputs: {}
  outputs: {}
"""

NESTED = """\
cwlVersion: v1.2
class: CommandLineTool
requirements: {ShellCommandRequirement: {}}
arguments:
- {shellQuote: false, valueFrom: "mkdir -p out/sub && echo one > out/a.txt && echo two > out/sub/b.txt"}
- {shellQuote: false, valueFrom: "&& echo r > r.txt"}
inputs: {}
outputs:
  folder: {type: Directory, outputBinding: {glob: out}}
  rec:
    type:
      type: record
      fields:
        f: {type: File, outputBinding: {glob: r.txt}}
  nothing: {type: File?, outputBinding: {glob: absent.txt}}
  again: {type: File, outputBinding: {glob: r.txt}}
  folder_again: {type: Directory, outputBinding: {glob: out}}
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The author's folder: tools, a job order naming its input by a relative path, the input file."""
    root = tmp_path_factory.mktemp("author")
    (root / "upper.cwl").write_text(UPPER)
    (root / "graph.cwl").write_text(GRAPH)
    (root / "nested.cwl").write_text(NESTED)
    (root / "slow.cwl").write_text("cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: [sleep, '60']\n"
                                   "inputs: {}\noutputs: {}\n")
    (root / "data").mkdir()
    (root / "data" / "words.txt").write_text("make me loud\n")
    (root / "job.yml").write_text("text: {class: File, location: data/words.txt}\nnot_an_input: 3\n")
    return root


@pytest.fixture(scope="module")
def server(e2e_settings: Settings, folder: Path) -> Iterator[LiveServer]:
    yield from serve_app(e2e_settings, file_roots=[folder / "data"])


def runner_env(server: LiveServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ADES_TOKEN"}
    return env | {"ADES_URL": server.url, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}


def run(server: LiveServer, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(RUNNER), *args], capture_output=True, text=True, env=runner_env(server), cwd=cwd,
                          timeout=300, check=False)


def deployed(server: LiveServer) -> list[str]:
    return [p["id"] for p in server.get("/processes?limit=1000").json()["processes"] if p["id"] != "echo"]


def test_a_file_in_and_a_file_out_as_cwltool_prints_them(server: LiveServer, folder: Path, tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    result = run(server, f"--outdir={outdir}", "--quiet", "upper.cwl", "job.yml", cwd=folder)
    assert result.returncode == 0, result.stderr
    outputs = json.loads(result.stdout)
    shouted = outputs["shouted"]
    assert set(outputs) == {"shouted"} and shouted["class"] == "File" and shouted["basename"] == "upper.txt"
    assert shouted["path"] == str(outdir / "upper.txt") and shouted["location"] == (outdir / "upper.txt").as_uri()
    assert (outdir / "upper.txt").read_text() == "MAKE ME LOUD\n"
    assert result.stderr == "", "--quiet: nothing on stderr"
    assert deployed(server) == [], "the runner undeploys what it deployed"


def test_a_graph_member_by_fragment_and_a_failing_job(server: LiveServer, folder: Path, tmp_path: Path) -> None:
    job = tmp_path / "count-job.json"
    job.write_text(json.dumps({"text": {"class": "File", "path": str(folder / "data" / "words.txt")}}))
    result = run(server, "--outdir", str(tmp_path), "--quiet", f"{folder / 'graph.cwl'}#count", str(job), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    counted = json.loads(result.stdout)["counted"]
    assert (tmp_path / counted["basename"]).read_text().strip() == "13"

    failed = run(server, "--quiet", "graph.cwl#fail", cwd=folder)
    assert failed.returncode == 1 and failed.stdout == ""
    assert "failed" in failed.stderr and "no luck" in failed.stderr, failed.stderr  # the job's log comes along
    assert deployed(server) == []


def test_an_input_outside_the_input_roots_is_the_servers_400(server: LiveServer, folder: Path,
                                                             tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("not for the server\n")
    (tmp_path / "job.yml").write_text("text: {class: File, location: secret.txt}\n")
    result = run(server, "--quiet", str(folder / "upper.cwl"), "job.yml", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert "400" in result.stderr and "'text'" in result.stderr and "outside" in result.stderr, result.stderr
    assert deployed(server) == []


def test_a_directory_a_file_in_a_record_and_an_absent_optional_output(server: LiveServer, folder: Path,
                                                                       tmp_path: Path) -> None:
    result = run(server, "--outdir", str(tmp_path), "--quiet", "nested.cwl", cwd=folder)
    assert result.returncode == 0, result.stderr
    outputs = json.loads(result.stdout)
    assert outputs["nothing"] is None, "cwltool prints an optional output that was not produced as null"
    directory = outputs["folder"]
    assert directory["class"] == "Directory" and directory["path"] == str(tmp_path / "out")
    names = {entry["basename"]: entry for entry in directory["listing"]}
    assert set(names) == {"a.txt", "sub"} and (tmp_path / "out" / "a.txt").read_text() == "one\n"
    assert [entry["path"] for entry in names["sub"]["listing"]] == [str(tmp_path / "out" / "sub" / "b.txt")]
    assert (tmp_path / "out" / "sub" / "b.txt").read_text() == "two\n"
    record_file = outputs["rec"]["f"]
    assert Path(record_file["path"]).read_text() == "r\n" and record_file["location"].startswith("file://")
    # two outputs of one file (or folder) are one local copy, as under cwltool: not r_2.txt, not out_2
    assert outputs["again"]["path"] == record_file["path"] == str(tmp_path / "r.txt")
    assert outputs["folder_again"]["path"] == directory["path"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "r.txt"]


def test_stopped_by_sigterm_it_dismisses_the_job_and_undeploys(server: LiveServer, folder: Path,
                                                               tmp_path: Path) -> None:
    """cwltest ends a test that outlives its timeout with SIGTERM: nothing may be left running or deployed."""
    runner = subprocess.Popen([str(RUNNER), "--outdir", str(tmp_path), "slow.cwl"], cwd=folder, text=True,
                              env=runner_env(server), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert runner.stderr is not None
        job_id = ""
        while not job_id:
            line = runner.stderr.readline()
            assert line, "the runner ended before it started a job"
            match = re.match(r"job (\S+) ", line)
            job_id = match.group(1) if match else ""
        server.wait_status(job_id, ("running",), timeout=60)
        runner.send_signal(signal.SIGTERM)
        _, err = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 130 and "stopped" in err, err
    assert server.get(f"/jobs/{job_id}").json()["status"] == "dismissed"
    wait_for(lambda: deployed(server) == [], 10, "the process to be undeployed")
