"""NDVI = (NIR - red) / (NIR + red), written as a float32 Cloud-Optimized GeoTIFF on the input grid.

    python -m ades.apps.ndvi --red red.tif --nir nir.tif --out ndvi.tif
    python -m ades.apps.ndvi --red scene.tif --red-band 3 --nir scene.tif --nir-band 4 --out ndvi.tif

Red and NIR come from two single-band files, or from bands of one multi-band file (`--red-band`/`--nir-band`,
1-based, default 1). Both must share grid, CRS and transform: NDVI is computed pixel by pixel, never resampled.
Reading is lazy and chunked with dask (`--chunk` pixels a side): reading, arithmetic and writing run block by
block, so a scene larger than memory works (see write_cog).
The output keeps the input's CRS and transform; a pixel is nodata (`--nodata`, default -9999) where red + NIR is
0 or either input is its own nodata. Exit codes: 0 written, 2 bad arguments or mismatched inputs.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

import numpy as np
import rioxarray
import xarray as xr

DEFAULT_NODATA = -9999.0
DEFAULT_CHUNK = 1024


class NdviError(ValueError):
    """The inputs cannot make an NDVI (missing band, different grids)."""


def read_band(path: Path, band: int, chunk: int) -> xr.DataArray:
    """One band as a lazy (dask) 2-D array, its nodata pixels as NaN (float32), with CRS and transform kept."""
    data = rioxarray.open_rasterio(path, chunks={"x": chunk, "y": chunk, "band": 1}, masked=False)
    if not isinstance(data, xr.DataArray):
        raise NdviError(f"{path}: holds several subdatasets; give a single-raster file (e.g. a GeoTIFF)")
    if band < 1 or band > data.sizes["band"]:
        raise NdviError(f"{path}: has {data.sizes['band']} band(s), band {band} asked for")
    layer = data.isel(band=band - 1, drop=True)
    nodata = layer.rio.nodata
    values = layer.astype("float32")
    if nodata is not None:
        # an input's own nodata must not take part in the ratio
        values = values.where(~_is_value(layer, nodata))
    return values


def _is_value(layer: xr.DataArray, value: float) -> xr.DataArray:
    return np.isnan(layer) if np.isnan(value) else layer == value


def _check_same_grid(red: xr.DataArray, nir: xr.DataArray) -> None:
    if red.shape != nir.shape:
        raise NdviError(f"red is {red.shape[1]}x{red.shape[0]} pixels, NIR {nir.shape[1]}x{nir.shape[0]}")
    if red.rio.crs != nir.rio.crs:
        raise NdviError(f"red is in {red.rio.crs}, NIR in {nir.rio.crs}")
    if not red.rio.transform().almost_equals(nir.rio.transform()):
        raise NdviError("red and NIR have different geotransforms (pixel grids)")


def ndvi(red: xr.DataArray, nir: xr.DataArray, nodata: float = DEFAULT_NODATA) -> xr.DataArray:
    """Lazy float32 NDVI of two aligned float arrays (NaN = missing); nodata where undefined."""
    _check_same_grid(red, nir)
    total = nir + red
    valid = (total != 0) & red.notnull() & nir.notnull()
    # a 1 in place of a 0 total: no 0/0 (and no numpy warning from inside dask's blocks); masked right after
    ratio = ((nir - red) / total.where(total != 0, 1)).where(valid, nodata).astype("float32")
    ratio = ratio.rio.write_crs(red.rio.crs).rio.write_transform(red.rio.transform())
    ratio.name = "ndvi"
    ratio.attrs = {"long_name": "NDVI"}
    return ratio.rio.write_nodata(nodata, encoded=False)


def write_cog(array: xr.DataArray, out: Path) -> None:
    """Block by block into a tiled GeoTIFF, then GDAL's COG driver copies it (adding overviews) into `out`.

    The COG driver can only write by copying a finished dataset; handing it the dask array would compute the whole
    result in memory first. The temporary file sits beside `out` and is removed either way.
    """
    from rasterio.shutil import copy as gdal_copy

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial.tif")
    try:
        array.rio.to_raster(partial, driver="GTiff", tiled=True, blockxsize=256, blockysize=256, dtype="float32",
                            windowed=True, lock=threading.Lock())
        gdal_copy(partial, out, driver="COG", compress="DEFLATE", predictor="3", overview_resampling="average")
    finally:
        partial.unlink(missing_ok=True)


def run(red_path: Path, nir_path: Path, out: Path, red_band: int = 1, nir_band: int = 1,
        nodata: float = DEFAULT_NODATA, chunk: int = DEFAULT_CHUNK) -> Path:
    red = read_band(red_path, red_band, chunk)
    nir = read_band(nir_path, nir_band, chunk)
    write_cog(ndvi(red, nir, nodata), out)
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ades.apps.ndvi", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--red", type=Path, required=True, help="GeoTIFF holding the red band")
    parser.add_argument("--nir", type=Path, required=True, help="GeoTIFF holding the near-infrared band")
    parser.add_argument("--red-band", type=int, default=1, help="band index of red in --red (1-based)")
    parser.add_argument("--nir-band", type=int, default=1, help="band index of NIR in --nir (1-based)")
    parser.add_argument("--out", type=Path, default=Path("ndvi.tif"), help="output COG (default ndvi.tif)")
    parser.add_argument("--nodata", type=float, default=DEFAULT_NODATA, help="output nodata value")
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="dask chunk size, pixels a side")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name in ("red", "nir"):
        if not getattr(args, name).is_file():
            print(f"ndvi: --{name} {getattr(args, name)}: no such file", file=sys.stderr)
            return 2
    if args.chunk < 16:
        print("ndvi: --chunk must be at least 16", file=sys.stderr)
        return 2
    try:
        out = run(args.red, args.nir, args.out, args.red_band, args.nir_band, args.nodata, args.chunk)
    except NdviError as err:
        print(f"ndvi: {err}", file=sys.stderr)
        return 2
    print(f"ndvi: wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
