"""`ades index migrate` as an operator runs it, the processes index migrated while processes are deployed,
replaced and undeployed, and a migration that is stopped or interrupted leaving the old index as it was."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from ades.config import Settings
from ades.models import Job, JobQuery
from ades.store import JobStore, ProcessNotFound, ProcessStore, ensure_indexes, make_client
from ades.store.blocks import MIGRATION_META
from ades.store.migrate import migrate
from ades.store.processes import GENERATION_DOC, DeployedProcess
from ades.store.setup import LAYOUTS, alias_indexes, drop_indexes
from tests.helpers import store_jobs
from tests.integration.test_migrate import legacy_jobs_index

JOBS = LAYOUTS["jobs"]

pytestmark = pytest.mark.integration
T0 = datetime(2026, 7, 1, tzinfo=UTC)
PACKAGE = {"cwlVersion": "v1.2", "class": "CommandLineTool", "baseCommand": "true", "inputs": [], "outputs": []}


@pytest.fixture
def clean(settings: Settings) -> Iterator[Elasticsearch]:
    es = make_client(settings)
    yield es
    drop_indexes(es, settings)
    es.close()


def ades_index(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ADES_ES_URL": settings.elasticsearch_url, "ADES_INDEX_PREFIX": settings.index_prefix,
           "ADES_DATA_DIR": str(settings.data_dir)}
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "ades.cli", "index", "migrate", *args], env=env,
                          cwd=settings.data_dir, capture_output=True, text=True, timeout=120)


def documents(es: Elasticsearch, index: str) -> dict[str, Any]:
    es.indices.refresh(index=index)
    hits = es.search(index=index, size=10_000, query={"match_all": {}})["hits"]["hits"]
    return {h["_id"]: h["_source"] for h in hits}


def test_the_command_migrates_what_is_behind_and_drops_the_old_index_when_asked(settings: Settings,
                                                                                clean: Elasticsearch) -> None:
    es = clean
    ensure_indexes(es, settings)
    fresh = ades_index(settings)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.splitlines() == [
        f"{settings.jobs_alias}: {settings.jobs_alias}-v{JOBS} has the current layout; nothing to do",
        f"{settings.processes_alias}: {settings.processes_alias}-v1 has the current layout; nothing to do"]
    drop_indexes(es, settings)

    old = legacy_jobs_index(es, settings)
    store = JobStore(es, settings)
    jobs = [Job(process_id="echo", created=T0 + timedelta(seconds=i)) for i in range(250)]
    store_jobs(store, jobs, refresh=True)
    before = documents(es, old)
    done = ades_index(settings, "--batch-size", "40")
    assert done.returncode == 0, done.stderr
    new = f"{settings.jobs_alias}-v2"  # the next generation of jobs-v1
    assert done.stdout.startswith(f"{settings.jobs_alias}: {old} -> {new}: 250 documents (250 copied"), done.stdout
    assert f"{settings.processes_alias}-v1 has the current layout; nothing to do" in done.stdout
    assert f"`ades index migrate --drop-old {old}` deletes it" in done.stdout
    assert alias_indexes(es, settings.jobs_alias) == [new]
    assert documents(es, new) == before
    newest_first = store.search(JobQuery(size=3))
    assert [j["id"] for j in newest_first.jobs] == [j.id for j in jobs[::-1][:3]]

    refused = ades_index(settings, "--drop-old", new)
    assert refused.returncode == 1 and "the alias" in refused.stderr and "points at it" in refused.stderr
    assert es.indices.exists(index=new)
    stranger = ades_index(settings, "--drop-old", "some-other-index")
    assert stranger.returncode == 1 and "not an index of" in stranger.stderr, stranger.stderr
    dropped = ades_index(settings, "--drop-old", old)
    assert dropped.returncode == 0 and dropped.stdout.strip() == f"dropped {old}", dropped
    assert not es.indices.exists(index=old)

    again = ades_index(settings, "--index", "jobs")  # asked by name: migrated though its layout is current
    assert again.returncode == 0, again.stderr
    assert alias_indexes(es, settings.jobs_alias) == [f"{settings.jobs_alias}-v3"]
    assert store.get(jobs[0].id)["id"] == jobs[0].id


def test_an_interrupted_migration_is_refused_until_its_target_is_dropped(settings: Settings,
                                                                          clean: Elasticsearch) -> None:
    """What a migration killed while it held writes leaves (its marker, the block, a half-made target): the next
    one refuses and says how to go on; dropping the target gives the old index its writes back."""
    es = clean
    old = legacy_jobs_index(es, settings)
    target = f"{settings.jobs_alias}-v2"
    es.indices.create(index=target)
    es.indices.put_mapping(index=old, meta={**es.indices.get_mapping(index=old)[old]["mappings"]["_meta"],
                                            MIGRATION_META: {"to": target, "since": "2026-07-01T00:00:00+00:00"}})
    es.indices.add_block(index=old, block="write")

    refused = ades_index(settings)
    assert refused.returncode == 1
    assert f"a migration of {old} to {target}" in refused.stderr and f"--drop-old {target}" in refused.stderr
    dropped = ades_index(settings, "--drop-old", target)
    assert dropped.returncode == 0, dropped.stderr
    assert "interrupted migration" in dropped.stdout and f"{old} takes writes again" in dropped.stdout
    store_jobs(JobStore(es, settings), [Job(process_id="echo")])  # writable again
    assert MIGRATION_META not in es.indices.get_mapping(index=old)[old]["mappings"]["_meta"]
    assert ades_index(settings).returncode == 0
    assert alias_indexes(es, settings.jobs_alias) == [target]


def test_a_migration_that_fails_leaves_the_old_index_as_it_was(settings: Settings, clean: Elasticsearch) -> None:
    es = clean
    old = legacy_jobs_index(es, settings)
    store = JobStore(es, settings)
    store_jobs(store, [Job(process_id="echo") for _ in range(30)], refresh=True)

    def stop(phase: str, written: int) -> None:
        if phase == "held":
            raise KeyboardInterrupt  # Ctrl-C, or SIGTERM in the command, while writes are held

    with pytest.raises(KeyboardInterrupt):
        migrate(es, settings, settings.jobs_alias, batch=10, progress=stop)
    assert alias_indexes(es, settings.jobs_alias) == [old]
    assert not es.indices.exists(index=f"{settings.jobs_alias}-v2")
    assert MIGRATION_META not in es.indices.get_mapping(index=old)[old]["mappings"]["_meta"]
    assert es.indices.get_settings(index=old, flat_settings=True)[old]["settings"].get("index.blocks.write") in (
        None, "false")
    store_jobs(store, [Job(process_id="echo")])  # takes writes
    assert migrate(es, settings, settings.jobs_alias).documents == 31


def test_processes_migrate_while_they_are_deployed_replaced_and_undeployed(settings: Settings,
                                                                          clean: Elasticsearch) -> None:
    es = clean
    ensure_indexes(es, settings)
    store = ProcessStore(es, settings)
    for i in range(40):
        store.deploy(DeployedProcess(id=f"tool-{i}", version="1.0", package=PACKAGE, deployed=T0))
    changes = iter(range(15))  # a change per batch would keep every catch-up pass busy: the copy never calms
    late: list[threading.Thread] = []
    errors: list[str] = []

    def change(k: int) -> None:
        """A deploy, a replace and an undeploy, of processes the copy has or has not reached yet."""
        try:
            store.deploy(DeployedProcess(id=f"new-{k}", version="1.0", package=PACKAGE, deployed=T0))
            store.deploy(DeployedProcess(id=f"tool-{(k * 7) % 40}", version="1.0", package=PACKAGE,
                                         title=f"replaced {k}", deployed=T0 + timedelta(seconds=k)), replace=True)
            store.delete(f"tool-{(k * 3 + 1) % 40}:1.0")
        except ProcessNotFound:
            pass  # undeployed by an earlier change
        except Exception as err:  # reported by the test's thread
            errors.append(repr(err))

    def progress(phase: str, written: int) -> None:
        if phase == "held":  # these writes wait for the alias to move (one thread: the changes keep their order)
            if not late and (k := next(changes, None)) is not None:
                late.append(threading.Thread(target=change, args=(k,)))
                late[-1].start()
        elif (k := next(changes, None)) is not None:
            change(k)

    done = migrate(es, settings, settings.processes_alias, batch=5, progress=progress)
    for thread in late:
        thread.join(timeout=60)
    assert not errors, errors
    assert alias_indexes(es, settings.processes_alias) == [f"{settings.processes_alias}-v2"] == [done.target]
    assert done.deleted > 0, done  # undeployed after the copy had them

    # What the processes are now, read through a fresh store: exactly what the changes made of them.
    fresh = ProcessStore(make_client(settings), settings)
    got = documents(es, settings.processes_alias)
    keys = {k for k in got if k != GENERATION_DOC}
    expected: dict[str, str | None] = {f"tool-{i}:1.0": None for i in range(40)}
    for k in range(next(changes, 15)):
        expected[f"new-{k}:1.0"] = None
        expected[f"tool-{(k * 7) % 40}:1.0"] = f"replaced {k}"
        expected.pop(f"tool-{(k * 3 + 1) % 40}:1.0", None)
    assert keys == set(expected)
    assert {key: fresh.get(key).title for key in keys} == expected


def test_a_start_on_an_older_layout_says_how_to_migrate(settings: Settings, clean: Elasticsearch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    old = legacy_jobs_index(clean, settings)
    with caplog.at_level(logging.WARNING, logger="ades.store.setup"):
        ensure_indexes(clean, settings)  # what every server start does
    # only what ades says (the client's own request log may be captured too, when another test turned it on)
    said = "\n".join(r.getMessage() for r in caplog.records if r.name == "ades.store.setup")
    assert f"{settings.jobs_alias}: {old} has an older layout than ades' (v{JOBS}); `ades index migrate`" in said
    assert settings.processes_alias not in said
    assert alias_indexes(clean, settings.jobs_alias) == [old]  # left where it is
