"""Output storage against the real moto server: outputs uploaded to a bucket of this test's own, downloaded back
through their presigned URLs byte for byte; a STAC Item built from those URLs alone reads the raster's bounds from
S3. LocalStorage URLs follow the server's routes."""

from __future__ import annotations

import json
import os
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import requests
from rasterio.crs import CRS
from rasterio.transform import from_origin

from ades.config import Settings
from ades.jobs.folder import JobFolder
from ades.results_stac import COG, job_item, validate_item
from ades.storage import LocalStorage, S3Storage, StorageConfig, StorageError, make_storage, s3_client

JOB = "0b9d5a4e-52a4-4c1e-8f57-8e2c1f6a9d30"
IANA = "https://www.iana.org/assignments/media-types/"


@pytest.fixture
def s3_settings(moto_url: str, tmp_path: Path) -> Settings:
    return Settings(aws_endpoint_url=moto_url, output_storage="s3", output_bucket=f"ades-test-{uuid.uuid4().hex[:12]}",
                    output_prefix="runs/outputs", presign_expiry=3600, data_dir=tmp_path / "data")


@pytest.fixture
def bucket(s3_settings: Settings) -> Iterator[str]:
    name = s3_settings.output_bucket
    assert name
    s3 = s3_client(s3_settings)
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)


