"""The workflow wrapper: every deployed process runs inside an outer Workflow

    start (update-job: running, 0)  ->  main (the author's process)  ->  finish (update-job: succeeded, 100, outputs)

so authors need not write status steps. The result is one packed `$graph` document (the wrapper, update-job and
the author's processes side by side), which cwltool loads from a single file.

Ordering uses hidden step inputs: `main` takes start's `receipt` and `finish` takes every output of `main` as
inputs their processes do not declare. cwltool waits for every step input before running a step and otherwise
ignores undeclared ones (its static checker, which would warn about them, is not run on the wrapper:
ades.execute.inprocess).
A process with no outputs gives `finish` nothing to wait on; such a process is not a useful OGC process anyway.
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

from ades.cwl.package import HIDDEN_INPUTS, Package, parse_cwl_text

WRAPPER_ID = "ades-wrapper"
UPDATE_JOB_ID = "ades-update-job"
AFTER_START = "ades_wrapper_after_start"
AFTER_PREFIX = "ades_wrapper_after_"
RESERVED_IDS = (WRAPPER_ID, UPDATE_JOB_ID)
_ROOT_KEYS_KEPT = ("$namespaces", "$schemas")


class WrapError(ValueError):
    pass


@functools.cache
def update_job_tool() -> dict[str, Any]:
    """cwl/update-job.cwl as a dict: the copy shipped inside the package, else the repository's."""
    try:
        text = resources.files("ades.cwl").joinpath("update-job.cwl").read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError):
        text = (Path(__file__).resolve().parents[2] / "cwl" / "update-job.cwl").read_text(encoding="utf-8")
    return parse_cwl_text(text)


def result_urls(results_base_url: str, output_ids: list[str]) -> dict[str, str]:
    """Where each output of a job will be served; `{job_id}` is left as a placeholder."""
    base = results_base_url.rstrip("/")
    return {o: f"{base}/jobs/{{job_id}}/results/{o}" for o in output_ids}


def _outputs_template(results_base_url: str, output_ids: list[str]) -> str:
    # A CWL parameter reference, not JavaScript: no node process starts for it. `self` is the job id.
    if "$" in results_base_url or "\\" in results_base_url:
        raise WrapError(f"results_base_url {results_base_url!r} must not contain '$' or '\\'")
    if "{job_id}" in results_base_url:
        raise WrapError("results_base_url must not contain '{job_id}'")
    urls = result_urls(results_base_url, output_ids)
    return json.dumps(urls, ensure_ascii=False, separators=(",", ":")).replace("{job_id}", "$(self)")


def _strip_id(value: Any) -> str:
    return str(value).rsplit("#", 1)[-1]


def _members(package: Package) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """(the author's processes as `$graph` members, root keys to keep, the id of the main one)."""
    doc = copy.deepcopy(package.cwl)
    root = {k: doc[k] for k in _ROOT_KEYS_KEPT if k in doc}
    if "$graph" in doc:
        members = doc["$graph"]
        main_id = package.main_ref or ""
    else:
        members = [{k: v for k, v in doc.items() if not k.startswith("$") and k != "cwlVersion"}]
        main_id = _strip_id(doc.get("id", package.id))
        members[0]["id"] = main_id
    for member in members:
        member.pop("cwlVersion", None)
        if _strip_id(member.get("id", "")) in RESERVED_IDS:
            raise WrapError(f"process id {member['id']!r} is reserved by ades")
    return members, root, main_id


def _has_named(t: Any) -> bool:
    if isinstance(t, list):
        return any(_has_named(m) for m in t)
    if isinstance(t, dict):
        return t.get("type") in ("enum", "record") or _has_named(t.get("items"))
    return False


def _outer_type(t: Any) -> Any:
    # cwltool compares enum and record types by their fully qualified names, which differ between the wrapper and
    # the author's process; `Any` passes such values through unchanged (the server validated them already).
    return "Any" if _has_named(t) else t


