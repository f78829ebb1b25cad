"""The shape of the code, checked on its source: data flows one way (api -> jobs -> execute | store | events), no
module reaches into another's private names, the job folder's file names and the killing of process groups each
live in one place, and modules and functions stay small."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ADES = ROOT / "ades"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80
FOLDER_NAMES = ("job.log", "outputs.json", "process.json", "cancel-requested", "dask-attempts.jsonl", "dask-ended",
                "wrapped.cwl", "execution.paused", "reconcile.lock", "jobs.written", "node-id")
BELOW_JOBS = ("ades.execute", "ades.store", "ades.events", "ades.cwl", "ades.status", "ades.models", "ades.merge",
              "ades.config", "ades.storage", "ades.fetch")
"""What ades.jobs builds on; none of it may import ades.jobs or ades.api."""


def _modules(*roots: Path) -> Iterator[tuple[str, Path, ast.Module]]:
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            yield name, path, ast.parse(path.read_text(encoding="utf-8"))


def _imports(tree: ast.Module) -> Iterator[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import, at any depth."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [alias.name for alias in node.names], node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno


def _within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


ALL = list(_modules(ADES, ROOT / "tests", ROOT / "benchmarks", ROOT / "lambdas"))
"""Parsed once, while pytest collects: CPython 3.11's `ast` keeps its recursion depth per interpreter, so a parse in a
test can fail (SystemError) while another thread formats a traceback, which parses too."""
TREES = {path: tree for _, path, tree in ALL}
OWN = [(name, path, tree) for name, path, tree in ALL if path.is_relative_to(ADES)]


def test_no_private_name_is_imported_from_another_module() -> None:
    found = [f"{path.relative_to(ROOT)}:{line}: {', '.join(n for n in names if n.startswith('_'))} from {module}"
             for name, path, tree in ALL for module, names, line in _imports(tree)
             if module != "__future__" and module != name and any(n.startswith("_") for n in names)]
    assert not found, "\n".join(found)


def test_data_flows_one_way() -> None:
    wrong = []
    for name, path, tree in ALL:
        for module, _, line in _imports(tree):
            where = f"{path.relative_to(ROOT)}:{line} imports {module}"
            if _within(name, *BELOW_JOBS) and _within(module, "ades.jobs", "ades.api", "ades.app"):
                wrong.append(where)
            if _within(name, "ades.jobs") and _within(module, "ades.api", "ades.app"):
                wrong.append(where)
            if _within(name, "ades.api", "ades.execute", "ades.jobs") and _within(module, "ades.services"):
                wrong.append(where)
    assert not wrong, "\n".join(wrong)


def test_the_job_folder_names_live_in_ades_jobs_alone() -> None:
    found = []
    for name, path, tree in OWN:
        if _within(name, "ades.jobs"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in FOLDER_NAMES if n in node.value]
    assert not found, "\n".join(found)


def test_a_process_group_is_signalled_in_one_place() -> None:
    callers = sorted({str(path.relative_to(ROOT)) for _, path, tree in OWN for node in ast.walk(tree)
                      if isinstance(node, ast.Attribute) and node.attr == "killpg"})
    assert callers == ["ades/jobs/groups.py"]


@pytest.mark.parametrize("path", sorted(ADES.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_stay_small(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_MODULE_LINES, f"{lines} lines"
    long = [f"{node.name}: {node.end_lineno - node.lineno + 1} lines" for node in ast.walk(TREES[path])
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long
