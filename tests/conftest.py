"""Shared fixtures. Integration tests use the real Elasticsearch that `ades services start` runs (or ADES_ES_URL);
each test gets indexes of its own under a random prefix, removed afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch

from ades.config import Settings
from ades.store import JobStore, ProcessStore, ensure_indexes, make_client
from ades.store.setup import drop_indexes


@pytest.fixture(scope="session")
def es_url() -> str:
    settings = Settings()
    if settings.uses_external_es:
        return settings.elasticsearch_url
    from ades.services.elasticsearch import ensure_running

    return ensure_running(settings)


@pytest.fixture
def settings(es_url: str, tmp_path) -> Settings:
    return Settings(es_url=es_url, index_prefix=f"test-{uuid.uuid4().hex[:10]}-", data_dir=tmp_path / "data")


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
