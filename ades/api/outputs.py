"""cwltool's output object as clients get it: every CWL field kept (basename, nameroot, nameext, size, checksum,
format, contents, secondaryFiles, listing) at any depth (records, arrays, `Any`), and every File and Directory
located by a URL this server serves instead of a path on its disk.

A file lies in the job's outputs folder and is served by `/jobs/{id}/files/{path}` (the path relative to that
folder); a Directory gets its `listing` from disk when cwltool did not list it, so a client can fetch every file.
A file outside the outputs folder (which a job cannot produce) is left out rather than pointing at the host.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

from ades.results_manifest import disk_listing
from ades.storage import local_path

_CWLTOOL_OWN = "http://commonwl.org/cwltool#generation"
_HOST_ONLY = ("path", "dirname", "location", "nameroot", "nameext", _CWLTOOL_OWN)
"""Where a file lies on this host, what its basename says, and cwltool's own bookkeeping: what cwltool leaves out of the
output object it prints."""


def served(value: Any, files_url: str, outputs_dir: Path) -> Any:
    """`value` with each File and Directory in it located under `files_url` (`…/jobs/{id}/files`)."""
    result = _served(value, files_url.rstrip("/"), outputs_dir.resolve())
    return None if result is _GONE else result


def _served(value: Any, base: str, root: Path) -> Any:
    if isinstance(value, list):
        return [item for item in (_served(v, base, root) for v in value) if item is not _GONE]
    if not isinstance(value, dict):
        return value
    if value.get("class") not in ("File", "Directory"):
        return {key: _kept(_served(item, base, root)) for key, item in value.items() if key != _CWLTOOL_OWN}
    path = local_path(value)
    if path is None:  # a literal cwltool did not write out: nothing on disk to serve
        return {k: v for k, v in value.items() if k not in _HOST_ONLY}
    try:
        relative = path.resolve().relative_to(root)
    except ValueError:
        return _GONE
    result = {k: _kept(_served(v, base, root)) for k, v in value.items() if k not in _HOST_ONLY}
    result["location"] = f"{base}/{urllib.parse.quote(relative.as_posix())}"
    if value["class"] == "Directory":
        result["location"] += "/"
        if "listing" not in value:
            result["listing"] = [_served(item, base, root) for item in disk_listing(path)]
    return result


def _kept(value: Any) -> Any:
    return None if value is _GONE else value


class _Gone:
    """Marks a file that cannot be served, so it is left out of its list."""


_GONE: Any = _Gone()
