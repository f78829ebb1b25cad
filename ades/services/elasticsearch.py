"""A real local Elasticsearch node, started and stopped by ades itself.

    ensure_running(settings) -> url     start a node only if needed (idempotent)
    stop(settings)                      stop the node this data dir started (pid file), nothing else
    status(settings) -> dict            url, version, health, pid, …

The distribution it runs is fetched and unpacked by ades.services.es_distribution (into the cache dir). The node's
own files live under the data dir:

    <data_dir>/elasticsearch/config/                    ES_PATH_CONF: the dist's config + our elasticsearch.yml
    <data_dir>/elasticsearch/{data,logs,tmp}/           owned by the node's user
    <data_dir>/elasticsearch/elasticsearch.pid          pid of the launcher = process group of the node
    <data_dir>/elasticsearch/console.log                stdout/stderr of the node

Elasticsearch refuses to run as root, so when ades runs as root the node runs as `settings.es_user` (a system
user created on first use). That user must read the unpacked distribution in the cache and write its own
directories under the data dir. The distribution is unpacked once with world-readable modes (it holds no
secrets), and the directories *above* the cache and data dir get the search bit for others (o+x) where it is
missing -- typically only /root (0700). Search without read lets the user reach the paths ades hands it but not
list anything else; it is the smallest change that works for any cache/data location, and it avoids copying
~120 MB of distribution per node or per run. When ades is not root the node simply runs as the current user.

Stdlib only (urllib for health checks) so `ades services …` stays quick and import-light.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ades.jobs import groups
from ades.services.base import (
    MissingPrerequisite,
    RunAs,
    ServiceError,
    http_json,
    port_is_open,
    process_alive,
    process_cmdline,
    processes_matching,
    read_pid,
    run_as,
)
from ades.services.es_distribution import Distribution, ensure_distribution
from ades.services.es_root import ensure_root_plugin
from ades.services.java import find_java_home

if TYPE_CHECKING:
    from ades.config import Settings

log = logging.getLogger(__name__)

NAME = "elasticsearch"
STOP_GRACE_SECONDS = 60.0


# --- the node -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodePaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def pid_file(self) -> Path:
        return self.root / "elasticsearch.pid"

    @property
    def console_log(self) -> Path:
        return self.root / "console.log"


def node_paths(settings: Settings) -> NodePaths:
    return NodePaths(settings.data_dir / "elasticsearch")


def transport_port(settings: Settings) -> int:
    if settings.es_transport_port is not None:
        return settings.es_transport_port
    return settings.es_port + 100 if settings.es_port + 100 <= 65535 else settings.es_port - 100


def node_name(settings: Settings) -> str:
    return f"ades-{settings.es_port}"


def _local_url(settings: Settings) -> str:
    return f"http://{settings.es_host}:{settings.es_port}"


def _elasticsearch_info(url: str) -> dict | None:
    """{"version": "8.19.21", "name": node name, "cluster_name": …} when `url` is an Elasticsearch (or OpenSearch)
    server, else None. Asked via `GET /_nodes/_local`, which every distribution has: the integ-test-zip answers
    `GET /` only with the ades-root plugin (ades.services.es_root), which a node started before it lacks."""
    base = url.rstrip("/")
    nodes = http_json(base + "/_nodes/_local?filter_path=cluster_name,nodes.*.version,nodes.*.name")
    if isinstance(nodes, dict) and isinstance(nodes.get("nodes"), dict) and nodes["nodes"]:
        node = next(iter(nodes["nodes"].values()))
        if isinstance(node, dict) and "version" in node:
            return {"version": node["version"], "name": node.get("name"), "cluster_name": nodes.get("cluster_name")}
    root = http_json(base + "/")
    if isinstance(root, dict) and isinstance(root.get("version"), dict) and "number" in root["version"]:
        return {
            "version": root["version"]["number"],
            "name": root.get("name"),
            "cluster_name": root.get("cluster_name"),
        }
    return None


def _health(url: str, wait_yellow: float = 0.0) -> dict | None:
    query = f"?wait_for_status=yellow&timeout={int(wait_yellow)}s" if wait_yellow >= 1 else ""
    health = http_json(url.rstrip("/") + "/_cluster/health" + query, timeout=wait_yellow + 2)
    return health if isinstance(health, dict) and "status" in health else None


def _managed_pid(paths: NodePaths) -> int | None:
    """The pid in the pid file if that process is alive and is an Elasticsearch launcher; else None."""
    pid = read_pid(paths.pid_file)
    if pid is None or not process_alive(pid):
        return None
    return pid if "elasticsearch" in process_cmdline(pid).lower() else None


def elasticsearch_yml(settings: Settings, paths: NodePaths) -> str:
    """The node's elasticsearch.yml, written on every start."""
    values = {
        "cluster.name": "ades",
        "node.name": node_name(settings),
        "network.host": settings.es_host,
        "http.port": settings.es_port,
        "transport.port": transport_port(settings),
        "discovery.type": "single-node",
        "path.data": str(paths.data),
        "path.logs": str(paths.logs),
        "xpack.security.enabled": False,
        # Elasticsearch's own disk watermarks (flood stage: indices go read-only before the disk is full, which
        # would corrupt them), with its defaults: 85 % / 90 % / 95 % used, each capped by a headroom on big disks.
        # The node shares its disk with the job folders of the same data dir.
        "cluster.routing.allocation.disk.threshold_enabled": True,
        "action.destructive_requires_name": False,
    }
    if settings.es_cors_origin:
        # What a browser app such as Elasticvue needs: it sends JSON (Content-Type: a preflight) and, against a
        # secured cluster, its own Authorization header; it never asks for cookies, so credentials stay off.
        values |= {
            "http.cors.enabled": True,
            "http.cors.allow-origin": settings.es_cors_origin,
            "http.cors.allow-headers": "X-Requested-With,Content-Type,Content-Length,Authorization,Accept",
            "http.cors.allow-credentials": False,
        }
    lines = ["# Written by ades on every start; edit ades settings (ADES_*) instead."]
    # JSON scalars are valid YAML scalars, and quote paths safely.
    lines += [f"{key}: {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _prepare_node(settings: Settings, dist: Distribution, user: RunAs) -> NodePaths:
    paths = node_paths(settings)
    for directory in (paths.root, paths.data, paths.logs, paths.tmp):
        directory.mkdir(parents=True, exist_ok=True)
    # A fresh copy of the distribution's config each start (the keystore ES creates there is kept).
    shutil.copytree(dist.home / "config", paths.config, dirs_exist_ok=True)
    (paths.config / "elasticsearch.yml").write_text(elasticsearch_yml(settings, paths))
    jvm_options = paths.config / "jvm.options.d"
    jvm_options.mkdir(exist_ok=True)
    heap = settings.es_heap
    (jvm_options / "heap.options").write_text(f"-Xms{heap}\n-Xmx{heap}\n")
    (jvm_options / "ades.options").write_text("".join(f"{option}\n" for option in settings.es_java_options))
    user.chown_tree(paths.config)
    for directory in (paths.root, paths.data, paths.logs, paths.tmp):
        if directory.stat().st_uid != user.uid:
            user.chown_tree(directory)
    grant = lambda message: log.info("%s", message)  # noqa: E731
    user.grant_traverse(dist.home, grant)
    user.grant_traverse(paths.root, grant)
    return paths


def _wait_ready(settings: Settings, url: str, pid: int | None, paths: NodePaths) -> dict:
    deadline = time.monotonic() + settings.es_start_timeout
    while True:
        if _elasticsearch_info(url) is not None:
            health = _health(url, wait_yellow=min(5.0, max(1.0, deadline - time.monotonic())))
            if health and health["status"] in ("yellow", "green"):
                return health
        if pid is not None and not process_alive(pid):
            raise ServiceError(
                f"Elasticsearch exited during start-up; last lines of {paths.console_log}:\n"
                f"{groups.tail(paths.console_log)}"
            )
        if time.monotonic() >= deadline:
            raise ServiceError(
                f"Elasticsearch at {url} was not yellow/green within {settings.es_start_timeout:.0f} s "
                f"(ADES_ES_START_TIMEOUT); last lines of {paths.console_log}:\n{groups.tail(paths.console_log)}"
            )
        time.sleep(0.5)


def ensure_running(settings: Settings) -> str:
    """Return the URL of a ready Elasticsearch, starting a local node only if none answers. Idempotent.

    - ADES_ES_URL set: that cluster is used; nothing is started.
    - Something already answers as Elasticsearch on es_host:es_port: it is reused.
    - Otherwise: fetch (or reuse the cached) distribution, write the node's config under data_dir, start the node
      as es_user in its own session, and wait until the cluster is yellow or green.
    Raises MissingPrerequisite (Java/Maven missing) or ServiceError (anything else), with a message for a person.
    """
    if settings.uses_external_es:
        url = settings.elasticsearch_url
        log.info("ADES_ES_URL is set: using the Elasticsearch cluster at %s; starting nothing", url)
        return url
    url = _local_url(settings)
    if _join_running_node(settings, url, node_paths(settings)):
        return url
    _check_ports_free(settings)
    java_home, java_version, dist = _prerequisites(settings)
    _start_node(settings, url, dist, java_home, java_version)
    return url


def _join_running_node(settings: Settings, url: str, paths: NodePaths) -> bool:
    """Wait until a node that already answers at `url`, or one this data dir started that is still starting, is
    ready; False when there is neither."""
    info = _elasticsearch_info(url)
    if info is not None:
        pid = _managed_pid(paths)
        owner = f"pid {pid}, started by ades" if pid else "not started by this data dir"
        log.info("reusing Elasticsearch %s already running at %s (%s)", info["version"], url, owner)
        _wait_ready(settings, url, pid, paths)
        if http_json(url + "/") is None:
            fix = "a restart (`ades services stop elasticsearch`, then start) installs" if pid else "it lacks"
            log.warning("Elasticsearch at %s does not answer GET / (Elasticvue and client.info() need it): %s the "
                        "ades-root plugin", url, fix)
        return True
    pid = _managed_pid(paths)
    if pid is not None:
        log.info("Elasticsearch (pid %s) is still starting at %s; waiting for it", pid, url)
        _wait_ready(settings, url, pid, paths)
        return True
    return False


def _check_ports_free(settings: Settings) -> None:
    if port_is_open(settings.es_host, settings.es_port):
        raise ServiceError(
            f"port {settings.es_port} on {settings.es_host} is taken by something that is not Elasticsearch; "
            "choose another with ADES_ES_PORT"
        )
    if port_is_open(settings.es_host, transport_port(settings)):
        raise ServiceError(
            f"transport port {transport_port(settings)} on {settings.es_host} is taken; "
            "choose another with ADES_ES_TRANSPORT_PORT"
        )


def _prerequisites(settings: Settings) -> tuple[Path, int, Distribution]:
    """(Java home, Java major version, distribution with the ades-root plugin installed); looks for all of them so
    one error names every missing program."""
    problems: list[str] = []
    try:
        java_home, java_version = find_java_home(settings.es_java_home)
    except MissingPrerequisite as error:
        problems.append(str(error))
    try:
        dist = ensure_distribution(settings)
    except MissingPrerequisite as error:
        problems.append(str(error))
    if not problems:
        try:
            ensure_root_plugin(settings, dist, java_home)
        except MissingPrerequisite as error:
            problems.append(str(error))
    if problems:
        raise MissingPrerequisite("; ".join(problems))
    return java_home, java_version, dist


def _node_env(paths: NodePaths, java_home: Path) -> dict[str, str]:
    # A fixed, minimal environment: nothing of ades' own (or root's) leaks into the node.
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(paths.root),
        "ES_JAVA_HOME": str(java_home),
        "ES_PATH_CONF": str(paths.config),
        "ES_TMPDIR": str(paths.tmp),
    }


