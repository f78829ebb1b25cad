"""Loading deployed application packages (OGC 20-089, "EO Application Package" best practice).

A package is CWL: a single CommandLineTool/Workflow, or a `$graph` of a Workflow and the tools it runs. It arrives as
CWL text (YAML or JSON) or as an OGC `application/ogcapppkg+json` object whose `executionUnit` holds the CWL inline
or by reference. Everything is validated by cwltool itself, offline, before a Package exists.

Turning the text or the executionUnit into a document is ades.cwl.parse; this module picks the main process, packs and
validates it, and describes it (metadata, normalized parameters).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ades import floats
from ades.cwl.loader import CwlLoadError, load_text, pack_file
from ades.cwl.parse import (
    MAX_PACKAGE_DEPTH,
    PackageError,
    json_depth,
    parse_cwl_text,
    parse_json_object,
    read_execution_unit,
    remote_includes,
    too_deep,
)
from ades.fetch import Fetcher
from ades.models import ID_PATTERN

HIDDEN_INPUTS = ("ades_job_id", "ades_sink")
"""Inputs ades fills in itself (the job id and where update-job steps publish); never shown to clients."""

DEFAULT_VERSION = "1.0.0"
SCHEMA_ORG = ("https://schema.org/", "http://schema.org/")
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"
PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "string", "File", "Directory", "Any"})

_YAML_TYPES = {"application/cwl", "application/cwl+yaml", "application/yaml", "application/x-yaml", "text/yaml"}
_JSON_TYPES = {"application/cwl+json", "application/json"}
_OGC_TYPES = {"application/ogcapppkg+json"}


class Param(BaseModel):
    """One input or output of the main process, with its CWL type normalized (short names, no URIs).

    `type` is a primitive name (`string`, `File`, ...), `{"type": "array", "items": T}`,
    `{"type": "enum", "symbols": [...]}`, `{"type": "record", "fields": [{"name", "type", ...}]}` or a list (union).
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    type: Any
    label: str | None = None
    doc: str | None = None
    format: list[str] = Field(default_factory=list, description="format URIs as cwltool expanded them")
    default: Any = None
    has_default: bool = False

    @property
    def nullable(self) -> bool:
        return isinstance(self.type, list) and "null" in self.type

    @property
    def optional(self) -> bool:
        return self.nullable or self.has_default

    @property
    def base_type(self) -> Any:
        """The type without `null`: the single member of an optional union, else the type (or union) itself."""
        if isinstance(self.type, list):
            rest = [t for t in self.type if t != "null"]
            return rest[0] if len(rest) == 1 else rest
        return self.type


class Package(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ID_PATTERN)
    version: str = Field(pattern=VERSION_PATTERN)
    title: str | None = None
    description: str | None = None
    keywords: list[str] = Field(default_factory=list)
    cwl: dict[str, Any] = Field(description="the deployable CWL document (self-contained), as JSON")
    cwl_version: str
    main_ref: str | None = Field(default=None, description="id of the main process inside `$graph`; None: the root")
    process_class: str
    inputs: dict[str, Param] = Field(default_factory=dict)
    outputs: dict[str, Param] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.id}:{self.version}"

    def main_process(self) -> dict[str, Any]:
        return main_object(self.cwl, self.main_ref)


