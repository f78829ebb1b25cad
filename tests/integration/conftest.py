"""Fixtures and helpers shared by the integration tests: the example packages they run, a free port."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ades.cwl import Package, load_package

EXAMPLES = Path(__file__).resolve().parents[2] / "cwl" / "examples"


@pytest.fixture(scope="module")
def echo() -> Package:
    return load_package((EXAMPLES / "echo.cwl").read_text(), "application/cwl")


@pytest.fixture(scope="module")
def sleep() -> Package:
    return load_package((EXAMPLES / "sleep" / "sleep.cwl").read_text(), "application/cwl")


def free_port() -> int:
    """A TCP port of 127.0.0.1 nothing listens on (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
