"""`ades services start|status|stop` against a real Elasticsearch node.

The node here is a second one, on its own port and data dir, so it never disturbs a node on 9200 that other tests
use; it shares the default cache, so the distribution is downloaded at most once per machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ades.config import Settings
from ades.services.es_distribution import version_matches
from tests.conftest import free_port_pair

START_TIMEOUT = 300


def _ades(env: dict[str, str], *args: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ades.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _ades_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADES_")}
    # Keep the cache wherever this machine's default (or configured) cache is: nothing is fetched twice.
    env["ADES_CACHE_DIR"] = str(Settings().cache_dir)
    env.update(overrides)
    return env


def _pids_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                pids.append(int(entry.name))
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def node_data_dir(spare_node: Settings) -> Path:
    return spare_node.data_dir


@pytest.fixture
def node_env(spare_node: Settings) -> Iterator[dict[str, str]]:
    """Environment of `ades` for the spare node (tests/conftest.py: its own port and data dir); stopped whatever
    happens. If another test left it running, the first start below reuses it; the last one is always a real
    start from the cached distribution."""
    env = _ades_env(ADES_ES_PORT=str(spare_node.es_port), ADES_DATA_DIR=str(spare_node.data_dir),
                    ADES_ES_HEAP=spare_node.es_heap, ADES_ES_JAVA_OPTIONS=json.dumps(spare_node.es_java_options))
    yield env
    _ades(env, "services", "stop", "elasticsearch")


@pytest.mark.integration
def test_start_twice_reuses_then_stop_leaves_nothing(node_env: dict[str, str], node_data_dir: Path) -> None:
    data_dir = node_data_dir
    port = node_env["ADES_ES_PORT"]
    url = f"http://127.0.0.1:{port}"

    first = _ades(node_env, "services", "start", "elasticsearch")
    assert first.returncode == 0, first.stderr
    assert url in first.stdout
    zips = sorted((Path(node_env["ADES_CACHE_DIR"]) / "elasticsearch").glob("elasticsearch-*.zip"))
    assert zips, "the distribution zip is kept in the cache"
    mtimes = {z: z.stat().st_mtime_ns for z in zips}
    pid = int((data_dir / "elasticsearch" / "elasticsearch.pid").read_text())
    assert _alive(pid)

    # Second start: the running node is reused; nothing is started or downloaded.
    second = _ades(node_env, "services", "start", "elasticsearch")
    assert second.returncode == 0, second.stderr
    assert "reusing Elasticsearch" in second.stderr
    assert "downloading" not in second.stderr and "starting Elasticsearch" not in second.stderr
    assert "does not answer GET /" not in second.stderr
    assert int((data_dir / "elasticsearch" / "elasticsearch.pid").read_text()) == pid

    status = _ades(node_env, "services", "status", "--check", "elasticsearch")
    assert status.returncode == 0, status.stderr
    assert "elasticsearch: running" in status.stdout and f"pid {pid}" in status.stdout
    assert "health green" in status.stdout or "health yellow" in status.stdout

    stopped = _ades(node_env, "services", "stop", "elasticsearch")
    assert stopped.returncode == 0, stopped.stderr
    assert not _alive(pid)
    assert not [p for p in _pids_mentioning(str(data_dir)) if _alive(p)], "a process of the node survived"
    assert not (data_dir / "elasticsearch" / "elasticsearch.pid").exists()
    assert "not running" in _ades(node_env, "services", "status", "elasticsearch").stdout

    # A new start after stop uses the cached distribution: no Maven, no download, zip untouched.
    again = _ades(node_env, "services", "start", "elasticsearch")
    assert again.returncode == 0, again.stderr
    assert "using cached Elasticsearch" in again.stderr
    assert "downloading" not in again.stderr and "building the ades-root plugin" not in again.stderr
    assert {z: z.stat().st_mtime_ns for z in zips} == mtimes
    with urllib.request.urlopen(url + "/", timeout=10) as response:  # the ades-root plugin's root endpoint
        assert json.load(response)["tagline"] == "You Know, for Search"
    assert _ades(node_env, "services", "stop", "elasticsearch").returncode == 0
    assert not [p for p in _pids_mentioning(str(data_dir)) if _alive(p)]


@pytest.mark.integration
def test_missing_java_and_maven_is_one_line(tmp_path: Path) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = _ades_env(
        PATH=str(empty_bin),
        ADES_ES_PORT=str(free_port_pair(9291)),
        ADES_DATA_DIR=str(tmp_path / "data"),
        ADES_CACHE_DIR=str(tmp_path / "empty-cache"),  # nothing cached: a download would be needed
        ADES_ES_JAVA_HOME=str(tmp_path / "no-java-here"),
    )
    result = _ades(env, "services", "start", "elasticsearch", timeout=60)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ades: error:")]
    assert len(errors) == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Maven" in errors[0] and "Java" in errors[0]
    assert "apt-get install" in errors[0]
    assert not (tmp_path / "data" / "elasticsearch" / "elasticsearch.pid").exists()


@pytest.mark.integration
def test_external_url_starts_nothing(tmp_path: Path) -> None:
    external = "http://127.0.0.1:1"
    env = _ades_env(ADES_ES_URL=external, ADES_DATA_DIR=str(tmp_path / "data"))
    result = _ades(env, "services", "start", "elasticsearch", timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"using the Elasticsearch cluster at {external}" in result.stderr
    assert "starting nothing" in result.stderr
    assert not (tmp_path / "data").exists()
    assert "not stopping the external cluster" in _ades(env, "services", "stop", "elasticsearch", timeout=60).stderr


def test_version_ranges() -> None:
    assert version_matches("[8.19.0,8.20.0)", "8.19.21")
    assert version_matches("[8.19.0,8.20.0)", "8.19.0")
    assert not version_matches("[8.19.0,8.20.0)", "8.20.0")
    assert not version_matches("(8.19.0,8.20.0)", "8.19.0")
    assert version_matches("8.19.21", "8.19.21") and not version_matches("8.19.21", "8.19.2")
    assert version_matches("[8.19.21]", "8.19.21")
    assert version_matches("[8.19,)", "9.1.0") and version_matches("(,8.20.0]", "8.20.0")