# --- entry point -----------------------------------------------------------------------------------------------
def load_package(
    data: str | bytes | dict[str, Any],
    media_type: str,
    workflow_id: str | None = None,
    *,
    allowed_roots: list[Path] | None = None,
    fetcher: Fetcher | None = None,
) -> Package:
    """Parse, validate (with cwltool, offline) and describe an application package.

    `workflow_id` picks the process when a `$graph` holds several Workflows. `allowed_roots` are the directories a
    `file://` executionUnit href, `$include` or `$import` may point into (none by default: they are refused);
    `fetcher` fetches http(s) ones (by default under the default policy: public addresses only). The version comes
    from `s:softwareVersion` (`s: https://schema.org/`) and is "1.0.0" when the CWL does not give one.
    """
    roots = allowed_roots or []
    fetcher = fetcher or Fetcher()
    kind = media_type.split(";")[0].strip().lower()
    text: str | None = None
    source: Path | None = None
    if kind in _OGC_TYPES:
        ogc = parse_json_object(data, "the application package")
        description = ogc.get("processDescription") or {}
        if not isinstance(description, dict):
            raise PackageError("processDescription must be a JSON object")
        if workflow_id is None and isinstance(description.get("id"), str):
            workflow_id = description["id"]
        doc, text, source = read_execution_unit(ogc.get("executionUnit"), roots, fetcher)
    elif kind in _YAML_TYPES | _JSON_TYPES:
        description = {}
        if isinstance(data, dict):
            doc = data
        else:
            try:
                text = data.decode("utf-8") if isinstance(data, bytes) else data
            except UnicodeDecodeError as err:
                raise PackageError(f"the CWL is not UTF-8 text: {err}") from None
            doc = parse_cwl_text(text, json_only=kind in _JSON_TYPES)
    else:
        raise PackageError(
            f"unsupported media type {media_type!r}; use application/cwl+yaml, application/cwl+json or "
            "application/ogcapppkg+json"
        )
    return _build(doc, text, source, workflow_id, description, _Reach(roots, fetcher))


class _Reach:
    """What a package's references may reach: local files inside `roots`, remote ones through `fetcher`."""

    def __init__(self, roots: list[Path], fetcher: Fetcher) -> None:
        self.roots = roots
        self.fetcher = fetcher


def _build(doc: dict[str, Any], text: str | None, source: Path | None, workflow_id: str | None,
           description: dict[str, Any], reach: _Reach) -> Package:
    if json_depth(doc) > MAX_PACKAGE_DEPTH:
        raise too_deep()
    main_ref = select_main(doc, workflow_id)
    main = main_object(doc, main_ref)
    process_id = _short_id(main.get("id"))
    if not process_id:
        raise PackageError("the CWL needs an id (the process id): add `id: <name>` to the CommandLineTool or Workflow")
    if not re.fullmatch(ID_PATTERN, process_id):
        raise PackageError(f"process id {process_id!r} must be letters, digits, '_', '.' or '-' (it is used in URLs)")
    version = _software_version(doc, main)
    cwl_version = doc.get("cwlVersion")
    if not isinstance(cwl_version, str) or not cwl_version.startswith("v1."):
        raise PackageError("the CWL needs `cwlVersion: v1.0`, `v1.1` or `v1.2`")
    for field in ("inputs", "outputs"):
        # cwltool's own message for these is a bare TypeError that says neither what nor where
        if not isinstance(main.get(field), dict | list):
            raise PackageError(f"{process_id}.{field}: must be a map or a list of parameters, got "
                               f"{type(main.get(field)).__name__}")

    remote: dict[str, str] = {}
    if _has_external_refs(doc):
        # Steps `run:` files beside the package, or it includes documents: pack them in so the stored document
        # stands alone (and nobody's later load reads them again).
        remote = remote_includes(doc, reach.fetcher)
        doc = _packed(doc, text, source, main_ref, reach.roots, remote)
        main_ref = select_main(doc, "main" if "$graph" in doc else None)
        main = main_object(doc, main_ref)  # its label and doc as included
        text = None
    doc = _json_safe(doc)
    tool = _validate(doc, text, main_ref, reach.roots)

    named = _named_types(tool)
    order_in = _declared_order(main.get("inputs"))
    order_out = _declared_order(main.get("outputs"))
    inputs = [_param(p, named) for p in tool.tool["inputs"]]
    outputs = [_param(p, named) for p in tool.tool["outputs"]]
    inputs.sort(key=lambda p: order_in.get(p.id, len(order_in)))
    outputs.sort(key=lambda p: order_out.get(p.id, len(order_out)))
    return Package(
        id=process_id,
        version=version,
        title=_text(main.get("label")) or description.get("title"),
        description=_text(main.get("doc")) or description.get("description"),
        keywords=_keywords(doc, main) or list(description.get("keywords") or []),
        cwl=doc,
        cwl_version=cwl_version,
        main_ref=main_ref,
        process_class=str(main.get("class")),
        inputs={p.id: p for p in inputs},
        outputs={p.id: p for p in outputs},
    )


