"""Results from any node (issue 23): two API nodes with their own data dirs share Elasticsearch and object storage
(moto S3, ADES_OUTPUT_STORAGE=s3). Jobs run on node A; node B, which never sees A's disk, serves their results as A
does: the document, raw values (one streamed, several as multipart), raw references (204 + Link), each output
(/results/{output}: a redirect to a presigned URL with the same bytes), /files/ listings and files, and the STAC
Item with the raster's footprint (validated with pystac, offline). All from the results manifest the running host
stored beside the outputs; without it B says where the results are."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import requests

from ades.client import Client
from ades.config import Settings
from ades.models import Job
from ades.results_stac import validate_item
from ades.storage import S3Storage
from tests.e2e.conftest import LiveServer, serve_app
from tests.helpers import assert_problem, store_jobs
from tests.rasters import write_raster

pytestmark = pytest.mark.integration

ASYNC = {"Prefer": "respond-async"}
TIFF = "http://www.iana.org/assignments/media-types/image/tiff"
MANY = f"""
cwlVersion: v1.2
class: CommandLineTool
id: many-outputs
baseCommand: [sh, -c]
arguments:
  - cp "$0" scene.tif && mkdir -p tiles/deep && printf 'hello 🛰' > note.txt && printf x > tiles/x.txt &&
    printf yy > tiles/deep/y.txt
  - $(inputs.scene.path)
inputs:
  scene: File
outputs:
  scene: {{type: File, format: "{TIFF}", outputBinding: {{glob: scene.tif}}}}
  note: {{type: File, outputBinding: {{glob: note.txt}}}}
  tiles: {{type: Directory, outputBinding: {{glob: tiles}}}}
  word: {{type: string, outputBinding: {{glob: note.txt, loadContents: true, outputEval: "$(self[0].contents)"}}}}
