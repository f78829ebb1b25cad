"""Holding job execution on a host while the API keeps accepting jobs (`ades execution pause|resume|status`).

Operators pause execution to drain a host before maintenance or an upgrade (running jobs finish and no new one
starts, so a restart then loses nothing: ades.jobs.reconcile re-queues the waiting ones), or to let a burst of
submissions in first: on a small host, CPU a job takes is CPU the API lacks, even at the lowest priority
(benchmarks/submit.py measures both). Accepted jobs stay `submitted` and start in order once execution resumes; a
job dismissed meanwhile is dropped as always.

The switch is a file in the data dir, so every server process and every Dask worker sharing that data dir sees it.
Workers look before they start a job (one stat per job), then every POLL_SECONDS while execution is paused. The
same switch is also a small document in the store (`<prefix>control`, id `execution-pause`), which Dask workers with
data dirs of their own read with the job's status before they start it (ades.jobs.dask_checks): one pause holds
every worker that serves the store.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from elasticsearch import ConflictError, NotFoundError
from pydantic import BaseModel, Field, ValidationError

from ades.jobs.folder import DataDir, JobFolder

POLL_SECONDS = 0.2
PAUSE_ID = "execution-pause"


def control_index(index_prefix: str) -> str:
    """The store's index of control documents (the pause switch)."""
    return f"{index_prefix}control"


class PauseState(BaseModel):
    since: float = Field(description="Unix time execution was paused")
    reason: str | None = None


def pause(data_dir: Path, reason: str | None = None) -> PauseState:
    """Stop starting jobs on every worker that shares `data_dir` (idempotent: an earlier pause keeps its time)."""
    current = paused(data_dir)
    if current is not None:
        return current
    state = PauseState(since=time.time(), reason=reason)
    target = DataDir(data_dir).pause_file
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    partial.write_text(state.model_dump_json(), encoding="utf-8")
    partial.replace(target)  # whole or absent: a worker never reads half a file
    return state


def resume(data_dir: Path) -> bool:
    """Let waiting jobs start again; False if execution was not paused."""
    try:
        DataDir(data_dir).pause_file.unlink()
    except FileNotFoundError:
        return False
    return True


def paused(data_dir: Path) -> PauseState | None:
    """The pause in force, or None. The file's presence is what pauses; a damaged one still does."""
    target = DataDir(data_dir).pause_file
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return PauseState.model_validate_json(text)
    except ValidationError:
        return PauseState(since=target.stat().st_mtime, reason="(unreadable pause file)")


def hold(folder: JobFolder, stopping: Callable[[], bool] | None = None,
         on_hold: Callable[[], None] | None = None) -> bool:
    """Block while execution is paused in the job's data dir (`on_hold()` once, when it first finds it paused);
    return at once when the job's cancel is requested (starting it reports that). False if `stopping()` is or
    becomes true: the worker is shutting down and must not start the job (it stays `submitted` and journaled, and
    is re-queued when a server starts again)."""
    flag = DataDir(folder.data_dir).pause_file
    held = False
    while stopping is None or not stopping():
        if not flag.exists() or folder.cancel_requested():
            return True
        if not held and on_hold is not None:
            on_hold()
        held = True
        time.sleep(POLL_SECONDS)
    return False


def pause_store(client: Any, index_prefix: str, reason: str | None = None) -> PauseState:
    """Stop starting jobs on every Dask worker that serves the store (idempotent, as `pause`)."""
    current = paused_store(client, index_prefix)
    if current is not None:
        return current
    state = PauseState(since=time.time(), reason=reason)
    with contextlib.suppress(ConflictError):  # paused meanwhile by another: that pause stands
        client.create(index=control_index(index_prefix), id=PAUSE_ID, document=state.model_dump(), refresh=True)
    return paused_store(client, index_prefix) or state


def resume_store(client: Any, index_prefix: str) -> bool:
    """Take the store-wide pause away; False if there was none."""
    try:
        client.delete(index=control_index(index_prefix), id=PAUSE_ID, refresh=True)
    except NotFoundError:
        return False
    return True


def paused_store(client: Any, index_prefix: str) -> PauseState | None:
    try:
        return PauseState.model_validate(client.get(index=control_index(index_prefix), id=PAUSE_ID)["_source"])
    except NotFoundError:
        return None
