"""A live ades server per test module: create_app under werkzeug in a thread, on a free port of 127.0.0.1, against
the real Elasticsearch (indexes under a random prefix, dropped afterwards) with real cwltool workers.

Module-scoped because the warm job workers take seconds to start; the tests of a module share one server.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from ades.api.context import AdesContext
from ades.app import close_app, create_app
from ades.config import Settings
from ades.store import make_client
from ades.store.setup import drop_indexes
from tests.helpers import wait_for


@dataclass
class LiveServer:
    url: str
    app: Flask
    settings: Settings
    http: requests.Session

    @property
    def context(self) -> AdesContext:
        return self.app.extensions["ades"]

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.post(self.url + path, timeout=120, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.put(self.url + path, timeout=30, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.delete(self.url + path, timeout=30, **kwargs)

    def wait_status(self, job_id: str, statuses: tuple[str, ...] = ("successful", "failed", "dismissed"),
                    timeout: float = 120.0, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """The job's statusInfo once its status is one of `statuses` (by default: once it has ended)."""
        def reached() -> dict[str, Any] | None:
            info = self.get(f"/jobs/{job_id}", headers=headers).json()
            return info if info["status"] in statuses else None

        return wait_for(reached, timeout, f"job {job_id} to be {' or '.join(statuses)}", interval=0.1)


def count_jobs(live: LiveServer) -> int:
    """How many jobs the server's index holds (refreshed first)."""
    client = make_client(live.settings)
    try:
        client.indices.refresh(index=live.settings.jobs_alias)
        return client.count(index=live.settings.jobs_alias)["count"]
    finally:
        client.close()


def drop_test_indexes(settings: Settings) -> None:
    """Remove the indexes under the settings' (test) prefix."""
    client = make_client(settings)
    drop_indexes(client, settings)
    client.close()


def serve_app(settings: Settings, file_roots: list[Path] | None = None, workers: int = 2,
              anonymous_deploys: bool = True) -> Iterator[LiveServer]:
    """A live server on `settings`. Without auth nobody may deploy by default (ADES_ANONYMOUS_ROLES is empty), yet
    most tests deploy the packages they run: `anonymous_deploys` gives `anonymous` the deployer role on a server
    without auth, as an operator would with ADES_ANONYMOUS_ROLES=["deployer"]; the security tests pass False to
    meet the server as it ships."""
    if anonymous_deploys and not (settings.auth_enabled or settings.anonymous_roles):
        settings = settings.model_copy(update={"anonymous_roles": ["deployer"]})
    holder: dict[str, Callable[..., Any]] = {}
    # port 0 first, the app second: the app needs to know its public URL (job links, result hrefs)
    server: BaseWSGIServer = make_server("127.0.0.1", 0, lambda env, start: holder["app"](env, start), threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    app = create_app(settings, public_url=url, workers=workers, sync_timeout=120, file_roots=file_roots)
    holder["app"] = app
    thread = threading.Thread(target=server.serve_forever, name="ades-e2e-server", daemon=True)
    thread.start()
    session = requests.Session()
    session.trust_env = False  # never a proxy for 127.0.0.1
    try:
        yield LiveServer(url=url, app=app, settings=settings, http=session)
    finally:
        server.shutdown()
        thread.join(5)
        close_app(app)
        drop_test_indexes(settings)


@pytest.fixture(scope="module")
def e2e_settings(es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # direct sink: workers' update-job steps write ES themselves, whatever .ades/services.env says about SNS
    return Settings(es_url=es_url, index_prefix=f"e2e-{uuid.uuid4().hex[:10]}-",
                    data_dir=tmp_path_factory.mktemp("e2e") / "data", event_sink="direct")


@pytest.fixture(scope="module")
def live(e2e_settings: Settings) -> Iterator[LiveServer]:
    yield from serve_app(e2e_settings)
