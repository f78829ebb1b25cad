"""The files of `ades-cwl-runner`: a job order's File and Directory references made absolute, and the results of a
job turned back into a CWL output object whose files are local copies."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from ades import floats
from ades.client import Client, served_filename

REFERENCES = ("File", "Directory")
LINK_FIELDS = ("href", "type", "rel", "title", "hreflang")
"""Fields of an OGC link, which a results document may carry beside (or instead of) a CWL object's fields."""
IGNORED_KEYS = ("$namespaces", "$schemas", "$base")
CHUNK = 64 * 1024


class RunnerError(Exception):
    """The run cannot go on; `str()` says why."""


# --- the job order -----------------------------------------------------------------------------------------------
def job_inputs(path: Path, namespaces: dict[str, str] | None = None) -> dict[str, Any]:
    """The inputs of the job order at `path` (YAML or JSON) as cwltool reads them: relative File and Directory
    references resolved against the file's folder, `format` names expanded with its `$namespaces` (over the tool's
    `namespaces`)."""
    try:
        data = floats.safe_yaml().load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise RunnerError(f"cannot read the job order {path}: {err.strerror or err}") from err
    except Exception as err:  # any YAML error
        raise RunnerError(f"the job order {path} is not YAML or JSON: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RunnerError(f"the job order {path} must be a map of input names to values")
    namespaces = {**(namespaces or {}), **(data.get("$namespaces") or {})}
    base = Path(os.path.abspath(path)).parent.as_uri() + "/"
    return {key: absolute(value, base, namespaces) for key, value in data.items() if key not in IGNORED_KEYS}


def absolute(value: Any, base: str, namespaces: dict[str, str]) -> Any:
    """`value` with every File/Directory `location` (or `path`) an absolute URI, at any depth."""
    if isinstance(value, list):
        return [absolute(item, base, namespaces) for item in value]
    if not isinstance(value, dict):
        return value
    if value.get("class") not in REFERENCES:
        return {key: absolute(item, base, namespaces) for key, item in value.items()}
    result = {key: item for key, item in value.items() if key not in ("location", "path")}
    if isinstance(value.get("location"), str):
        result["location"] = resolve(value["location"], base)
    elif isinstance(value.get("path"), str):
        result["location"] = resolve(value["path"], base, is_path=True)
    for key in ("secondaryFiles", "listing"):
        if isinstance(value.get(key), list):
            result[key] = [absolute(item, base, namespaces) for item in value[key]]
    fmt = value.get("format")
    if isinstance(fmt, str) and ":" in fmt and fmt.split(":", 1)[0] in namespaces:
        prefix, name = fmt.split(":", 1)
        result["format"] = namespaces[prefix] + name
    return result


def resolve(reference: str, base: str, is_path: bool = False) -> str:
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", reference) and not is_path:
        return reference  # a URI already (file:, http:, _: literal ids)
    if is_path or reference.startswith("/"):
        folder = Path(unquote(urlsplit(base).path))
        return Path(os.path.normpath(folder / reference)).as_uri()
    # a URI reference: characters a URI cannot hold (a space) are escaped, escapes already written are kept
    return urljoin(base, quote(reference, safe="/%:@!$&'()*+,;=-._~"))


# --- the results -------------------------------------------------------------------------------------------------
def results_to_outputs(document: dict[str, Any]) -> dict[str, Any]:
    """The CWL output object a results document stands for: `{"value": v}` is v, a link `{"href": ...}` is a File
    at that URL, a CWL File or Directory object stays one (with `href` as its location if it has none)."""
    return {name: from_result(entry) for name, entry in document.items()}


def from_result(entry: Any) -> Any:
    if isinstance(entry, list):
        return [from_result(item) for item in entry]
    if not isinstance(entry, dict):
        return entry
    if entry.get("class") in REFERENCES:
        return cwl_object(entry)
    if "value" in entry and "href" not in entry:
        return walk_objects(entry["value"])
    if isinstance(entry.get("href"), str):
        return cwl_object({"class": "File", **entry})
    return walk_objects(entry)


def walk_objects(value: Any) -> Any:
    if isinstance(value, list):
        return [walk_objects(item) for item in value]
    if isinstance(value, dict):
        if value.get("class") in REFERENCES:
            return cwl_object(value)
        return {key: walk_objects(item) for key, item in value.items()}
    return value


def cwl_object(entry: dict[str, Any]) -> dict[str, Any]:
    result = {key: item for key, item in entry.items() if key not in LINK_FIELDS}
    if "location" not in result and isinstance(entry.get("href"), str):
        result["location"] = entry["href"]
    for key in ("secondaryFiles", "listing"):
        if isinstance(result.get(key), list):
            result[key] = [walk_objects(item) for item in result[key]]
    return result


class OutputFetcher:
    """Downloads every File and Directory of an output object into `outdir` and points the object at the copies."""

    def __init__(self, client: Client, outdir: Path, base: str) -> None:
        self.client = client
        self.outdir = outdir
        self.base = base.rstrip("/") + "/"
        self.taken: set[Path] = set()
        self.fetched: dict[str, Path] = {}
        """URL -> its local copy: outputs that name the same file (a file updated in place, passed on by two
        outputs) name the same copy, as under cwltool."""

    def fetch_all(self, outputs: dict[str, Any]) -> dict[str, Any]:
        return {name: self.fetch(value, self.outdir, name) for name, value in outputs.items()}

    def fetch(self, value: Any, folder: Path, where: str) -> Any:
        if isinstance(value, list):
            return [self.fetch(item, folder, f"{where}[{i}]") for i, item in enumerate(value)]
        if not isinstance(value, dict):
            return value
        if value.get("class") == "File":
            return self.file(value, folder, where)
        if value.get("class") == "Directory":
            return self.directory(value, folder, where)
        return {key: self.fetch(item, folder, f"{where}.{key}") for key, item in value.items()}

    def target(self, folder: Path, name: str) -> Path:
        """A free path in `folder` for `name`: outputs with the same name (arrays, records) each get their own."""
        clean = Path(name.replace("\\", "/")).name.strip()
        clean = clean if clean not in ("", ".", "..") else "output"
        path, n = folder / clean, 1
        while path in self.taken or path.exists():
            n += 1
            stem, dot, ext = clean.partition(".")
            path = folder / (f"{stem}_{n}{dot}{ext}")
        self.taken.add(path)
        return path

    def url(self, value: dict[str, Any], where: str) -> str | None:
        location = value.get("location")
        if location is None:
            return None
        if not isinstance(location, str):
            raise RunnerError(f"output {where}: location {location!r} is not a URL")
        url = urljoin(self.base, location)
        if urlsplit(url).scheme not in ("http", "https"):
            raise RunnerError(f"output {where}: {location} is not a URL this client can fetch (the server handed out "
                              "a location of its own host)")
        return url

    def file(self, value: dict[str, Any], folder: Path, where: str) -> dict[str, Any]:
        url = self.url(value, where)
        if url is None:
            if not isinstance(value.get("contents"), str):
                raise RunnerError(f"output {where}: a File without a location or contents")
            path = self.target(folder, str(value.get("basename") or where))
            path.write_text(value["contents"], encoding="utf-8")
        elif url in self.fetched:
            path = self.fetched[url]
        else:
            path = self.fetched[url] = self.download(url, folder, value.get("basename"), where)
        result = {**value, "location": path.as_uri(), "path": str(path), "basename": path.name}
        if isinstance(value.get("secondaryFiles"), list):
            result["secondaryFiles"] = [self.fetch(item, folder, f"{where}.secondaryFiles[{i}]")
                                        for i, item in enumerate(value["secondaryFiles"])]
        return result

    def directory(self, value: dict[str, Any], folder: Path, where: str) -> dict[str, Any]:
        if not isinstance(value.get("listing"), list):
            raise RunnerError(f"output {where}: a Directory without a listing (its files cannot be fetched)")
        url = self.url(value, where)
        name = value.get("basename") or (unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]) if url else "")
        if url is not None and url in self.fetched:
            path = self.fetched[url]
        else:
            path = self.target(folder, str(name or where))
            path.mkdir(parents=True)
            if url is not None:
                self.fetched[url] = path
        listing = [self.fetch(item, path, f"{where}.listing[{i}]") for i, item in enumerate(value["listing"])]
        return {**value, "location": path.as_uri(), "path": str(path), "basename": path.name, "listing": listing}

    def download(self, url: str, folder: Path, basename: Any, where: str) -> Path:
        """The file at `url`, saved in `folder` under its basename (else the name the server gives it)."""
        with self.client.request("GET", url, stream=True, headers={"Accept": "*/*"}) as response:
            name = basename if isinstance(basename, str) and basename else served_filename(response) or where
            path = self.target(folder, name)
            with path.open("wb") as out:
                for chunk in response.iter_content(CHUNK):
                    out.write(chunk)
        return path

