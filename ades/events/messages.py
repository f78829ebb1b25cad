"""Reading status events off SQS: raw delivery (the body is the StatusUpdate) or the SNS envelope around it."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ades.models import StatusUpdate


class SqsRecord(BaseModel):
    """One record of an SQS batch event, as Lambda delivers it (and as `ades consumer` builds it)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    message_id: str = Field(alias="messageId", min_length=1)
    body: str
    receipt_handle: str | None = Field(default=None, alias="receiptHandle")


class SqsEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    Records: list[dict[str, Any]] = Field(default_factory=list)


class SnsEnvelope(BaseModel):
    model_config = ConfigDict(extra="ignore")

    Type: str
    Message: str


class BadMessage(ValueError):
    """A record that can never be applied, whatever is retried: wrong JSON, wrong shape, wrong status word."""


def parse_body(body: str) -> StatusUpdate:
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as err:
        raise BadMessage(f"body is not JSON: {err}") from None
    if isinstance(payload, dict) and payload.get("Type") == "Notification" and "Message" in payload:
        try:
            envelope = SnsEnvelope.model_validate(payload)
            payload = json.loads(envelope.Message)
        except (ValidationError, json.JSONDecodeError) as err:
            raise BadMessage(f"SNS envelope carries no JSON message: {err}") from None
    try:
        return StatusUpdate.model_validate(payload)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in err.errors())
        raise BadMessage(f"not a status update: {problems}") from None
