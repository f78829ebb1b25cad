"""A job's run, in the process that runs it: its folder prepared, the workflow run by cwltool (ades.execute.runner),
its outputs stored, its end published.

Success is reported by the wrapper's finish step, but that update is held back until cwltool has moved the outputs
into the job folder, they are stored, and `outputs.json` is written: a successful job always has its results. When
anything fails, the run publishes `failed` itself, with the reason and the tail of the log.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ades import floats
from ades.cwl.inputs import JOB_REQUIREMENTS
from ades.cwl.loader import CwlLoadError
from ades.events.sinks import SinkConfig
from ades.execute.containers import docker_requirements, missing_runtime, refusal
from ades.execute.fidelity import with_job_requirements
from ades.execute.runner import RunDirs, job_log, load_wrapped, read_workflow, run_workflow
from ades.execute.sandbox import NoSandbox, confine
from ades.execute.staging import Staging, StagingError, stage_job_order
from ades.fetch import Fetcher
from ades.jobs.heartbeat import beats
from ades.jobs.leases import current_id
from ades.jobs.publisher import Publisher
from ades.jobs.spec import RunSpec
from ades.models import StatusUpdate, utcnow
from ades.status import Status

OutputStorer = Callable[[str, dict[str, Any], Path], dict[str, Any]]
"""(job id, cwltool's output object with local paths, the outputs folder) -> output id -> URL (or list of URLs)."""


class RunResult(BaseModel):
    job_id: str
    status: Status
    outputs: dict[str, Any] | None = None
    log: Path
    message: str | None = None


class Reporter:
    """What the job's update-job steps publish (ades.execute.inprocess): through the job's own sink when the step
    names it (it always does in ades' wrapper), and `succeeded` held back for the run to publish."""

    def __init__(self, spec: RunSpec, publisher: Publisher) -> None:
        self.spec = spec
        self.publisher = publisher
        self.held: StatusUpdate | None = None

    def __call__(self, update: StatusUpdate, config: SinkConfig) -> None:
        if update.status is Status.SUCCEEDED and update.job_id == self.spec.job_id:
            self.held = update
            return
        if update.status is Status.RUNNING and update.host is None and update.job_id == self.spec.job_id:
            # the job document's `host` answers for the job from now on: this process's lease
            update = update.model_copy(update={"host": current_id(self.spec.data_dir)})
        self.publisher.sink(config).publish(update)  # raising fails the step, as the CLI's exit code would

    def succeeded(self, outputs: dict[str, Any] | None, produced: dict[str, Any] | None = None) -> StatusUpdate:
        """The held success (or a new one), stamped now, with the outputs' final URLs when given; else with the
        URLs the wrapper reported, less those of outputs the run did not produce (null in `produced`)."""
        fields: dict[str, Any] = {"timestamp": utcnow()}
        if outputs is not None:
            fields["outputs"] = outputs
        elif self.held is not None and self.held.outputs and produced is not None:
            fields["outputs"] = {k: v for k, v in self.held.outputs.items() if produced.get(k) is not None}
        if self.held is not None:
            return self.held.model_copy(update=fields)
        return StatusUpdate(job_id=self.spec.job_id, status=Status.SUCCEEDED, progress=100, message="finished",
                            **fields)


def over_output_limit(written: int, limit: int, what: str) -> str:
    """Why a job that wrote `written` bytes into its folder failed (`what` was done to it)."""
    return (f"the job wrote {written:,} bytes into its folder, over the limit of {limit:,} bytes per job "
            f"(ADES_MAX_OUTPUT_BYTES); it {what} and its files were removed (its log stays)")


def _unrunnable(spec: RunSpec) -> str | None:
    """Why the workflow cannot run here at all, or None: a package deployed before the operator changed the
    container settings, or a worker without the runtime, fails with the reason instead of half-running."""
    try:
        workflow = read_workflow(spec.workflow_file)
    except (OSError, ValueError) as err:
        return f"the wrapped workflow {spec.workflow_file} cannot be read: {err}"
    why = refusal(workflow, spec.sandbox.container, spec.sandbox.without_container)
    if why is None and docker_requirements(workflow):
        why = missing_runtime(spec.sandbox.container)
    return why


def run_job(spec: RunSpec, publisher: Publisher, *, redirect_fds: bool = False,
            store_outputs: OutputStorer | None = None) -> RunResult:
    """Run one job to its end. `redirect_fds` (for a job's own process) also sends fds 1 and 2 to its log.

    `store_outputs` puts the outputs where they are served from and returns output id -> URL; by default the spec's
    storage does (ades.storage), else the files stay in the job folder with the wrapper's URLs."""
    folder = spec.folder
    folder.prepare(spec.workflow_file)
    started = time.perf_counter()
    if store_outputs is None and spec.storage is not None:
        store_outputs = spec.storage.make().store

    def failed(reason: str) -> RunResult:
        message = publisher.failed(folder, reason, spec.sink)
        return RunResult(job_id=spec.job_id, status=Status.FAILED, log=folder.log, message=message)

    reporter = Reporter(spec, publisher)
    urls = None
    with job_log(folder.log, redirect_fds) as stream, beats(folder):

        def failed_here(reason: str) -> RunResult:
            stream.write(f"ades: {reason}\n")
            return failed(reason)

        stream.write(f"ades: job {spec.job_id} starts (process {spec.cache_key}, pid {os.getpid()})\n")
        if (why := _unrunnable(spec)) is not None:
            return failed_here(why)
        try:
            tool = load_wrapped(spec.workflow_file, spec.cache_key, list(spec.input_roots))
        except CwlLoadError as err:
            stream.write(f"ades: cwltool cannot load the workflow:\n{err}\n")
            return failed(f"cwltool cannot load the workflow: {err}")
        try:
            confinement = confine(spec.sandbox)
        except NoSandbox as err:
            return failed_here(str(err))
        owner = (confinement.uid, confinement.gid) if confinement is not None and confinement.uid is not None else None
        staging = Staging(Fetcher(spec.fetch), folder.inputs, [folder.path, *spec.input_roots], owner)
        try:
            job_order = stage_job_order(spec.job_order, staging)
        except StagingError as err:
            return failed_here(f"an input cannot be fetched: {err}")
        requirements = job_order.pop(JOB_REQUIREMENTS, None)
        if requirements:
            tool = with_job_requirements(tool, requirements)
        job_order = {**floats.for_cwltool(job_order), "ades_job_id": spec.job_id,
                     "ades_sink": spec.sink.model_dump_json(exclude_none=True)}
        dirs = RunDirs(base=folder.path, outputs=folder.outputs, tmp=folder.tmp, work=folder.work)
        outputs, status = run_workflow(tool, job_order, dirs, stream, reporter, confinement, staging,
                                       container=spec.sandbox.container,
                                       without_container=spec.sandbox.without_container)
        stream.write(f"ades: cwltool finished with status {status} after {time.perf_counter() - started:.2f} s\n")
        if spec.max_output_bytes and (written := folder.written_bytes()) > spec.max_output_bytes:
            # the launcher's watch measures only every second: what a job wrote since is checked here
            folder.clear_run()
            return failed_here(over_output_limit(written, spec.max_output_bytes, "failed"))
        if outputs is not None and store_outputs is not None:
            try:
                urls = store_outputs(spec.job_id, outputs, folder.outputs)
            except Exception as err:  # storage is outside ades (a bucket, a disk): its errors are the job's
                stream.write(f"ades: storing the outputs failed: {type(err).__name__}: {err}\n")
                status = f"error: storing the outputs failed: {err}"
    if outputs is None or status != "success":
        return failed(f"the workflow failed (cwltool status: {status})")
    folder.save_outputs(outputs)
    try:
        publisher.sink(spec.sink).publish(reporter.succeeded(urls, outputs))
    except Exception as err:  # the outputs exist; without the event the job would stay running until reconciled
        return failed(f"the job finished but its success could not be published: {err}")
    return RunResult(job_id=spec.job_id, status=Status.SUCCEEDED, outputs=outputs, log=folder.log)