def _packed(doc: dict[str, Any], text: str | None, source: Path | None, main_ref: str | None, roots: list[Path],
            remote: dict[str, str]) -> dict[str, Any]:
    try:
        if source is not None:
            return pack_file(source, main_ref, roots, remote)
        with tempfile.TemporaryDirectory(prefix="ades-cwl-") as tmp:
            path = Path(tmp) / "package.cwl"
            path.write_text(text if text is not None else floats.dumps(doc, indent=1, ensure_ascii=False),
                            encoding="utf-8")
            return pack_file(path, main_ref, [Path(tmp), *roots], remote)
    except CwlLoadError as err:
        raise PackageError(f"cwltool rejected the CWL: {err}") from err


# --- choosing the main process ---------------------------------------------------------------------------------
def _short_id(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value.rsplit("#", 1)[-1].lstrip("#") or None


def select_main(doc: dict[str, Any], workflow_id: str | None) -> str | None:
    """The `$graph` member that is the process (None when the document itself is): `workflow_id` if given, else the
    only Workflow, else the only process."""
    graph = doc.get("$graph")
    if graph is None:
        if workflow_id is not None and _short_id(doc.get("id")) not in (workflow_id, None):
            raise PackageError(f"the CWL has no process {workflow_id!r} (its id is {_short_id(doc.get('id'))!r})")
        return None
    if not isinstance(graph, list) or not all(isinstance(item, dict) for item in graph):
        raise PackageError("$graph must be a list of CWL process objects")
    ids = [_short_id(item.get("id")) for item in graph]
    if workflow_id is not None:
        if workflow_id in ids:
            return workflow_id
        raise PackageError(f"the $graph has no process {workflow_id!r}; choose one of {_names(ids)}")
    workflows = [i for i, item in zip(ids, graph, strict=True) if item.get("class") == "Workflow"]
    if len(workflows) == 1:
        chosen = workflows[0]
    elif len(workflows) > 1:
        raise PackageError(f"the $graph holds several Workflows; choose one of {_names(workflows)}")
    elif len(graph) == 1:
        chosen = ids[0]
    else:
        raise PackageError(f"the $graph holds no Workflow and several tools; choose one of {_names(ids)}")
    if chosen is None:
        raise PackageError("the CWL needs an id (the process id): the main process in $graph has none")
    return chosen


def _names(ids: list[str | None]) -> str:
    return ", ".join(repr(i) for i in ids if i) or "(none have ids)"


def main_object(doc: dict[str, Any], main_ref: str | None) -> dict[str, Any]:
    if main_ref is None:
        return doc
    for item in doc["$graph"]:
        if _short_id(item.get("id")) == main_ref:
            return item
    raise PackageError(f"the $graph has no process {main_ref!r}")


def _has_external_refs(node: Any) -> bool:
    if isinstance(node, dict):
        if "$import" in node or "$include" in node or "$mixin" in node:
            return True
        run = node.get("run")
        if isinstance(run, str) and not run.startswith("#"):
            return True
        return any(_has_external_refs(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_external_refs(v) for v in node)
    return False


# --- metadata --------------------------------------------------------------------------------------------------
def _schema_org_values(doc: dict[str, Any], obj: dict[str, Any], name: str) -> Any:
    prefixes = [p for p, uri in (doc.get("$namespaces") or {}).items() if uri in SCHEMA_ORG]
    keys = [f"{p}:{name}" for p in prefixes] + [f"{uri}{name}" for uri in SCHEMA_ORG]
    for holder in (obj, doc):
        for key in keys:
            if key in holder:
                return holder[key]
    return None


def _software_version(doc: dict[str, Any], main: dict[str, Any]) -> str:
    value = _schema_org_values(doc, main, "softwareVersion")
    if value is None:
        return DEFAULT_VERSION
    version = str(value).strip()
    if not re.fullmatch(VERSION_PATTERN, version):
        raise PackageError(f"s:softwareVersion {version!r} must be letters, digits, '.', '_', '+' or '-'")
    return version


def _keywords(doc: dict[str, Any], main: dict[str, Any]) -> list[str]:
    value = _schema_org_values(doc, main, "keywords")
    if isinstance(value, str):
        return [k.strip() for k in value.split(",") if k.strip()]
    if isinstance(value, list):
        return [str(k) for k in value]
    return []


def _text(value: Any) -> str | None:
    if isinstance(value, list):
        value = "\n".join(str(v) for v in value)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _json_safe(doc: dict[str, Any]) -> dict[str, Any]:
    # YAML may carry dates and other non-JSON scalars; the document is stored in Elasticsearch as JSON. Floats keep
    # their spelling (ades.floats).
    try:
        return floats.plain(doc, default=str, allow_nan=False)
    except ValueError:
        raise PackageError("the CWL holds NaN or Infinity (a YAML .nan or .inf), which JSON cannot carry") from None


# --- validation and normalized parameters ----------------------------------------------------------------------
def _validate(doc: dict[str, Any], text: str | None, main_ref: str | None, roots: list[Path]) -> Any:
    """cwltool's load of the package; the files it names (File defaults, InitialWorkDir listings) resolve inside
    `roots` (the input roots), where the run will read them."""
    try:
        # not ASCII-escaped: YAML reads a \u-escaped surrogate pair as two surrogates
        return load_text(text if text is not None else floats.dumps(doc, indent=1, ensure_ascii=False), main_ref,
                         roots=roots)
    except CwlLoadError as err:
        raise PackageError(f"cwltool rejected the CWL: {err}") from err


def _declared_order(declared: Any) -> dict[str, int]:
    if isinstance(declared, dict):
        names = list(declared)
    elif isinstance(declared, list):
        names = [d.get("id") for d in declared if isinstance(d, dict)]
    else:
        names = []
    return {_field_name(n): i for i, n in enumerate(names) if n}


def _named_types(tool: Any) -> dict[str, Any]:
    named: dict[str, Any] = {}
    for req in [*tool.requirements, *tool.hints]:
        if req.get("class") == "SchemaDefRequirement":
            for t in req.get("types", []):
                named[t["name"]] = t
    return named


def _param(p: dict[str, Any], named: dict[str, Any]) -> Param:
    fmt = p.get("format")
    return Param(
        id=_field_name(p["id"]),
        type=normalize_type(p["type"], named),
        label=_text(p.get("label")),
        doc=_text(p.get("doc")),
        format=[fmt] if isinstance(fmt, str) else [str(f) for f in fmt or []],
        default=_json_safe({"v": p["default"]})["v"] if "default" in p else None,
        has_default="default" in p and p["default"] is not None,
    )


def _field_name(uri: str) -> str:
    """`file:///x.cwl#tool/message` -> `message`."""
    return str(uri).rsplit("#", 1)[-1].rsplit("/", 1)[-1]


def normalize_type(t: Any, named: dict[str, Any], depth: int = 0) -> Any:
    """cwltool's resolved type with short names (`file:///x.cwl#tool/e/red` -> `red`) and named types inlined."""
    if depth > 20:
        raise PackageError("type definitions nest too deeply (a recursive record?)")
    if isinstance(t, list):
        return [normalize_type(m, named, depth + 1) for m in t]
    if isinstance(t, str):
        if t in PRIMITIVES:
            return t
        if t in named:
            return normalize_type(named[t], named, depth + 1)
        return _short_id(t.rsplit("/", 1)[-1]) or t
    if isinstance(t, dict):
        kind = t.get("type")
        if kind == "array":
            return {"type": "array", "items": normalize_type(t["items"], named, depth + 1)}
        if kind == "enum":
            return {"type": "enum", "symbols": [_field_name(s) for s in t["symbols"]]}
        if kind == "record":
            fields = []
            for f in t.get("fields", []):
                field = {"name": _field_name(f["name"])}
                field["type"] = normalize_type(f["type"], named, depth + 1)
                for extra in ("label", "doc"):
                    if _text(f.get(extra)):
                        field[extra] = _text(f.get(extra))
                fields.append(field)
            return {"type": "record", "fields": fields}
        return normalize_type(kind, named, depth + 1)
    return t
