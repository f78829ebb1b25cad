"""The NDVI application on synthetic rasters made here: values equal numpy's on the same arrays, CRS, transform and
nodata are kept, the file is a Cloud-Optimized GeoTIFF; the CWL package runs it under real cwltool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from ades.apps import ndvi
from tests.rasters import CRS_UTM, TRANSFORM, expected_ndvi, synthetic_bands, write_raster

REPO = Path(__file__).resolve().parents[2]
NDVI_CWL = REPO / "cwl" / "examples" / "ndvi" / "ndvi.cwl"


def assert_ndvi_file(path: Path, red: np.ndarray, nir: np.ndarray) -> None:
    with rasterio.open(path) as src:
        assert src.count == 1 and src.dtypes[0] == "float32"
        assert src.crs == CRS_UTM
        assert src.transform.almost_equals(TRANSFORM)
        assert src.nodata == ndvi.DEFAULT_NODATA
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        values = src.read(1)
    expected = expected_ndvi(red, nir)
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-6)
    assert (values == ndvi.DEFAULT_NODATA).sum() == 10 * 15  # exactly the red + NIR == 0 block
    assert np.all(values[values.shape[0] // 2, :] == 0)


def test_two_files_match_numpy(tmp_path: Path) -> None:
    red, nir = synthetic_bands()
    red_tif = write_raster(tmp_path / "red.tif", [red])
    nir_tif = write_raster(tmp_path / "nir.tif", [nir])
    out = tmp_path / "out" / "ndvi.tif"
    # small chunks: the computation runs over many dask blocks, including ragged edge ones
    assert ndvi.main(["--red", str(red_tif), "--nir", str(nir_tif), "--out", str(out), "--chunk", "128"]) == 0
    assert_ndvi_file(out, red, nir)
    assert [p.name for p in out.parent.iterdir()] == ["ndvi.tif"]  # the temporary tiled GeoTIFF is gone


def test_band_indexes_of_one_multiband_file_and_input_nodata(tmp_path: Path) -> None:
    red, nir = synthetic_bands(64, 80)
    blue = np.full_like(red, 7)
    red[0, 0] = 65535  # the file's own nodata: the output must be nodata there
    scene = write_raster(tmp_path / "scene.tif", [blue, red, nir], nodata=65535)
    out = tmp_path / "ndvi.tif"
    ndvi.run(scene, scene, out, red_band=2, nir_band=3, chunk=32)
    with rasterio.open(out) as src:
        values = src.read(1)
        assert src.crs == CRS_UTM
    expected = expected_ndvi(red, nir)
    expected[0, 0] = ndvi.DEFAULT_NODATA
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-6)


def test_bad_inputs_exit_2_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    red, nir = synthetic_bands(40, 50)
    red_tif = write_raster(tmp_path / "red.tif", [red])
    shifted = write_raster(tmp_path / "nir.tif", [nir], transform=from_origin(0.0, 0.0, 20.0, 20.0))
    other_crs = write_raster(tmp_path / "nir4326.tif", [nir], crs=CRS.from_epsg(4326),
                             transform=from_origin(10.0, 50.0, 0.001, 0.001))
    out = tmp_path / "ndvi.tif"
    cases = {
        "geotransforms": ["--red", str(red_tif), "--nir", str(shifted)],
        "EPSG:4326": ["--red", str(red_tif), "--nir", str(other_crs)],
        "band 2 asked for": ["--red", str(red_tif), "--nir", str(red_tif), "--nir-band", "2"],
        "no such file": ["--red", str(tmp_path / "missing.tif"), "--nir", str(red_tif)],
    }
    for needle, argv in cases.items():
        assert ndvi.main([*argv, "--out", str(out)]) == 2
        assert needle in capsys.readouterr().err
        assert not out.exists()


def test_runs_as_a_module_with_the_venv_python(tmp_path: Path) -> None:
    """What the CWL tool runs: `python -m ades.apps.ndvi` with the environment's interpreter."""
    assert (Path(sys.executable).parent / "python").exists()
    red, nir = synthetic_bands(40, 50)
    red_tif = write_raster(tmp_path / "red.tif", [red])
    nir_tif = write_raster(tmp_path / "nir.tif", [nir])
    done = subprocess.run([sys.executable, "-m", "ades.apps.ndvi", "--red", str(red_tif), "--nir", str(nir_tif),
                           "--out", str(tmp_path / "ndvi.tif")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert_ndvi_file(tmp_path / "ndvi.tif", red, nir)


def test_the_cwl_package_under_cwltool(tmp_path: Path) -> None:
    red, nir = synthetic_bands(60, 70)
    red_tif = write_raster(tmp_path / "red.tif", [red])
    nir_tif = write_raster(tmp_path / "nir.tif", [nir])
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"red": {"class": "File", "path": str(red_tif)},
                               "nir": {"class": "File", "path": str(nir_tif)}}))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cwltool = Path(sys.executable).parent / "cwltool"
    done = subprocess.run([str(cwltool), "--no-container", "--outdir", str(tmp_path / "out"), str(NDVI_CWL),
                           str(job)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    output = json.loads(done.stdout)["ndvi"]
    assert output["format"] == "https://www.iana.org/assignments/media-types/image/tiff"
    assert_ndvi_file(Path(output["path"]), red, nir)
