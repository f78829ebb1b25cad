"""A job's outputs as this node reaches them: in the job's folder on this node's disk (it ran here), or, with
ADES_OUTPUT_STORAGE=s3 and the job run on another host, through its results manifest and objects in the bucket
(ades.results_manifest).

Either way the routes see the same things: cwltool's output object with local paths (for a job that ran elsewhere,
rebased onto where its folder would be here, a folder that does not exist), each file of it as an `OutputFile`, and
the folders of the outputs folder. A file from object storage is given by reference as a redirect to a fresh
presigned URL, and by value (raw results, inline content) streamed or read through this node.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flask import Response, redirect, send_file

from ades.api.errors import ApiProblem, problem
from ades.jobs.folder import JobFolder, inside
from ades.results_manifest import Manifest, RasterInfo, listing, normalized, rebased
from ades.results_stac import RasterFacts, looks_raster, raster_info
from ades.storage import S3Storage, StorageError

MANIFESTS_KEPT = 256
"""Manifests kept in memory per server process: a job's manifest never changes once the job has succeeded, and
clients read a job's results in bursts (the document, then each file)."""
CHUNK = 256 * 1024


@dataclass
class OutputFile:
    """One file of a job's outputs: on this node's disk (`path`) or an object in the bucket (`key`)."""

    name: str
    size: int
    path: Path | None = None
    key: str | None = None
    storage: S3Storage | None = None

    def content(self, limit: int) -> bytes | None:
        """The bytes, when there are at most `limit` of them and they can be read; else None."""
        if self.size > limit:
            return None
        try:
            if self.path is not None:
                return self.path.read_bytes()
            return self._stored().open(self._key()).read()
        except (OSError, StorageError):
            return None

    def download(self, mimetype: str) -> Response:
        """The file as a link's target: sent from this disk, or a redirect to a presigned URL of its object (which
        answers with `mimetype` and the file's name, as send_file would: clients name what they save by it)."""
        if self.path is not None:
            return send_file(self.path, mimetype=mimetype, download_name=self.name)
        disposition = f"inline; filename*=UTF-8''{quote(self.name, safe='')}"
        return redirect(self._stored().presign(self._key(), mimetype, disposition), 302)

    def inline(self, mimetype: str) -> Response:
        """The file's bytes in this answer (a raw result by value): sent from this disk, or streamed from its
        object."""
        if self.path is not None:
            return send_file(self.path, mimetype=mimetype, download_name=self.name)
        try:
            body = self._stored().open(self._key())
        except StorageError as err:
            raise problem(503, "storage-unavailable", f"the file {self.name!r} cannot be read now: {err}",
                          "Storage unavailable") from None
        return Response(body.iter_chunks(CHUNK), mimetype=mimetype, direct_passthrough=True,
                        headers={"Content-Length": str(self.size)})

    def _stored(self) -> S3Storage:
        assert self.storage is not None, "an OutputFile has a path or a storage"
        return self.storage

    def _key(self) -> str:
        assert self.key is not None, "an OutputFile has a path or a key"
        return self.key


@dataclass
class JobOutputs:
    """What this node can serve of a job's outputs."""

    folder: JobFolder
    outputs: dict[str, Any] | None
    """cwltool's output object with paths on this node; None when neither this node nor the bucket has it"""
    manifest: Manifest | None = None
    storage: S3Storage | None = None

    @property
    def root(self) -> Path:
        """The job's outputs folder on this node (where it would be, for a job that ran elsewhere)."""
        return self.folder.outputs.resolve() if self.manifest is not None else self.folder.outputs

    def file(self, candidate: str) -> OutputFile | None:
        """A File output's file, by its `path`; None when it cannot be served."""
        if self.manifest is None:
            return _local(self.folder.file(candidate))
        try:
            relative = Path(candidate).resolve().relative_to(self.root).as_posix()
        except (ValueError, OSError):
            return None
        return self._object(relative)

    def output_file(self, relative: str) -> OutputFile | None:
        """A file of the outputs folder by its path relative to it; None when there is none."""
        if self.manifest is None:
            return _local(self.folder.output_file(relative))
        path = normalized(relative)
        return self._object(path) if path else None

    def entries(self, relative: str) -> list[tuple[str, OutputFile | None]] | None:
        """What lies right inside a folder of the outputs folder ('' for itself), in name order: (name, its file),
        or (name, None) for a folder. None when there is no such folder."""
        path = normalized(relative)
        if path is None:
            return None
        if self.manifest is not None:
            found = listing(self.manifest.files, path)
            if found is None:
                return None
            return [(name, None if stored is None else self._object(f"{path}/{name}" if path else name))
                    for name, stored in found]
        root = self.folder.outputs.resolve()
        directory = (root / path).resolve() if path else root
        if not directory.is_relative_to(root) or not directory.is_dir():
            return None
        entries: list[tuple[str, OutputFile | None]] = []
        for child in sorted(directory.iterdir()):
            if _inside_dir(root, child):
                entries.append((child.name, None))
            elif (file := _local(inside(root, child))) is not None:
                entries.append((child.name, file))
        return entries

    def raster_facts(self) -> dict[str, RasterFacts]:
        """For the STAC Item of a job that ran elsewhere: each raster's facts by its local path, read through a
        presigned URL once per manifest kept (ades.results_manifest says why not on the running host)."""
        if self.manifest is None or self.storage is None:
            return {}
        facts: dict[str, RasterFacts] = {}
        for relative, stored in self.manifest.files.items():
            if not looks_raster(relative, stored.type):
                continue
            info = self.manifest.rasters.get(relative)
            if info is None:
                bbox, kind = raster_info(self.storage.presign(stored.key))
                info = RasterInfo(bbox=bbox, type=kind)
                if kind is not None:  # read as a raster: kept; a failed read is tried again next time
                    self.manifest.rasters[relative] = info
            facts[str(self.root / relative)] = (info.bbox, info.type)
        return facts

    def _object(self, relative: str) -> OutputFile | None:
        stored = self.manifest.files.get(relative) if self.manifest is not None else None
        if stored is None:
            return None
        return OutputFile(relative.rsplit("/", 1)[-1], stored.size, key=stored.key, storage=self.storage)


