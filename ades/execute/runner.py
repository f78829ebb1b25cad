"""One run of a wrapped workflow under cwltool, in this process; its DockerRequirement tools in the container
runtime the caller names, if any.

It knows nothing of jobs' lives: the caller (ades.jobs.run) says which folders cwltool works in and where its log
goes, and receives cwltool's output object (with a local `path` beside every file) and cwltool's final status. The
log gets cwltool's messages, what the tools print to unredirected stdout/stderr (as they print it), and the content
of `stdout:`/`stderr:` files once each tool ends. Update-job steps run in this process (ades.execute.inprocess) and
hand their updates to the `publish` callable the caller gives.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ades.cwl.loader import CwlLoadError, clean_message, confined_context, load_process
from ades.execute import inprocess
from ades.execute.containers import ContainerRuntime, runtime_options
from ades.execute.fidelity import as_when_alone
from ades.execute.sandbox import Confinement
from ades.execute.staging import Staging, path_mapper
from ades.execute.wrapper import WRAPPER_ID

MAX_STD_FILE_BYTES = 64 * 1024
_PRESERVED_PREFIXES = ("AWS_",)



@dataclass(frozen=True)
class RunDirs:
    """Where cwltool works: `base` resolves relative references, `outputs` gets the final outputs, `tmp` and
    `work` hold temporary files and each step's output folder."""

    base: Path
    outputs: Path
    tmp: Path
    work: Path


# --- loading, cached -------------------------------------------------------------------------------------------
_TOOLS: dict[str, Any] = {}


def _run_loading_context(workflow_file: Path, roots: list[Path]) -> Any:
    # the wrapped document stands alone (ades packed it); the files it names (File defaults, InitialWorkDir
    # listings) are checked, as at deploy, inside the input roots
    context = confined_context([workflow_file.parent, *roots])
    context.construct_tool_object = inprocess.make_tool
    return context


@functools.lru_cache(maxsize=64)
def read_workflow(path: Path) -> dict[str, Any]:
    """The wrapped document at `path`. Cached by path: wrapped files are named by their content and never change."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def load_wrapped(workflow_file: Path, cache_key: str | None, roots: list[Path] | None = None) -> Any:
    """The cwltool Process of a wrapped workflow, from this process's cache when seen before.

    Keyed by `cache_key` (`id:version`) and the document's digest (its file name), so a changed wrapper (another
    results URL, a replaced package) is loaded afresh. Raises CwlLoadError.
    """
    key = f"{cache_key or 'anonymous'}#{workflow_file.stem}"
    tool = _TOOLS.get(key)
    if tool is None:
        try:
            context = _run_loading_context(workflow_file, roots or [])
            tool = as_when_alone(load_process(f"{workflow_file.as_uri()}#{WRAPPER_ID}", context))
        except CwlLoadError as err:
            raise CwlLoadError(clean_message(str(err), workflow_file.parent)) from err
        _TOOLS[key] = tool
    return tool


# --- logging ---------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def job_log(path: Path, redirect_fds: bool) -> Iterator[Any]:
    """The open log, with cwltool's logger writing into it (flushed line by line). `redirect_fds` (for a process
    that runs one job) also sends everything else written to fds 1 and 2 there."""
    stream = open(path, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115 (closed below)
    cwl_logger = logging.getLogger("cwltool")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    removed: list[logging.Handler] = []
    saved: list[int] = []
    if redirect_fds:
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
def _environment(confined: bool) -> list[str]:
    """What tools get of the worker's environment: PATH, with the interpreter's folder (ades' own applications run
    with it); unconfined tools also get the AWS_* variables, confined ones never the worker's credentials."""
    bin_dir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + path if path else bin_dir
    if confined:
        return ["PATH"]
    return ["PATH", *(name for name in os.environ if name.startswith(_PRESERVED_PREFIXES))]


def _runtime_context(dirs: RunDirs, stream: Any, confinement: Confinement | None, staging: Staging | None,
                     container: ContainerRuntime, without_container: bool) -> Any:
    from cwltool.context import RuntimeContext

    context = RuntimeContext(
        {
            **runtime_options(container),
            "outdir": str(dirs.outputs),
            "tmpdir_prefix": str(dirs.tmp) + "/",
            "tmp_outdir_prefix": str(dirs.work) + "/",
            "basedir": str(dirs.base),
            # cwltool gives every tool PATH anyway; preserved, it would replace the PATH of a container's image
            "preserve_environment": [name for name in _environment(confinement is not None)
                                     if name != "PATH" or container == "none"],
            "move_outputs": "move",
            "rm_tmpdir": True,
            "on_error": "stop",
            # A file descriptor (not a file object): cwltool closes file objects after each tool.
            "default_stdout": stream.fileno(),
            "default_stderr": stream.fileno(),
            "log_dir_handler": _std_files_into_log(stream),
        }
    )
    context.ades_confinement = confinement  # read by the tools' jobs (ades.execute.sandbox)
    context.ades_without_container = without_container and container == "none"
    if staging is not None:
        context.path_mapper = path_mapper(staging)  # cwltool's own would download http(s) files itself, to /tmp
    return context


def with_paths(value: Any) -> Any:
    """cwltool's output object with a local `path` beside every file:// `location` (what the results endpoint
    serves)."""
    if isinstance(value, list):
        return [with_paths(v) for v in value]
    if isinstance(value, dict):
        result = {k: with_paths(v) for k, v in value.items()}
        location = result.get("location")
        if result.get("class") in ("File", "Directory") and isinstance(location, str) and location.startswith("file:"):
            result.setdefault("path", urllib.request.url2pathname(urllib.parse.urlsplit(location).path))
        return result
    return value


def run_workflow(tool: Any, job_order: dict[str, Any], dirs: RunDirs, stream: Any, publish: inprocess.Publisher,
                 confinement: Confinement | None = None,
                 staging: Staging | None = None, *, container: ContainerRuntime = "none",
                 without_container: bool = False) -> tuple[dict[str, Any] | None, str]:
    """Run a loaded workflow to its end: (cwltool's output object with local paths, or None; cwltool's status,
    `success` or `error: <why>`). Update-job steps go to `publish`; tools run confined by `confinement` (None:
    as the worker's user, seeing what it sees); the files cwltool stages follow `staging` (None: cwltool's own
    rules, for trusted callers only). DockerRequirement tools run in `container` (ades.execute.containers), or,
    with `without_container` and no runtime, as any other tool."""
    from cwltool.errors import WorkflowException
    from cwltool.executors import SingleJobExecutor

    cwl_logger = logging.getLogger("cwltool")
    previous = inprocess.set_publisher(publish)
    try:
        context = _runtime_context(dirs, stream, confinement, staging, container, without_container)
        outputs, status = SingleJobExecutor()(tool, job_order, context, cwl_logger)
    except WorkflowException as err:
        outputs, status = None, f"error: {clean_message(str(err))}"
    except Exception as err:  # cwltool raises plain exceptions for some tool bugs; the job must still end
        cwl_logger.exception("cwltool crashed")
        outputs, status = None, f"error: {type(err).__name__}: {err}"
    finally:
        inprocess.set_publisher(previous)
    return (with_paths(outputs) if status == "success" else None), status
