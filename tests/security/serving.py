"""`ades serve` as an operator runs it, for the security tests: a real gunicorn server in a process of its own, on a
port of 127.0.0.1, with its own home, data dir and index prefix, and its output in a log the test can read."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

from ades.config import Settings
from tests.conftest import free_port
from tests.e2e.conftest import drop_test_indexes
from tests.helpers import wait_for


@dataclass
class Served:
    """One `ades serve` process: its port, log and the environment it was started with."""

    work: Path
    port: int
    env: dict[str, str]
    process: subprocess.Popen | None = None
    options: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.work / f"serve-{self.port}.log"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self, *options: str) -> Served:
        """Start the server (in a new session, so its whole group can be stopped)."""
        self.options = ["--port", str(self.port), "--workers", "1", "--job-workers", "1", *options]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "ades.cli", "serve", *self.options],
                                            env=self.env, cwd=self.work, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        return self

    def outcome(self, timeout: float = 90) -> int | None:
        """None once the server answers HTTP, or its exit code if it ends first."""
        assert self.process is not None

        def settled() -> tuple[int | None] | None:
            if self.process.poll() is not None:
                return (self.process.returncode,)
            with contextlib.suppress(requests.RequestException):
                requests.get(self.url + "/conformance", timeout=5)
                return (None,)
            return None

        return wait_for(settled, timeout, f"ades serve on port {self.port} to answer or exit", interval=0.2)[0]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def serve_env(es_url: str, work: Path, **settings: str) -> dict[str, str]:
    """The environment of an `ades serve` with no auth unless `settings` (ADES_* names) say otherwise: the test's
    own home (gunicorn's files go there), data dir and index prefix; nothing inherited configures ades."""
    home = work / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADES_") and k != "XDG_RUNTIME_DIR"}
    env.update(HOME=str(home), ADES_ES_URL=es_url, ADES_INDEX_PREFIX=f"sec-{uuid.uuid4().hex[:10]}-",
               ADES_DATA_DIR=str(work / "data"), ADES_EVENT_SINK="direct")
    env.update(settings)
    return env


def served(es_url: str, work: Path, **settings: str) -> Served:
    return Served(work=work, port=free_port(), env=serve_env(es_url, work, **settings))


def cleanup(server: Served) -> None:
    server.stop()
    drop_test_indexes(Settings(_env_file=None, es_url=server.env["ADES_ES_URL"],
                               index_prefix=server.env["ADES_INDEX_PREFIX"]))
