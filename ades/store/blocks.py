"""Writes refused by an index write block, and whether to send them again.

`ades index migrate` (ades.store.migrate) holds the writes to the index it copies while it copies the last changes
and moves the alias; that index carries a marker in its mapping's `_meta` from the migration's start. A write that
meets the block of a marked index goes again after a short wait (it then reaches the new index through the alias);
one that meets any other block (an operator's, the disk's flood stage) fails at once, as it always did.
"""

from __future__ import annotations

import re
import time
from typing import Any

from elasticsearch import ApiError, Elasticsearch, TransportError

from ades.store.client import backoff

MIGRATION_META = "ades-migration"
"""Key of the marker a migration puts into the `_meta` of the index it copies: `{"to": target, "since": time}`."""
MIGRATION_WAIT = 30.0
"""Seconds a writer keeps sending a write held by a migration. The hold lasts a fraction of a second
(benchmarks/README.md); this covers a node slowed by other work, after which the write fails as before (a status
update then comes again from the queue, a submission is answered 503)."""
# `_block/write` first adds a temporary block ("moving to block index write"), then the lasting one ("index write")
_BLOCK = re.compile(r"index \[([^\]]+)\] blocked by: \[FORBIDDEN/8/[^\]]*index write")


def blocked_index(error: Any) -> str | None:
    """The index whose write block refused a write, from the error Elasticsearch answered (a bulk item's `error`,
    or an ApiError's body); None for any other error."""
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        error = error["error"]
    if not isinstance(error, dict) or error.get("type") != "cluster_block_exception":
        return None
    found = _BLOCK.search(str(error.get("reason", "")))
    return found.group(1) if found else None


def migration_of(client: Elasticsearch, index: str) -> dict[str, Any] | None:
    """The migration marker of `index`, or None (no marker, or the index cannot be read)."""
    try:
        answer = client.indices.get_mapping(index=index, filter_path=f"*.mappings._meta.{MIGRATION_META}")
    except (ApiError, TransportError):
        return None
    for body in (answer.body or {}).values():
        marker = body.get("mappings", {}).get("_meta", {}).get(MIGRATION_META)
        if isinstance(marker, dict):
            return marker
    return None


class HeldWrites:
    """One caller's waits for writes held by a migration: `again(indexes)` says whether to send them again (every
    index that refused is being migrated, and MIGRATION_WAIT has not run out since the first refusal), after
    sleeping a little."""

    def __init__(self, client: Elasticsearch, wait: float = MIGRATION_WAIT) -> None:
        self.client = client
        self.wait = wait
        self._deadline: float | None = None
        self._attempt = 0
        self._migrating: set[str] = set()

    def again(self, indexes: set[str]) -> bool:
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self.wait
        if now >= self._deadline:
            return False
        for index in indexes - self._migrating:
            if migration_of(self.client, index) is None:
                return False
            self._migrating.add(index)
        backoff(min(self._attempt, 5), 0.02, 0.5)
        self._attempt += 1
        return True