def _launch(dist: Distribution, paths: NodePaths, user: RunAs, env: dict[str, str]) -> subprocess.Popen:
    with paths.console_log.open("ab") as console:
        console.write(f"\n--- ades: starting Elasticsearch {dist.version} at {time.ctime()}\n".encode())
        console.flush()
        extra = {"user": user.uid, "group": user.gid, "extra_groups": []} if user.switch else {}
        return subprocess.Popen(
            [str(dist.launcher)],
            cwd=paths.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own session and process group: stop() signals the whole group
            close_fds=True,
            **extra,
        )


def _start_node(settings: Settings, url: str, dist: Distribution, java_home: Path, java_version: int) -> None:
    user = run_as(settings.es_user)
    paths = _prepare_node(settings, dist, user)
    paths.pid_file.unlink(missing_ok=True)
    env = _node_env(paths, java_home)
    log.info(
        "starting Elasticsearch %s at %s as user %s (Java %s at %s, heap %s, data %s)",
        dist.version,
        url,
        user.name,
        java_version,
        java_home,
        settings.es_heap,
        paths.root,
    )
    started = time.monotonic()
    process = _launch(dist, paths, user, env)
    paths.pid_file.write_text(f"{process.pid}\n")
    try:
        _wait_ready(settings, url, process.pid, paths)
    except ServiceError:
        groups.stop(process.pid, 10)
        paths.pid_file.unlink(missing_ok=True)
        raise
    info = _elasticsearch_info(url) or {"version": dist.version}
    log.info(
        "Elasticsearch %s is ready at %s (pid %s, %.1f s)",
        info["version"],
        url,
        process.pid,
        time.monotonic() - started,
    )


