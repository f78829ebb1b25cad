"""`ades index migrate`: move the `jobs` (or `processes`) alias to a new index made from the current template,
while the API and the consumer keep writing.

The node ades runs locally has no `_reindex`, no `_delete_by_query` and no scripts, so the copy is ours:

1. The next `<alias>-vN` is created from the template (ades/store/mappings), with no alias. The alias' index, the
   *source*, gets a marker in its mapping's `_meta` (ades.store.blocks): it names the target, and a second
   migration refuses to start while it is there.
2. **Copy.** The lowest local checkpoint C of each source shard over its copies is read (every write numbered up
   to C is done on every copy), the source refreshed, a point in time opened on it, and every document read
   with `search_after` (in `_shard_doc` order) and indexed into the target with `_bulk`, `_source` as stored.
   Every write numbered up to C is in that point in time; every later write has a higher `_seq_no`.
3. **Catch up.** Again: new checkpoints C', refresh, then the documents whose `_seq_no` is above C, read in
   `_seq_no` order with `search_after` (a document written again meanwhile only moves further on) and indexed
   into the target, which thus always holds the newest version read. Passes repeat while they find many.
4. **Hold.** The source gets a write block (`_block/write`, which returns once the writes in flight are done),
   and one last catch-up pass copies what changed since the last checkpoints: the target now equals the source.
   A document deleted from the source during the copy (the count tells) is found by its id and deleted from
   the target too. Then one `_aliases` request moves the alias (removing it from the source, which must still
   have it, and adding it to the target as write index): atomic for every reader and writer.
5. The source stays, write-blocked and marked, until `ades index migrate --drop-old NAME`.

Why no update is lost or regressed: until the alias moves, the source is the only index anyone writes, and by
step 4 the target holds the newest version of every source document; after it, the target is. The writers
(ades.store.jobs, ades.store.processes) cooperate in two ways. A write the block refuses goes again after a
moment when the refusing index carries the marker (a held write reaches the target through the moved alias);
any other block still fails at once. And a status update is written to the index its document was read from,
with that read's `if_seq_no`/`if_primary_term`: one read from the source before the move and written after it
meets the block and goes again (re-reading the target and merging, ades.merge), and never the target's copy of
its document, whose `_seq_no` counts in another sequence and may be equal by chance. Writers of an older ades
that write through the alias with the source's numbers must be stopped or upgraded first.

Writes are held for the last pass and the move: a fraction of a second when the passes before it caught up
(benchmarks/README.md); a held submission or update waits that long, not failing (ades.store.blocks).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from elasticsearch import ApiError, Elasticsearch, TransportError

from ades.config import Settings
from ades.store.blocks import MIGRATION_META, migration_of
from ades.store.bulk import BulkConnection, ndjson_text
from ades.store.setup import (
    LAYOUTS,
    alias_indexes,
    family_of,
    generation,
    generations,
    layout_of,
    put_template,
)

CALM = 1000
"""A catch-up pass that copied at most this many documents is the last one before writes are held: the held
pass then has about as many to copy, a fraction of a second's work."""
MAX_PASSES = 10
"""Catch-up passes at most before holding writes anyway (writers as fast as the copy never let it get calm)."""
KEEP_ALIVE = "5m"

Progress = Callable[[str, int], None]
"""Told after every batch, and once when writes begin to be held: the phase (`copy`, `catch-up`, `held`) and the
documents written to the target so far."""


class MigrationRefused(RuntimeError):
    """The migration (or the drop) cannot start or go on; the message says why and what to do."""


@dataclass(frozen=True)
class Migration:
    alias: str
    source: str
    target: str
    documents: int
    """Documents the target holds when the alias moves."""
    copied: int
    """Documents of the first copy."""
    recopied: int
    """Documents copied again because they changed during the copy (the held pass included)."""
    passes: int
    """Catch-up passes, the held one included."""
    deleted: int
    """Documents deleted from the source during the copy, deleted from the target too."""
    held_s: float
    """Seconds writes were held (block to alias move)."""
    seconds: float


def source_of(client: Elasticsearch, alias: str) -> str:
    """The one index `alias` points at."""
    indexes = alias_indexes(client, alias)
    if len(indexes) != 1:
        raise MigrationRefused(f"{alias}: the alias points at {indexes or 'no index'}; a migration needs exactly one "
                               "(start ades once to create it)")
    return indexes[0]


def needs_migration(client: Elasticsearch, alias: str) -> bool:
    """Whether the alias' index has an older layout than the family's template."""
    return layout_of(client, source_of(client, alias)) < LAYOUTS[family_of(alias)]


