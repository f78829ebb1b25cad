"""The results manifest's pure functions: paths made relative on the running host and rebased on another node,
request paths normalized (never leaving the outputs folder), folder listings from the stored files, and a manifest
built from what was uploaded (files outside the outputs folder left out, rasters' facts kept)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ades.api.outputs import served
from ades.results_manifest import (
    Manifest,
    RasterInfo,
    StoredFile,
    build,
    listing,
    normalized,
    rebased,
    relative_outputs,
)


def _outputs(root: Path) -> dict:
    (root / "tiles" / "deep").mkdir(parents=True)
    (root / "tiles" / "x.txt").write_text("x")
    (root / "tiles" / "deep" / "y.txt").write_text("yy")
    (root / "out.tif").write_bytes(b"II*\0")
    return {
        "image": {"class": "File", "location": (root / "out.tif").as_uri(), "basename": "out.tif", "size": 4,
                  "secondaryFiles": []},
        "tiles": {"class": "Directory", "path": str(root / "tiles"), "basename": "tiles"},
        "record": {"note": "kept", "file": {"class": "File", "path": str(root / "tiles" / "x.txt"),
                                            "basename": "x.txt"}},
        "count": 3,
        "nothing": None,
    }


def test_paths_become_relative_and_directories_are_listed_from_disk(tmp_path: Path) -> None:
    relative = relative_outputs(_outputs(tmp_path), tmp_path)
    assert relative["image"] == {"class": "File", "path": "out.tif", "basename": "out.tif", "size": 4,
                                 "secondaryFiles": []}
    assert relative["record"] == {"note": "kept", "file": {"class": "File", "path": "tiles/x.txt",
                                                           "basename": "x.txt"}}
    assert relative["count"] == 3 and relative["nothing"] is None
    tiles = relative["tiles"]
    assert tiles["path"] == "tiles" and "location" not in tiles
    assert [(e["class"], e["basename"], e["path"]) for e in tiles["listing"]] == [
        ("Directory", "deep", "tiles/deep"), ("File", "x.txt", "tiles/x.txt")]
    assert tiles["listing"][0]["listing"] == [{"class": "File", "basename": "y.txt", "path": "tiles/deep/y.txt",
                                               "size": 2}]
    # outside the outputs folder (no job can produce it): the absolute path stays, so no node serves it
    assert relative_outputs({"class": "File", "path": "/etc/passwd"}, tmp_path)["path"] == "/etc/passwd"


def test_rebased_objects_serve_the_same_urls_as_the_original_folder(tmp_path: Path) -> None:
    ran = tmp_path / "a" / "outputs"
    ran.mkdir(parents=True)
    original = _outputs(ran)
    elsewhere = tmp_path / "b" / "jobs" / "j" / "outputs"  # never made: another node has no such folder
    moved = rebased(relative_outputs(original, ran), elsewhere)
    assert moved["image"]["path"] == str(elsewhere / "out.tif")
    assert moved["image"]["location"] == (elsewhere / "out.tif").as_uri()
    assert rebased({"class": "File", "path": "/etc/passwd"}, elsewhere)["path"] == "/etc/passwd"
    base = "http://b/jobs/j/files"
    for name in ("image", "tiles", "record"):
        assert served(moved[name], base, elsewhere) == served(original[name], base, ran), name
    assert served({"class": "File", "path": "/etc/passwd"}, base, elsewhere) is None


@pytest.mark.parametrize(("asked", "path"), [
    ("", ""), ("a.txt", "a.txt"), ("tiles/", "tiles"), ("tiles/./deep//y.txt", "tiles/deep/y.txt"),
    ("tiles/../a.txt", "a.txt"), ("../job.log", None), ("tiles/../../job.log", None), ("/etc/passwd", None),
    ("a\x00.txt", None),
])
def test_request_paths_are_normalized_inside_the_outputs_folder(asked: str, path: str | None) -> None:
    assert normalized(asked) == path


def test_listings_come_from_the_stored_files() -> None:
    files = {name: StoredFile(key=f"p/j/o/{name}", size=len(name), type="text/plain")
             for name in ("out.tif", "tiles/x.txt", "tiles/deep/y.txt", "tilesque.txt")}
    assert listing(files, "") == [("out.tif", files["out.tif"]), ("tiles", None), ("tilesque.txt",
                                                                                  files["tilesque.txt"])]
    assert listing(files, "tiles") == [("deep", None), ("x.txt", files["tiles/x.txt"])]
    assert listing(files, "tiles/deep/") == [("y.txt", files["tiles/deep/y.txt"])]
    assert listing(files, "til") is None and listing(files, "nothing") is None and listing({}, "") is None


def test_a_manifest_keeps_the_uploaded_files_under_the_outputs_folder(tmp_path: Path) -> None:
    outputs = _outputs(tmp_path)
    tif, text = tmp_path / "out.tif", tmp_path / "tiles" / "x.txt"
    uploaded = {tif: StoredFile(key="jobs/j/image/out.tif", size=4, type="image/tiff"),
                text: StoredFile(key="jobs/j/tiles/tiles/x.txt", size=1, type="text/plain"),
                Path("/elsewhere/z.txt"): StoredFile(key="jobs/j/z/z.txt", size=1, type="text/plain")}
    manifest = build("j", outputs, tmp_path, uploaded)
    assert sorted(manifest.files) == ["out.tif", "tiles/x.txt"]
    assert manifest.files["out.tif"] == uploaded[tif]
    assert manifest.outputs == relative_outputs(outputs, tmp_path)
    assert Manifest.model_validate_json(manifest.model_dump_json()) == manifest
    # what a reader learns of the rasters stays in its memory, never in the stored object
    manifest.rasters["out.tif"] = RasterInfo(bbox=(1.0, 2.0, 3.0, 4.0), type="image/tiff; application=geotiff")
    assert "rasters" not in manifest.model_dump_json()


def test_a_node_without_the_files_says_where_they_are(tmp_path: Path) -> None:
    from ades.api.job_outputs import JobOutputs, not_here
    from ades.jobs.folder import JobFolder
    from ades.storage import S3Storage

    found = JobOutputs(JobFolder(tmp_path, "j1"), None)
    local = not_here({"id": "j1", "host": "node-a-7f3e"}, found, "no-such-output", "No such output")
    assert local.status == 404 and local.kind == "no-such-output"
    assert "j1" in local.detail and "node-a-7f3e" in local.detail and "ADES_OUTPUT_STORAGE=s3" in local.detail
    assert "the host that ran it" in not_here({"id": "j1"}, found, "no-such-file", "No such file").detail

    found.storage = S3Storage("bucket", "runs", client=object())
    stored = not_here({"id": "j1"}, found, "no-such-file", "No such file")
    assert "s3://bucket/runs/j1/" in stored.detail and "manifest" in stored.detail