def stop(settings: Settings) -> None:
    """Stop the node started for this data dir (by its pid file): SIGTERM to its process group, SIGKILL after a
    bounded wait. Never touches a node it did not start, nor an external cluster."""
    if settings.uses_external_es:
        log.info("ADES_ES_URL is set: not stopping the external cluster at %s", settings.elasticsearch_url)
        return
    url = _local_url(settings)
    paths = node_paths(settings)
    pid = read_pid(paths.pid_file)
    if pid is None:
        if _elasticsearch_info(url) is not None:
            log.info(
                "Elasticsearch at %s was not started by ades with this data dir (no %s); leaving it alone",
                url,
                paths.pid_file,
            )
        else:
            log.info("Elasticsearch is not running at %s", url)
        return
    if _managed_pid(paths) is None:
        log.info("Elasticsearch is not running (removing stale pid file %s)", paths.pid_file)
    else:
        log.info("stopping Elasticsearch at %s (pid %s)", url, pid)
        started = time.monotonic()
        killed = groups.stop(pid, STOP_GRACE_SECONDS)
        how = "killed (SIGKILL) after it ignored SIGTERM" if killed else "stopped"
        log.info("Elasticsearch %s in %.1f s", how, time.monotonic() - started)
    # Belt and braces: no JVM of this node may survive (e.g. if it left the process group).
    leftovers = processes_matching(str(paths.config))
    for leftover in leftovers:
        log.info("killing leftover Elasticsearch process %s", leftover)
        with contextlib.suppress(ProcessLookupError):
            groups.stop(os.getpgid(leftover), 10)
    paths.pid_file.unlink(missing_ok=True)


def status(settings: Settings) -> dict:
    """What is known about the cluster ades would use. Keys: service, url, running, external, version, health,
    pid (of the node this data dir started, else None), data_dir."""
    url = settings.elasticsearch_url
    paths = node_paths(settings)
    info = _elasticsearch_info(url)
    health = _health(url) if info is not None else None
    return {
        "service": NAME,
        "url": url,
        "running": info is not None,
        "external": settings.uses_external_es,
        "version": info["version"] if info else None,
        "health": health["status"] if health else None,
        "pid": None if settings.uses_external_es else _managed_pid(paths),
        "data_dir": None if settings.uses_external_es else str(paths.root),
    }
