"""Shared fixtures. Integration tests use the real Elasticsearch that `ades services start` runs (or ADES_ES_URL);
each test gets indexes of its own under a random prefix, removed afterwards."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from ades.config import Settings
from ades.store import JobStore, ProcessStore, ensure_indexes, make_client
from ades.store.setup import drop_indexes


def free_port() -> int:
    """A TCP port of 127.0.0.1 nothing listens on (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair(start: int = 9251) -> int:
    """An HTTP port p such that p and p+100 (an Elasticsearch node's transport port) are both free."""
    for port in range(start, start + 40):
        if _bindable(port) and _bindable(port + 100):
            return port
    raise RuntimeError(f"no free port pair near {start}")


def local_es_url() -> str:
    """The Elasticsearch the tests use: ADES_ES_URL, or the local node (started if it is not running)."""
    settings = Settings()
    if settings.uses_external_es:
        return settings.elasticsearch_url
    from ades.services.elasticsearch import ensure_running

    return ensure_running(settings)


@pytest.fixture(scope="session")
def es_url() -> str:
    return local_es_url()


# --- the fuzz run, in the background ------------------------------------------------------------------------
FUZZ_TEST = "tests/e2e/test_fuzz.py::test_fuzz_every_route"
FUZZ_RUN = pytest.StashKey["FuzzRun"]()


class FuzzRun:
    """tests/e2e/fuzz_run.py in a process of its own, at the lowest CPU priority: drawing its cases is a few minutes
    of CPU, which it takes from the cores the other tests leave idle while they wait on servers and jobs. The fuzz
    test waits for its report."""

    def __init__(self, es_url: str) -> None:
        self.report = Path(tempfile.mkdtemp(prefix="ades-fuzz-report-")) / "fuzz.json"
        self.log = self.report.with_name("fuzz.log")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.e2e.fuzz_run", "--out", str(self.report), "--es-url", es_url,
                 "--nice", "19"],
                cwd=Path(__file__).resolve().parents[1], stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

    def wait(self, timeout: float) -> dict:
        """The report; fails the test with the run's last output if there is none."""
        import json

        code = self.process.wait(timeout)
        assert code == 0 and self.report.exists(), self.log.read_text(errors="replace")[-5000:]
        return json.loads(self.report.read_text())

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(60)
        shutil.rmtree(self.report.parent, ignore_errors=True)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # the fuzz test runs last: its run then had the whole session to use idle cores
    items.sort(key=lambda item: item.nodeid == FUZZ_TEST)


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(item.nodeid == FUZZ_TEST for item in session.items):
        session.config.stash[FUZZ_RUN] = FuzzRun(local_es_url())


def pytest_sessionfinish(session: pytest.Session) -> None:
    run = session.config.stash.get(FUZZ_RUN, None)
    if run is not None:
        run.stop()


@pytest.fixture(scope="session")
def fuzz_run(request: pytest.FixtureRequest, es_url: str) -> FuzzRun:
    run = request.config.stash.get(FUZZ_RUN, None)
    if run is None:  # the fuzz test named on its own, after collection
        run = request.config.stash[FUZZ_RUN] = FuzzRun(es_url)
    return run


@pytest.fixture(scope="session")
def spare_node(es_url: str) -> Iterator[Settings]:
    """A second Elasticsearch node, on its own port and data dir, for the tests that stop and start a node (the
    store going down, chaos, `ades services` itself): stopping it disturbs no other test. Its settings; a test starts
    it with `ensure_running` (a no-op while it runs: the node starts once for all of them) and may leave it stopped.
    (es_url first: the distribution is then surely cached.) The data dir is outside pytest's tmp_path, which pytest
    makes 0700 whenever a session starts, cutting the node's user off from its files."""
    from ades.services import elasticsearch

    root = Path(tempfile.mkdtemp(prefix="ades-spare-node-", dir="/tmp"))
    root.chmod(0o755)
    # C1 only: the node starts about a quarter faster (it is started and stopped several times), runs slower
    settings = Settings(es_url=None, es_port=free_port_pair(), data_dir=root / "data", es_heap="384m",
                        es_java_options=["-XX:TieredStopAtLevel=1"])
    yield settings
    elasticsearch.stop(settings)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def settings(es_url: str, tmp_path) -> Settings:
    # Direct events by default: a .ades/services.env left by `ades services start` must not send a test's
    # updates to the shared queue (whose consumer writes the unprefixed index). Pipeline tests use aws_settings.
    return Settings(es_url=es_url, index_prefix=f"test-{uuid.uuid4().hex[:10]}-", data_dir=tmp_path / "data",
                    event_sink="direct")


@pytest.fixture
def es(settings: Settings) -> Iterator[Elasticsearch]:
    client = make_client(settings)
    ensure_indexes(client, settings)
    yield client
    drop_indexes(client, settings)
    client.close()


@pytest.fixture
def job_store(es: Elasticsearch, settings: Settings) -> JobStore:
    return JobStore(es, settings)


@pytest.fixture
def process_store(es: Elasticsearch, settings: Settings) -> ProcessStore:
    return ProcessStore(es, settings)


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory) -> str:
    """The local moto server (`ades services start` runs it; started here if it is not there)."""
    from ades.services import moto

    base = Settings()
    if base.aws_endpoint_url:
        return base.aws_endpoint_url
    return moto.ensure_running(base.model_copy(update={"data_dir": tmp_path_factory.mktemp("moto")}))


@pytest.fixture
def aws_settings(settings: Settings, moto_url: str) -> Settings:
    """Settings with a topic, queue and DLQ of this test's own (names carry the random prefix)."""
    from ades.events.pipeline import with_pipeline

    name = f"{settings.index_prefix}status"
    return with_pipeline(
        need_queue=True,
        settings=settings.model_copy(
            update={
                "aws_endpoint_url": moto_url,
                "status_topic_name": name,
                "status_queue_name": name,
                "sns_topic_arn": None,
                "sqs_queue_url": None,
                "sqs_dlq_url": None,
                "event_sink": "sns",
            }
        )
    )