def _local(path: Path | None) -> OutputFile | None:
    if path is None:
        return None
    try:
        return OutputFile(path.name, path.stat().st_size, path=path)
    except OSError:
        return None


def _inside_dir(root: Path, child: Path) -> bool:
    try:
        resolved = child.resolve()
    except (OSError, ValueError):
        return False
    return resolved.is_relative_to(root) and resolved.is_dir()


class ManifestCache:
    """The latest manifests read, by job (LRU); a manifest that is not there is not remembered."""

    def __init__(self, size: int = MANIFESTS_KEPT) -> None:
        self.size = size
        self._kept: OrderedDict[str, Manifest] = OrderedDict()
        self._lock = threading.Lock()

    def forget(self, job_id: str) -> None:
        """Drop the job's manifest (its objects were removed)."""
        with self._lock:
            for key in [k for k in self._kept if k.endswith(f"/{job_id}")]:
                del self._kept[key]

    def get(self, storage: S3Storage, job_id: str) -> Manifest | None:
        key = f"{storage.bucket}/{storage.prefix}/{job_id}"
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]
        try:
            manifest = storage.manifest(job_id)
        except StorageError as err:
            raise problem(503, "storage-unavailable", f"job {job_id}: its results cannot be read from object "
                          f"storage now: {err}", "Storage unavailable") from None
        if manifest is not None:
            with self._lock:
                self._kept[key] = manifest
                while len(self._kept) > self.size:
                    self._kept.popitem(last=False)
        return manifest


def find_outputs(folder: JobFolder, storage: S3Storage | None, cache: ManifestCache) -> JobOutputs:
    """The job's outputs from this node's disk when it ran here (or runs here: its outputs folder exists), else from
    the bucket when outputs are stored there."""
    saved = folder.saved_outputs()
    if saved is not None or storage is None or folder.outputs.is_dir():
        return JobOutputs(folder, saved)
    manifest = cache.get(storage, folder.job_id)
    if manifest is None:
        return JobOutputs(folder, None, storage=storage)
    found = JobOutputs(folder, None, manifest=manifest, storage=storage)
    found.outputs = rebased(manifest.outputs, found.root)
    return found


def not_here(doc: dict[str, Any], found: JobOutputs, code: str, title: str) -> ApiProblem:
    """The 404 of a job whose outputs this node cannot reach, saying where they are."""
    job_id = doc["id"]
    host = doc.get("host")
    where = f"the host that ran it ({host})" if isinstance(host, str) and host else "the host that ran it"
    if found.storage is None:
        detail = (f"job {job_id}: this node has no copy of its output files: they are on {where}, or were removed "
                  "(with ADES_OUTPUT_STORAGE=s3 every node serves them); the URLs in the job's `outputs` lead to them")
    else:
        detail = (f"job {job_id}: this node has no copy of its outputs and object storage holds no results manifest "
                  f"for it (s3://{found.storage.bucket}/{found.storage.prefix}/{job_id}/: it ran before manifests "
                  f"were kept, or its objects were removed); ask {where}, or use the URLs in the job's `outputs`")
    return problem(404, code, detail, title)
