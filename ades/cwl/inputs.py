"""OGC execute inputs -> a cwltool job order, checked against the package's inputs before anything runs.

Accepted forms: plain values; `{"value": v}` (OGC qualified value); for File/Directory a URL string or
`{"href": url}`; lists for arrays (a single value for an array input counts as a list of one). Numbers and booleans
may also come as strings, because the WPS-T array form carries every `data` as text.

Every File and Directory the inputs hold is checked, wherever it is: an input of a File or Directory type, and any
`{"class": "File" | "Directory", ...}` object inside an input typed `Any` (or a record field, or an array item of
such a type), with its `secondaryFiles` and `listing`. A `file://` location (or `path`) must resolve, symlinks
followed, inside the configured input roots; an http(s) one must pass the fetcher's address checks (ades.fetch),
when the caller gives a fetcher. The run fetches http(s) inputs into the job folder before cwltool starts
(ades.execute.staging). The job order never holds the hidden `ades_*` inputs: the runner adds those.
"""

from __future__ import annotations

import math
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from ades.cwl.describe import IANA_PREFIXES
from ades.cwl.package import HIDDEN_INPUTS, Package, Param
from ades.fetch import Fetcher, FetchError

_INTS = ("int", "long")
_FLOATS = ("float", "double")
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")
_REFERENCES = ("File", "Directory")
JOB_REQUIREMENTS = "cwl:requirements"
SAFE_REQUIREMENTS = ("EnvVarRequirement", "ResourceRequirement", "ToolTimeLimit", "WorkReuse", "LoadListingRequirement",
                     "InlineJavascriptRequirement", "NetworkAccess")
"""Requirements an execute request may add: none of them gives the job a file, an address or a program it could not
otherwise reach (NetworkAccess only to turn the network off)."""


class InputError(ValueError):
    """An execute input is unusable. `str()` names the input and says what is wrong; `kind` is the OGC exception
    type: `unsupported-requirement` for a requirement the server will not apply (cwltool's "unsupported feature",
    exit 33), `invalid-input` otherwise."""

    def __init__(self, input_id: str, problem: str, message: str | None = None, *,
                 kind: str = "invalid-input") -> None:
        self.input_id = input_id
        self.problem = problem
        self.kind = kind
        super().__init__(message or f"input {input_id!r}: {problem}")


class _Problem(ValueError):
    """A conversion failure deep inside one input's value; becomes an InputError naming the input."""


class _Reach:
    """Where references may lead: the input roots (resolved), and the fetcher that checks http(s) URLs (None: the
    URL's form only; the run checks its addresses again when it fetches)."""

    def __init__(self, file_roots: list[Path], fetcher: Fetcher | None) -> None:
        self.roots = [root.resolve() for root in file_roots]
        self.fetcher = fetcher


def to_job_order(package: Package, inputs: dict[str, Any], file_roots: list[Path],
                 fetcher: Fetcher | None = None) -> dict[str, Any]:
    """The cwltool job order of `inputs`, or InputError naming the input and what is wrong with it. `fetcher`
    checks the addresses of http(s) references (a name is resolved)."""
    reach = _Reach(file_roots, fetcher)
    for name in inputs:
        if name == JOB_REQUIREMENTS:
            continue
        if name not in package.inputs or name in HIDDEN_INPUTS:
            raise InputError(name, "unknown input", f"unknown input {name!r}; expected {_expected(package)}")
    order: dict[str, Any] = {}
    for param in package.inputs.values():
        if param.id in HIDDEN_INPUTS:
            continue
        value = _unwrap(inputs.get(param.id))
        if value is None:
            if not param.optional:
                raise InputError(param.id, "missing", f"missing required input {param.id!r}")
            continue
        try:
            order[param.id] = _convert(value, param.type, param, reach)
        except _Problem as err:
            raise InputError(param.id, str(err)) from None
    if JOB_REQUIREMENTS in inputs:
        order[JOB_REQUIREMENTS] = job_requirements(inputs[JOB_REQUIREMENTS], package)
    return order


def job_requirements(value: Any, package: Package) -> list[dict[str, Any]]:
    """The `cwl:requirements` of an execute request (CWL v1.1 and later), if none of them widens what the job may
    reach or run; InputError naming those that do."""
    if package.cwl_version == "v1.0":
        raise InputError(JOB_REQUIREMENTS, "not part of CWL v1.0",
                         f"{JOB_REQUIREMENTS} is not part of CWL v1.0, the version of this process",
                         kind="unsupported-requirement")
    if not isinstance(value, list) or not all(isinstance(r, dict) and isinstance(r.get("class"), str) for r in value):
        raise InputError(JOB_REQUIREMENTS, "must be a list of requirement objects, each with a `class`")
    refused = [r["class"] for r in value if r["class"] not in SAFE_REQUIREMENTS
               or (r["class"] == "NetworkAccess" and r.get("networkAccess") is not False)]
    if refused:
        raise InputError(JOB_REQUIREMENTS, "refused", (
            f"{JOB_REQUIREMENTS}: {', '.join(dict.fromkeys(refused))} cannot be set by an execute request: it could "
            f"widen what the job reaches or runs; the process's own requirements decide it. Allowed here: "
            f"{', '.join(SAFE_REQUIREMENTS)} (NetworkAccess only with networkAccess: false)"),
            kind="unsupported-requirement")
    return value


