"""Fixtures shared by the executor tests: the example packages they run."""

from __future__ import annotations

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
