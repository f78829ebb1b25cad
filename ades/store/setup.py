"""Creates the indexes idempotently: a template per index family, a versioned physical index, a stable alias.

Users and tools address the alias (`jobs`, `processes`). The template (ades/store/mappings) always holds the
current layout; a fresh install creates `<alias>-v<layout>` from it. An install whose alias already points at an
index keeps that index, whatever its layout: `ades index migrate` (ades.store.migrate) copies it into the next
`<alias>-vN` and moves the alias, without anyone changing their queries.
"""

from __future__ import annotations

import json
import logging
import re
from importlib import resources
from typing import Any

from elasticsearch import BadRequestError, Elasticsearch, NotFoundError

from ades.config import Settings

log = logging.getLogger(__name__)

LAYOUTS = {"jobs": 3, "processes": 1, "job-logs": 1, "hosts": 1}
"""The layout each family's template holds (the `vN` of its `_meta.schema`): jobs v2 sorts its segments on
`created` (the order of the job listing), v1 did not; jobs v3 adds the batch fields (ades.jobs.batches)."""


def family_of(alias: str) -> str:
    """`jobs`, `processes`, `job-logs` or `hosts`, from an alias with any index prefix."""
    for family in LAYOUTS:
        if alias.endswith(family):
            return family
    raise ValueError(f"not an ades alias: {alias!r}")


def mapping(family: str) -> dict[str, Any]:
    """The family's index body (settings and mappings) as ades/store/mappings holds it."""
    return json.loads(resources.files("ades.store").joinpath(f"mappings/{family}.json").read_text())


def physical_index(alias: str) -> str:
    """The index a fresh install creates behind `alias`."""
    return f"{alias}-v{LAYOUTS[family_of(alias)]}"


def generation(alias: str, index: str) -> int | None:
    """N of an index named `<alias>-vN`, else None."""
    found = re.fullmatch(re.escape(alias) + r"-v(\d+)", index)
    return int(found.group(1)) if found else None


def generations(client: Elasticsearch, alias: str) -> dict[str, int]:
    """Every `<alias>-vN` index there is, with its N."""
    names = client.indices.get(index=f"{alias}-v*", allow_no_indices=True, expand_wildcards="all",
                               filter_path="*.settings.index.uuid")
    found = {name: generation(alias, name) for name in names.body or {}}
    return {name: n for name, n in found.items() if n is not None}


def alias_indexes(client: Elasticsearch, alias: str) -> list[str]:
    """The indexes `alias` points at (none when it does not exist)."""
    try:
        return sorted(client.indices.get_alias(name=alias).body)
    except NotFoundError:
        return []


def schema_layout(schema: str | None) -> int:
    """The layout an index mapping's `_meta.schema` names (`ades jobs v2` -> 2); 1 for none (the first layouts
    named none, or v1)."""
    last = str(schema or "").rsplit(" ", 1)[-1]
    return int(last[1:]) if last[:1] == "v" and last[1:].isdigit() else 1


def layout_of(client: Elasticsearch, index: str) -> int:
    """The layout an index was made with."""
    answer = client.indices.get_mapping(index=index, filter_path="*.mappings._meta.schema")
    for body in (answer.body or {}).values():
        return schema_layout(body.get("mappings", {}).get("_meta", {}).get("schema"))
    return 1


def put_template(client: Elasticsearch, alias: str) -> None:
    """The family's current layout as the template of every `<alias>-vN` created from now on (existing indexes keep
    theirs). It carries no alias: only creation by ensure_indexes or the end of a migration points the alias."""
    body = mapping(family_of(alias))
    client.indices.put_index_template(
        name=f"{alias}-template",
        index_patterns=[f"{alias}-v*"],
        template={"settings": body["settings"], "mappings": body["mappings"]},
        priority=200,
    )


def missing_fields(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The top-level fields of `wanted` (a template's properties) that an index mapping's `current` properties lack:
    what put_mapping may add to an existing index (a new field; a changed one needs `ades index migrate`)."""
    return {name: body for name, body in wanted.items() if name not in current}


def add_new_fields(client: Elasticsearch, alias: str, indexes: list[str]) -> None:
    """Give existing indexes the fields ades added since they were made (e.g. `host` in `jobs`): a field added to
    a mapping applies to documents written from then on, without a migration."""
    wanted = mapping(family_of(alias))["mappings"]["properties"]
    answer = client.indices.get_mapping(index=",".join(indexes), filter_path="*.mappings.properties")
    for index, body in (answer.body or {}).items():
        new = missing_fields(body.get("mappings", {}).get("properties", {}), wanted)
        if new:
            client.indices.put_mapping(index=index, properties=new)
            log.info("%s: added the fields %s", index, ", ".join(sorted(new)))


def _ensure(client: Elasticsearch, alias: str) -> None:
    put_template(client, alias)
    current = alias_indexes(client, alias)
    if current:
        client.cluster.health(index=current, wait_for_status="yellow", timeout="30s")
        add_new_fields(client, alias, current)
        behind = [index for index in current if layout_of(client, index) < LAYOUTS[family_of(alias)]]
        if behind:
            log.warning("%s: %s has an older layout than ades' (v%d); `ades index migrate` moves it while ades runs",
                        alias, ", ".join(behind), LAYOUTS[family_of(alias)])
        return
    index = physical_index(alias)
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
    """Create the `jobs`, `processes` and `hosts` indexes (and `job-logs` where logs are shipped there) and their
    aliases if they are missing, and keep the templates current; an existing index only gains new fields."""
    _ensure(client, settings.jobs_alias)
    _ensure(client, settings.processes_alias)
    _ensure(client, settings.hosts_alias)
    if settings.log_store == "elasticsearch":
        _ensure(client, settings.logs_alias)


def drop_indexes(client: Elasticsearch, settings: Settings) -> None:
    """Delete ades's indexes, every generation, and templates (tests and benchmarks use it)."""
    for alias in (settings.jobs_alias, settings.processes_alias, settings.logs_alias, settings.hosts_alias):
        names = sorted(generations(client, alias))
        if names:
            client.indices.delete(index=",".join(names), ignore_unavailable=True)
        client.options(ignore_status=404).indices.delete_index_template(name=f"{alias}-template")
