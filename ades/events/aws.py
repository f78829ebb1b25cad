"""boto3 clients built from Settings: one region, an optional endpoint (moto locally), timeouts and retries."""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
from botocore.config import Config

from ades.config import Settings

# moto accepts any credentials; real AWS uses the normal credential chain, so only fill these in for an endpoint.
LOCAL_CREDENTIALS = {"aws_access_key_id": "ades-local", "aws_secret_access_key": "ades-local"}


_FOR_CHILDREN: dict[tuple[str, str], tuple[int, Any]] = {}
"""Clients made by a launcher for the job children it forks ((service, endpoint) -> (maker's pid, client)): a new
session parses the service's model again, 50-90 ms of CPU per job child. The maker never uses them, so no connection
is shared across the fork; only a forked child takes one."""


def _key(service: str, settings: Settings) -> tuple[str, str]:
    where = [settings.aws_region, settings.aws_endpoint_url, settings.aws_timeout, settings.aws_max_attempts]
    return service, json.dumps(where)


def prepare_for_children(service: str, settings: Settings) -> None:
    """Make the job children forked from this process find their `service` client ready (no network here)."""
    key = _key(service, settings)
    if key not in _FOR_CHILDREN:
        _FOR_CHILDREN[key] = (os.getpid(), client(service, settings))


def client(service: str, settings: Settings) -> Any:
    inherited = _FOR_CHILDREN.get(_key(service, settings))
    if inherited is not None and inherited[0] != os.getpid():
        return inherited[1]
    config = Config(
        region_name=settings.aws_region,
        connect_timeout=settings.aws_timeout,
        read_timeout=settings.aws_timeout + 20,  # long polls wait up to 20 s before answering
        retries={"max_attempts": settings.aws_max_attempts, "mode": "standard"},
    )
    kwargs: dict[str, Any] = {"config": config}
    if settings.aws_endpoint_url:
        kwargs["endpoint_url"] = settings.aws_endpoint_url
        kwargs.update(LOCAL_CREDENTIALS)
    return boto3.session.Session().client(service, **kwargs)
