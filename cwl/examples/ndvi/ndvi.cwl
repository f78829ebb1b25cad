#!/usr/bin/env cwl-runner
# NDVI of a red and a near-infrared band (the openEO "NDVI" example as an application package). The tool runs
# `python -m ades.apps.ndvi` with the interpreter of the server's environment (its bin folder is first on PATH
# when ades runs a job), so rioxarray and dask come from there; no container.
# Red and NIR may be two files, or the same multi-band file twice with different band indexes.
cwlVersion: v1.2
class: CommandLineTool
id: ndvi
label: NDVI
doc: >-
  Normalised difference vegetation index (NIR - red) / (NIR + red) of two raster bands on the same grid, written as
  a float32 Cloud-Optimized GeoTIFF with the input's CRS and transform; nodata (-9999) where red + NIR is 0.
$namespaces:
  s: https://schema.org/
  iana: https://www.iana.org/assignments/media-types/
s:softwareVersion: 1.0.0
s:keywords: [example, raster, ndvi, cog]
baseCommand: [python, -m, ades.apps.ndvi]
arguments: [--out, ndvi.tif]
inputs:
  red:
    type: File
    label: Red band
    doc: A GeoTIFF holding the red band.
    inputBinding: {prefix: --red}
  nir:
    type: File
    label: Near-infrared band
    doc: A GeoTIFF holding the near-infrared band (same grid and CRS as red).
    inputBinding: {prefix: --nir}
  red_band:
    type: int
    default: 1
    label: Red band index
    doc: 1-based index of the red band in the red file.
    inputBinding: {prefix: --red-band}
  nir_band:
    type: int
    default: 1
    label: NIR band index
    doc: 1-based index of the near-infrared band in the NIR file.
    inputBinding: {prefix: --nir-band}
outputs:
  ndvi:
    type: File
    format: iana:image/tiff
    label: NDVI
    doc: Float32 Cloud-Optimized GeoTIFF, values in [-1, 1], nodata -9999.
    outputBinding: {glob: ndvi.tif}
