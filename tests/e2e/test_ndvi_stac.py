"""NDVI end to end on a live server: deploy cwl/examples/ndvi/ndvi.cwl, execute it on two synthetic GeoTIFFs given
as file hrefs, fetch the result over HTTP and compare it with numpy; the results as a STAC Item (linked from the
job) validate offline and carry the raster's footprint. LocalStorage's URLs are served by the server's routes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.warp import transform_bounds

from ades.config import Settings
from ades.jobs.folder import JobFolder
from ades.results_stac import COG, validate_item
from ades.storage import LocalStorage
from tests.e2e.conftest import LiveServer, serve_app
from tests.helpers import EXAMPLES, assert_problem
from tests.rasters import CRS_UTM, TRANSFORM, expected_ndvi, synthetic_bands, write_raster

ASYNC = {"Prefer": "respond-async"}
STAC_TYPE = "application/geo+json"
MANY_FILES_CWL = """
cwlVersion: v1.2
class: CommandLineTool
id: many-files
$namespaces: {s: "https://schema.org/"}
s:softwareVersion: 1.0.0
baseCommand: [sh, -c]
arguments:
  - mkdir -p a b tiles/deep && printf one > a/part.txt && printf two > b/part.txt && printf x > tiles/x.txt &&
    printf y > tiles/deep/y.txt
inputs: {}
outputs:
  parts: {type: "File[]", outputBinding: {glob: [a/part.txt, b/part.txt]}}
  tiles: {type: Directory, outputBinding: {glob: tiles}}
"""


@pytest.fixture(scope="module")
def inputs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ndvi-inputs")


@pytest.fixture(scope="module")
def live(e2e_settings: Settings, inputs_dir: Path) -> Iterator[LiveServer]:
    """This module's server reads file:// inputs from `inputs_dir` (and nowhere else)."""
    yield from serve_app(e2e_settings, file_roots=[inputs_dir])


@pytest.fixture(autouse=True)
def no_schema_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Any, href: str) -> str:
        raise AssertionError(f"pystac tried to fetch {href}")

    monkeypatch.setattr(pystac.stac_io.DefaultStacIO, "read_text_from_href", refuse)


def _deploy(live: LiveServer, text: str) -> None:
    response = live.post("/processes", data=text, headers={"Content-Type": "application/cwl+yaml"})
    assert response.status_code == 201, response.text


def _run(live: LiveServer, process: str, inputs: dict[str, Any]) -> str:
    response = live.post(f"/processes/{process}/execution", headers=ASYNC, json={"inputs": inputs,
                                                                                 "labels": ["ndvi-e2e"]})
    assert response.status_code == 201, response.text
    job_id = response.json()["jobID"]
    info = live.wait_status(job_id, timeout=300)
    assert info["status"] == "successful", live.get(f"/jobs/{job_id}/logs").text[-3000:]
    return job_id


