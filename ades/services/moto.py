"""A local moto server standing in for AWS (SNS, SQS, CloudFormation, Lambda APIs), plus the status pipeline.

    ensure_running(settings) -> url   start moto on 127.0.0.1 if nothing answers there; create topic/queues
    stop(settings)                    stop the server this data dir started
    status(settings) -> dict

After a start, `<data_dir>/services.env` holds ADES_AWS_ENDPOINT_URL, ADES_SNS_TOPIC_ARN and the queue URLs, so
the server, the workers and the consumer started from the same folder all find the same pipeline.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ades.jobs import groups
from ades.services.base import ServiceError, http_json, process_alive, read_pid

if TYPE_CHECKING:
    from ades.config import Settings

log = logging.getLogger(__name__)
NAME = "moto"


def _dir(settings: Settings) -> Path:
    return settings.data_dir / "moto"


def _url(settings: Settings) -> str:
    return f"http://{settings.moto_host}:{settings.moto_port}"


def _answers(url: str) -> bool:
    # moto's own config route: cheap whatever moto holds (data.json dumps every resource and grew to seconds on a
    # busy server, so a live moto looked dead and a second one failed on the taken port); a plain web server on
    # the port would not answer it with JSON.
    return http_json(f"{url}/moto-api/config", timeout=5.0) is not None


def env_file(settings: Settings) -> Path:
    return settings.data_dir / "services.env"


def _write_env(settings: Settings, url: str) -> dict[str, str]:
    from ades.events.pipeline import ensure_pipeline

    pipeline = ensure_pipeline(settings.model_copy(update={"aws_endpoint_url": url}))
    values = {
        "ADES_AWS_ENDPOINT_URL": url,
        "ADES_AWS_REGION": settings.aws_region,
        "ADES_SNS_TOPIC_ARN": pipeline.topic_arn,
        "ADES_SQS_QUEUE_URL": pipeline.queue_url,
        "ADES_SQS_DLQ_URL": pipeline.dlq_url,
    }
    path = env_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return values


def ensure_running(settings: Settings) -> str:
    url = _url(settings)
    if _answers(url):
        log.info("moto already answers at %s: reusing it", url)
    else:
        directory = _dir(settings)
        directory.mkdir(parents=True, exist_ok=True)
        console = directory / "console.log"
        with console.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", settings.moto_host, "-p", str(settings.moto_port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        (directory / "moto.pid").write_text(str(proc.pid))
        deadline = time.monotonic() + 60
        while not _answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ServiceError(f"moto did not start on {url}: {groups.tail(console, 5)}")
            time.sleep(0.2)
        log.info("moto started at %s (pid %d)", url, proc.pid)
    _write_env(settings, url)
    return url


def stop(settings: Settings) -> None:
    pid_file = _dir(settings) / "moto.pid"
    pid = read_pid(pid_file)
    if pid is None or not process_alive(pid):
        pid_file.unlink(missing_ok=True)
        return
    groups.stop(pid, 10)
    pid_file.unlink(missing_ok=True)
    env_file(settings).unlink(missing_ok=True)


def status(settings: Settings) -> dict:
    url = _url(settings)
    pid = read_pid(_dir(settings) / "moto.pid")
    return {
        "service": NAME,
        "url": url,
        "running": _answers(url),
        "pid": pid if pid and process_alive(pid) else None,
        "env_file": str(env_file(settings)) if env_file(settings).exists() else None,
    }


def environment(settings: Settings) -> dict[str, str]:
    """What a child process needs to use the local pipeline (read back from the env file)."""
    path = env_file(settings)
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs} | {k: v for k, v in os.environ.items() if k.startswith("ADES_")}
