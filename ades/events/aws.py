"""boto3 clients built from Settings: one region, an optional endpoint (moto locally), timeouts and retries."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from ades.config import Settings

# moto accepts any credentials; real AWS uses the normal credential chain, so only fill these in for an endpoint.
LOCAL_CREDENTIALS = {"aws_access_key_id": "ades-local", "aws_secret_access_key": "ades-local"}


def client(service: str, settings: Settings) -> Any:
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