def wpst_inputs_to_map(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The WPS-T array form `[{"id": "x", "data": ...}, ...]` as a map; a repeated id becomes a list."""
    result: dict[str, Any] = {}
    for position, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise InputError(f"#{position}", "each input needs an `id` and `data`")
        key = next((k for k in ("data", "value", "href") if k in item), None)
        if key is None:
            raise InputError(item["id"], "has no `data`")
        value = {"href": item["href"]} if key == "href" else item[key]
        if item["id"] in result:
            previous = result[item["id"]]
            result[item["id"]] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            result[item["id"]] = value
    return result


def _expected(package: Package) -> str:
    names = [p for p in package.inputs if p not in HIDDEN_INPUTS]
    return "one of " + ", ".join(repr(n) for n in names) if names else "no inputs"


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict) and "value" in value and "href" not in value:
        return value["value"]
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _convert(value: Any, t: Any, param: Param, reach: _Reach) -> Any:
    value = _unwrap(value)
    if isinstance(t, list):
        if value is None and "null" in t:
            return None
        problems = []
        for member in (m for m in t if m != "null"):
            try:
                return _convert(value, member, param, reach)
            except _Problem as err:
                problems.append(str(err))
        raise _Problem(" or ".join(dict.fromkeys(problems)) if problems else f"got {_show(value)}")
    if value is None and t != "null":
        raise _Problem("a value is required (got null)")
    if isinstance(t, dict):
        return _convert_complex(value, t, param, reach)
    match t:
        case "string":
            if isinstance(value, str):
                return value
            raise _Problem(f"expected a string, got {_show(value)}")
        case "int" | "long":
            return _integer(value)
        case "float" | "double":
            return _number(value)
        case "boolean":
            return _boolean(value)
        case "File" | "Directory":
            return _reference(value, t, param, reach)
        case "null":
            if value is None:
                return None
            raise _Problem(f"expected null, got {_show(value)}")
        case _:
            return _nested(value, reach)  # Any, or a type cwltool accepted and will check itself


def _convert_complex(value: Any, t: dict[str, Any], param: Param, reach: _Reach) -> Any:
    kind = t.get("type")
    if kind == "array":
        values = value if isinstance(value, list) else [value]
        result = []
        for i, item in enumerate(values):
            try:
                result.append(_convert(item, t["items"], param, reach))
            except _Problem as err:
                raise _Problem(f"item {i}: {err}") from None
        return result
    if kind == "enum":
        if isinstance(value, str) and value in t["symbols"]:
            return value
        raise _Problem(f"expected one of {t['symbols']}, got {_show(value)}")
    if kind == "record":
        if not isinstance(value, dict):
            raise _Problem(f"expected an object, got {_show(value)}")
        fields = {f["name"]: f for f in t.get("fields", [])}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise _Problem(f"unknown field {unknown[0]!r}; expected {sorted(fields)}")
        result = {}
        for name, field in fields.items():
            if name not in value or value[name] is None:
                if isinstance(field["type"], list) and "null" in field["type"]:
                    continue
                raise _Problem(f"missing field {name!r}")
            try:
                result[name] = _convert(value[name], field["type"], param, reach)
            except _Problem as err:
                raise _Problem(f"field {name!r}: {err}") from None
        return result
    return _nested(value, reach)


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise _Problem(f"expected an integer, got {_show(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _Problem(f"expected an integer, got {_show(value)}")


def _number(value: Any) -> float | int:
    if isinstance(value, bool):
        raise _Problem(f"expected a number, got {_show(value)}")
    if isinstance(value, int | float):
        result: float | int = value
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            raise _Problem(f"expected a number, got {_show(value)}") from None
    else:
        raise _Problem(f"expected a number, got {_show(value)}")
    if isinstance(result, float) and not math.isfinite(result):
        raise _Problem(f"expected a finite number, got {_show(value)}")
    return result


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise _Problem(f"expected true or false, got {_show(value)}")


def _reference(value: Any, kind: str, param: Param, reach: _Reach) -> dict[str, Any]:
    """A File or Directory input. A CWL object (`class`) keeps every field it came with, as under cwltool; an OGC
    reference (a URL, or `{"href": URL, "type": media type}`) becomes one, its format from `type` or, when the input
    declares exactly one format and the client named none, that one."""
    if isinstance(value, dict) and value.get("class") == kind:
        return _object(value, reach)
    if isinstance(value, dict) and value.get("class") in _REFERENCES:
        raise _Problem(f"expected a {kind}, got a {value['class']}")
    if isinstance(value, dict) and isinstance(value.get("href"), str):
        href = value["href"]
    elif isinstance(value, str):
        href = value
    else:
        raise _Problem(f"expected a {kind} reference (a URL or {{'href': URL}}), got {_show(value)}")
    result: dict[str, Any] = {"class": kind, "location": _check_href(href.strip(), kind, reach)}
    if kind == "File":
        media = value.get("type") if isinstance(value, dict) else None
        if isinstance(media, str) and media:
            result["format"] = _format_of(media, param)
        elif len(param.format) == 1:
            result["format"] = param.format[0]
    return result


def _format_of(media: str, param: Param) -> str:
    """The CWL format of a reference the client gave as of media type `media`."""
    if not param.format:
        return IANA_PREFIXES[0] + media
    for declared in param.format:
        if any(declared == prefix + media for prefix in IANA_PREFIXES):
            return declared
    raise _Problem(f"type {media!r} is not a format this input accepts ({', '.join(param.format)})")


def _check_href(href: str, kind: str, reach: _Reach) -> str:
    try:
        parts = urllib.parse.urlsplit(href)
    except ValueError as err:  # a broken [IPv6] host
        raise _Problem(f"{href!r} is not a usable URL: {err}") from None
    if parts.scheme in ("http", "https"):
        if not parts.netloc:
            raise _Problem(f"{href!r} is not a usable URL")
        if kind == "Directory":
            raise _Problem(f"{href!r}: a Directory cannot be fetched over http(s); give its files, or a file:// "
                           "Directory inside the input roots")
        if reach.fetcher is not None:
            try:
                reach.fetcher.check(href)
            except FetchError as err:
                raise _Problem(str(err)) from None
        return href
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise _Problem(f"{href!r} names another host")
        raw = urllib.request.url2pathname(parts.path)
    elif parts.scheme == "" and href.startswith("/"):
        raw = href
    else:
        raise _Problem(f"expected a file://, http:// or https:// URL, got {_show(href)}")
    if ".." in Path(raw).parts:
        raise _Problem(f"{href!r} must not contain '..'")
    path = Path(raw).resolve()
    if not any(path.is_relative_to(root) for root in reach.roots):
        raise _Problem(f"{href!r} is outside the directories this server reads input files from")
    if kind == "File" and not path.is_file():
        raise _Problem(f"{href!r}: no such file")
    if kind == "Directory" and not path.is_dir():
        raise _Problem(f"{href!r}: no such directory")
    return path.as_uri()


def _nested(value: Any, reach: _Reach) -> Any:
    """A value of type Any (or one cwltool checks itself) with every File and Directory object in it checked as a
    File- or Directory-typed input is: cwltool stages any such object it meets, whatever the declared type."""
    if isinstance(value, list):
        result = []
        for i, item in enumerate(value):
            try:
                result.append(_nested(item, reach))
            except _Problem as err:
                raise _Problem(f"item {i}: {err}") from None
        return result
    if isinstance(value, dict):
        if value.get("class") in _REFERENCES:
            return _object(value, reach)
        checked = {}
        for key, item in value.items():
            try:
                checked[key] = _nested(item, reach)
            except _Problem as err:
                raise _Problem(f"field {key!r}: {err}") from None
        return checked
    return value


def _object(value: dict[str, Any], reach: _Reach) -> dict[str, Any]:
    """A File or Directory object: its location (or `path`) checked, and so are its secondaryFiles and listing. A
    File may instead be a literal (`contents`), a Directory a literal `listing`. A `dirname` goes: cwltool would
    stage the file there, anywhere on the host."""
    kind = value["class"]
    result = {k: v for k, v in value.items() if k not in ("location", "path", "dirname", "secondaryFiles", "listing")}
    hrefs = [value[key] for key in ("location", "path") if key in value]
    if any(not isinstance(h, str) for h in hrefs) or len(set(hrefs)) > 1:
        raise _Problem(f"a {kind}'s `location` (or `path`) must be one URL, got {_show(hrefs)}")
    if hrefs:
        result["location"] = _check_href(hrefs[0].strip(), kind, reach)
    elif kind == "File" and not isinstance(value.get("contents"), str):
        raise _Problem(f"a File needs a `location` (a URL) or `contents`, got {_show(value)}")
    basename = value.get("basename")
    if basename is not None and (not isinstance(basename, str) or "/" in basename or basename in ("", ".", "..")):
        raise _Problem(f"a {kind}'s basename must be a plain file name, got {_show(basename)}")
    for key, allowed in (("secondaryFiles", True), ("listing", kind == "Directory")):
        if key not in value:
            continue
        items = value[key]
        if not allowed or not isinstance(items, list):
            raise _Problem(f"`{key}` of a {kind} must be a list of File or Directory objects")
        checked = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or item.get("class") not in _REFERENCES:
                raise _Problem(f"{key} item {i}: expected a File or Directory object, got {_show(item)}")
            try:
                checked.append(_object(item, reach))
            except _Problem as err:
                raise _Problem(f"{key} item {i}: {err}") from None
        result[key] = checked
    return result