def _file(path: Path, fmt: str | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {"class": "File", "location": path.as_uri(), "path": str(path), "basename": path.name}
    return {**value, "format": fmt} if fmt else value


def _outputs_dir(settings: Settings) -> Path:
    return JobFolder(settings.data_dir, JOB).outputs


def _job_outputs(root: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """cwltool-shaped outputs in a job's outputs folder: a COG, an array of two same-named files, a Directory (not
    listed, as cwltool leaves it by default), a value and a null; plus the bytes each file must come back with."""
    out = JobFolder(root, JOB).outputs
    for sub in ("a", "b", "tiles/deep"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    cog = out / "ndvi.tif"
    with rasterio.open(cog, "w", driver="COG", width=64, height=48, count=1, dtype="float32",
                       crs=CRS.from_epsg(32633), transform=from_origin(399960.0, 5300040.0, 10.0, 10.0)) as dst:
        dst.write(np.linspace(-1, 1, 64 * 48, dtype=np.float32).reshape(48, 64), 1)
    contents = {"ndvi": cog.read_bytes()}
    for i, sub in enumerate(("a", "b")):
        data = os.urandom(1000 + i)
        (out / sub / "part.bin").write_bytes(data)
        contents[f"parts/{i}"] = data
    (out / "tiles" / "one.txt").write_text("one\n")
    (out / "tiles" / "deep" / "two.txt").write_text("two\n")
    outputs = {
        "ndvi": _file(cog, IANA + "image/tiff"),
        "parts": [_file(out / "a" / "part.bin"), _file(out / "b" / "part.bin")],
        "tiles": {"class": "Directory", "location": (out / "tiles").as_uri(), "path": str(out / "tiles"),
                  "basename": "tiles"},
        "score": {"mean": 0.25, "n": 3},
        "missing": None,
    }
    return outputs, contents


def _get(url: str) -> requests.Response:
    session = requests.Session()
    session.trust_env = False  # never a proxy for 127.0.0.1
    response = session.get(url, timeout=30)
    assert response.status_code == 200, (url, response.status_code, response.text[:300])
    return response


def test_s3_upload_and_presigned_download(s3_settings: Settings, bucket: str, tmp_path: Path) -> None:
    outputs, contents = _job_outputs(s3_settings.data_dir)
    storage = make_storage(s3_settings, "http://127.0.0.1:5000")
    assert isinstance(storage, S3Storage)
    urls = storage.store(JOB, outputs, _outputs_dir(s3_settings))

    assert sorted(urls) == ["ndvi", "parts", "score", "tiles"]  # a null output gets no URL
    keys = sorted(o["Key"] for o in s3_client(s3_settings).list_objects_v2(Bucket=bucket)["Contents"])
    prefix = f"runs/outputs/{JOB}"
    assert keys == sorted([f"{prefix}/ndvi/ndvi.tif", f"{prefix}/parts/0/part.bin", f"{prefix}/parts/1/part.bin",
                           f"{prefix}/tiles/tiles/deep/two.txt", f"{prefix}/tiles/tiles/one.txt",
                           f"{prefix}/score/value.json", f"{prefix}/manifest.json"])
    # the results manifest: any node serves the files by their path in the outputs folder
    manifest = storage.manifest(JOB)
    assert manifest is not None and manifest.job_id == JOB
    assert manifest.files["ndvi.tif"].key == f"{prefix}/ndvi/ndvi.tif"
    assert manifest.files["ndvi.tif"].size == len(contents["ndvi"]) and manifest.files["ndvi.tif"].type == "image/tiff"
    assert manifest.outputs["ndvi"]["path"] == "ndvi.tif"
    assert storage.manifest("no-such-job") is None

    ndvi = _get(urls["ndvi"])
    assert ndvi.content == contents["ndvi"] and ndvi.headers["Content-Type"] == "image/tiff"
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(urls["ndvi"]).query)
    assert query["X-Amz-Expires"] == ["3600"] and query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert urls["ndvi"].startswith(f"{s3_settings.aws_endpoint_url}/{bucket}/")
    assert [_get(u).content for u in urls["parts"]] == [contents["parts/0"], contents["parts/1"]]
    assert [_get(u).text for u in urls["tiles"]] == ["two\n", "one\n"]  # sorted by path: deep/two.txt first
    assert _get(urls["score"]).json() == {"mean": 0.25, "n": 3}
    assert Path(outputs["ndvi"]["path"]).is_file()  # the job folder keeps its copy

    # another host (no outputs.json): the STAC Item has only the job's URLs, and reads the bounds through S3
    doc = {"id": JOB, "status": "succeeded", "process-id": "ndvi", "stop-time": "2024-06-11T10:00:04.000000Z",
           "outputs": urls}
    item = job_item(doc, None, "http://127.0.0.1:5000")
    assert item["assets"]["ndvi"]["href"] == urls["ndvi"] and item["assets"]["ndvi"]["type"] == COG
    assert item["bbox"][0] == pytest.approx(13.63, abs=0.05) and item["bbox"][1] == pytest.approx(47.83, abs=0.05)
    validate_item(item)


def test_s3_failures_name_the_output(s3_settings: Settings, bucket: str, tmp_path: Path) -> None:
    outputs, _ = _job_outputs(s3_settings.data_dir)
    gone = S3Storage(f"{bucket}-missing", settings=s3_settings)
    with pytest.raises(StorageError, match=r"output 'ndvi'.*-missing"):
        gone.store(JOB, {"ndvi": outputs["ndvi"]}, _outputs_dir(s3_settings))
    storage = S3Storage(bucket, settings=s3_settings)
    with pytest.raises(StorageError, match="output 'x': no local file"):
        storage.store(JOB, {"x": _file(tmp_path / "nothing-here.tif")}, _outputs_dir(s3_settings))
    with pytest.raises(ValueError, match="ADES_OUTPUT_BUCKET"):
        make_storage(s3_settings.model_copy(update={"output_bucket": None}), "http://127.0.0.1:5000")


def test_config_crosses_process_boundaries_as_json(s3_settings: Settings, bucket: str) -> None:
    """A worker gets a StorageConfig as JSON (inside its RunSpec) and builds the same storage from it."""
    outputs, contents = _job_outputs(s3_settings.data_dir)
    text = StorageConfig.from_settings(s3_settings, "http://127.0.0.1:5000").model_dump_json()
    storage = StorageConfig.model_validate_json(text).make()
    assert isinstance(storage, S3Storage) and storage.bucket == bucket and storage.expiry == 3600
    urls = storage.store(JOB, {"ndvi": outputs["ndvi"]}, _outputs_dir(s3_settings))
    assert _get(urls["ndvi"]).content == contents["ndvi"]
    local = StorageConfig.from_settings(s3_settings.model_copy(update={"output_storage": "local"}), "http://h:1")
    assert isinstance(local.make(), LocalStorage)
    with pytest.raises(ValueError, match="ADES_OUTPUT_BUCKET"):
        StorageConfig.model_validate({**json.loads(text), "bucket": None})


def test_ensure_bucket_creates_a_missing_one(s3_settings: Settings) -> None:
    storage = S3Storage(f"ades-test-{uuid.uuid4().hex[:12]}", settings=s3_settings)
    storage.ensure_bucket()
    storage.ensure_bucket()  # idempotent
    storage.s3.head_bucket(Bucket=storage.bucket)
    storage.s3.delete_bucket(Bucket=storage.bucket)


def test_local_urls_follow_the_server_routes(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    outputs, _ = _job_outputs(settings.data_dir)
    storage = make_storage(settings, "http://127.0.0.1:5000/")
    assert isinstance(storage, LocalStorage)
    urls = storage.store(JOB, outputs, _outputs_dir(settings))
    base = f"http://127.0.0.1:5000/jobs/{JOB}"
    assert urls == {
        "ndvi": f"{base}/results/ndvi",
        "parts": [f"{base}/files/a/part.bin", f"{base}/files/b/part.bin"],
        "tiles": [f"{base}/files/tiles/deep/two.txt", f"{base}/files/tiles/one.txt"],
        "score": f"{base}/results/score",
    }
    elsewhere = tmp_path / "elsewhere.bin"
    elsewhere.write_bytes(b"x")
    with pytest.raises(StorageError, match="not in the job's outputs folder"):
        storage.store(JOB, {"parts": [_file(elsewhere)]}, _outputs_dir(settings))


def test_presigned_urls_name_the_endpoint_clients_reach(s3_settings: Settings, bucket: str) -> None:
    """In docker-compose ades reaches moto as http://moto:5000, which the host's clients cannot resolve: presigned
    URLs name ADES_AWS_PUBLIC_ENDPOINT_URL instead, and still open the object."""
    public = s3_settings.aws_endpoint_url.replace("127.0.0.1", "localhost")
    settings = s3_settings.model_copy(update={"aws_public_endpoint_url": public})
    storage = make_storage(settings, "http://127.0.0.1:5000")
    assert isinstance(storage, S3Storage)
    outputs, contents = _job_outputs(settings.data_dir)
    urls = storage.store(JOB, outputs, _outputs_dir(settings))
    assert urls["ndvi"].startswith(f"{public}/{bucket}/")
    assert _get(urls["ndvi"]).content == contents["ndvi"]
    assert storage.presign(f"runs/outputs/{JOB}/score/value.json").startswith(f"{public}/{bucket}/")
