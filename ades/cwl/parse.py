"""Reading what a client sends as an application package into a CWL document (a plain dict).

CWL text is YAML 1.2 or JSON; an OGC `executionUnit` holds the CWL inline or by `href` (file:// inside allowed
directories, or http(s) through ades.fetch). The remote documents a package `$include`s or `$import`s are fetched
here too, through the same fetcher, for cwltool to find. Size and nesting are bounded here, before cwltool (which
recurses per level) sees it.
PackageError is defined here, at the bottom of the package-loading modules, so every one of them can raise it.
"""

from __future__ import annotations

import contextlib
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from ades import floats
from ades.fetch import Fetcher, FetchError

HREF_TIMEOUT = 15.0
MAX_PACKAGE_BYTES = 5 * 1024 * 1024
MAX_REMOTE_INCLUDES = 32
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
                doc = floats.loads(text, parse_constant=_not_json)
            except ValueError as err:
                raise PackageError(f"the CWL is not valid JSON: {err}") from err
        else:
            try:
                doc = floats.safe_yaml().load(text)
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
        value = floats.loads(data, parse_constant=_not_json)
    except RecursionError:
        raise PackageError(f"{what} is nested deeper than {MAX_PACKAGE_DEPTH} levels") from None
    except ValueError as err:  # JSONDecodeError, bad UTF-8, NaN/Infinity
        raise PackageError(f"{what} is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise PackageError(f"{what} must be a JSON object")
    return value


def read_execution_unit(unit: Any, roots: list[Path], fetcher: Fetcher) -> tuple[dict[str, Any], str | None,
                                                                                  Path | None]:
    """(document, its text when known, its local path when it came from a file) of an OGC executionUnit."""
    if isinstance(unit, list) and len(unit) == 1:
        unit = unit[0]
    if isinstance(unit, dict) and "unit" in unit and isinstance(unit["unit"], dict):
        unit = unit["unit"]  # the OGC `qualifiedValue`-style wrapper some clients send
    if not isinstance(unit, dict):
        raise PackageError("executionUnit must be an object: {'value': <CWL>, 'mediaType': ...} or {'href': ...}")
    if "href" in unit:
        return _fetch_href(str(unit["href"]), roots, fetcher)
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


def _fetch_href(href: str, roots: list[Path], fetcher: Fetcher) -> tuple[dict[str, Any], str | None, Path | None]:
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
            body = fetcher.fetch_bytes(href, MAX_PACKAGE_BYTES, HREF_TIMEOUT)
        except FetchError as err:
            raise PackageError(f"cannot fetch executionUnit href {err}") from None
        text = body.decode("utf-8", errors="replace")
        return parse_cwl_text(text), text, None
    raise PackageError(f"executionUnit href {href!r}: only file:// (inside allowed directories) and http(s) work")


def remote_includes(doc: Any, fetcher: Fetcher) -> dict[str, str]:
    """The text of every http(s) document `doc` `$include`s or `$import`s by an absolute URL, and of those the
    imported ones name in turn (relative to them), fetched through `fetcher`. Raises PackageError."""
    found: dict[str, str] = {}
    pending: list[tuple[Any, str | None]] = [(doc, None)]
    total = 0
    while pending:
        node, base = pending.pop()
        for url, imported in _references(node, base):
            if url in found:
                continue
            if len(found) >= MAX_REMOTE_INCLUDES:
                raise PackageError(f"the package includes more than {MAX_REMOTE_INCLUDES} remote documents")
            try:
                body = fetcher.fetch_bytes(url, max(MAX_PACKAGE_BYTES - total, 1), HREF_TIMEOUT)
            except FetchError as err:
                raise PackageError(f"cannot fetch $include/$import {err}") from None
            total += len(body)
            found[url] = body.decode("utf-8", errors="replace")
            if imported:  # an $include is text; an $import is a document, whose own directives count too
                # a broken one: cwltool says what is wrong with it, and where it is imported
                with contextlib.suppress(YAMLError, RecursionError):
                    pending.append((YAML(typ="safe", pure=True).load(found[url]), url))
    return found


def _references(node: Any, base: str | None) -> list[tuple[str, bool]]:
    """(absolute http(s) URL, whether it is imported) of each $include/$import directive in `node`; relative ones
    are resolved against `base`, the URL of the document when it is remote, and are local files otherwise."""
    urls, stack = [], [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key in ("$include", "$import"):
                ref = item.get(key)
                if isinstance(ref, str):
                    url = urllib.parse.urljoin(base, ref) if base else ref
                    if urllib.parse.urlsplit(url).scheme in ("http", "https"):
                        urls.append((url.split("#")[0], key == "$import"))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return urls
