"""A job's log shipped to the job-logs index by its host and read back in pieces (real Elasticsearch)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ades.config import Settings
from ades.jobs.logship import LogShipper
from ades.store import ensure_indexes, make_client
from ades.store.logs import LogShipConfig, LogStore
from ades.store.setup import drop_indexes
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def shipping(settings: Settings):
    settings = settings.model_copy(update={"log_store": "elasticsearch"})
    client = make_client(settings)
    ensure_indexes(client, settings)
    yield settings, LogStore(client, settings)
    drop_indexes(client, settings)
    client.close()


def _ship(settings: Settings, path: Path, job_id: str, max_bytes: int = 16 * 1024 * 1024) -> LogShipper:
    config = LogShipConfig.from_settings(settings)
    assert config is not None
    return LogShipper(config.model_copy(update={"max_bytes": max_bytes}), job_id, path)


def test_a_growing_log_is_readable_while_shipped_and_whole_at_the_end(shipping, tmp_path: Path) -> None:
    settings, store = shipping
    path = tmp_path / "job.log"
    path.write_text("started\nhalf a li")
    shipper = _ship(settings, path, "job-a")

    def shipped() -> str:
        store.client.indices.refresh(index=settings.logs_alias)
        return store.read("job-a").text

    wait_for(lambda: shipped() == "started\n", 10, "the first whole line to be shipped")
    with path.open("a") as f:
        f.write("ne\nsatellite 🛰 done")  # the last line has no line end: it goes at the end
    wait_for(lambda: shipped() == "started\nhalf a line\n", 10, "the second line")
    assert not store.read("job-a").final
    shipper.close()
    store.client.indices.refresh(index=settings.logs_alias)
    whole = store.read("job-a")
    assert whole.text == path.read_text() and whole.final and whole.next_offset == path.stat().st_size
    later = store.read("job-a", offset=len(b"started\nhalf"))
    assert later.text == " a line\nsatellite 🛰 done" and later.final


def test_a_log_past_its_cap_is_cut_at_a_line_and_says_so(shipping, tmp_path: Path) -> None:
    settings, store = shipping
    path = tmp_path / "job.log"
    path.write_text("".join(f"line {i:04d}\n" for i in range(1000)))  # 10,000 bytes
    _ship(settings, path, "job-b", max_bytes=4096).close()
    store.client.indices.refresh(index=settings.logs_alias)
    got = store.read("job-b")
    kept, note = got.text.rsplit("line", 1)[0], got.text.splitlines()[-1]
    assert got.final and len(kept.encode()) <= 4096 and kept.endswith("\n")
    assert path.read_text().startswith(got.text.split("ades:")[0])
    assert "cut here" in note and "ADES_LOG_SHIP_MAX_BYTES" in note


def test_removing_the_logs_of_jobs(shipping, tmp_path: Path) -> None:
    settings, store = shipping
    for job in ("gone-1", "gone-2", "kept"):
        (tmp_path / job).write_text(f"{job}\n")
        _ship(settings, tmp_path / job, job).close()
    store.client.indices.refresh(index=settings.logs_alias)
    assert store.delete(["gone-1", "gone-2"]) == 2
    store.client.indices.refresh(index=settings.logs_alias)
    assert store.read("gone-1").text == "" and store.read("kept").text == "kept\n"
