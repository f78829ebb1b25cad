"""A job's results as a STAC Item (`GET /jobs/{id}/results?f=stac`).

The Item's id is the job id and its datetime the job's stop-time (start/end datetimes span the run). Every File
output is an asset: its href is the URL in the job's `outputs` (this server's result URL, or a presigned S3 URL;
see ades/storage.py), its media type from the CWL format or the file, roles ["data"]. An array of Files or a
Directory gives one asset per file, `<output id>_<i>`. Non-file outputs are listed under `ades:values`.

bbox and geometry are WGS84 (EPSG:4326) bounds of the raster outputs, read with rasterio from the job folder or,
when this host has no copy, from an asset's URL elsewhere (never from this server itself). No georeferenced raster:
geometry null and no bbox, which STAC allows.

Only STAC core is used (no `stac_extensions`), so `validate_item` checks the Item against the JSON schemas pystac
ships, offline.
"""

from __future__ import annotations

import logging
import urllib.parse
from pathlib import Path
from typing import Any

from ades.status import Status
from ades.storage import LocalStorage, StorageError, files_of, is_file, local_path, media_type

log = logging.getLogger(__name__)

STAC_VERSION = "1.1.0"
GEOJSON = "application/geo+json"
GEOTIFF = "image/tiff; application=geotiff"
COG = "image/tiff; application=geotiff; profile=cloud-optimized"
_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img", ".nc")
_RASTER_TYPES = ("image/tiff", "image/jp2", "application/x-netcdf", "application/netcdf")
REMOTE_TIMEOUT = 10  # seconds GDAL may wait on a remote raster's header
Bbox = tuple[float, float, float, float]
RasterFacts = tuple[Bbox | None, str | None]
"""(WGS84 bounds, refined media type) of a raster, as raster_info gives them"""


# --- rasters -----------------------------------------------------------------------------------------------------
def looks_raster(name: str, kind: str | None) -> bool:
    # GDAL opens some plain text (CSV, XYZ) as rasters too: only try files meant to be rasters
    path = urllib.parse.urlsplit(name).path if "://" in name else name
    return path.lower().endswith(_RASTER_SUFFIXES) or (kind or "").startswith(_RASTER_TYPES)


