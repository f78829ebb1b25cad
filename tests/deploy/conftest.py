"""Fixtures of the deployment tests: the Lambda zip, built once per session by lambdas/build.py (its wheels are
cached in ADES_CACHE_DIR, so only the first build on a machine downloads anything)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def lambda_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lambda")
    done = subprocess.run([sys.executable, str(ROOT / "lambdas" / "build.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, f"lambdas/build.py failed:\n{done.stdout}\n{done.stderr}"
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path == out / "status-consumer.zip" and path.is_file()
    return path