def test_ndvi_job_results_and_stac(live: LiveServer, inputs_dir: Path, tmp_path: Path) -> None:
    red, nir = synthetic_bands(120, 150)
    red_tif = write_raster(inputs_dir / "red.tif", [red])
    nir_tif = write_raster(inputs_dir / "nir.tif", [nir])
    _deploy(live, (EXAMPLES / "ndvi" / "ndvi.cwl").read_text())

    # an input outside the allowed folders is refused, naming it, and no job is written
    outside = write_raster(tmp_path / "nir.tif", [nir])
    before = live.get("/jobs", params={"processID": "ndvi", "limit": 1000}).json()["numberMatched"]
    refused = live.post("/processes/ndvi/execution", headers=ASYNC,
                        json={"inputs": {"red": {"href": red_tif.as_uri()}, "nir": {"href": outside.as_uri()}}})
    problem = assert_problem(refused, 400, "invalid-input")
    assert "nir" in problem["detail"]
    assert live.get("/jobs", params={"processID": "ndvi", "limit": 1000}).json()["numberMatched"] == before

    job_id = _run(live, "ndvi", {"red": {"href": red_tif.as_uri()}, "nir": {"href": nir_tif.as_uri()}})

    # the result file over HTTP: NDVI values equal numpy's on the same arrays, the grid and CRS are the input's
    results = live.get(f"/jobs/{job_id}/results").json()
    assert results["ndvi"]["type"] == "image/tiff"
    download = live.get(results["ndvi"]["href"].removeprefix(live.url))
    assert download.status_code == 200
    (tmp_path / "ndvi.tif").write_bytes(download.content)
    with rasterio.open(tmp_path / "ndvi.tif") as src:
        assert src.crs == CRS_UTM and src.transform.almost_equals(TRANSFORM)
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        np.testing.assert_allclose(src.read(1), expected_ndvi(red, nir), rtol=0, atol=1e-6)
        expected_bbox = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)

    # the job links its results as STAC; the Item validates with pystac's bundled schemas (no network)
    info = live.get(f"/jobs/{job_id}").json()
    stac_links = [link for link in info["links"] if link["type"] == STAC_TYPE]
    assert len(stac_links) == 1 and stac_links[0]["rel"].endswith("/results")
    response = live.get(stac_links[0]["href"].removeprefix(live.url))
    assert response.status_code == 200 and response.headers["Content-Type"] == STAC_TYPE
    item = response.json()
    validate_item(item)
    parsed = pystac.Item.from_dict(item)
    parsed.validate()
    assert item["id"] == job_id and item["properties"]["datetime"] == info["finished"]
    assert item["properties"]["ades:process_id"] == "ndvi" and item["properties"]["ades:labels"] == ["ndvi-e2e"]
    asset = item["assets"]["ndvi"]
    job_doc = live.context.job_store.get(job_id)
    assert asset["href"] == job_doc["outputs"]["ndvi"] == results["ndvi"]["href"]
    assert asset["type"] == COG and asset["roles"] == ["data"]
    assert np.allclose(item["bbox"], expected_bbox, atol=1e-9)
    assert parsed.geometry is not None and parsed.geometry["type"] == "Polygon"

    # LocalStorage gives the URL the server serves that file at
    folder = JobFolder(live.settings.data_dir, job_id)
    outputs = folder.saved_outputs()
    assert outputs is not None
    urls = LocalStorage(live.url).store(job_id, outputs, folder.outputs)
    assert urls == {"ndvi": job_doc["outputs"]["ndvi"]}

    assert_problem(live.get(f"/jobs/{job_id}/results", params={"f": "xml"}), 400, "invalid-parameter")


def test_file_arrays_and_directories(live: LiveServer) -> None:
    _deploy(live, MANY_FILES_CWL)
    job_id = _run(live, "many-files", {})
    folder = JobFolder(live.settings.data_dir, job_id)
    outputs = folder.saved_outputs()
    assert outputs is not None
    urls = LocalStorage(live.url).store(job_id, outputs, folder.outputs)
    assert [live.get(u.removeprefix(live.url)).text for u in urls["parts"]] == ["one", "two"]
    assert [live.get(u.removeprefix(live.url)).text for u in urls["tiles"]] == ["y", "x"]  # deep/y.txt sorts first

    item = live.get(f"/jobs/{job_id}/results", params={"f": "stac"}).json()
    validate_item(item)
    assert item["geometry"] is None and "bbox" not in item
    assert sorted(item["assets"]) == ["parts_0", "parts_1", "tiles_0", "tiles_1"]
    assert [item["assets"][f"parts_{i}"]["type"] for i in (0, 1)] == ["text/plain", "text/plain"]
    hrefs = [item["assets"][key]["href"] for key in ("parts_0", "parts_1", "tiles_0", "tiles_1")]
    assert [live.get(href.removeprefix(live.url)).text for href in hrefs] == ["one", "two", "y", "x"]
    # the OGC results document's file hrefs (arrays) are served too
    document = live.get(f"/jobs/{job_id}/results").json()
    assert [live.get(entry["href"].removeprefix(live.url)).text for entry in document["parts"]] == ["one", "two"]
