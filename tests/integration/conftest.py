"""Fixtures and helpers shared by the integration tests: the example packages they run, `ades serve`."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ades.cwl import Package, load_package
from tests.helpers import GATE_CWL, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "cwl" / "examples"


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts (consumers, servers): any still running when it ends (a failed assertion) are killed,
    not left polling a queue or holding a port that is gone."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def echo() -> Package:
    return load_package((EXAMPLES / "echo.cwl").read_text(), "application/cwl")


@pytest.fixture(scope="module")
def gate() -> Package:
    return load_package(GATE_CWL, "application/cwl")


@pytest.fixture(scope="module")
def sleep() -> Package:
    return load_package((EXAMPLES / "sleep" / "sleep.cwl").read_text(), "application/cwl")


def start_serve(env: dict[str, str], port: int, log: Path, *options: str) -> subprocess.Popen:
    """`ades serve` on 127.0.0.1:`port` in a new session (so its whole group can be signalled), once it answers."""
    server = subprocess.Popen(
        [sys.executable, "-m", "ades.cli", "-q", "serve", "--port", str(port), "--no-access-log", *options],
        env=env, stdout=open(log, "a"), stderr=subprocess.STDOUT, start_new_session=True)  # noqa: SIM115

    def answers() -> bool:
        assert server.poll() is None, log.read_text()[-3000:]
        with contextlib.suppress(requests.RequestException):
            return requests.get(f"http://127.0.0.1:{port}/processes", timeout=5).ok
        return False

    wait_for(answers, 90, f"ades serve to answer on port {port}", interval=0.3)
    return server
