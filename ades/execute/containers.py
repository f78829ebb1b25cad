"""Packages that declare CWL's DockerRequirement, and the container runtime the operator gave cwltool for them.

A DockerRequirement under `requirements` must be honoured: the tool runs in the image through the configured runtime
(podman, docker, singularity or apptainer), or, when the operator allows it, on the worker without a container (the
sandbox then confines it as any tool). Without either the package cannot run here, and deploy says so. A
DockerRequirement under `hints` is optional: it is used when a runtime is configured and ignored otherwise.
"""

from __future__ import annotations

import shutil
from typing import Any, Literal

ContainerRuntime = Literal["none", "podman", "docker", "singularity", "apptainer"]

EXECUTABLES: dict[str, str] = {"podman": "podman", "docker": "docker", "singularity": "singularity",
                               "apptainer": "singularity"}
"""What cwltool runs for each runtime: for apptainer too it runs `singularity` (apptainer installs that name)."""


def docker_requirements(node: Any) -> list[str]:
    """dockerPull/dockerImageId values of DockerRequirements under `requirements` (hints are optional: ignored)."""
    found: list[str] = []
    if isinstance(node, dict):
        reqs = node.get("requirements")
        items = list(reqs.items()) if isinstance(reqs, dict) else [(r.get("class"), r) for r in reqs or []
                                                                    if isinstance(r, dict)]
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


def refusal(document: Any, runtime: ContainerRuntime, without_container: bool) -> str | None:
    """Why a CWL document cannot run under these settings (ADES_CONTAINER_RUNTIME,
    ADES_DOCKER_WITHOUT_CONTAINER), or None when it can."""
    if runtime != "none" or without_container:
        return None
    images = list(dict.fromkeys(docker_requirements(document)))
    if not images:
        return None
    return (f"the package requires DockerRequirement (image {', '.join(images)}) and this server has no container "
            "runtime (ADES_CONTAINER_RUNTIME=none): its tools could not run in the image. The operator can set "
            "ADES_CONTAINER_RUNTIME (podman, docker, singularity, apptainer), or ADES_DOCKER_WITHOUT_CONTAINER=true "
            "to run such tools on the server without a container (the tools must be installed there); the package "
            "can make DockerRequirement a hint, which is used only where a runtime is configured")


def missing_runtime(runtime: ContainerRuntime) -> str | None:
    """Why the configured runtime cannot be used on this worker (its program is not on PATH), or None."""
    if runtime == "none" or shutil.which(EXECUTABLES[runtime]):
        return None
    return (f"the container runtime {runtime} (ADES_CONTAINER_RUNTIME) is not installed on this worker: "
            f"`{EXECUTABLES[runtime]}` is not on its PATH")


def runtime_options(runtime: ContainerRuntime) -> dict[str, Any]:
    """The cwltool RuntimeContext options that select `runtime` (`none`: no containers at all)."""
    return {"use_container": runtime != "none", "podman": runtime == "podman",
            "singularity": runtime in ("singularity", "apptainer")}