def _optional(param_type: Any) -> Any:
    if isinstance(param_type, list):
        return param_type if "null" in param_type else ["null", *param_type]
    return ["null", param_type]


def _raw_inputs(members: list[dict[str, Any]], main_id: str) -> dict[str, dict[str, Any]]:
    """The main process's input declarations as written, by input id."""
    main = next((m for m in members if _strip_id(m.get("id", "")) == _strip_id(main_id)), {})
    declared = main.get("inputs") or {}
    if isinstance(declared, dict):
        return {k: v if isinstance(v, dict) else {"type": v} for k, v in declared.items()}
    return {_strip_id(d["id"]).rsplit("/", 1)[-1]: d for d in declared if isinstance(d, dict) and "id" in d}


def wrap(package: Package, results_base_url: str = "http://127.0.0.1:5000") -> dict[str, Any]:
    """The packed CWL document that runs `package` between update-job steps (see the module doc).

    Inputs: the package's inputs plus `ades_job_id` and `ades_sink` (strings); outputs: the package's outputs. The
    document uses the package's cwlVersion, so the author's CWL is read exactly as when it was deployed.
    """
    members, root, main_id = _members(package)
    user_inputs = [p for p in package.inputs.values() if p.id not in HIDDEN_INPUTS]
    output_ids = list(package.outputs)

    raw = _raw_inputs(members, main_id)
    inputs: dict[str, Any] = {}
    for param in user_inputs:
        # Optional (or defaulted) inputs may be absent: the author's process then applies its own default.
        outer = _outer_type(param.type)
        inputs[param.id] = {"type": _optional(outer) if param.optional else outer}
        if "default" in raw.get(param.id, {}):
            # an absent input takes its default here, as in a top-level process (cwltool gives a step the default
            # without turning a File's `path` into its location)
            inputs[param.id]["default"] = copy.deepcopy(raw[param.id]["default"])
    inputs["ades_job_id"] = {"type": "string"}
    inputs["ades_sink"] = {"type": "string"}

    status = {"job_id": "ades_job_id", "sink": "ades_sink"}
    main_in: dict[str, Any] = {p.id: p.id for p in user_inputs}
    main_in.update({h: h for h in HIDDEN_INPUTS if h in package.inputs})
    main_in[AFTER_START] = "start/receipt"
    finish_in: dict[str, Any] = {
        **status,
        "status": {"default": "succeeded"},
        "progress": {"default": 100},
        "message": {"default": "finished"},
        "outputs": {"source": "ades_job_id", "valueFrom": _outputs_template(results_base_url, output_ids)},
    }
    finish_in.update({f"{AFTER_PREFIX}{o}": f"main/{o}" for o in output_ids})

    wrapper = {
        "class": "Workflow",
        "id": WRAPPER_ID,
        "label": package.title or package.id,
        "requirements": [{"class": "StepInputExpressionRequirement"}, {"class": "SubworkflowFeatureRequirement"}],
        "inputs": inputs,
        # optional whatever the package says: its own process has checked its outputs (ades.execute.fidelity)
        "outputs": {o: {"type": _optional(_outer_type(p.type)), "outputSource": f"main/{o}"}
                    for o, p in package.outputs.items()},
        "steps": {
            "start": {
                "run": f"#{UPDATE_JOB_ID}",
                "in": {**status, "status": {"default": "running"}, "progress": {"default": 0},
                       "message": {"default": "started"}},
                "out": ["receipt"],
            },
            "main": {"run": f"#{main_id}", "in": main_in, "out": output_ids},
            "finish": {"run": f"#{UPDATE_JOB_ID}", "in": finish_in, "out": ["receipt"]},
        },
    }
    tool = {k: v for k, v in copy.deepcopy(update_job_tool()).items() if k != "cwlVersion"}
    tool["id"] = UPDATE_JOB_ID
    return {"cwlVersion": package.cwl_version, **root, "$graph": [wrapper, tool, *members]}
