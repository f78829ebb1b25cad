"""What serving results from any node costs (ADES_OUTPUT_STORAGE=s3, the results manifest of ades.results_manifest).
Writes benchmarks/results/results_any_node.json.

- the manifest at a job's end: S3Storage.store of a typical output set (a 512x512 float32 GeoTIFF, a text file, a
  Directory of three files, a value) into moto, with the manifest and without it (the same class with put_manifest
  a no-op), alternating in the same run: milliseconds per store, the manifest's share, its size in bytes;
- that cost against a job: the same outputs made by a CWL job on a live `ades serve` (node A, S3 storage), submit ->
  successful, median seconds end to end: the manifest's milliseconds as a ratio of it;
- reading a result from another node: GET /jobs/{id}/results/{output} of the raster on node A (from its disk) and on
  node B (another `ades serve`, its own data dir: a 302 to a presigned URL, then the bytes from moto), and the
  results document and STAC Item on both.

Usage: python benchmarks/results_any_node.py [--stores 30] [--jobs 8] [--reads 60] [--port 5096] [--out FILE]
Needs the local services (`ades services start`: Elasticsearch and moto); talks only to 127.0.0.1.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import requests
from common import ades_server, ms_summary, require_free, write_figures
from common import parser as benchmark_parser
from rasterio.transform import from_origin

from ades.config import Settings
from ades.results_manifest import MANIFEST_NAME
from ades.storage import S3Storage
from ades.store import make_client
from ades.store.setup import drop_indexes

CWL = """
cwlVersion: v1.2
class: CommandLineTool
id: bench-outputs
baseCommand: [sh, -c]
arguments:
  - cp "$0" scene.tif && mkdir -p tiles && printf note > note.txt && for i in 1 2 3; do printf $i > tiles/$i.txt; done
  - $(inputs.scene.path)
inputs:
  scene: File
outputs:
  scene: {type: File, outputBinding: {glob: scene.tif}}
  note: {type: File, outputBinding: {glob: note.txt}}
  tiles: {type: Directory, outputBinding: {glob: tiles}}
