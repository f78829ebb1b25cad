"""One job run: cwltool executes the wrapped workflow in this process, without containers.

Per job the working directory is `<data_dir>/jobs/<job_id>/` holding `work/` (tool output dirs), `tmp/`,
`outputs/` (final outputs), `wrapped.cwl`, `outputs.json` and `job.log`. The log gets cwltool's messages, everything
the tools print to unredirected stdout/stderr (as they print it), and the content of `stdout:`/`stderr:` files
once each tool ends.

Update-job steps run in this process (ades.execute.inprocess). Success is reported by the wrapper's finish step,
but the runner holds that update back until cwltool has moved the outputs into `outputs/` and `outputs.json` is
written, and only then publishes it: a successful job always has its results. When cwltool fails, the runner itself
publishes `failed`, with the reason and the tail of the log.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ades.cwl.loader import CwlLoadError, base_loading_context, clean_message, load_process
from ades.cwl.package import Package
from ades.events.sinks import EventSink
from ades.events.update_job import SinkConfig
from ades.execute import inprocess
from ades.execute.wrapper import WRAPPER_ID, wrap
from ades.models import ID_PATTERN, StatusUpdate, utcnow
from ades.services.base import tail
from ades.status import Status
from ades.storage import StorageConfig

LOG_TAIL_LINES = 20
PROCESS_FILE = "process.json"
MAX_STD_FILE_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 9_000
_PRESERVED_PREFIXES = ("AWS_",)

OutputStorer = Callable[[str, dict[str, Any]], dict[str, Any]]
"""(job id, cwltool's output object with local paths) -> output id -> URL (or list of URLs)."""

log = logging.getLogger(__name__)


class RunSpec(BaseModel):
    """Everything a worker needs to run one job (it crosses process boundaries as JSON)."""

    model_config = ConfigDict(extra="forbid")

    job_id: str = Field(pattern=ID_PATTERN)
    workflow_file: Path = Field(description="the wrapped CWL document (ades.execute.wrapper.wrap), content-addressed "
                                "under <data_dir>/cache/wrapped/ and shared by every job of the process version")
    job_order: dict[str, Any] = Field(description="cwltool job order without the ades_* inputs")
    workdir: Path
    sink: SinkConfig
    cache_key: str | None = Field(default=None, description="`id:version`; loaded tools are reused per key")
    max_seconds: float | None = Field(default=None, gt=0, description="run-time limit; past it the job is killed "
                                      "and fails with the reason (ADES_JOB_TIMEOUT)")
    storage: StorageConfig | None = Field(
        default=None, description="where outputs go once the workflow succeeded; None: they stay in the job folder, "
        "with the wrapper's results URLs")

    @classmethod
    def for_package(
        cls,
        package: Package,
        job_id: str,
        job_order: dict[str, Any],
        data_dir: Path,
        sink: SinkConfig,
        results_base_url: str,
        storage: StorageConfig | None = None,
        max_seconds: float | None = None,
    ) -> RunSpec:
        return cls(
            storage=storage,
            max_seconds=max_seconds,
            job_id=job_id,
            workflow_file=wrapped_file(package, results_base_url, data_dir),
            job_order=job_order,
            workdir=job_dir(data_dir, job_id),
            sink=sink,
            cache_key=package.key,
        )

    @property
    def log_path(self) -> Path:
        return self.workdir / "job.log"

    def workflow(self) -> dict[str, Any]:
        return _wrapped_document(str(self.workflow_file))


class RunResult(BaseModel):
    job_id: str
    status: Status
    outputs: dict[str, Any] | None = None
    log: Path
    message: str | None = None


def job_dir(data_dir: Path, job_id: str) -> Path:
    return Path(data_dir) / "jobs" / job_id


def data_dir_of(workdir: Path) -> Path:
    """The data dir a job folder (job_dir) lives in."""
    return Path(workdir).parent.parent


class _DropWrapperWarnings(logging.Filter):
    """The wrapper's hidden ordering inputs always make cwltool print a 'workflow checker warning'; authors saw
    the warnings about their own CWL when it was deployed, so here it is only noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Workflow checker warning")


# --- loading, cached -------------------------------------------------------------------------------------------
_TOOLS: dict[str, Any] = {}


@functools.cache
def _run_loading_context() -> Any:
    context = base_loading_context().copy()
    context.construct_tool_object = inprocess.make_tool
    return context


_WRAPPED: dict[tuple[int, str, str], tuple[Package, Path]] = {}
_WRAPPED_MAX = 256


def wrapped_file(package: Package, results_base_url: str, data_dir: Path) -> Path:
    """The wrapped document of `package` as a file, written once per package object (a new deploy or replace
    loads a new one) into `<data_dir>/cache/wrapped/<digest>.cwl`, which every worker and Dask host sees.

    Wrapping copied the whole package, and the spec carried and serialized it twice, on every submission; now a
    spec carries a path. The file is named by its content, so it never changes once written, and it outlives
    every job folder, which the loaded tools refer to."""
    key = (id(package), results_base_url, str(data_dir))
    hit = _WRAPPED.get(key)
    if hit is not None and hit[0] is package:  # the package is held, so its id cannot have been reused
        return hit[1]
    text = json.dumps(wrap(package, results_base_url), indent=1, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    directory = Path(data_dir) / "cache" / "wrapped"
    path = directory / f"{digest}.cwl"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / f".{digest}.{os.getpid()}.{threading.get_ident()}.tmp"
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    if len(_WRAPPED) >= _WRAPPED_MAX:
        _WRAPPED.clear()
    _WRAPPED[key] = (package, path)
    return path


@functools.lru_cache(maxsize=64)
def _wrapped_document(path: str) -> dict[str, Any]:
    # content-addressed: a path's content never changes, so caching by path is safe
    return json.loads(Path(path).read_text(encoding="utf-8"))


def load_wrapped(spec: RunSpec) -> Any:
    """The cwltool Process of the spec's wrapped workflow, from the per-process cache when seen before.

    Keyed by `cache_key` and the document's digest (its file name), so a changed wrapper (another results URL, a
    replaced package) is loaded afresh. Raises CwlLoadError.
    """
    path = spec.workflow_file
    key = f"{spec.cache_key or 'anonymous'}#{path.stem}"
    tool = _TOOLS.get(key)
    if tool is None:
        cwl_logger = logging.getLogger("cwltool")
        quiet = _DropWrapperWarnings()
        cwl_logger.addFilter(quiet)
        try:
            tool = load_process(f"{path.as_uri()}#{WRAPPER_ID}", _run_loading_context())
        except CwlLoadError as err:
            raise CwlLoadError(clean_message(str(err), path.parent)) from err
        finally:
            cwl_logger.removeFilter(quiet)
        _TOOLS[key] = tool
    return tool


def docker_requirements(node: Any) -> list[str]:
    """dockerPull/dockerImageId values of DockerRequirements under `requirements` (hints are optional: ignored)."""
    found: list[str] = []
    if isinstance(node, dict):
        reqs = node.get("requirements")
        items = list(reqs.items()) if isinstance(reqs, dict) else [(r.get("class"), r) for r in reqs or []]
        for name, req in items:
            if name == "DockerRequirement" and isinstance(req, dict):
                found.append(str(req.get("dockerPull") or req.get("dockerImageId") or "(no image named)"))
        for key, value in node.items():
            if key != "requirements":
                found.extend(docker_requirements(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(docker_requirements(item))
    return found


# --- logging ---------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _job_log(path: Path, redirect_fds: bool) -> Iterator[Any]:
    """The open job log, with cwltool's logger writing into it (flushed line by line)."""
    stream = open(path, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115 (closed below)
    cwl_logger = logging.getLogger("cwltool")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.addFilter(_DropWrapperWarnings())
    removed: list[logging.Handler] = []
    saved: list[int] = []
    if redirect_fds:
        # A job child: everything else written to stdout/stderr belongs in the log too.
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
        removed = list(cwl_logger.handlers)
        for other in removed:
            cwl_logger.removeHandler(other)
    cwl_logger.addHandler(handler)
    try:
        yield stream
    finally:
        cwl_logger.removeHandler(handler)
        for other in removed:
            cwl_logger.addHandler(other)
        if saved:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
        stream.close()


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    return tail(path, lines)


def _std_files_into_log(stream: Any) -> Any:
    from cwltool.context import log_handler

    def handler(outdir: str, base_path_logs: str, stdout_path: str | None, stderr_path: str | None) -> None:
        for kind, file in (("stdout", stdout_path), ("stderr", stderr_path)):
            if not file:
                continue
            try:
                with open(file, "rb") as f:
                    data = f.read(MAX_STD_FILE_BYTES + 1)
            except OSError:
                continue
            text = data[:MAX_STD_FILE_BYTES].decode("utf-8", errors="replace")
            more = " (truncated)" if len(data) > MAX_STD_FILE_BYTES else ""
            stream.write(f"----- {kind} of the step ({os.path.basename(file)}){more} -----\n{text}")
            stream.write("" if text.endswith("\n") or not text else "\n")
            stream.write(f"----- end of {kind} -----\n")
        log_handler(outdir, base_path_logs, stdout_path, stderr_path)

    return handler


# --- running ---------------------------------------------------------------------------------------------------
def _environment() -> list[str]:
    # ades-update-job lives beside the interpreter; the venv need not be activated for tools to find it.
    bin_dir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + path if path else bin_dir
    return ["PATH", *(name for name in os.environ if name.startswith(_PRESERVED_PREFIXES))]


def _runtime_context(spec: RunSpec, stream: Any) -> Any:
    from cwltool.context import RuntimeContext

    work = spec.workdir
    return RuntimeContext(
        {
            "use_container": False,
            "outdir": str(work / "outputs"),
            "tmpdir_prefix": str(work / "tmp") + "/",
            "tmp_outdir_prefix": str(work / "work") + "/",
            "basedir": str(work),
            "preserve_environment": _environment(),
            "move_outputs": "move",
            "rm_tmpdir": True,
            "on_error": "stop",
            # A file descriptor (not a file object): cwltool closes file objects after each tool.
            "default_stdout": stream.fileno(),
            "default_stderr": stream.fileno(),
            "log_dir_handler": _std_files_into_log(stream),
        }
    )


def _with_paths(value: Any) -> Any:
    """cwltool's output object with a local `path` beside every file:// `location` (what the results endpoint
    serves)."""
    if isinstance(value, list):
        return [_with_paths(v) for v in value]
    if isinstance(value, dict):
        result = {k: _with_paths(v) for k, v in value.items()}
        location = result.get("location")
        if result.get("class") in ("File", "Directory") and isinstance(location, str) and location.startswith("file:"):
            result.setdefault("path", urllib.request.url2pathname(urllib.parse.urlsplit(location).path))
        return result
    return value


def publish_failed(spec: RunSpec, sink: EventSink, reason: str) -> str:
    """Publish `failed` with the reason and the log's tail; returns the message. A sink error is logged, not raised
    (the caller is already handling a failure)."""
    tail = log_tail(spec.log_path)
    message = reason if not tail else f"{reason}\n--- last lines of the job log ---\n{tail}"
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    try:
        sink.publish(StatusUpdate(job_id=spec.job_id, status=Status.FAILED, message=message))
    except Exception as err:  # every sink error is reported the same way: in the log, the job is failing anyway
        log.error("could not publish the failure of job %s: %s", spec.job_id, err)
        with open(spec.log_path, "a", encoding="utf-8") as f:
            f.write(f"ades: could not publish the failure: {err}\n")
    return message


def prepare_workdir(spec: RunSpec) -> None:
    for sub in ("work", "tmp", "outputs"):
        (spec.workdir / sub).mkdir(parents=True, exist_ok=True)
    # who runs the job: reconciliation tells a started job from a queued one by this file (ades.execute.reconcile)
    record = {"pid": os.getpid(), "pgid": os.getpgrp(), "host": socket.gethostname(), "started": time.time()}
    (spec.workdir / PROCESS_FILE).write_text(json.dumps(record), encoding="utf-8")
    with contextlib.suppress(OSError):  # a missing wrapped file fails the job below, with the reason
        shutil.copyfile(spec.workflow_file, spec.workdir / "wrapped.cwl")


class _Reporter:
    """Publisher of one job's update-job steps (see ades.execute.inprocess): through the job's own sink when the
    step names it (it always does in ades' wrapper), and `succeeded` held back for the runner to publish."""

    def __init__(self, spec: RunSpec, sink: EventSink) -> None:
        self.spec = spec
        self.sink = sink
        self.held: StatusUpdate | None = None
        self._others: dict[str, EventSink] = {}

    def __call__(self, update: StatusUpdate, config: SinkConfig) -> None:
        if update.status is Status.SUCCEEDED and update.job_id == self.spec.job_id:
            self.held = update
            return
        self._sink_for(config).publish(update)

    def _sink_for(self, config: SinkConfig) -> EventSink:
        if config == self.spec.sink:
            return self.sink
        key = config.model_dump_json()
        if key not in self._others:
            from ades.events.sinks import make_sink

            self._others[key] = make_sink(config.settings())
        return self._others[key]

    def succeeded(self, outputs: dict[str, Any] | None) -> StatusUpdate:
        """The held success (or a new one), stamped now, with the outputs' final URLs when given."""
        fields: dict[str, Any] = {"timestamp": utcnow()}
        if outputs is not None:
            fields["outputs"] = outputs
        if self.held is not None:
            return self.held.model_copy(update=fields)
        return StatusUpdate(job_id=self.spec.job_id, status=Status.SUCCEEDED, progress=100, message="finished",
                            **fields)


def run_job(spec: RunSpec, sink: EventSink, *, redirect_fds: bool = False,
            store_outputs: OutputStorer | None = None) -> RunResult:
    """Run one job to its end. `redirect_fds` (for job child processes) also sends fds 1 and 2 to the log.

    `store_outputs(job_id, outputs)` puts the outputs where they are served from and returns output id -> URL; by
    default the spec's storage does (ades.storage), else the files stay in the job folder with the wrapper's URLs.
    """
    from cwltool.errors import WorkflowException
    from cwltool.executors import SingleJobExecutor

    prepare_workdir(spec)
    started = time.perf_counter()
    if store_outputs is None and spec.storage is not None:
        store_outputs = spec.storage.make().store

    def failed(reason: str) -> RunResult:
        message = publish_failed(spec, sink, reason)
        return RunResult(job_id=spec.job_id, status=Status.FAILED, log=spec.log_path, message=message)

    reporter = _Reporter(spec, sink)
    with _job_log(spec.log_path, redirect_fds) as stream:
        stream.write(f"ades: job {spec.job_id} starts (process {spec.cache_key}, pid {os.getpid()})\n")
        try:
            images = docker_requirements(spec.workflow())
        except (OSError, ValueError) as err:
            return failed(f"the wrapped workflow {spec.workflow_file} cannot be read: {err}")
        if images:
            stream.write(f"ades: DockerRequirement ({', '.join(images)}) cannot be honoured\n")
            return failed(
                f"this server runs tools without containers; DockerRequirement ({', '.join(images)}) cannot be "
                "honoured. Install the tools on the server and remove the requirement, or make it a hint."
            )
        try:
            tool = load_wrapped(spec)
        except CwlLoadError as err:
            stream.write(f"ades: cwltool cannot load the workflow:\n{err}\n")
            return failed(f"cwltool cannot load the workflow: {err}")

        job_order = {
            **spec.job_order,
            "ades_job_id": spec.job_id,
            "ades_sink": spec.sink.model_dump_json(exclude_none=True),
        }
        cwl_logger = logging.getLogger("cwltool")
        previous = inprocess.set_publisher(reporter)
        try:
            outputs, status = SingleJobExecutor()(tool, job_order, _runtime_context(spec, stream), cwl_logger)
        except WorkflowException as err:
            outputs, status = None, f"error: {clean_message(str(err))}"
        except Exception as err:  # cwltool raises plain exceptions for some tool bugs; the job must still end
            cwl_logger.exception("cwltool crashed")
            outputs, status = None, f"error: {type(err).__name__}: {err}"
        finally:
            inprocess.set_publisher(previous)
        elapsed = time.perf_counter() - started
        stream.write(f"ades: cwltool finished with status {status} after {elapsed:.2f} s\n")
        if status == "success":
            outputs = _with_paths(outputs)
            try:
                urls = store_outputs(spec.job_id, outputs) if store_outputs is not None else None
            except Exception as err:  # storage is outside ades (a bucket, a disk): its errors are the job's
                stream.write(f"ades: storing the outputs failed: {type(err).__name__}: {err}\n")
                status = f"error: storing the outputs failed: {err}"

    if status != "success":
        return failed(f"the workflow failed (cwltool status: {status})")
    (spec.workdir / "outputs.json").write_text(json.dumps(outputs, indent=1), encoding="utf-8")
    try:
        sink.publish(reporter.succeeded(urls))
    except Exception as err:  # the outputs exist; without the event the job would stay running until reconciled
        return failed(f"the job finished but its success could not be published: {err}")
    return RunResult(job_id=spec.job_id, status=Status.SUCCEEDED, outputs=outputs, log=spec.log_path)
