"""A local Dask cluster for the Dask executor: one scheduler and ADES_DASK_WORKERS workers on 127.0.0.1.

    ensure_running(settings) -> url   start the scheduler (unless one answers on the port) and the workers
    stop(settings)                    stop the workers, then the scheduler, that this data dir started
    status(settings) -> dict

Only `ades services start --dask` (or `ades services start dask`) starts it: the default flow runs jobs in the
server's own warm workers. Both run as `ades dask scheduler|worker` daemons (their own process groups) with pid
files and logs in `<data_dir>/dask/`. After a start, `<data_dir>/services.env` also holds ADES_EXECUTOR=dask and
ADES_DASK_SCHEDULER, so a later `ades serve` in the same folder sends its jobs to the cluster; `stop` takes the two
lines out again (and a plain `ades services start`, which rewrites the file, leaves them out).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ades.jobs import groups
from ades.services.base import ServiceError, port_is_open, process_alive, read_pid

if TYPE_CHECKING:
    from ades.config import Settings

log = logging.getLogger(__name__)
NAME = "dask"
HOST = "127.0.0.1"
START_TIMEOUT = 120.0
ENV_KEYS = ("ADES_EXECUTOR", "ADES_DASK_SCHEDULER")


def _dir(settings: Settings) -> Path:
    return settings.data_dir / "dask"


def _url(settings: Settings) -> str:
    return f"tcp://{HOST}:{settings.dask_port}"


def _live_pid(path: Path) -> int | None:
    pid = read_pid(path)
    return pid if pid is not None and process_alive(pid) else None


def _daemon(settings: Settings, name: str, args: list[str]) -> subprocess.Popen:
    directory = _dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / f"{name}.log").open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ades.cli", "dask", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own group: stop kills the nannies, workers and launchers together
        )
    (directory / f"{name}.pid").write_text(str(proc.pid))
    return proc


def _worker_count(url: str) -> int:
    from distributed import Client

    with Client(url, set_as_default=False, timeout=10) as client:
        return len(client.scheduler_info(n_workers=-1)["workers"])


def update_env(settings: Settings, values: dict[str, str] | None) -> None:
    """Set (or, with None, remove) our lines in services.env, keeping every other line as it is."""
    path = settings.data_dir / "services.env"
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [line for line in lines if line.split("=", 1)[0] not in ENV_KEYS]
    if values:
        kept += [f"{key}={value}" for key, value in values.items()]
    if kept != lines:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{line}\n" for line in kept))


def ensure_running(settings: Settings) -> str:
    url = _url(settings)
    directory = _dir(settings)
    if port_is_open(HOST, settings.dask_port):
        log.info("something already answers on %s: using it as the Dask scheduler", url)
    else:
        scheduler = _daemon(settings, "scheduler", ["scheduler", "--host", HOST, "--port", str(settings.dask_port)])
        deadline = time.monotonic() + START_TIMEOUT
        while not port_is_open(HOST, settings.dask_port):
            if scheduler.poll() is not None or time.monotonic() > deadline:
                last = groups.tail(directory / "scheduler.log", 5)
                raise ServiceError(f"the Dask scheduler did not start on {url}: {last}")
            time.sleep(0.2)
        log.info("Dask scheduler started at %s (pid %d)", url, scheduler.pid)
    if _live_pid(directory / "workers.pid") is None:
        workers = _daemon(settings, "workers",
                          ["worker", "--scheduler", url, "--nworkers", str(settings.dask_workers)])
        deadline = time.monotonic() + START_TIMEOUT
        while _worker_count(url) < settings.dask_workers:
            if workers.poll() is not None or time.monotonic() > deadline:
                raise ServiceError(f"the Dask workers did not start: {groups.tail(directory / 'workers.log', 5)}")
            time.sleep(0.5)
        log.info("%d Dask workers started (pid %d)", settings.dask_workers, workers.pid)
    update_env(settings, {"ADES_EXECUTOR": "dask", "ADES_DASK_SCHEDULER": url})
    log.info("wrote ADES_EXECUTOR=dask and ADES_DASK_SCHEDULER=%s to %s", url, settings.data_dir / "services.env")
    return url


def stop(settings: Settings) -> None:
    directory = _dir(settings)
    for name in ("workers", "scheduler"):
        pid_file = directory / f"{name}.pid"
        pid = _live_pid(pid_file)
        if pid is not None:
            groups.stop(pid, 20)
        pid_file.unlink(missing_ok=True)
    update_env(settings, None)


def status(settings: Settings) -> dict:
    url = _url(settings)
    directory = _dir(settings)
    running = port_is_open(HOST, settings.dask_port)
    info: dict = {
        "service": NAME,
        "url": url,
        "running": running,
        "pid": _live_pid(directory / "scheduler.pid"),
        "workers_pid": _live_pid(directory / "workers.pid"),
    }
    if running:
        try:
            info["workers"] = _worker_count(url)
        except (OSError, TimeoutError) as err:
            info["workers_error"] = str(err)
    return info
