"""The OGC API Processes 1.0 process description of a package, derived from the main process's CWL inputs/outputs.

File and Directory inputs are given by reference: a URL string, or `{"href": ...}` in the OGC qualified form.
CWL formats from the IANA media-type namespace become `contentMediaType`; other format URIs (EDAM, ...) are kept as
`x-cwl-format`, since JSON Schema has no place for them.
"""

from __future__ import annotations

from typing import Any

from ades.cwl.package import HIDDEN_INPUTS, Package, Param

IANA_PREFIXES = ("https://www.iana.org/assignments/media-types/", "http://www.iana.org/assignments/media-types/")
JOB_CONTROL = ["async-execute", "sync-execute"]
TRANSMISSION = ["value", "reference"]

_SCALARS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "int": {"type": "integer"},
    "long": {"type": "integer"},
    "float": {"type": "number"},
    "double": {"type": "number"},
    "boolean": {"type": "boolean"},
    "Any": {},
    "null": {"type": "null"},
}


def describe(package: Package) -> dict[str, Any]:
    return {
        "id": package.id,
        "version": package.version,
        "title": package.title or package.id,
        "description": package.description or "",
        "keywords": list(package.keywords),
        "jobControlOptions": list(JOB_CONTROL),
        "outputTransmission": list(TRANSMISSION),
        "inputs": {p.id: describe_input(p) for p in package.inputs.values() if p.id not in HIDDEN_INPUTS},
        "outputs": {p.id: describe_output(p) for p in package.outputs.values()},
    }


def describe_input(param: Param) -> dict[str, Any]:
    base = param.base_type
    is_array = isinstance(base, dict) and base.get("type") == "array"
    schema = type_schema(base, param.format)
    if param.has_default:
        schema["default"] = _default_value(param.default)
    return {
        "title": param.label or param.id,
        "description": param.doc or "",
        "schema": schema,
        "minOccurs": 0 if param.optional else 1,
        "maxOccurs": "unbounded" if is_array else 1,
    }


def describe_output(param: Param) -> dict[str, Any]:
    return {
        "title": param.label or param.id,
        "description": param.doc or "",
        "schema": type_schema(param.base_type, param.format),
    }


def type_schema(t: Any, formats: list[str] | None = None) -> dict[str, Any]:
    """JSON Schema of a normalized CWL type (see ades.cwl.package.Param)."""
    if isinstance(t, list):
        members = [m for m in t if m != "null"]
        schemas = [type_schema(m, formats) for m in members]
        if "null" in t:
            schemas.append({"type": "null"})
        return schemas[0] if len(schemas) == 1 else {"oneOf": schemas}
    if isinstance(t, str):
        if t in ("File", "Directory"):
            return _reference_schema(t, formats or [])
        # an unknown named type: cwltool accepted it, so say nothing rather than something wrong
        return dict(_SCALARS.get(t, {}))
    kind = t.get("type")
    if kind == "array":
        return {"type": "array", "items": type_schema(t["items"], formats)}
    if kind == "enum":
        return {"type": "string", "enum": list(t["symbols"])}
    if kind == "record":
        if _is_bbox(t):
            return _bbox_schema()
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in t.get("fields", []):
            schema = type_schema(field["type"])
            if field.get("label"):
                schema["title"] = field["label"]
            if field.get("doc"):
                schema["description"] = field["doc"]
            properties[field["name"]] = schema
            if not (isinstance(field["type"], list) and "null" in field["type"]):
                required.append(field["name"])
        return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    return {}


_NUMBERS = ("float", "double", "int", "long")


def _is_bbox(t: dict[str, Any]) -> bool:
    """A record of `bbox` (an array of numbers) and, optionally, `crs` (a string): what OGC calls a bounding box."""
    fields = {f["name"]: f["type"] for f in t.get("fields", [])}
    if "bbox" not in fields or not set(fields) <= {"bbox", "crs"}:
        return False
    bbox, crs = fields["bbox"], fields.get("crs", "string")
    return (isinstance(bbox, dict) and bbox.get("type") == "array" and bbox.get("items") in _NUMBERS
            and crs in ("string", ["null", "string"], ["string", "null"]))


def _bbox_schema() -> dict[str, Any]:
    # OGC's bounding-box form: `format: ogc-bbox` under `allOf`, no top-level `type`, as OGC clients (and the OGC
    # test suite) recognise it; each member carries the format, since clients read it from every member
    return {"allOf": [{
        "format": "ogc-bbox", "type": "object", "required": ["bbox"],
        "properties": {
            "bbox": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 6,
                     "description": "minx, miny, maxx, maxy (or six numbers, with heights)"},
            "crs": {"type": "string", "description": "the CRS URI; OGC CRS84 when left out"},
        },
    }]}


def _reference_schema(kind: str, formats: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "format": "uri"}
    if kind == "Directory":
        schema["x-cwl-class"] = "Directory"
    media = [f.removeprefix(p) for f in formats for p in IANA_PREFIXES if f.startswith(p)]
    others = [f for f in formats if not f.startswith(IANA_PREFIXES)]
    if media:
        schema["contentMediaType"] = media[0]
    if others:
        schema["x-cwl-format"] = others[0] if len(others) == 1 else others
    return schema


def _default_value(value: Any) -> Any:
    # A File/Directory default is an object; clients know it by its location.
    if isinstance(value, dict) and value.get("class") in ("File", "Directory"):
        return value.get("location") or value.get("path")
    if isinstance(value, list):
        return [_default_value(v) for v in value]
    return value