"""


class NoManifest(S3Storage):
    """S3Storage as it was before the manifest: the baseline."""

    def put_manifest(self, *args: Any, **kwargs: Any) -> None:
        return None


def write_scene(path: Path) -> Path:
    data = np.linspace(0, 1, 512 * 512, dtype=np.float32).reshape(512, 512)
    with rasterio.open(path, "w", driver="GTiff", width=512, height=512, count=1, dtype="float32",
                       crs="EPSG:32633", transform=from_origin(399960.0, 5300040.0, 10.0, 10.0)) as dst:
        dst.write(data, 1)
    return path


def outputs_in(folder: Path, scene: Path) -> dict[str, Any]:
    """cwltool-shaped outputs of the job above, laid out in `folder`."""
    (folder / "tiles").mkdir(parents=True, exist_ok=True)
    (folder / "scene.tif").write_bytes(scene.read_bytes())
    (folder / "note.txt").write_text("note")
    for i in (1, 2, 3):
        (folder / "tiles" / f"{i}.txt").write_text(str(i))
    return {"scene": {"class": "File", "path": str(folder / "scene.tif"), "basename": "scene.tif"},
            "note": {"class": "File", "path": str(folder / "note.txt"), "basename": "note.txt"},
            "tiles": {"class": "Directory", "path": str(folder / "tiles"), "basename": "tiles"},
            "count": 3}


def store_costs(settings: Settings, scene: Path, stores: int, work: Path) -> dict[str, Any]:
    bucket = settings.output_bucket or ""
    with_manifest = S3Storage(bucket, "bench", settings=settings)
    without = NoManifest(bucket, "bench", client=with_manifest.s3)
    with_manifest.ensure_bucket()
    folder = work / "outputs"
    outputs = outputs_in(folder, scene)
    samples: dict[str, list[float]] = {"with": [], "without": []}
    for i in range(stores * 2 + 2):
        storage, kind = (with_manifest, "with") if i % 2 == 0 else (without, "without")
        started = time.perf_counter()
        storage.store(f"job-{i}", outputs, folder)
        if i >= 2:  # the first pair warms rasterio and the connections
            samples[kind].append(time.perf_counter() - started)
    size = len(with_manifest.s3.get_object(Bucket=bucket, Key=f"bench/job-0/{MANIFEST_NAME}")["Body"].read())
    with_ms, without_ms = ms_summary(samples["with"]), ms_summary(samples["without"])
    return {"store_with_manifest": with_ms, "store_without_manifest": without_ms,
            "manifest_ms_p50": round(with_ms["p50_ms"] - without_ms["p50_ms"], 2),
            "manifest_share_of_store": round(1 - without_ms["p50_ms"] / with_ms["p50_ms"], 3),
            "manifest_bytes": size}


def alternating(session: requests.Session, urls: dict[str, tuple[str, bool]], n: int) -> tuple[dict[str, Any],
                                                                                              dict[str, bytes]]:
    """Each URL (name -> (url, follow redirects)) read `n` times, in turns, so that a shared host's drift hits them
    alike: name -> latency figures, and the last body read."""
    samples: dict[str, list[float]] = {name: [] for name in urls}
    bodies: dict[str, bytes] = {}
    for _ in range(n):
        for name, (url, follow) in urls.items():
            started = time.perf_counter()
            response = session.get(url, timeout=30, allow_redirects=follow)
            samples[name].append(time.perf_counter() - started)
            assert response.status_code in (200, 302), (url, response.status_code, response.text[:300])
            bodies[name] = response.content
    return {name: ms_summary(values) for name, values in samples.items()}, bodies


def live_figures(settings: Settings, scene: Path, jobs: int, reads: int, port: int, work: Path) -> dict[str, Any]:
    env = {"index_prefix": settings.index_prefix, "output_storage": "s3", "output_bucket": settings.output_bucket or "",
           "output_prefix": "live", "aws_endpoint_url": settings.aws_endpoint_url or "",
           "anonymous_roles": '["deployer"]', "input_roots": json.dumps([str(scene.parent)])}
    session = requests.Session()
    session.trust_env = False
    with ades_server(port, str(work / "a"), **env) as a, ades_server(port + 1, str(work / "b"), **env) as b:
        deployed = session.post(f"{a}/processes", data=CWL, headers={"Content-Type": "application/cwl+yaml"})
        assert deployed.status_code == 201, deployed.text
        ends, job_id = [], ""
        for _ in range(jobs + 1):
            started = time.perf_counter()
            job_id = session.post(f"{a}/processes/bench-outputs/execution", headers={"Prefer": "respond-async"},
                                  json={"inputs": {"scene": {"href": scene.as_uri()}}}).json()["jobID"]
            while (status := session.get(f"{a}/jobs/{job_id}").json()["status"]) not in ("successful", "failed"):
                time.sleep(0.02)
            assert status == "successful", session.get(f"{a}/jobs/{job_id}/logs").text[-2000:]
            ends.append(time.perf_counter() - started)
        figures: dict[str, Any] = {"job_end_to_end": ms_summary(ends[1:])}  # the first warms the workers
        path, results = f"/jobs/{job_id}/results/scene", f"/jobs/{job_id}/results"
        latencies, bodies = alternating(session, {
            "output_on_a": (a + path, True), "output_on_b_redirect_only": (b + path, False),
            "output_on_b": (b + path, True), "document_on_a": (a + results, True),
            "document_on_b": (b + results, True), "stac_on_a": (f"{a}{results}?f=stac", True),
            "stac_on_b": (f"{b}{results}?f=stac", True)}, reads)
        assert bodies["output_on_a"] == bodies["output_on_b"] == scene.read_bytes()
        figures.update(latencies)
    return figures


def main() -> None:
    p = benchmark_parser(__doc__, "results_any_node")
    p.add_argument("--stores", type=int, default=30)
    p.add_argument("--jobs", type=int, default=8)
    p.add_argument("--reads", type=int, default=60)
    p.add_argument("--port", type=int, default=5096)
    args = p.parse_args()
    require_free(args.port, args.port + 1)
    base = Settings()
    settings = base.model_copy(update={"index_prefix": f"bench-{uuid.uuid4().hex[:8]}-", "output_storage": "s3",
                                       "output_bucket": f"bench-results-{uuid.uuid4().hex[:8]}",
                                       "aws_endpoint_url": base.aws_endpoint_url or "http://127.0.0.1:5055"})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "inputs").mkdir()
        scene = write_scene(work / "inputs" / "scene.tif")
        figures: dict[str, Any] = {"scene_bytes": scene.stat().st_size}
        figures.update(store_costs(settings, scene, args.stores, work))
        try:
            figures.update(live_figures(settings, scene, args.jobs, args.reads, args.port, work))
        finally:
            client = make_client(settings)
            drop_indexes(client, settings)
            client.close()
    figures["manifest_ratio_to_job"] = round(figures["manifest_ms_p50"] / figures["job_end_to_end"]["p50_ms"], 4)
    figures["output_latency_ratio_b_to_a"] = round(figures["output_on_b"]["p50_ms"] / figures["output_on_a"]["p50_ms"],
                                                   2)
    write_figures(args.out, figures)


if __name__ == "__main__":
    main()
