"""Reading what a client sends as an application package into a CWL document (a plain dict).

CWL text is YAML 1.2 or JSON; an OGC `executionUnit` holds the CWL inline or by `href` (file:// inside allowed
directories, or http(s)). Size and nesting are bounded here, before cwltool (which recurses per level) sees it.
PackageError is defined here, at the bottom of the package-loading modules, so every one of them can raise it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

HREF_TIMEOUT = 15.0
MAX_PACKAGE_BYTES = 5 * 1024 * 1024
MAX_PACKAGE_DEPTH = 64
"""Deepest nesting of a package: CWL documents are a dozen levels deep, and cwltool's loaders recurse per level."""


class PackageError(ValueError):
    """The package cannot be deployed; the message says why, for the person who wrote it."""


def json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON/YAML, without recursion (a body may be nested thousands deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def too_deep() -> PackageError:
    return PackageError(f"the CWL is nested deeper than {MAX_PACKAGE_DEPTH} levels")


def parse_cwl_text(text: str, *, json_only: bool = False) -> dict[str, Any]:
    """CWL text to a plain dict (YAML 1.2, as cwltool reads it; JSON is YAML too)."""
    try:
        if json_only:
            try:
                doc = json.loads(text, parse_constant=_not_json)
            except ValueError as err:
                raise PackageError(f"the CWL is not valid JSON: {err}") from err
        else:
            try:
                doc = YAML(typ="safe", pure=True).load(text)
            except YAMLError as err:
                raise PackageError(f"the CWL is not valid YAML: {err}") from err
    except RecursionError:
        # the parsers recurse per level: Python's stack ends before they do
        raise too_deep() from None
    if not isinstance(doc, dict):
        raise PackageError("the CWL must be a YAML/JSON object (a CommandLineTool, a Workflow or a $graph)")
    return doc


def parse_json_object(data: str | bytes | dict[str, Any], what: str) -> dict[str, Any]:
    if isinstance(data, dict):
        return data
    try:
        value = json.loads(data, parse_constant=_not_json)
    except RecursionError:
        raise PackageError(f"{what} is nested deeper than {MAX_PACKAGE_DEPTH} levels") from None
    except ValueError as err:  # JSONDecodeError, bad UTF-8, NaN/Infinity
        raise PackageError(f"{what} is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise PackageError(f"{what} must be a JSON object")
    return value


def read_execution_unit(unit: Any, roots: list[Path]) -> tuple[dict[str, Any], str | None, Path | None]:
    """(document, its text when known, its local path when it came from a file) of an OGC executionUnit."""
    if isinstance(unit, list) and len(unit) == 1:
        unit = unit[0]
    if isinstance(unit, dict) and "unit" in unit and isinstance(unit["unit"], dict):
        unit = unit["unit"]  # the OGC `qualifiedValue`-style wrapper some clients send
    if not isinstance(unit, dict):
        raise PackageError("executionUnit must be an object: {'value': <CWL>, 'mediaType': ...} or {'href': ...}")
    if "href" in unit:
        return _fetch_href(str(unit["href"]), roots)
    if "value" in unit:
        value = unit["value"]
        if isinstance(value, dict):
            return value, None, None
        if isinstance(value, str):
            return parse_cwl_text(value), value, None
        raise PackageError("executionUnit.value must be the CWL, as an object or as YAML/JSON text")
    if "class" in unit or "$graph" in unit:
        return unit, None, None
    raise PackageError("executionUnit needs `value` (inline CWL) or `href` (a reference to it)")


def _fetch_href(href: str, roots: list[Path]) -> tuple[dict[str, Any], str | None, Path | None]:
    parts = urllib.parse.urlsplit(href)
    if parts.scheme == "file":
        path = Path(urllib.request.url2pathname(parts.path)).resolve()
        if not any(path.is_relative_to(root.resolve()) for root in roots):
            raise PackageError(f"executionUnit href {href} is outside the directories packages may be read from")
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise PackageError(f"cannot read executionUnit href {href}: {err.strerror}") from err
        return parse_cwl_text(text), text, path
    if parts.scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(href, timeout=HREF_TIMEOUT) as response:
                body = response.read(MAX_PACKAGE_BYTES + 1)
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            raise PackageError(f"cannot fetch executionUnit href {href}: {err}") from err
        if len(body) > MAX_PACKAGE_BYTES:
            raise PackageError(f"executionUnit href {href} is larger than {MAX_PACKAGE_BYTES} bytes")
        text = body.decode("utf-8", errors="replace")
        return parse_cwl_text(text), text, None
    raise PackageError(f"executionUnit href {href!r}: only file:// (inside allowed directories) and http(s) work")
