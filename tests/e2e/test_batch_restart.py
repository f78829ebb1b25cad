"""A batch survives its server: `ades serve` killed (SIGKILL) while some children are fed (journaled) and the rest
wait in the store, then started again: every child runs, and none is fed twice (the reconciler re-queues the
journaled ones, the feeder the others)."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections import Counter
from pathlib import Path

import pytest
import requests

from ades.config import Settings
from ades.jobs.batches import FEED_AHEAD
from ades.jobs.folder import DataDir
from ades.jobs.pause import pause, resume
from tests.conftest import free_port
from tests.e2e.conftest import drop_test_indexes
from tests.helpers import wait_for
from tests.integration.conftest import start_serve

pytestmark = pytest.mark.integration
ITEMS = FEED_AHEAD + 8


def _journaled(files: list[Path]) -> Counter[str]:
    """How many journal lines name each job id, over `files`."""
    return Counter(json.loads(line)["spec"]["job_id"] for path in files for line in path.read_text().splitlines())


def test_a_killed_server_goes_on_with_its_batch(es_url: str, tmp_path: Path) -> None:
    settings = Settings(es_url=es_url, index_prefix=f"e2e-{uuid.uuid4().hex[:10]}-", data_dir=tmp_path / "data",
                        event_sink="direct")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ADES_ES_URL": str(es_url), "ADES_INDEX_PREFIX": settings.index_prefix,
           "ADES_DATA_DIR": str(settings.data_dir), "ADES_EVENT_SINK": "direct", "ADES_PUBLIC_URL": url}
    journals = DataDir(settings.data_dir).journals
    pause(settings.data_dir, "fed children must wait")
    server = start_serve(env, port, tmp_path / "serve.log", "--workers", "1", "--job-workers", "1")
    try:
        items = [{"inputs": {"message": f"item {i}"}} for i in range(ITEMS)]
        answer = requests.post(f"{url}/processes/echo/execution", json={"batch": {"items": items}}, timeout=60,
                               headers={"Prefer": "respond-async"})
        assert answer.status_code == 201, answer.text
        parent = answer.json()["jobID"]
        fed = wait_for(lambda: len(_journaled(sorted(journals.glob("*")))) >= FEED_AHEAD and
                       _journaled(sorted(journals.glob("*"))), 30, "the feeder to fill its room")
        assert len(fed) == FEED_AHEAD, fed  # no more than its room while nothing starts
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        before = set(journals.glob("*"))
        resume(settings.data_dir)
        server = start_serve(env, port, tmp_path / "serve.log", "--workers", "1", "--job-workers", "1")

        def ended() -> dict | None:
            info = requests.get(f"{url}/jobs/{parent}", timeout=30).json()
            return info if info["status"] in ("successful", "failed", "dismissed") else None

        info = wait_for(ended, 180, "the batch to end after the restart", interval=0.5)
        assert info["status"] == "successful" and info["batch"]["counts"]["successful"] == ITEMS, info
        after = _journaled(sorted(set(journals.glob("*")) - before))
        assert set(after) >= set(fed) and len(after) == ITEMS, after  # the fed ones re-queued, the rest fed here
        assert max(after.values()) == 1, after  # none twice
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=60)
        drop_test_indexes(settings)
