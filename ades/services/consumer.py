"""The local status consumer (`ades consumer`) as a background service, like the Lambda in AWS.

    ensure_running(settings) -> str   start it if its pid file names no live consumer; returns the queue URL
    stop(settings)                    SIGTERM (it finishes its batch), then SIGKILL after a grace period
    status(settings) -> dict
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ades.jobs import groups
from ades.services.base import ServiceError, process_alive, read_pid

if TYPE_CHECKING:
    from ades.config import Settings

NAME = "consumer"


def _dir(settings: Settings) -> Path:
    return settings.data_dir / "consumer"


def _pid(settings: Settings) -> int | None:
    pid = read_pid(_dir(settings) / "consumer.pid")
    return pid if pid is not None and process_alive(pid) else None


def ensure_running(settings: Settings) -> str:
    from ades.services.moto import environment

    env = os.environ | environment(settings)
    queue = env.get("ADES_SQS_QUEUE_URL") or settings.sqs_queue_url
    if not queue:
        raise ServiceError("the consumer needs the status queue: start moto first or set ADES_SQS_QUEUE_URL")
    if _pid(settings) is not None:
        return queue
    directory = _dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    log_file = directory / "consumer.log"
    env["ADES_DATA_DIR"] = str(settings.data_dir)
    if settings.es_url:
        env["ADES_ES_URL"] = settings.es_url
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ades.cli", "consumer"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    (directory / "consumer.pid").write_text(str(proc.pid))
    time.sleep(0.5)
    if proc.poll() is not None:
        raise ServiceError(f"the consumer exited at once: {groups.tail(log_file, 5)}")
    return queue


def stop(settings: Settings) -> None:
    pid = _pid(settings)
    if pid is not None:
        groups.stop(pid, 15)
    (_dir(settings) / "consumer.pid").unlink(missing_ok=True)


def status(settings: Settings) -> dict:
    from ades.services.moto import environment

    pid = _pid(settings)
    queue = environment(settings).get("ADES_SQS_QUEUE_URL") or settings.sqs_queue_url or "no queue"
    return {"service": NAME, "url": queue, "running": pid is not None, "pid": pid,
            "log": str(_dir(settings) / "consumer.log")}
