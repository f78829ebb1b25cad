"""Packages that declare CWL's DockerRequirement, and the container runtime the operator gave cwltool for them.

A DockerRequirement under `requirements` must be honoured: the tool runs in the image through the configured runtime
(podman, docker, singularity or apptainer), or, when the operator allows it, on the worker without a container (the
sandbox then confines it as any tool). Without either the package cannot run here, and deploy says so. A
DockerRequirement under `hints` is optional: it is used when a runtime is configured and ignored otherwise.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

ContainerRuntime = Literal["none", "podman", "docker", "singularity", "apptainer"]

EXECUTABLES: dict[str, str] = {"podman": "podman", "docker": "docker", "singularity": "singularity",
                               "apptainer": "singularity"}
"""What cwltool runs for each runtime: for apptainer too it runs `singularity` (apptainer installs that name)."""


REFUSED_SOURCES = ("dockerLoad", "dockerImport", "dockerFile")
"""Ways to get an image that cwltool carries out on the worker, with its privileges and network, past the fetcher
(ades.fetch): downloading a tarball from any URL, or building a Dockerfile. Images come from dockerPull (the
runtime's registries) or are already on the workers (dockerImageId)."""


def _docker_entries(node: Any, sections: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """Every DockerRequirement object under the given `sections` (requirements, hints) of `node`, at any depth."""
    if isinstance(node, dict):
        for section in sections:
            reqs = node.get(section)
            items = list(reqs.items()) if isinstance(reqs, dict) else [(r.get("class"), r) for r in reqs or []
                                                                        if isinstance(r, dict)]
            for name, req in items:
                if name == "DockerRequirement" and isinstance(req, dict):
                    yield req
        for key, value in node.items():
            if key not in sections:
                yield from _docker_entries(value, sections)
    elif isinstance(node, list):
        for item in node:
            yield from _docker_entries(item, sections)


def docker_requirements(node: Any) -> list[str]:
    """dockerPull/dockerImageId values of DockerRequirements under `requirements` (hints are optional: ignored)."""
    return [str(req.get("dockerPull") or req.get("dockerImageId") or "(no image named)")
            for req in _docker_entries(node, ("requirements",))]


def refusal(document: Any, runtime: ContainerRuntime, without_container: bool) -> str | None:
    """Why a CWL document cannot run under these settings (ADES_CONTAINER_RUNTIME,
    ADES_DOCKER_WITHOUT_CONTAINER), or None when it can."""
    if runtime != "none":
        sources = sorted({field for req in _docker_entries(document, ("requirements", "hints"))
                          for field in REFUSED_SOURCES if field in req})
        if sources:
            return (f"DockerRequirement: {', '.join(sources)} is not accepted: the worker would download or build "
                    "the image itself, with its own privileges and network; name the image with dockerPull (from "
                    "the registries the container runtime is configured with) or dockerImageId (an image the "
                    "operator put on the workers)")
        return None
    images = list(dict.fromkeys(docker_requirements(document)))
    if without_container or not images:
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


def reap(cidfile: Path, runtime: str, found_within: float = 5.0) -> None:
    """Remove a job's container once the job is over: run in a session of its own (start_reaper), its stdin the
    read end of a pipe whose write end only the job holds, so it outlives the job however the job ends (a SIGKILL
    of its group included) and learns of the end from the EOF. The container is the runtime's child, not the
    job's: without this it would run on after a cancelled or timed-out job. The id is read from cwltool's cidfile
    while the job lives (a dismissed job's folder goes)."""
    container: str | None = None
    ended_at: float | None = None
    while container is None:
        if ended_at is None and select.select([0], [], [], 0.1)[0] and not os.read(0, 1):
            ended_at = time.monotonic()
        elif ended_at is not None:
            if time.monotonic() - ended_at > found_within:
                return  # no container was ever made
            time.sleep(0.1)
        with contextlib.suppress(OSError):
            container = cidfile.read_text().strip() or None
    while ended_at is None and os.read(0, 1):
        pass
    subprocess.run([runtime, "rm", "-f", container], capture_output=True, timeout=120, check=False)


def start_reaper(cidfile: str, runtime: str) -> int:
    """Start `reap` for a container job about to run; returns the pipe end the job must hold until the container
    has ended (closing it, or the job's death, lets the reaper remove what is left)."""
    read_end, write_end = os.pipe()  # not inherited by the tools cwltool starts (close_fds)
    subprocess.Popen([sys.executable, "-m", "ades.execute.containers", cidfile, runtime], stdin=read_end,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    os.close(read_end)
    return write_end


if __name__ == "__main__":
    reap(Path(sys.argv[1]), sys.argv[2])
