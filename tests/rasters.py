"""Synthetic rasters the NDVI tests write and the values they expect (numpy's own NDVI on the same arrays)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine, from_origin

from ades.apps import ndvi

CRS_UTM = CRS.from_epsg(32633)
TRANSFORM = from_origin(399960.0, 5300040.0, 20.0, 20.0)


def write_raster(path: Path, bands: list[np.ndarray], crs: CRS = CRS_UTM, transform: Affine = TRANSFORM,
                 nodata: float | None = None) -> Path:
    height, width = bands[0].shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=len(bands),
                       dtype=bands[0].dtype, crs=crs, transform=transform, nodata=nodata) as dst:
        for index, band in enumerate(bands, start=1):
            dst.write(band, index)
    return path


def synthetic_bands(height: int = 300, width: int = 410) -> tuple[np.ndarray, np.ndarray]:
    """uint16 reflectances with a block where red + NIR == 0 (nodata expected) and a few equal pixels (NDVI 0)."""
    rng = np.random.default_rng(20240611)
    red = rng.integers(0, 4000, (height, width), dtype=np.uint16)
    nir = rng.integers(0, 6000, (height, width), dtype=np.uint16)
    red[10:20, 30:45] = 0
    nir[10:20, 30:45] = 0
    nir[height // 2, :] = red[height // 2, :]
    return red, nir


def expected_ndvi(red: np.ndarray, nir: np.ndarray, nodata: float = ndvi.DEFAULT_NODATA) -> np.ndarray:
    r, n = red.astype(np.float64), nir.astype(np.float64)
    total = n + r
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total == 0, nodata, (n - r) / total).astype(np.float32)
