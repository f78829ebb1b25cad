"""Creates the indexes idempotently: a template per index family, a versioned physical index, a stable alias.

Users and tools address the alias (`jobs`, `processes`); a future mapping change creates `jobs-v2` and moves the
alias without anyone changing their queries.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from elasticsearch import BadRequestError, Elasticsearch, NotFoundError

from ades.config import Settings

SCHEMA_VERSION = 1


def _mapping(name: str) -> dict[str, Any]:
    return json.loads(resources.files("ades.store").joinpath(f"mappings/{name}.json").read_text())


def physical_index(alias: str) -> str:
    return f"{alias}-v{SCHEMA_VERSION}"


def _ensure(client: Elasticsearch, alias: str, body: dict[str, Any]) -> None:
    index = physical_index(alias)
    client.indices.put_index_template(
        name=f"{alias}-template",
        index_patterns=[f"{alias}-v*"],
        template={"settings": body["settings"], "mappings": body["mappings"]},
        priority=200,
    )
    if not client.indices.exists(index=index):
        try:
            client.indices.create(index=index, aliases={alias: {"is_write_index": True}})
        except BadRequestError as err:
            # Another process created it between our check and our create: that is the state we want.
            if err.error != "resource_already_exists_exception":
                raise
    try:
        client.indices.get_alias(index=index, name=alias)
    except NotFoundError:
        client.indices.put_alias(index=index, name=alias, is_write_index=True)
    client.cluster.health(index=index, wait_for_status="yellow", timeout="30s")


def ensure_indexes(client: Elasticsearch, settings: Settings) -> None:
    """Create the `jobs` and `processes` indexes (and `job-logs` where logs are shipped there) and their aliases if
    they are missing; change nothing else."""
    _ensure(client, settings.jobs_alias, _mapping("jobs"))
    _ensure(client, settings.processes_alias, _mapping("processes"))
    if settings.log_store == "elasticsearch":
        _ensure(client, settings.logs_alias, _mapping("job-logs"))


def drop_indexes(client: Elasticsearch, settings: Settings) -> None:
    """Delete ades's indexes and templates (tests and `ades services reset` use it)."""
    for alias in (settings.jobs_alias, settings.processes_alias, settings.logs_alias):
        client.indices.delete(index=physical_index(alias), ignore_unavailable=True)
        client.options(ignore_status=404).indices.delete_index_template(name=f"{alias}-template")