def migrate(client: Elasticsearch, settings: Settings, alias: str, *, batch: int = 1000,
            progress: Progress | None = None) -> Migration:
    """Move `alias` to a new index made from its current template, copying every document (see the module doc)."""
    started = time.monotonic()
    source = source_of(client, alias)
    marker = migration_of(client, source)
    if marker is not None:
        raise MigrationRefused(
            f"{alias}: a migration of {source} to {marker.get('to')} began at {marker.get('since')} and is running or "
            f"was interrupted; if none runs, `ades index migrate --drop-old {marker.get('to')}` and migrate again")
    put_template(client, alias)
    known = generations(client, alias)
    target = f"{alias}-v{max([*known.values(), generation(alias, source) or 0]) + 1}"
    client.indices.create(index=target)
    bulk = BulkConnection.from_settings(settings)
    copier = _Copier(client, bulk, source, target, batch, settings.es_bulk_max_bytes,
                     progress or (lambda phase, n: None))
    try:
        client.cluster.health(index=target, wait_for_status="yellow", timeout="30s")
        refresh_interval = _setting(client, target, "index.refresh_interval")
        client.indices.put_settings(index=target, settings={"index.refresh_interval": "-1"})
        _mark(client, source, {"to": target, "since": datetime.now(UTC).isoformat(timespec="seconds")})
        checkpoints = copier.checkpoints()
        client.indices.refresh(index=source)
        copier.copy_all()
        copied, passes = copier.written, 0
        # the target's first refresh of everything copied takes seconds at millions of documents: done here, it
        # leaves the refresh while writes are held only the last changes, and the passes below catch up with
        # what was written during it
        client.indices.put_settings(index=target, settings={"index.refresh_interval": refresh_interval})
        client.indices.refresh(index=target)
        while True:
            found, checkpoints = copier.catch_up(checkpoints, "catch-up")
            passes += 1
            if found <= CALM or passes >= MAX_PASSES:
                break
        held_from = time.monotonic()
        deleted = _hold_and_move(client, copier, alias, checkpoints)
        held = time.monotonic() - held_from
    except BaseException:
        _abandon(client, alias, source, target)
        raise
    finally:
        bulk.close()
    return Migration(alias=alias, source=source, target=target, documents=_count(client, target), copied=copied,
                     recopied=copier.written - copied, passes=passes + 1, deleted=deleted, held_s=held,
                     seconds=time.monotonic() - started)


def _hold_and_move(client: Elasticsearch, copier: _Copier, alias: str, checkpoints: dict[str, int]) -> int:
    """Block the source's writes, copy the last changes and deletions, move the alias; the number deleted."""
    source, target = copier.source, copier.target
    client.indices.add_block(index=source, block="write")
    copier.progress("held", copier.written)
    copier.catch_up(checkpoints, "held")
    deleted = copier.drop_deleted()
    client.indices.refresh(index=target)
    client.indices.update_aliases(actions=[
        {"remove": {"index": source, "alias": alias, "must_exist": True}},
        {"add": {"index": target, "alias": alias, "is_write_index": True}},
    ])
    return deleted


def drop_old(client: Elasticsearch, alias: str, name: str) -> str:
    """Delete `name`, an index of the alias' family the alias does not point at: one a migration left behind
    (write-blocked), or the target of one that was interrupted (whose source then gets its writes back). What
    was done, in a sentence."""
    if generation(alias, name) is None:
        raise MigrationRefused(f"{name}: not an index of {alias} (those are named {alias}-vN)")
    current = alias_indexes(client, alias)
    if name in current:
        raise MigrationRefused(f"{name}: the alias {alias} points at it; only an earlier index can be dropped")
    existed = client.indices.exists(index=name)
    if existed:
        client.indices.delete(index=name)
    for index in current:
        marker = migration_of(client, index)
        if marker is not None and marker.get("to") == name:
            _unblock(client, index)
            _unmark(client, index)
            return f"dropped {name}, the target of an interrupted migration; {index} takes writes again"
    if not existed:
        raise MigrationRefused(f"{name}: no such index")
    return f"dropped {name}"


