"""What any node needs to serve a job's results from object storage, kept beside its output objects.

The host that runs a job uploads its output files (ades.storage.S3Storage) and then one small object,
`<prefix>/<job id>/manifest.json`: cwltool's output object with every path made relative to the job's outputs
folder (and every Directory listed, as the server would list it from disk), and each file's object key, size and
media type by that relative path. A node that never saw the job's folder rebases the output object onto where that
folder would be on its own disk (`rebased`), so the code that builds results documents, /files URLs and STAC Items
runs unchanged, and reads the bytes (or presigns a URL) by key.

What the STAC Item needs of a raster (WGS84 bounds) is read by the node serving the Item, from a presigned URL, once
per manifest it keeps in memory: reading it on the running host would import rasterio into every job process with
a raster output (200 ms of CPU and 50 MB, measured), a cost paid by every such job rather than by the few Items asked
for.

Everything here but `build` is a pure function of the manifest.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ades.storage import is_directory, is_file, local_path

MANIFEST_NAME = "manifest.json"
"""Beside the job's output folders in the bucket: `<prefix>/<job id>/manifest.json` (an output id names a folder
there, `<prefix>/<job id>/<output id>/...`, so no output's object can take this key)."""
_HOST_ONLY = ("path", "location", "dirname")


class StoredFile(BaseModel):
    """One output file in object storage."""

    model_config = ConfigDict(extra="forbid")

    key: str
    size: int
    type: str


class RasterInfo(BaseModel):
    """What the STAC Item takes from a raster: its WGS84 bounds (None: not georeferenced) and refined media type."""

    model_config = ConfigDict(extra="forbid")

    bbox: tuple[float, float, float, float] | None = None
    type: str | None = None


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    job_id: str
    outputs: dict[str, Any]
    """cwltool's output object; each File and Directory's `path` relative to the outputs folder"""
    files: dict[str, StoredFile]
    """relative path (POSIX) -> the object holding it"""
    rasters: dict[str, RasterInfo] = Field(default_factory=dict, exclude=True)
    """relative path -> what STAC needs of it: filled by the node that serves the Item, kept with the manifest in its
    memory, never stored"""


# --- on the running host -----------------------------------------------------------------------------------------
def relative_outputs(value: Any, outputs_dir: Path) -> Any:
    """`value` with each File's and Directory's location made a `path` relative to `outputs_dir`, and each Directory
    cwltool did not list listed from disk (deep, in name order, as the server lists it). A file outside the folder
    keeps its absolute path: no node serves it, as none would on the running host."""
    if isinstance(value, list):
        return [relative_outputs(v, outputs_dir) for v in value]
    if not isinstance(value, dict):
        return value
    if not (is_file(value) or is_directory(value)):
        return {k: relative_outputs(v, outputs_dir) for k, v in value.items()}
    path = local_path(value)
    result = {k: relative_outputs(v, outputs_dir) for k, v in value.items() if k not in _HOST_ONLY}
    if path is None:
        return result
    result["path"] = _relative(path, outputs_dir) or str(path)
    if is_directory(value) and "listing" not in value:
        result["listing"] = [relative_outputs(entry, outputs_dir) for entry in disk_listing(path)]
    return result


def _relative(path: Path, root: Path) -> str | None:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except (ValueError, OSError):
        return None


def disk_listing(directory: Path) -> list[dict[str, Any]]:
    """A Directory's entries read from disk, in name order, as cwltool would list them (deep)."""
    entries: list[dict[str, Any]] = []
    for child in sorted(directory.iterdir()) if directory.is_dir() else []:
        if child.is_dir():
            entries.append({"class": "Directory", "basename": child.name, "path": str(child)})
        elif child.is_file():
            entries.append({"class": "File", "basename": child.name, "path": str(child), "size": child.stat().st_size})
    return entries


def build(job_id: str, outputs: dict[str, Any], outputs_dir: Path, uploaded: dict[Path, StoredFile]) -> Manifest:
    """The manifest of a job whose files were `uploaded` (local path -> its object). Files outside `outputs_dir` are
    left out: no node serves them (the running host's /files does not either)."""
    files: dict[str, StoredFile] = {}
    for path, stored in uploaded.items():
        relative = _relative(path, outputs_dir)
        if relative is not None:
            files[relative] = stored
    return Manifest(job_id=job_id, outputs=relative_outputs(outputs, outputs_dir), files=files)


# --- on any node -------------------------------------------------------------------------------------------------
def rebased(value: Any, root: Path) -> Any:
    """The manifest's output object with each relative `path` made absolute under `root` (and a file:// location
    beside it), as cwltool's object would be had the job run in a folder there."""
    if isinstance(value, list):
        return [rebased(v, root) for v in value]
    if not isinstance(value, dict):
        return value
    result = {k: rebased(v, root) for k, v in value.items()}
    if (is_file(value) or is_directory(value)) and isinstance(value.get("path"), str):
        path = Path(value["path"]) if value["path"].startswith("/") else root / value["path"]
        result["path"] = str(path)
        result["location"] = path.as_uri()
    return result


def normalized(relative: str) -> str | None:
    """A request's path inside the outputs folder, normalized ('' for the folder itself); None when it leaves the
    folder or cannot be a path."""
    if "\x00" in relative or relative.startswith("/"):
        return None
    parts: list[str] = []
    for part in PurePosixPath(relative).parts:
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def listing(files: dict[str, StoredFile], directory: str) -> list[tuple[str, StoredFile | None]] | None:
    """The entries right inside `directory` ('' for the outputs folder), in name order: (name, its file) for a file,
    (name, None) for a folder. None when no stored file lies under it."""
    prefix = f"{directory.strip('/')}/" if directory.strip("/") else ""
    entries: dict[str, StoredFile | None] = {}
    for relative, stored in files.items():
        if not relative.startswith(prefix):
            continue
        name, _, rest = relative[len(prefix):].partition("/")
        entries[name] = None if rest else stored
    return sorted(entries.items()) if entries else None