"""
ASKED: dict[str, dict[str, Any]] = {
    "document": {},
    "multipart": {"response": "raw", "outputs": {"note": {"transmissionMode": "value"},
                                                 "word": {"transmissionMode": "value"}}},
    "raw": {"response": "raw", "outputs": {"scene": {"transmissionMode": "value"}}},
    "links": {"response": "raw", "outputs": {"note": {"transmissionMode": "reference"},
                                             "scene": {"transmissionMode": "reference"}}},
    "unread": {},  # no node reads it before its manifest is taken away
    "dismissed": {},
}


@pytest.fixture(scope="module")
def inputs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("any-node-inputs")


@pytest.fixture(scope="module")
def nodes(es_url: str, moto_url: str, inputs_dir: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    prefix = f"e2e-{uuid.uuid4().hex[:10]}-"
    bucket = f"ades-any-node-{uuid.uuid4().hex[:10]}"

    def settings(name: str) -> Settings:
        return Settings(es_url=es_url, index_prefix=prefix, data_dir=tmp_path_factory.mktemp(name) / "data",
                        event_sink="direct", output_storage="s3", output_bucket=bucket, aws_endpoint_url=moto_url)

    a_nodes = serve_app(settings("node-a"), file_roots=[inputs_dir])
    b_nodes = serve_app(settings("node-b"), workers=1)
    a, b = next(a_nodes), next(b_nodes)
    try:
        yield a, b
    finally:
        for node in (b_nodes, a_nodes):
            next(node, None)


@pytest.fixture(scope="module")
def jobs(nodes: tuple[LiveServer, LiveServer], inputs_dir: Path) -> dict[str, str]:
    """One job on node A per way of asking for results, run at once; name -> job id."""
    a, b = nodes
    rng = np.random.default_rng(7)
    scene = write_raster(inputs_dir / "scene.tif", [rng.integers(0, 4000, (60, 80), dtype=np.uint16)])
    deployed = a.post("/processes", data=MANY, headers={"Content-Type": "application/cwl+yaml"})
    assert deployed.status_code == 201, deployed.text
    ids = {}
    for name, asked in ASKED.items():
        created = a.post("/processes/many-outputs/execution", headers=ASYNC,
                         json={"inputs": {"scene": {"href": scene.as_uri()}}, **asked})
        assert created.status_code == 201, created.text
        ids[name] = created.json()["jobID"]
    for job_id in ids.values():
        assert a.wait_status(job_id)["status"] == "successful", a.get(f"/jobs/{job_id}/logs").text[-2000:]
        assert (a.settings.data_dir / "jobs" / job_id / "outputs").is_dir()
        assert not (b.settings.data_dir / "jobs" / job_id).exists()
    return ids


def _on_b(text: str, a: LiveServer, b: LiveServer) -> str:
    return text.replace(a.url, b.url)


def test_the_results_document_and_each_output_from_another_node(nodes, jobs) -> None:
    a, b = nodes
    job_id = jobs["document"]
    on_a, on_b = a.get(f"/jobs/{job_id}/results"), b.get(f"/jobs/{job_id}/results")
    assert on_b.status_code == on_a.status_code == 200, on_b.text
    assert on_b.json() == json.loads(_on_b(on_a.text, a, b))
    assert on_b.json()["scene"]["href"] == f"{b.url}/jobs/{job_id}/results/scene"

    for output in ("scene", "note"):
        from_a = a.get(f"/jobs/{job_id}/results/{output}")
        redirect = b.get(f"/jobs/{job_id}/results/{output}", allow_redirects=False)
        assert redirect.status_code == 302 and not redirect.headers["Location"].startswith(b.url)
        from_b = b.get(f"/jobs/{job_id}/results/{output}")
        assert from_b.status_code == from_a.status_code == 200
        assert from_b.content == from_a.content and from_a.content
        assert from_b.headers["Content-Type"] == from_a.headers["Content-Type"], output
    assert a.get(f"/jobs/{job_id}/results/scene").headers["Content-Type"] == "image/tiff"
    for output in ("tiles", "word"):  # a Directory (its listing's /files URLs) and a plain value, as JSON
        from_a = a.get(f"/jobs/{job_id}/results/{output}")
        assert b.get(f"/jobs/{job_id}/results/{output}").json() == json.loads(_on_b(from_a.text, a, b)), output
    assert_problem(b.get(f"/jobs/{job_id}/results/nope"), 404, "no-such-output")


def test_the_clients_download_of_every_result_from_another_node(nodes, jobs, tmp_path: Path) -> None:
    """`ades jobs results JOB --download` (Client.download) fetches the same files, named alike, from either node."""
    a, b = nodes
    got = []
    for node, folder in ((a, "a"), (b, "b")):
        session = requests.Session()
        session.trust_env = False
        written = Client(node.url, session=session).job(jobs["document"]).download(tmp_path / folder)
        got.append({path.name: path.read_bytes() for path in written if path.name != "results.json"})
    assert got[1] == got[0] and sorted(got[0]) == ["note.txt", "scene.tif"]


def test_files_and_folder_listings_from_another_node(nodes, jobs) -> None:
    a, b = nodes
    job_id = jobs["document"]
    for folder in ("", "tiles/", "tiles/deep", "tiles/../tiles/deep/"):
        on_a, on_b = a.get(f"/jobs/{job_id}/files/{folder}"), b.get(f"/jobs/{job_id}/files/{folder}")
        assert on_a.status_code == on_b.status_code == 200, (folder, on_b.text)
        assert on_b.text == _on_b(on_a.text, a, b), folder
    assert b.get(f"/jobs/{job_id}/files/tiles/../tiles/deep/").json()["location"] == \
        f"{b.url}/jobs/{job_id}/files/tiles/deep/"
    root = b.get(f"/jobs/{job_id}/files/").json()
    assert root["class"] == "Directory" and root["location"] == f"{b.url}/jobs/{job_id}/files/"
    assert [(e["class"], e["basename"]) for e in root["listing"]] == [
        ("File", "note.txt"), ("File", "scene.tif"), ("Directory", "tiles")]
    assert root["listing"][0]["size"] == len("hello 🛰".encode())
    # every location in a listing is served, by either node
    deep = b.get(f"/jobs/{job_id}/files/tiles/").json()
    assert [b.get(e["location"].removeprefix(b.url)).status_code for e in deep["listing"]] == [200, 200]
    y = b.get(deep["listing"][0]["location"].removeprefix(b.url) + "y.txt")
    assert y.text == "yy" == a.get(f"/jobs/{job_id}/files/tiles/deep/y.txt").text
    for bad in ("nope.txt", "tiles/nope/", "%2E%2E/job.log", "tiles/%2E%2E/%2E%2E/job.log", "..%2Fjob.log"):
        for node in (a, b):
            assert_problem(node.get(f"/jobs/{job_id}/files/{bad}"), 404, "no-such-file")


def test_the_stac_item_from_another_node(nodes, jobs, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Any, href: str) -> str:
        raise AssertionError(f"pystac tried to fetch {href}")

    monkeypatch.setattr(pystac.stac_io.DefaultStacIO, "read_text_from_href", refuse)
    a, b = nodes
    job_id = jobs["document"]
    on_a = a.get(f"/jobs/{job_id}/results", params={"f": "stac"})
    on_b = b.get(f"/jobs/{job_id}/results", params={"f": "stac"})
    assert on_b.status_code == 200 and on_b.headers["Content-Type"] == "application/geo+json"
    item = on_b.json()
    validate_item(item)
    pystac.Item.from_dict(item).validate()
    assert item == _expected_on_b(on_a.json(), a, b)
    assert item["bbox"] and item["geometry"]["type"] == "Polygon"
    assert item["assets"]["scene"]["type"] == "image/tiff; application=geotiff"
    assert sorted(item["assets"]) == ["note", "scene", "tiles_0", "tiles_1"]


def _expected_on_b(item: dict[str, Any], a: LiveServer, b: LiveServer) -> dict[str, Any]:
    """A's Item with A's own links made B's (asset hrefs are the job's presigned URLs on both)."""
    expected = dict(item)
    expected["links"] = [{**link, "href": link["href"].replace(a.url, b.url)} for link in item["links"]]
    return expected


def test_raw_results_by_value_and_by_reference_from_another_node(nodes, jobs) -> None:
    a, b = nodes
    # one output by value: its bytes, streamed from object storage
    raw = jobs["raw"]
    on_a, on_b = a.get(f"/jobs/{raw}/results"), b.get(f"/jobs/{raw}/results")
    assert on_b.status_code == on_a.status_code == 200
    assert on_b.content == on_a.content and on_b.headers["Content-Type"] == on_a.headers["Content-Type"]
    assert on_b.content.startswith(b"II*\x00")

    # several by value: multipart/related, each part's bytes read from object storage
    multi = jobs["multipart"]
    on_a, on_b = a.get(f"/jobs/{multi}/results"), b.get(f"/jobs/{multi}/results")
    assert on_b.headers["Content-Type"].startswith("multipart/related")
    assert _parts(on_b) == _parts(on_a) == {"note": ("application/octet-stream", "hello 🛰".encode()),
                                            "word": ("text/plain; charset=utf-8", "hello 🛰".encode())}
    # the same asked as a document: the file's content inline
    document = b.get(f"/jobs/{multi}/results", params={"f": "json"}).json()
    assert document == a.get(f"/jobs/{multi}/results", params={"f": "json"}).json()
    assert base64.b64decode(document["note"]["value"]) == "hello 🛰".encode()

    # every output by reference: 204 and a Link each, to B's own URLs
    links = jobs["links"]
    on_a, on_b = a.get(f"/jobs/{links}/results"), b.get(f"/jobs/{links}/results")
    assert on_b.status_code == on_a.status_code == 204
    assert on_b.headers["Link"] == _on_b(on_a.headers["Link"], a, b) and f"{b.url}/jobs/{links}/results/note" in \
        on_b.headers["Link"]


def _parts(response: requests.Response) -> dict[str, tuple[str, bytes]]:
    boundary = re.search(r'boundary="([^"]+)"', response.headers["Content-Type"])
    assert boundary is not None
    parts = {}
    for chunk in response.content.split(f"--{boundary.group(1)}".encode())[1:-1]:
        head, _, body = chunk.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().strip().splitlines())
        parts[headers["Content-ID"].strip("<>")] = (headers["Content-Type"], body.removesuffix(b"\r\n"))
    return parts


def test_without_a_manifest_another_node_says_where_the_results_are(nodes, jobs) -> None:
    a, b = nodes
    job_id = jobs["unread"]
    storage = b.context.output_storage
    assert isinstance(storage, S3Storage)
    key = f"{storage.prefix}/{job_id}/manifest.json"
    kept = storage.s3.get_object(Bucket=storage.bucket, Key=key)["Body"].read()
    storage.s3.delete_object(Bucket=storage.bucket, Key=key)
    try:
        for path, kind in (("results/note", "no-such-output"), ("files/", "no-such-file"),
                           ("files/note.txt", "no-such-file")):
            body = assert_problem(b.get(f"/jobs/{job_id}/{path}"), 404, kind)
            assert "manifest" in body["detail"] and job_id in body["detail"], body
        assert a.get(f"/jobs/{job_id}/results/note").status_code == 200  # A still has them on its disk
    finally:
        storage.s3.put_object(Bucket=storage.bucket, Key=key, Body=kept)
    assert b.get(f"/jobs/{job_id}/results/note").content == "hello 🛰".encode()

    # someone else's job is no one's business, from any node
    bobs = Job(process_id="many-outputs", user_id="bob")
    store_jobs(b.context.job_store, [bobs], refresh=True)
    for path in ("/results", "/results/note", "/files/", "/files/note.txt"):
        assert_problem(b.get(f"/jobs/{bobs.id}{path}"), 404, "no-such-job")


def test_a_finished_job_dismissed_on_any_node_loses_its_stored_outputs(nodes, jobs) -> None:
    """DELETE of an ended job removes its objects too: no node serves them again (before, B went on serving them
    from the bucket)."""
    _, b = nodes
    job_id = jobs["dismissed"]
    storage = b.context.output_storage
    assert isinstance(storage, S3Storage)
    assert b.get(f"/jobs/{job_id}/results/note").content == "hello 🛰".encode()  # B keeps its manifest
    assert storage.job_keys(job_id)
    dismissed = b.delete(f"/jobs/{job_id}")
    assert dismissed.status_code == 200 and dismissed.json()["status"] == "successful", dismissed.text
    assert storage.job_keys(job_id) == []
    for path, kind in (("results/note", "no-such-output"), ("files/note.txt", "no-such-file")):
        assert_problem(b.get(f"/jobs/{job_id}/{path}"), 404, kind)
