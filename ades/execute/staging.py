"""What cwltool may stage for a run: every file it maps comes from the job's own folder or the input roots, and
every http(s) file is fetched by ades.fetch (addresses checked, bytes and time capped) into the job's folder.

The job order's http(s) inputs are fetched before cwltool starts (`stage_job_order`), so a refused or broken
download fails the job with its reason and cwltool only ever sees local files. What the job order does not hold (a
package's defaults, files its expressions make up) meets the same rules in cwltool's path mapper (`path_mapper`),
which replaces cwltool's own downloader (to /tmp, no caps, any address) and refuses a `file:` location outside the
job folder and the input roots, whoever named it.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ades.fetch import Fetcher, FetchError

HTTP = ("http", "https")


class StagingError(RuntimeError):
    """A file of the run cannot be staged; the message names it and says why."""


class Staging:
    """The files one run may use: fetched into `directory` (each URL once; owned by `owner`, the sandbox's uid
    and gid, when given), or local under one of `roots`."""

    def __init__(self, fetcher: Fetcher, directory: Path, roots: list[Path],
                 owner: tuple[int, int | None] | None = None) -> None:
        self.fetcher = fetcher
        self.directory = directory
        self.roots = [root.resolve() for root in roots]
        self.owner = owner
        self._fetched: dict[str, Path] = {}

    def fetch(self, url: str) -> Path:
        """The local copy of `url`, fetched on first use into a folder of its own (names may repeat)."""
        local = self._fetched.get(url)
        if local is None:
            try:
                local = self.fetcher.fetch_to(url, self.directory / str(len(self._fetched)))
            except FetchError as err:
                raise StagingError(str(err)) from None
            if self.owner is not None:
                os.chown(local, self.owner[0], -1 if self.owner[1] is None else self.owner[1])
            self._fetched[url] = local
        return local

    def check_local(self, path: str | Path, what: str) -> None:
        """Raise StagingError unless `path` (symlinks followed) is inside the job folder or an input root."""
        resolved = Path(path).resolve()
        if not any(resolved.is_relative_to(root) for root in self.roots):
            raise StagingError(f"{what} {path} is outside the job folder and the directories this server reads "
                               "input files from")


def stage_job_order(value: Any, staging: Staging) -> Any:
    """The job order with every http(s) File replaced by its fetched copy. Raises StagingError."""
    if isinstance(value, list):
        return [stage_job_order(item, staging) for item in value]
    if not isinstance(value, dict):
        return value
    result = {key: stage_job_order(item, staging) for key, item in value.items()}
    location = result.get("location")
    if result.get("class") in ("File", "Directory") and isinstance(location, str) and _remote(location):
        if result["class"] == "Directory":
            raise StagingError(f"{location}: a Directory cannot be fetched over http(s)")
        result["location"] = staging.fetch(location).as_uri()
    return result


def _remote(location: str) -> bool:
    return urllib.parse.urlsplit(location).scheme in HTTP


def _local_path(location: str, basedir: str) -> str | None:
    """The host path of a location cwltool would read, or None for what is not a file (a literal)."""
    if location.startswith("_:"):
        return None
    from cwltool.stdfsaccess import abspath

    return abspath(location, basedir)


_CLASSES: dict[str, type] = {}


def path_mapper(staging: Staging) -> Callable[..., Any]:
    """cwltool's PathMapper for a run under `staging` (set as the runtime context's `path_mapper`)."""
    if "mapper" not in _CLASSES:
        from cwltool.errors import WorkflowException
        from cwltool.pathmapper import PathMapper

        class StagingPathMapper(PathMapper):  # type: ignore[misc]
            def __init__(self, referenced_files: Any, basedir: str, stagedir: str, separateDirs: bool = True,
                         *, staging: Staging) -> None:
                self.staging = staging  # before PathMapper.__init__, which visits every file
                super().__init__(referenced_files, basedir, stagedir, separateDirs)

            def visit(self, obj: Any, stagedir: str, basedir: str, copy: bool = False, staged: bool = False) -> None:
                location = obj["location"]
                try:
                    if isinstance(obj.get("dirname"), str):  # where cwltool links the file: the job's folders only
                        self.staging.check_local(obj["dirname"], "the staging folder")
                    if _remote(location):
                        if obj.get("class") == "Directory":
                            raise StagingError(f"{location}: a Directory cannot be fetched over http(s)")
                        local = self.staging.fetch(location).as_uri()
                        super().visit({**obj, "location": local}, stagedir, basedir, copy, staged)
                        self._pathmap[location] = self._pathmap[local]
                        return
                    path = _local_path(location, basedir)
                    if path is not None:
                        self.staging.check_local(path, f"the {obj.get('class', 'file')}")
                except StagingError as err:
                    raise WorkflowException(str(err)) from None
                super().visit(obj, stagedir, basedir, copy, staged)

        _CLASSES["mapper"] = StagingPathMapper
    mapper = _CLASSES["mapper"]

    def make(referenced_files: Any, basedir: str, stagedir: str, separateDirs: bool = True) -> Any:
        return mapper(referenced_files, basedir, stagedir, separateDirs, staging=staging)

    return make
