"""ProcessStore: deployed application packages, one document per `id:version`.

Plain `id` resolves to the most recently deployed version, so redeploying an older version number on purpose
still makes it the default; `id:version` always addresses exactly one document.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from elasticsearch import ApiError, ConflictError, Elasticsearch, NotFoundError, TransportError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ades.config import Settings
from ades.models import ID_PATTERN, UtcDatetime, iso, utcnow
from ades.store.blocks import HeldWrites, blocked_index
from ades.store.client import StoreUnavailable

VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"


class ProcessNotFound(LookupError):
    pass


class ProcessExists(ValueError):
    pass


class DeployedProcess(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ID_PATTERN)
    version: str = Field(pattern=VERSION_PATTERN)
    package: dict[str, Any] = Field(description="the CWL document as deployed")
    description: dict[str, Any] = Field(default_factory=dict, description="the OGC process description")
    mutable: bool = True
    title: str | None = None
    deployed: UtcDatetime = Field(default_factory=utcnow)
    float_spellings: dict[str, str] = Field(
        default_factory=dict,
        description="JSON pointer -> spelling of the package's floats whose spelling a float does not keep "
                    "(ades.floats); Elasticsearch's client writes plain floats")

    @model_validator(mode="after")
    def _respelled(self) -> DeployedProcess:
        if self.float_spellings:
            # imported here: the status consumer's Lambda carries ades.store without ades.floats (and ruamel)
            from ades import floats

            floats.respell(self.package, self.float_spellings)
        return self

    @property
    def key(self) -> str:
        return f"{self.id}:{self.version}"

    def to_document(self) -> dict[str, Any]:
        doc = self.model_dump(mode="json")
        doc["deployed"] = iso(self.deployed)
        from ades import floats

        doc["float_spellings"] = floats.spellings(self.package)
        return doc


def split_ref(ref: str) -> tuple[str, str | None]:
    """`echo:1.0` → ("echo", "1.0"); `echo` → ("echo", None)."""
    pid, _, version = ref.partition(":")
    return pid, version or None


GENERATION_DOC = "_generation"
"""A document without an `id` field (so no query or aggregation over processes sees it) holding a token that every
deploy, replace and undeploy changes."""


class ProcessStore:
    """Resolving a process is on every execute request, and the latest version of a plain `id` takes a sorted
    search; even one realtime GET per request to check for changes cost more ES CPU than indexing the job. So
    resolutions are cached per store object and trusted as long as (1) the stamp file in the data dir, which every
    deploy, replace and undeploy through this server rewrites, is unchanged (a `stat`, so every worker of this
    server sees a change at its next request), and (2) the store's generation token, read at most once per
    `process_cache_ttl` seconds, is unchanged (so a change made through another server sharing the store is seen
    within that time). Both change before the change is acknowledged."""

    def __init__(self, client: Elasticsearch, settings: Settings) -> None:
        self.client = client
        self.index = settings.processes_alias
        self.ttl = settings.process_cache_ttl
        self._stamp_path = Path(settings.data_dir) / f"{settings.index_prefix}processes.generation"
        self._cache: dict[str, DeployedProcess] = {}
        self._lock = threading.Lock()
        self._generation: str | None = None
        self._stamp: tuple[int, int] | None = None
        self._checked_at = float("-inf")

    def _current_generation(self) -> str | None:
        try:
            doc = self._call("read the processes' generation", self.client.get, index=self.index,
                             id=GENERATION_DOC)
        except NotFoundError:
            return None
        return str(doc["_source"].get("token"))

    def _read_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self._stamp_path)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def _validate_cache(self) -> bool:
        """Drop the cache if anything changed; whether the cache may be filled (there is a generation)."""
        with self._lock:
            stamp = self._read_stamp()
            now = time.monotonic()
            if stamp == self._stamp and now - self._checked_at < self.ttl:
                return self._generation is not None
            generation = self._current_generation()
            if generation is None or generation != self._generation:
                self._cache.clear()
            self._generation, self._stamp, self._checked_at = generation, stamp, now
            return generation is not None

    def _changed(self) -> None:
        self._cache.clear()
        self._call("mark a process change", self.client.index, index=self.index, id=GENERATION_DOC,
                   document={"token": uuid.uuid4().hex}, refresh=True)
        # a new file (new inode) each time, so a change is seen even within the file system's mtime granularity
        self._stamp_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._stamp_path.with_name(f".{self._stamp_path.name}.{uuid.uuid4().hex}")
        temporary.write_text(uuid.uuid4().hex)
        os.replace(temporary, self._stamp_path)

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        held = HeldWrites(self.client)
        while True:
            try:
                return fn(**kwargs)
            except (NotFoundError, ConflictError):
                raise
            except ApiError as err:
                index = blocked_index(err.body)
                if index is not None and held.again({index}):
                    continue  # a migration holds writes for a moment; the next try goes through the moved alias
                raise StoreUnavailable(f"could not {what}: {err}") from err
            except TransportError as err:
                raise StoreUnavailable(f"could not {what}: {err}") from err

    def deploy(self, process: DeployedProcess, *, replace: bool = False) -> None:
        """Store a version; refuses to overwrite an existing `id:version` unless `replace`."""
        try:
            self._call(
                "deploy process",
                self.client.index,
                index=self.index,
                id=process.key,
                document=process.to_document(),
                op_type="index" if replace else "create",
                refresh=True,
            )
        except ConflictError:
            raise ProcessExists(process.key) from None
        self._changed()

    def get(self, ref: str) -> DeployedProcess:
        cacheable = self._validate_cache()
        cached = self._cache.get(ref)
        if cached is not None:
            return cached
        found = self._lookup(ref)
        if cacheable:
            if len(self._cache) > 1024:
                self._cache.clear()
            self._cache[ref] = found
        return found

    def _lookup(self, ref: str) -> DeployedProcess:
        pid, version = split_ref(ref)
        if version is not None:
            try:
                doc = self._call("read process", self.client.get, index=self.index, id=f"{pid}:{version}")
            except NotFoundError:
                raise ProcessNotFound(ref) from None
            return DeployedProcess.model_validate(doc["_source"])
        versions = self.versions(pid, size=1)
        if not versions:
            raise ProcessNotFound(ref)
        return versions[0]

    def versions(self, pid: str, size: int = 100) -> list[DeployedProcess]:
        res = self._call(
            "list process versions",
            self.client.search,
            index=self.index,
            query={"term": {"id": pid}},
            sort=[{"deployed": "desc"}, {"version": "desc"}],
            size=size,
        )
        return [DeployedProcess.model_validate(h["_source"]) for h in res["hits"]["hits"]]

    def latest_all(self, size: int = 1000) -> list[DeployedProcess]:
        """The latest version of every process, sorted by id."""
        res = self._call(
            "list processes",
            self.client.search,
            index=self.index,
            size=0,
            aggs={
                "ids": {
                    "terms": {"field": "id", "size": size, "order": {"_key": "asc"}},
                    "aggs": {"latest": {"top_hits": {"size": 1, "sort": [{"deployed": "desc"}]}}},
                }
            },
        )
        return [
            DeployedProcess.model_validate(b["latest"]["hits"]["hits"][0]["_source"])
            for b in res["aggregations"]["ids"]["buckets"]
        ]

    def delete(self, ref: str) -> None:
        """Undeploy one version (`id:version`) or every version of `id`."""
        pid, version = split_ref(ref)
        if version is not None:
            try:
                self._call("undeploy process", self.client.delete, index=self.index, id=f"{pid}:{version}",
                           refresh=True)
            except NotFoundError:
                raise ProcessNotFound(ref) from None
            self._changed()
            return
        found = self.versions(pid)
        if not found:
            raise ProcessNotFound(ref)
        for p in found:
            self._call("undeploy process", self.client.delete, index=self.index, id=p.key, refresh=True)
        self._changed()
