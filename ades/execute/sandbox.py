"""The sandbox job tools run in: bubblewrap (bwrap), with a user of their own, their own view of the disk and no
network unless the package asks for it.

A tool sees the system read-only (/usr, /etc, /opt, the Python installation ades runs on, and the operator's extra
paths), its staged inputs read-only, and its own working and temporary folders read-write; nothing else of the host:
not the data dir (other jobs, the journal), not the server's home (tokens, keys), not ES's files. Its network is a
namespace of its own with nothing in it, unless the tool declares CWL's `NetworkAccess` and the operator allows it.
When the worker is root, the tool also runs as an unprivileged system user (`ADES_JOB_USER`), so what it writes
and can read is that user's; otherwise bwrap runs it as the worker's user inside a user namespace.

A tool that runs in a container (DockerRequirement, with ADES_CONTAINER_RUNTIME set) is not wrapped in bwrap: its
container confines it instead, run as the job user without capabilities or network (container_arguments).

Update-job steps are not tools that run here: they run in the worker (ades.execute.inprocess), with its credentials.
Tools are wrapped at the last moment, in the cwltool job's `_execute`, so staging, output collection and logs stay
cwltool's.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from ades.execute.containers import ContainerRuntime, start_reaper

SYSTEM_PATHS = (Path("/usr"), Path("/etc"), Path("/opt"))
MERGED_USR = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""Top-level names that Debian (merged /usr) makes symlinks into /usr; on other systems they are folders."""


class NoSandbox(RuntimeError):
    """The sandbox cannot be set up here (bwrap missing, the job user cannot be made); the message says what to do."""


class Sandbox(BaseModel):
    """How a job's tools are confined. Plain JSON: it travels in the RunSpec to job processes and Dask workers."""

    kind: Literal["bwrap", "none"] = "bwrap"
    user: str | None = Field(default="ades-job", description="system user tools run as when the worker is root")
    network: bool = Field(default=True, description="whether a tool that declares NetworkAccess gets the network")
    read_only: list[Path] = Field(default_factory=list, description="more host paths tools may read")
    container: ContainerRuntime = Field(default="none", description="the runtime cwltool runs DockerRequirement "
                                        "tools in (ADES_CONTAINER_RUNTIME); the container is then their confinement")
    without_container: bool = Field(default=False, description="required DockerRequirements are run without a "
                                    "container, in this sandbox (ADES_DOCKER_WITHOUT_CONTAINER)")


class Confinement(BaseModel):
    """A sandbox as set up for one run: the accounts resolved on the worker, ready to build commands from."""

    read_only: list[Path]
    network: bool
    uid: int | None = None
    gid: int | None = None


def readable_system(extra: Iterable[Path] = ()) -> list[Path]:
    """The host paths every tool may read: the system, the Python installation ades runs on and ades' own package
    (tools such as the NDVI application run as `python -m ades.apps.ndvi`; an editable install keeps the package
    outside the installation), and `extra`."""
    import ades

    package = Path(ades.__file__).parent
    paths = [*SYSTEM_PATHS, Path(sys.prefix), Path(sys.base_prefix), package, *extra]
    return [p for p in dict.fromkeys(Path(os.path.realpath(p)) for p in paths) if p.exists()]


def confine(sandbox: Sandbox) -> Confinement | None:
    """Resolve `sandbox` on this worker: None when tools are not confined. Raises NoSandbox."""
    if sandbox.kind == "none":
        return None
    if shutil.which("bwrap") is None:
        raise NoSandbox("the job sandbox needs bubblewrap (`apt-get install -y bubblewrap`); ADES_SANDBOX=none runs "
                        "tools unconfined, as the server's user")
    uid = gid = None
    if os.geteuid() == 0 and sandbox.user:
        from ades.accounts import AccountError, system_user

        try:
            entry = system_user(sandbox.user)
        except AccountError as err:
            raise NoSandbox(f"the job user: {err}") from None
        uid, gid = entry.pw_uid, entry.pw_gid
    return Confinement(read_only=readable_system(sandbox.read_only), network=sandbox.network, uid=uid, gid=gid)


def _binds(option: str, paths: Iterable[Path]) -> Iterator[str]:
    for path in paths:
        yield from (option, str(path), str(path))


def _parents(paths: Iterable[Path]) -> Iterator[str]:
    """Make every folder above a bound path traversable: bwrap would give the ones it creates the host folders'
    modes, and a job user cannot pass a 0700 folder of the server's (such as a data dir or pytest's tmp)."""
    seen: set[Path] = set()
    for path in paths:
        for parent in reversed(path.parents[:-1]):
            if parent not in seen:
                seen.add(parent)
                yield from ("--perms", "0755", "--dir", str(parent))