class _Copier:
    """Copies documents of `source` into `target` in batches, counting what it wrote."""

    def __init__(self, client: Elasticsearch, bulk: BulkConnection, source: str, target: str, batch: int,
                 max_bytes: int, progress: Progress) -> None:
        self.client, self.bulk, self.source, self.target = client, bulk, source, target
        self.batch = batch
        self.max_bytes = max_bytes
        self.progress = progress
        self.written = 0

    def checkpoints(self) -> dict[str, int]:
        """Per source shard, the lowest local checkpoint of its copies."""
        stats = self.client.indices.stats(index=self.source, level="shards", metric="docs",
                                          filter_path="indices.*.shards.*.seq_no.local_checkpoint")
        shards = next(iter(stats.body["indices"].values()))["shards"]
        return {shard: min(copy["seq_no"]["local_checkpoint"] for copy in copies) for shard, copies in shards.items()}

    def copy_all(self) -> None:
        pit = self.client.open_point_in_time(index=self.source, keep_alive=KEEP_ALIVE)["id"]
        try:
            after: list[Any] | None = None
            while True:
                answer = self.client.search(pit={"id": pit, "keep_alive": KEEP_ALIVE}, size=self.batch,
                                            sort=["_shard_doc"], search_after=after, track_total_hits=False)
                pit = answer.get("pit_id", pit)
                hits = answer["hits"]["hits"]
                if not hits:
                    return
                self._write(hits, "copy")
                after = hits[-1]["sort"]
        finally:
            self.client.options(ignore_status=404).close_point_in_time(id=pit)

    def catch_up(self, since: dict[str, int], phase: str) -> tuple[int, dict[str, int]]:
        """Copy every document written after the checkpoints `since`; how many, and the checkpoints this pass
        began from (the next pass's `since`)."""
        checkpoints = self.checkpoints()
        self.client.indices.refresh(index=self.source)
        found = 0
        for shard, above in since.items():
            for hits in self._changed(shard, above):
                self._write(hits, phase)
                found += len(hits)
        return found, checkpoints

    def _changed(self, shard: str, above: int) -> Iterator[list[dict[str, Any]]]:
        after: list[Any] | None = None
        while True:
            answer = self.client.search(index=self.source, preference=f"_shards:{shard}", size=self.batch,
                                        query={"range": {"_seq_no": {"gt": above}}}, sort=[{"_seq_no": "asc"}],
                                        search_after=after, track_total_hits=False)
            hits = answer["hits"]["hits"]
            if not hits:
                return
            yield hits
            after = hits[-1]["sort"]

    def drop_deleted(self) -> int:
        """With the source's writes held: delete from the target what the source no longer has. The target holds
        every source document by now, so equal counts mean equal sets and nothing to read."""
        self.client.indices.refresh(index=self.target)
        if _count(self.client, self.target) == _count(self.client, self.source):
            return 0
        pit = self.client.open_point_in_time(index=self.target, keep_alive=KEEP_ALIVE)["id"]
        deleted = 0
        try:
            after: list[Any] | None = None
            while True:
                answer = self.client.search(pit={"id": pit, "keep_alive": KEEP_ALIVE}, size=10_000, source=False,
                                            sort=["_shard_doc"], search_after=after, track_total_hits=False)
                hits = answer["hits"]["hits"]
                if not hits:
                    break
                docs = self.client.mget(index=self.source, ids=[h["_id"] for h in hits], source=False)["docs"]
                gone = [d["_id"] for d in docs if not d.get("found")]
                if gone:
                    self._send(ndjson_text({"delete": {"_index": self.target, "_id": i}} for i in gone))
                    deleted += len(gone)
                after = hits[-1]["sort"]
        finally:
            self.client.options(ignore_status=404).close_point_in_time(id=pit)
        self.client.indices.refresh(index=self.target)
        if _count(self.client, self.target) != _count(self.client, self.source):
            raise MigrationRefused(f"{self.target} does not hold the documents of {self.source} after the copy")
        return deleted

    def _write(self, hits: list[dict[str, Any]], phase: str) -> None:
        """Index the hits into the target, in requests of at most max_bytes (a job may be megabytes)."""
        texts: list[str] = []
        size = 0
        for hit in hits:
            text = ndjson_text(({"index": {"_index": self.target, "_id": hit["_id"]}}, hit["_source"]))
            if texts and size + len(text) > self.max_bytes:
                self._send("".join(texts))
                texts, size = [], 0
            texts.append(text)
            size += len(text)
        if texts:
            self._send("".join(texts))
        self.written += len(hits)
        self.progress(phase, self.written)

    def _send(self, text: str) -> None:
        answer = self.bulk.bulk(text.encode(), filter_path="errors,items.*.error")
        if answer.body.get("errors"):
            errors = [e for item in answer.body.get("items", []) for op in item.values() if (e := op.get("error"))]
            raise MigrationRefused(f"writing {self.target} failed: {errors[:1]}")


def _count(client: Elasticsearch, index: str) -> int:
    return int(client.count(index=index)["count"])


def _setting(client: Elasticsearch, index: str, name: str) -> Any:
    answer = client.indices.get_settings(index=index, name=name, flat_settings=True)
    return answer.body.get(index, {}).get("settings", {}).get(name)


def _meta(client: Elasticsearch, index: str) -> dict[str, Any]:
    return dict(client.indices.get_mapping(index=index)[index]["mappings"].get("_meta", {}))


def _mark(client: Elasticsearch, index: str, marker: dict[str, str]) -> None:
    client.indices.put_mapping(index=index, meta={**_meta(client, index), MIGRATION_META: marker})


def _unmark(client: Elasticsearch, index: str) -> None:
    client.indices.put_mapping(index=index, meta={k: v for k, v in _meta(client, index).items()
                                                  if k != MIGRATION_META})


def _unblock(client: Elasticsearch, index: str) -> None:
    client.indices.put_settings(index=index, settings={"index.blocks.write": None})


def _abandon(client: Elasticsearch, alias: str, source: str, target: str) -> None:
    """After a failure before the alias moved: the source as it was (writable, unmarked), the target gone. Best
    effort: with the node away the marker stays, and tells the next migration what to do. When the alias did move
    (the answer to the move was lost), the migration is done and nothing is undone."""
    try:
        if alias_indexes(client, alias) != [source]:
            return
        _unblock(client, source)
        _unmark(client, source)
        client.options(ignore_status=404).indices.delete(index=target)
    except (ApiError, TransportError):
        pass