def raster_info(source: str | Path) -> tuple[Bbox | None, str | None]:
    """(WGS84 bounds or None when not georeferenced, refined media type) of a raster file or URL; (None, None)
    when it cannot be read as a raster."""
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.warp import transform_bounds

    options = {"GDAL_HTTP_TIMEOUT": REMOTE_TIMEOUT, "GDAL_HTTP_MAX_RETRY": 1,
               "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}  # one request for a URL, not a folder listing
    try:
        with rasterio.Env(**options), rasterio.open(str(source)) as src:
            kind = None
            if src.driver == "GTiff":
                layout = src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT", "")
                kind = COG if layout.upper() == "COG" else GEOTIFF if src.crs else "image/tiff"
            if src.crs is None:
                return None, kind
            west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
            return (west, south, east, north), kind
    except (RasterioError, OSError, ValueError) as err:
        log.info("no raster bounds from %s: %s", source, err)
        return None, None


def _union(boxes: list[Bbox]) -> Bbox | None:
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _ring(west: float, south: float, east: float, north: float) -> list[list[float]]:
    return [[west, south], [east, south], [east, north], [west, north], [west, south]]


def bbox_geometry(bbox: Bbox) -> dict[str, Any]:
    """GeoJSON geometry of a WGS84 bbox; one crossing the antimeridian (west > east) is split in two (RFC 7946)."""
    west, south, east, north = bbox
    if west > east:
        return {"type": "MultiPolygon", "coordinates": [[_ring(west, south, 180.0, north)],
                                                        [_ring(-180.0, south, east, north)]]}
    return {"type": "Polygon", "coordinates": [_ring(west, south, east, north)]}


# --- the Item ----------------------------------------------------------------------------------------------------
def _own_url(href: str, base_url: str) -> bool:
    return href.startswith(base_url.rstrip("/") + "/")


def _asset(value: dict[str, Any], href: str, title: str, base_url: str, boxes: list[Bbox],
           known: dict[str, RasterFacts]) -> dict[str, Any]:
    kind: str | None = media_type(value)
    if kind == "application/octet-stream":
        kind = None  # unknown: say nothing rather than something vague
    path = local_path(value)
    source: str | Path | None = path if path is not None and path.is_file() else None
    if source is None and href.startswith(("http://", "https://")) and not _own_url(href, base_url):
        source = href  # no copy here (another host ran it), but the file is reachable elsewhere, e.g. S3
    name = str(value.get("basename") or path or href)
    facts = known.get(str(path)) if path is not None else None
    if facts is not None:  # read where the file was written (ades.results_manifest): nothing to fetch here
        bbox, refined = facts
        if bbox is not None:
            boxes.append(bbox)
        kind = refined or kind
    elif source is not None and looks_raster(name, kind):
        bbox, refined = raster_info(source)
        if bbox is not None:
            boxes.append(bbox)
        kind = refined or kind
    asset: dict[str, Any] = {"href": href, "title": title, "roles": ["data"]}
    if kind:
        asset["type"] = kind
    return asset


def _hrefs(reported: Any, count: int) -> list[str | None]:
    if isinstance(reported, str):
        return [reported] if count == 1 else [None] * count
    if isinstance(reported, list) and len(reported) == count:
        return [h if isinstance(h, str) else None for h in reported]
    return [None] * count


def job_item(doc: dict[str, Any], outputs: dict[str, Any] | None, base_url: str,
             outputs_dir: Path | None = None, known: dict[str, RasterFacts] | None = None) -> dict[str, Any]:
    """The STAC Item (a dict) of a succeeded job's `jobs` document and cwltool's output object (as the run saved
    it; None when this host has no copy: the assets then come from the URLs in `doc["outputs"]` alone). `known`:
    the rasters' facts by local path, read before (the job's results manifest), instead of reading the files.

    A file without a URL of its own in `doc["outputs"]` (an array's items when the job reported one URL for the
    whole output) gets the URL this server serves it at, which needs the job's `outputs_dir`; without it the file is
    left out.
    """
    base = base_url.rstrip("/")
    job_id = doc["id"]
    reported: dict[str, Any] = doc.get("outputs") or {}
    served = _served_urls(job_id, outputs, base, outputs_dir)
    boxes: list[Bbox] = []
    assets: dict[str, Any] = {}
    values: dict[str, Any] = {}
    if outputs is None:
        outputs = {name: _from_url(url) for name, url in reported.items()}
    for name, value in outputs.items():
        if value is None:
            continue
        if is_file(value):
            href = _hrefs(reported.get(name), 1)[0] or f"{base}/jobs/{job_id}/results/{name}"
            assets[name] = _asset(value, href, name, base, boxes, known or {})
            continue
        many = files_of(value)
        if many is None:
            values[name] = value
            continue
        hrefs = [mine or theirs for mine, theirs in zip(_hrefs(reported.get(name), len(many)),
                                                        _hrefs(served.get(name), len(many)), strict=True)]
        for i, (item, href) in enumerate(zip(many, hrefs, strict=True)):
            if href is None:
                continue  # no URL was reported for this file: an asset without an href would be invalid
            assets[f"{name}_{i}"] = _asset(item, href, f"{name} [{i}] {item.get('basename') or ''}".strip(), base,
                                           boxes, known or {})
    bbox = _union(boxes)
    stop = doc.get("stop-time") or doc.get("updated") or doc.get("created")
    properties: dict[str, Any] = {
        "datetime": stop,
        "title": f"{doc.get('process-id') or 'job'} {job_id}",
        "created": doc.get("created"),
        "updated": doc.get("updated"),
        "ades:process_id": doc.get("process-id"),
        "ades:process_version": doc.get("process-version"),
        "ades:labels": list(doc.get("labels") or []),
        "ades:status": Status(doc["status"]).ogc,
    }
    if doc.get("start-time") and doc.get("stop-time"):
        properties.update(start_datetime=doc["start-time"], end_datetime=doc["stop-time"])
    if values:
        properties["ades:values"] = values
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": job_id,
        "geometry": bbox_geometry(bbox) if bbox else None,
        "properties": {k: v for k, v in properties.items() if v is not None},
        "links": [
            {"rel": "self", "href": f"{base}/jobs/{job_id}/results?f=stac", "type": GEOJSON},
            {"rel": "alternate", "href": f"{base}/jobs/{job_id}/results", "type": "application/json",
             "title": "results (OGC API Processes)"},
            {"rel": "related", "href": f"{base}/jobs/{job_id}", "type": "application/json", "title": "the job"},
        ],
        "assets": assets,
    }
    if bbox:
        item["bbox"] = list(bbox)
    return item


def _served_urls(job_id: str, outputs: dict[str, Any] | None, base: str,
                 outputs_dir: Path | None) -> dict[str, Any]:
    if outputs is None or outputs_dir is None:
        return {}
    storage = LocalStorage(base)
    served: dict[str, Any] = {}
    for name, value in outputs.items():
        try:
            served.update(storage.store(job_id, {name: value}, outputs_dir))
        except StorageError:
            continue  # a file outside the job's outputs folder is not served: it gets no asset
    return served


def _from_url(url: Any) -> Any:
    """An output known only by its reported URL(s), as File objects named after the URL path."""
    if isinstance(url, str):
        return {"class": "File", "basename": Path(urllib.parse.urlsplit(url).path).name}
    if isinstance(url, list) and url and all(isinstance(u, str) for u in url):
        return [_from_url(u) for u in url]
    return url


# --- validation --------------------------------------------------------------------------------------------------
def validate_item(item: dict[str, Any]) -> None:
    """Validate against STAC core with the schemas shipped in pystac; never fetches a schema (raises instead).
    Raises pystac.errors.STACValidationError when the Item is invalid."""
    from pystac.errors import STACValidationError
    from pystac.validation import validate_dict
    from pystac.validation.stac_validator import JsonSchemaSTACValidator

    class OfflineValidator(JsonSchemaSTACValidator):
        def _get_schema(self, schema_uri: str) -> dict[str, Any]:
            if schema_uri not in self.schema_cache:
                raise STACValidationError(f"schema {schema_uri} is not shipped with pystac; not fetching it")
            return super()._get_schema(schema_uri)

    validate_dict(item, validator=OfflineValidator())
