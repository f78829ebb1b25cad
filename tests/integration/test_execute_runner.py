"""run_job with real cwltool and a real Elasticsearch: the wrapper's update-job steps write the job document."""

from __future__ import annotations

from pathlib import Path

import pytest

from ades.config import Settings
from ades.cwl import Package, load_package, to_job_order
from ades.events.sinks import DirectSink, EventSink, SinkConfig
from ades.execute.runner import load_wrapped
from ades.jobs.folder import JobFolder
from ades.jobs.publisher import Publisher
from ades.jobs.run import run_job
from ades.jobs.spec import RunSpec
from ades.models import Job, StatusUpdate
from ades.status import Status
from ades.store import JobStore
from tests.helpers import store_jobs

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "cwl" / "examples"
BASE_URL = "http://127.0.0.1:5000"


class RecordingSink(Publisher):
    """Records what the run publishes (every sink is this one), and applies it like the direct sink does."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.updates: list[StatusUpdate] = []
        self.outputs_there: list[bool] = []
        self.data_dir = settings.data_dir
        self.direct = DirectSink(settings)

    def sink(self, config: SinkConfig | None = None) -> EventSink:
        return self

    def publish(self, update: StatusUpdate, config: SinkConfig | None = None) -> bool:
        self.updates.append(update)
        self.outputs_there.append(JobFolder(self.data_dir, update.job_id).saved_outputs() is not None)
        self.direct.publish(update)
        return True


def example(name: str) -> Package:
    if name == "progress":  # runs ../../update-job.cwl: deployed by reference, so cwltool packs it
        href = {"executionUnit": {"href": (EXAMPLES / "progress" / "progress.cwl").as_uri()}}
        return load_package(href, "application/ogcapppkg+json", allowed_roots=[ROOT / "cwl"])
    return load_package((EXAMPLES / name).read_text(), "application/cwl")


def run(package: Package, inputs: dict, settings: Settings, job_store: JobStore, sink: RecordingSink):
    job = Job(process_id=package.id, process_version=package.version, inputs=inputs)
    store_jobs(job_store, [job], refresh=True)
    spec = RunSpec.for_package(package, job.id, to_job_order(package, inputs, []), settings.data_dir,
                               SinkConfig.from_settings(settings), BASE_URL)
    result = run_job(spec, sink)
    job_store.refresh()
    return result, job_store.get(job.id), spec


def test_two_step_succeeds_with_outputs_and_times(settings, job_store):
    sink = RecordingSink(settings)
    result, doc, spec = run(example("two-step/two-step.cwl"), {"message": "hello there"}, settings, job_store,
                            sink)
    assert result.status is Status.SUCCEEDED, result.log.read_text()
    assert doc["status"] == "succeeded" and doc["progress"] == 100
    assert doc["outputs"] == {"shouted": f"{BASE_URL}/jobs/{doc['id']}/results/shouted"}
    assert doc["start-time"] and doc["stop-time"] and doc["start-time"] <= doc["stop-time"]
    assert len(doc["applied-events"]) == 2
    # update-job steps ran in this process, through the job's sink; success only once the outputs were in place
    assert [u.status for u in sink.updates] == [Status.RUNNING, Status.SUCCEEDED]
    assert sink.outputs_there == [False, True]
    out = Path(result.outputs["shouted"]["path"])
    assert out.read_text() == "HELLO THERE\n" and out.is_relative_to(spec.folder.outputs)
    log = result.log.read_text()
    assert "hello there" in log and "HELLO THERE" in log  # the tools' stdout, shown in the log
    assert "Workflow checker warning" not in log


def test_failing_workflow_reports_the_error(settings, job_store):
    sink = RecordingSink(settings)
    result, doc, _ = run(example("failing/failing.cwl"), {}, settings, job_store, sink)
    assert result.status is Status.FAILED
    assert doc["status"] == "failed" and doc["stop-time"]
    assert "failing on purpose: no input data" in doc["message"]
    assert "exited with status: 3" in doc["message"]
    assert [u.status for u in sink.updates] == [Status.RUNNING, Status.FAILED]
    log = result.log.read_text()
    assert "failing on purpose" in log and "starting the failing tool" in log


def test_author_progress_step_is_applied(settings, job_store):
    sink = RecordingSink(settings)
    package = example("progress")
    result, doc, _ = run(package, {"message": "half"}, settings, job_store, sink)
    assert result.status is Status.SUCCEEDED, result.log.read_text()
    assert doc["status"] == "succeeded"
    assert len(doc["applied-events"]) == 3  # start, the author's 50 %, finish
    log = result.log.read_text()
    assert "[update-job] running 50%: half-way: the text is written" in log


def test_docker_requirement_fails_clearly(settings, job_store):
    text = (EXAMPLES / "echo.cwl").read_text().replace(
        "baseCommand:", "requirements:\n  DockerRequirement: {dockerPull: 'alpine:3'}\nbaseCommand:"
    )
    sink = RecordingSink(settings)
    result, doc, _ = run(load_package(text, "application/cwl"), {"message": "x"}, settings, job_store, sink)
    assert doc["status"] == "failed" and doc["start-time"] is None
    # a package stored before the operator took the container settings away: its job fails, saying why
    assert "requires DockerRequirement (image alpine:3)" in doc["message"]
    assert "ADES_CONTAINER_RUNTIME" in doc["message"]
    assert result.status is Status.FAILED


def test_loaded_tools_are_reused(settings, job_store):
    package = example("echo.cwl")
    sink = RecordingSink(settings)
    _, _, spec = run(package, {"message": "one"}, settings, job_store, sink)
    tool = load_wrapped(spec.workflow_file, spec.cache_key)
    _, doc, again = run(package, {"message": "two"}, settings, job_store, sink)
    assert doc["status"] == "succeeded"
    assert again.workflow_file == spec.workflow_file
    assert load_wrapped(again.workflow_file, again.cache_key) is tool


def test_outputs_go_to_s3_before_success_is_published(settings, job_store, moto_url):
    """ADES_OUTPUT_STORAGE=s3 against moto: the succeeded event carries presigned URLs that serve the outputs."""
    import uuid

    import requests

    from ades.storage import S3Storage, StorageConfig

    s3_settings = settings.model_copy(update={"aws_endpoint_url": moto_url, "output_storage": "s3",
                                              "output_bucket": f"ades-run-{uuid.uuid4().hex[:12]}"})
    storage = StorageConfig.from_settings(s3_settings, BASE_URL)
    bucket = storage.make()
    assert isinstance(bucket, S3Storage)
    bucket.ensure_bucket()
    package = example("two-step/two-step.cwl")
    job = Job(process_id=package.id, process_version=package.version, inputs={"message": "to the bucket"})
    store_jobs(job_store, [job], refresh=True)
    spec = RunSpec.for_package(package, job.id, to_job_order(package, job.inputs, []), settings.data_dir,
                               SinkConfig.from_settings(settings), BASE_URL, storage)
    spec = RunSpec.model_validate_json(spec.model_dump_json())  # as it crosses into a worker
    sink = RecordingSink(settings)
    result = run_job(spec, sink)
    assert result.status is Status.SUCCEEDED, result.log.read_text()
    doc = job_store.get(job.id)
    url = doc["outputs"]["shouted"]
    assert url.startswith(f"{moto_url}/{s3_settings.output_bucket}/jobs/{job.id}/shouted/")
    assert sink.updates[-1].outputs == doc["outputs"]
    response = requests.get(url, timeout=10)
    assert response.status_code == 200 and response.text == "TO THE BUCKET\n"