def command(confinement: Confinement, *, cwd: Path, writable: Iterable[Path], inputs: Iterable[Path],
            network: bool) -> list[str]:
    """The command line that runs a tool confined (the tool's own command follows it). `writable`: its working and
    temporary folders; `inputs`: the host paths of its staged inputs; `network`: the tool declared NetworkAccess.

    A root worker runs bwrap itself (it reads any path to bind it) without a user namespace, and the tool's
    command starts with setpriv, which drops to the job user, for good (no new privileges), before anything of
    the tool runs. Any other worker runs bwrap in a user namespace, as itself."""
    prefix = ["bwrap", "--die-with-parent", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    if confinement.uid is None:
        prefix.append("--unshare-all")
        if network and confinement.network:
            prefix.append("--share-net")
    else:
        prefix += ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
        if not (network and confinement.network):
            prefix.append("--unshare-net")
    for name in MERGED_USR:
        if os.path.islink(name):
            prefix += ["--symlink", os.readlink(name), name]
    inputs, writable = list(inputs), list(writable)
    prefix += _parents([*confinement.read_only, *inputs, *writable])
    prefix += [*_binds("--ro-bind", confinement.read_only), *_binds("--ro-bind-try", inputs)]
    prefix += [*_binds("--bind", writable), "--chdir", str(cwd), "--"]
    if confinement.uid is not None:
        prefix += ["setpriv", f"--reuid={confinement.uid}", f"--regid={confinement.gid}", "--clear-groups",
                   "--no-new-privs", "--"]
    return prefix


def staged_inputs(pathmapper: Any) -> list[Path]:
    """Host paths of a cwltool job's staged inputs (what its working folder's links point to)."""
    if pathmapper is None:
        return []
    found = []
    for _, entry in pathmapper.items():
        if entry.type in ("File", "Directory") and entry.resolved and not entry.resolved.startswith("_:"):
            path = Path(entry.resolved.removeprefix("file://"))
            if path.is_absolute():
                found.append(path)
    return found


def in_place_targets(pathmapper: Any, job_folder: Path) -> list[Path]:
    """Host paths a tool with InplaceUpdateRequirement may change in place: its writable inputs that lie in its own
    job's folder (what an earlier step made). An input from anywhere else is never written in place: the tool
    sees it read-only."""
    if pathmapper is None:
        return []
    folder = job_folder.resolve()
    found = []
    for _, entry in pathmapper.items():
        if entry.type in ("WritableFile", "WritableDirectory") and entry.resolved.startswith(("/", "file:")):
            path = Path(entry.resolved.removeprefix("file://")).resolve()
            if path.is_relative_to(folder):
                found.append(path)
    return found


def escaping_links(root: Path, visible: Iterable[Path]) -> list[Path]:
    """Symbolic links under `root` whose target is nowhere a confined tool may read. The tool cannot read such a
    file, but it may name one, and output collection runs outside the sandbox: followed, the link would hand the
    server's files to the tool's owner as an output."""
    allowed = [Path(os.path.realpath(p)) for p in visible]
    found = []
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder, name)
            if path.is_symlink():
                target = Path(os.path.realpath(path))
                if not any(target == p or target.is_relative_to(p) for p in allowed):
                    found.append(path)
    return found


def hand_over(root: Path, uid: int, gid: int | None) -> None:
    """Give the job user `root` and what cwltool made in it for this tool (literal files and directories, writable
    copies, made as the worker's user with private modes); links (to staged inputs) are left as they are."""
    os.chown(root, uid, -1 if gid is None else gid)
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chown(path, uid, -1 if gid is None else gid, follow_symlinks=False)


def _collected_safely(collect: Any, visible: list[Path]) -> Any:
    def collect_outputs(outdir: str, rcode: int) -> Any:
        for link in escaping_links(Path(outdir), visible):
            logging.getLogger("cwltool").warning("ades: %s is removed: a link to %s, outside what the tool may read",
                                                 link.name, os.readlink(link))
            link.unlink()
        return collect(outdir, rcode)

    return collect_outputs


_CLASSES: dict[str, type] = {}


def container_arguments(runtime: list[str], confinement: Confinement | None, network: bool) -> list[str]:
    """cwltool's `docker|podman run` arguments as ades runs them: the container ends with the job; a root worker's
    podman is rootful, which refuses the `--userns=keep-id` cwltool always asks; in a sandboxed run the container's
    processes are the job user's, not root's, gain no privileges (no capabilities, setuid files do not work, as
    setpriv does for bwrap), and get no network unless the tool declared NetworkAccess and the operator allows it."""
    root = os.geteuid() == 0
    args = [a for a in runtime if not (root and a == "--userns=keep-id")]
    # The container is the runtime's child, not the job's: stopping a job SIGTERMs its group, where only the `run`
    # client is. The client passes the signal on, and an init ends the tool (PID 1 ignores SIGTERM unless it
    # handles it); what a SIGKILL leaves, the reaper removes (ades.execute.containers).
    args.append("--init")
    if confinement is None:
        return args
    args += ["--security-opt=no-new-privileges", "--cap-drop=ALL"]
    if confinement.uid is not None:
        args = [f"--user={confinement.uid}:{confinement.gid}" if a.startswith("--user=") else a for a in args]
    if not (network and confinement.network) and "--net=none" not in args:
        args = [a for a in args if not a.startswith("--net=")] + ["--net=none"]
    return args


