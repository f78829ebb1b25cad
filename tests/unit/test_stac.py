"""Results as a STAC Item, built from a job document and real files written here (a COG, a text file, an array):
assets, media types, WGS84 bbox/geometry; the Item validates with pystac's bundled schemas and no network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
from pyproj import Transformer
from pystac.errors import STACValidationError
from rasterio.crs import CRS
from rasterio.transform import from_origin

from ades.results_stac import COG, GEOTIFF, bbox_geometry, job_item, validate_item

BASE = "http://127.0.0.1:5000"
JOB = "6f1c2b0e-0d7a-4a52-9a64-2f1a1d0c7e11"
TRANSFORM = from_origin(399960.0, 5300040.0, 20.0, 20.0)
UTM33 = CRS.from_epsg(32633)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """pystac reads any schema it lacks through StacIO: make that fail loudly, so validation here proves offline."""

    def refuse(self: Any, href: str) -> str:
        raise AssertionError(f"pystac tried to fetch {href}")

    monkeypatch.setattr(pystac.stac_io.DefaultStacIO, "read_text_from_href", refuse)


def _raster(path: Path, driver: str, crs: CRS | None = UTM33) -> Path:
    data = np.arange(40 * 50, dtype=np.float32).reshape(40, 50)
    with rasterio.open(path, "w", driver=driver, width=50, height=40, count=1, dtype="float32", crs=crs,
                       transform=TRANSFORM) as dst:
        dst.write(data, 1)
    return path


def _doc(outputs: dict[str, Any]) -> dict[str, Any]:
    return {"id": JOB, "status": "succeeded", "process-id": "ndvi", "process-version": "1.0.0", "labels": ["demo"],
            "created": "2024-06-11T10:00:00.000000Z", "updated": "2024-06-11T10:00:05.000000Z",
            "start-time": "2024-06-11T10:00:01.000000Z", "stop-time": "2024-06-11T10:00:04.000000Z",
            "outputs": outputs}


def _file(path: Path, fmt: str | None = None) -> dict[str, Any]:
    value = {"class": "File", "path": str(path), "location": path.as_uri(), "basename": path.name}
    return {**value, "format": fmt} if fmt else value


def test_item_of_a_raster_job(tmp_path: Path) -> None:
    cog = _raster(tmp_path / "ndvi.tif", "COG")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    parts = [tmp_path / "a" / "part.csv", tmp_path / "b" / "part.csv"]
    for part in parts:
        part.write_text("x,y\n1,2\n")
    outputs = {
        "ndvi": _file(cog, "https://www.iana.org/assignments/media-types/image/tiff"),
        "notes": _file(notes),
        "parts": [_file(p) for p in parts],
        "count": 2,
        "absent": None,
    }
    urls = {"ndvi": "http://127.0.0.1:5055/bucket/ndvi.tif?sig=1", "notes": f"{BASE}/jobs/{JOB}/results/notes",
            "parts": [f"{BASE}/jobs/{JOB}/files/a/part.csv", f"{BASE}/jobs/{JOB}/files/b/part.csv"],
            "count": f"{BASE}/jobs/{JOB}/results/count"}
    item = job_item(_doc(urls), outputs, BASE)

    assert item["id"] == JOB and item["properties"]["datetime"] == "2024-06-11T10:00:04.000000Z"
    props = item["properties"]
    assert props["start_datetime"] == "2024-06-11T10:00:01.000000Z" and props["created"].startswith("2024-06-11")
    assert (props["ades:process_id"], props["ades:process_version"], props["ades:labels"]) == ("ndvi", "1.0.0",
                                                                                               ["demo"])
    assert props["ades:values"] == {"count": 2}
    assets = item["assets"]
    assert sorted(assets) == ["ndvi", "notes", "parts_0", "parts_1"]
    assert assets["ndvi"] == {"href": urls["ndvi"], "title": "ndvi", "roles": ["data"], "type": COG}
    assert assets["notes"]["type"] == "text/plain" and assets["notes"]["href"] == urls["notes"]
    assert [assets[f"parts_{i}"]["href"] for i in (0, 1)] == urls["parts"]
    assert assets["parts_0"]["type"] == "text/csv"

    # the bbox holds the raster's corners taken to WGS84 independently (pyproj), and no more than a hair around
    to_wgs84 = Transformer.from_crs(32633, 4326, always_xy=True)
    west, north = TRANSFORM * (0, 0)
    east, south = TRANSFORM * (50, 40)
    lons, lats = to_wgs84.transform([west, east, east, west], [south, south, north, north])
    bbox = item["bbox"]
    assert bbox[0] <= min(lons) and bbox[2] >= max(lons) and bbox[1] <= min(lats) and bbox[3] >= max(lats)
    assert np.allclose(bbox, [min(lons), min(lats), max(lons), max(lats)], atol=1e-4)
    assert item["geometry"]["type"] == "Polygon" and item["geometry"]["coordinates"][0][0] == [bbox[0], bbox[1]]

    validate_item(item)
    parsed = pystac.Item.from_dict(item)
    parsed.validate()  # plain pystac too: the autouse fixture fails this if it reaches for the network
    assert parsed.bbox == bbox and parsed.assets["ndvi"].media_type == pystac.MediaType.COG


def test_no_raster_means_no_geometry_and_still_valid(tmp_path: Path) -> None:
    notes = tmp_path / "out.txt"
    notes.write_text("x")
    plain = _raster(tmp_path / "plain.tif", "GTiff", crs=None)  # a TIFF without a CRS adds no footprint
    item = job_item(_doc({}), {"out": _file(notes), "img": _file(plain)}, BASE)
    assert item["geometry"] is None and "bbox" not in item
    assert item["assets"]["out"]["href"] == f"{BASE}/jobs/{JOB}/results/out"  # no reported URL: the server's
    assert item["assets"]["img"]["type"] == "image/tiff"
    validate_item(item)
    pystac.Item.from_dict(item).validate()


def test_plain_geotiff_and_files_known_only_by_url(tmp_path: Path) -> None:
    tif = _raster(tmp_path / "x.tif", "GTiff")
    item = job_item(_doc({}), {"x": _file(tif)}, BASE)
    assert item["assets"]["x"]["type"] == GEOTIFF and "bbox" in item
    # no outputs.json on this host: assets from the reported URLs alone; this server's own URLs are not fetched
    urls = {"x": f"{BASE}/jobs/{JOB}/results/x", "many": [f"{BASE}/jobs/{JOB}/files/a.json"]}
    remote = job_item(_doc(urls), None, BASE)
    assert remote["assets"]["x"] == {"href": urls["x"], "title": "x", "roles": ["data"]}
    assert remote["assets"]["many_0"]["type"] == "application/json"
    assert remote["geometry"] is None
    validate_item(remote)


def test_antimeridian_bbox_is_split() -> None:
    geometry = bbox_geometry((170.0, -10.0, -170.0, 10.0))
    assert geometry["type"] == "MultiPolygon" and len(geometry["coordinates"]) == 2
    item = {"type": "Feature", "stac_version": "1.1.0", "stac_extensions": [], "id": "x", "geometry": geometry,
            "bbox": [170.0, -10.0, -170.0, 10.0], "properties": {"datetime": "2024-01-01T00:00:00Z"},
            "links": [], "assets": {}}
    validate_item(item)


def test_invalid_items_are_refused_offline() -> None:
    item = {"type": "Feature", "stac_version": "1.1.0", "stac_extensions": [], "id": "x", "geometry": None,
            "properties": {}, "links": [], "assets": {}}
    with pytest.raises(STACValidationError, match="datetime"):
        validate_item(item)
    # an extension schema is not bundled with pystac: refused without a download
    with pytest.raises(STACValidationError, match="not shipped"):
        validate_item({**item, "properties": {"datetime": "2024-01-01T00:00:00Z"},
                       "stac_extensions": ["https://stac-extensions.github.io/projection/v2.0.0/schema.json"]})
