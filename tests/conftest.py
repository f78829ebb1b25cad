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
import threading
import uuid
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from ades.config import Settings
from ades.store import JobStore, ProcessStore, ensure_indexes, make_client
from ades.store.setup import drop_indexes
from tests.helpers import wait_for


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
FUZZ_DIR = pytest.StashKey[Path]()
FUZZ_DIR_INPUT = "ades_fuzz_dir"
"""The key of pytest-xdist's worker input that names the folder of the controller's fuzz run."""


class FuzzRun:
    """tests/e2e/fuzz_run.py in a process of its own, at the lowest CPU priority: drawing its cases is a few minutes
    of CPU, which it takes from the cores the other tests leave idle while they wait on servers and jobs. The fuzz
    test waits for its report. Under pytest-xdist the controller runs it (one run, whichever worker gets the test);
    the test's worker attaches to its folder, where the run's exit code lands when it ends."""

    def __init__(self, folder: Path) -> None:
        self.report = folder / "fuzz.json"
        self.log = folder / "fuzz.log"
        self.exit = folder / "exit"
        self.process: subprocess.Popen | None = None

    @classmethod
    def start(cls, es_url: str, folder: Path | None = None) -> FuzzRun:
        run = cls(folder or Path(tempfile.mkdtemp(prefix="ades-fuzz-report-")))
        with run.log.open("wb") as log:
            run.process = subprocess.Popen(
                [sys.executable, "-m", "tests.e2e.fuzz_run", "--out", str(run.report), "--es-url", es_url,
                 "--nice", "19"],
                cwd=Path(__file__).resolve().parents[1], stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        threading.Thread(target=run._note_exit, name="ades-fuzz-run-exit", daemon=True).start()
        return run

    def _note_exit(self) -> None:
        assert self.process is not None
        code = self.process.wait()
        written = self.exit.with_suffix(".tmp")
        written.write_text(str(code))
        written.rename(self.exit)

    def wait(self, timeout: float) -> dict:
        """The report; fails the test with the run's last output if there is none."""
        import json

        if self.process is not None:
            code = self.process.wait(timeout)
        else:  # another process's run: its exit code is a file
            code = int(wait_for(lambda: self.exit.exists() and self.exit.read_text(), timeout,
                                "the fuzz run to end", interval=0.5))
        assert code == 0 and self.report.exists(), self.log.read_text(errors="replace")[-5000:]
        return json.loads(self.report.read_text())

    def stop(self) -> None:
        if self.process is None:  # the controller's run: the controller stops it
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(60)
        shutil.rmtree(self.report.parent, ignore_errors=True)


def _xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


OWN_NODE_GROUP = "es-node"
"""The pytest-xdist group of the tests that start an Elasticsearch node of their own (the spare node, or a module
marked with it, like tests/integration/test_elasticvue.py)."""


def group_for_xdist(items: list[pytest.Item]) -> None:
    """Groups for pytest-xdist's `--dist loadgroup` (scripts/test.sh): a worker runs a whole group, in order. A group
    is a module, so that its module-scoped servers start once, on one worker. The modules that start an Elasticsearch
    node of their own share one group: two such nodes never start at once (each takes a core for seconds) nor race
    for the same free port pair. The tests of the session's Lambda zip share one, so it is built once."""
    spare_node_modules = {item.nodeid.split("::")[0] for item in items if "spare_node" in item.fixturenames}
    for item in items:
        if item.get_closest_marker("xdist_group") or item.nodeid == FUZZ_TEST:
            continue  # the fuzz test is a group of its own, the last to start: its run goes on meanwhile
        module = item.nodeid.split("::")[0]
        if module in spare_node_modules:
            name = OWN_NODE_GROUP
        elif "lambda_zip" in item.fixturenames:
            name = "lambda-zip"
        else:
            name = module
        item.add_marker(pytest.mark.xdist_group(name))


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> Generator[None, object, object]:
    group_for_xdist(items)  # before pytest-xdist's own hook reads the groups
    result = yield
    # the fuzz test runs last (after pytest's reordering by fixture): its run then had the whole session to use
    # idle cores
    items.sort(key=lambda item: item.nodeid.split("@")[0] == FUZZ_TEST)
    return result


def pytest_collection_finish(session: pytest.Session) -> None:
    if not _xdist_worker(session.config) and any(item.nodeid == FUZZ_TEST for item in session.items):
        session.config.stash[FUZZ_RUN] = FuzzRun.start(local_es_url())


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """pytest-xdist's controller, per worker: where the fuzz run will be, should a worker collect the fuzz test."""
    config = node.config
    if FUZZ_DIR not in config.stash:
        config.stash[FUZZ_DIR] = Path(tempfile.mkdtemp(prefix="ades-fuzz-report-"))
    node.workerinput[FUZZ_DIR_INPUT] = str(config.stash[FUZZ_DIR])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids: list[str]) -> None:
    """pytest-xdist's controller: the fuzz run starts once, as soon as a worker has collected the fuzz test."""
    config = node.config
    if FUZZ_RUN not in config.stash and any(nodeid.split("@")[0] == FUZZ_TEST for nodeid in ids):
        config.stash[FUZZ_RUN] = FuzzRun.start(local_es_url(), config.stash[FUZZ_DIR])


def pytest_sessionfinish(session: pytest.Session) -> None:
    run = session.config.stash.get(FUZZ_RUN, None)
    if run is not None:
        run.stop()
    folder = session.config.stash.get(FUZZ_DIR, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def fuzz_run(request: pytest.FixtureRequest, es_url: str) -> FuzzRun:
    config = request.config
    run = config.stash.get(FUZZ_RUN, None)
    if run is None and _xdist_worker(config):  # the controller's run
        run = config.stash[FUZZ_RUN] = FuzzRun(Path(config.workerinput[FUZZ_DIR_INPUT]))
    if run is None:  # the fuzz test named on its own, after collection
        run = config.stash[FUZZ_RUN] = FuzzRun.start(es_url)
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


class IndexDrops:
    """Drops tests' indexes in a thread of the session, so that no test waits for the deletions (cluster state
    updates: a few hundred ms per test, seconds on a busy node) that nothing after it needs."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="ades-test-drops")
        self.drops: list[Future] = []

    def add(self, client: Elasticsearch, settings: Settings) -> None:
        self.drops.append(self.pool.submit(self._drop, client, settings))

    @staticmethod
    def _drop(client: Elasticsearch, settings: Settings) -> None:
        try:
            drop_indexes(client, settings)
        finally:
            client.close()

    def finish(self) -> None:
        """Wait for every drop; fail on the first that failed."""
        self.pool.shutdown(wait=True)
        for drop in self.drops:
            drop.result()


@pytest.fixture(scope="session")
def index_drops() -> Iterator[IndexDrops]:
    drops = IndexDrops()
    yield drops
    drops.finish()


@pytest.fixture
def es(settings: Settings, index_drops: IndexDrops) -> Iterator[Elasticsearch]:
    client = make_client(settings)
    ensure_indexes(client, settings)
    yield client
    index_drops.add(client, settings)


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
