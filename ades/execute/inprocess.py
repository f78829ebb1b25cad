"""Update-job steps run inside the worker, not as a new `ades-update-job` interpreter.

`cwl/update-job.cwl` stays a plain CommandLineTool, so a package runs the same under bare cwltool or any other
runner. ades' own runner loads workflows with `make_tool`, which builds every tool whose `baseCommand` is
`ades-update-job` as `InProcessUpdateJob`: the step's inputs are bound exactly as cwltool binds them, then the
StatusUpdate goes to the run's publisher in this process: a function call on a warm sink, where a subprocess per
status step would start an interpreter, import ades and make a fresh boto3 client, twice per job.

The job's run (ades.jobs.run) holds back `succeeded`: it is published after cwltool has moved the outputs and they
are stored, with the outputs' final URLs, so a job is never successful before its results can be fetched.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Generator
from typing import Any

from ades.events.sinks import SinkConfig
from ades.execute.wrapper import WRAPPER_ID
from ades.models import StatusUpdate

UPDATE_JOB_COMMAND = "ades-update-job"

Publisher = Callable[[StatusUpdate, SinkConfig], None]
"""Receives every update an update-job step makes; raising fails the step (hence the job)."""

_publisher: Publisher | None = None


def set_publisher(publisher: Publisher | None) -> Publisher | None:
    """Install the publisher for update-job steps in this process; returns the previous one."""
    global _publisher
    previous, _publisher = _publisher, publisher
    return previous


def is_update_job(tool: Any) -> bool:
    if not isinstance(tool, dict) or tool.get("class") != "CommandLineTool":
        return False
    command = tool.get("baseCommand")
    first = command[0] if isinstance(command, list) and command else command
    return isinstance(first, str) and os.path.basename(first) == UPDATE_JOB_COMMAND


def update_from_inputs(values: dict[str, Any]) -> tuple[StatusUpdate, SinkConfig]:
    """The update and sink an update-job step's bound inputs describe (what `ades-update-job` would parse)."""
    outputs = values.get("outputs")
    update = StatusUpdate(
        job_id=values["job_id"],
        status=values["status"],
        progress=values.get("progress"),
        message=values.get("message"),
        outputs=json.loads(outputs) if isinstance(outputs, str) and outputs else None,
    )
    return update, SinkConfig.model_validate_json(values["sink"])


def make_tool(toolpath_object: Any, loading_context: Any) -> Any:
    """cwltool's `construct_tool_object`: update-job tools run in-process, other command-line tools in the sandbox
    when the run asks for one (ades.execute.sandbox), everything else as usual."""
    from cwltool.workflow import default_make_tool

    from ades.execute import sandbox

    if is_update_job(toolpath_object):
        return _tool_class()(toolpath_object, loading_context)
    if isinstance(toolpath_object, dict) and str(toolpath_object.get("id", "")).endswith(f"#{WRAPPER_ID}"):
        # cwltool's static checker trips on the wrapper's ordering inputs (undeclared, so it compares secondary
        # files, and crashes on a step output whose secondaryFiles is an expression); the package it wraps, its own
        # workflows included, was checked alone at deploy
        wrapper_context = loading_context.copy()
        wrapper_context.do_validate = False
        return default_make_tool(toolpath_object, wrapper_context)
    if isinstance(toolpath_object, dict) and toolpath_object.get("class") == "CommandLineTool":
        return sandbox.tool_class()(toolpath_object, loading_context)
    return default_make_tool(toolpath_object, loading_context)


_CLASS: type | None = None


def _tool_class() -> type:
    # Built on first use: cwltool is imported only by processes that run workflows.
    global _CLASS
    if _CLASS is None:
        from cwltool.command_line_tool import CommandLineTool

        class InProcessUpdateJob(CommandLineTool):  # type: ignore[misc]
            def job(self, job_order: Any, output_callbacks: Any, runtimeContext: Any) -> Generator[Any, None, None]:
                builder = self._init_job(job_order, runtimeContext)
                yield _PublishJob(builder, output_callbacks, runtimeContext.create_outdir())

        _CLASS = InProcessUpdateJob
    return _CLASS


class _PublishJob:
    """The one 'job' of an in-process update-job step: publish, then hand cwltool the receipt file."""

    def __init__(self, builder: Any, output_callback: Any, outdir: str) -> None:
        self.builder = builder
        self.output_callback = output_callback
        self.outdir = outdir
        self.name = "update-job"
        self.prov_obj = None

    def run(self, runtimeContext: Any, tmpdir_lock: Any = None) -> None:
        from cwltool.errors import WorkflowException

        try:
            update, sink = update_from_inputs(self.builder.job)
            if _publisher is None:
                raise RuntimeError("no publisher installed for in-process update-job steps")
            _publisher(update, sink)
        except Exception as err:  # any failure to report status fails the step, as the CLI's exit code would
            raise WorkflowException(f"update-job could not publish: {err}") from err
        # the job log shows each status step, as the command line of an `ades-update-job` run would
        progress = "" if update.progress is None else f" {update.progress}%"
        message = f": {update.message}" if update.message else ""
        logging.getLogger("cwltool").info("[update-job] %s%s%s", update.status.value, progress, message)
        receipt = os.path.join(self.outdir, "update-job.json")
        with open(receipt, "w", encoding="utf-8") as f:
            json.dump({"published": update.event_id, "job_id": update.job_id, "status": update.status.value}, f)
        self.output_callback(
            {"receipt": {"class": "File", "location": "file://" + receipt, "basename": "update-job.json"}}, "success"
        )