def _contained(base: type) -> type:
    """cwltool's container job, run as ades runs containers: the container is the tool's confinement (bwrap does not
    wrap the runtime, which needs the host's privileges). Docker and podman lines are edited (container_arguments);
    singularity and apptainer run as cwltool has them, as the worker's user. Whatever the runtime, a link the tool
    left to a host path is removed before its outputs are collected on the host."""
    name = f"contained:{base.__name__}"
    if name not in _CLASSES:
        from cwltool.docker import DockerCommandLineJob

        docker = issubclass(base, DockerCommandLineJob)

        class ContainedJob(base):  # type: ignore[misc,valid-type]
            def create_runtime(self, env: Any, runtimeContext: Any) -> tuple[list[str], str | None]:
                runtime, cidfile = super().create_runtime(env, runtimeContext)
                confinement: Confinement | None = getattr(runtimeContext, "ades_confinement", None)
                if confinement is not None:
                    if docker and confinement.uid is not None:
                        for path in (self.outdir, self.tmpdir):  # made by cwltool as the worker's user, mode 0700
                            os.chown(path, confinement.uid, confinement.gid or -1)
                    visible = [Path(self.outdir), Path(self.tmpdir), *staged_inputs(self.pathmapper),
                               *staged_inputs(self.generatemapper)]
                    self.collect_outputs = _collected_safely(self.collect_outputs, visible)
                if docker:
                    runtime = container_arguments(runtime, confinement, bool(self.networkaccess))
                    if cidfile is not None:
                        self.ades_reaper = start_reaper(cidfile, self.docker_exec)
                return runtime, cidfile

            def run(self, runtimeContext: Any, tmpdir_lock: Any = None) -> None:
                try:
                    super().run(runtimeContext, tmpdir_lock)
                finally:
                    if getattr(self, "ades_reaper", None) is not None:
                        os.close(self.ades_reaper)  # the container has ended: the reaper checks and leaves

        _CLASSES[name] = ContainedJob
    return _CLASSES[name]


def tool_class() -> type:
    """cwltool's CommandLineTool whose jobs run confined when the run says so (the runtime context's
    `ades_confinement`, set by ades.execute.runner); built on first use, as cwltool is imported only by processes
    that run workflows."""
    if "tool" not in _CLASSES:
        from cwltool.command_line_tool import CommandLineTool
        from cwltool.errors import UnsupportedRequirement
        from cwltool.job import CommandLineJob, ContainerCommandLineJob

        class ConfinedJob(CommandLineJob):  # type: ignore[misc]
            def _execute(self, runtime: list[str], env: Any, runtimeContext: Any, monitor_function: Any = None) -> None:
                confinement: Confinement | None = getattr(runtimeContext, "ades_confinement", None)
                if confinement is not None:
                    writable = [Path(self.outdir), Path(self.tmpdir)]
                    if getattr(self, "inplace_update", False):
                        writable += in_place_targets(self.pathmapper, Path(runtimeContext.basedir))
                    # where cwltool links the inputs for this tool (outside its working folder)
                    stage = [Path(self.stagedir)] if self.stagedir and os.path.isdir(self.stagedir) else []
                    if confinement.uid is not None:
                        for path in [*writable, *stage]:
                            hand_over(path, confinement.uid, confinement.gid)
                    inputs = [*stage, *staged_inputs(self.pathmapper), *staged_inputs(self.generatemapper)]
                    runtime = [*command(confinement, cwd=Path(self.outdir), writable=writable, inputs=inputs,
                                        network=bool(self.networkaccess)), *runtime]
                    visible = [*confinement.read_only, *inputs, *writable]
                    self.collect_outputs = _collected_safely(self.collect_outputs, visible)
                super()._execute(runtime, env, runtimeContext, monitor_function)

        class ConfinableTool(CommandLineTool):  # type: ignore[misc]
            def make_job_runner(self, runtimeContext: Any) -> type:
                try:
                    runner = super().make_job_runner(runtimeContext)
                except UnsupportedRequirement:
                    # cwltool refuses a required DockerRequirement without containers; the operator allowed it
                    if not getattr(runtimeContext, "ades_without_container", False):
                        raise
                    runner = CommandLineJob
                if runner is CommandLineJob:
                    return ConfinedJob
                return _contained(runner) if issubclass(runner, ContainerCommandLineJob) else runner

        _CLASSES["tool"] = ConfinableTool
    return _CLASSES["tool"]
