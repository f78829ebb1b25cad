"""A package runs as step `main` of the wrapper (ades.execute.wrapper), yet must behave as when cwltool runs it
alone. Where cwltool treats a step differently from a top-level process, this puts the difference right:

- outputs: a process alone may leave an optional output out of its output object (a `cwl.output.json` that does
  not name it); cwltool fails a step whose process does that. `main` takes an absent output as null.
- secondary files: cwltool finds an input's secondary files on disk (by its patterns, in records and arrays too)
  for the top-level process only. `main` runs its process as top-level, which is all that flag changes.
- `cwl:requirements` in the job order: cwltool adds them to the top-level process, which here is the wrapper, and
  they would never reach the package. They are added to the package's process instead, as cwltool alone does.
"""

from __future__ import annotations

import copy
from typing import Any

from ades.execute.wrapper import WRAPPER_ID

MAIN_STEP = f"#{WRAPPER_ID}/main"


def main_step(wrapper: Any) -> Any:
    """The wrapper's step that runs the package."""
    return next(step for step in wrapper.steps if str(step.id).endswith(MAIN_STEP))


def as_when_alone(wrapper: Any) -> Any:
    """`wrapper` with its `main` step behaving as the package would alone (see the module doc)."""
    _keep_semantics(main_step(wrapper))
    return wrapper


def _keep_semantics(step: Any) -> None:
    cls = type(step)
    names = [str(output["id"]).rsplit("/", 1)[-1].rsplit("#", 1)[-1] for output in step.tool["outputs"]]

    def receive_output(output_callback: Any, jobout: dict[str, Any], status: str) -> None:
        cls.receive_output(step, output_callback, {**dict.fromkeys(names), **jobout}, status)

    def job(job_order: Any, output_callbacks: Any, runtime_context: Any) -> Any:
        context = runtime_context.copy()
        context.toplevel = True
        yield from cls.job(step, job_order, output_callbacks, context)

    step.receive_output = receive_output
    step.job = job


def with_job_requirements(wrapper: Any, requirements: list[dict[str, Any]]) -> Any:
    """A copy of `wrapper` whose package process has `requirements` last (highest priority), as cwltool gives a
    top-level process the job order's `cwl:requirements`. The loaded wrapper is shared by jobs: it is not changed."""
    result = copy.copy(wrapper)
    result.steps = [copy.copy(step) for step in wrapper.steps]
    step = main_step(result)
    step.embedded_tool = copy.copy(step.embedded_tool)
    step.embedded_tool.requirements = [*step.embedded_tool.requirements, *copy.deepcopy(requirements)]
    _keep_semantics(step)
    return result
