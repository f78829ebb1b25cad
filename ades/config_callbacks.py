"""The settings of callbacks (an execute request's `subscriber`: ades/callbacks.py, ades/jobs/notifier.py), apart from
the rest of ades.config.Settings, which inherits them (ADES_CALLBACK_SECRET, ...)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings


class CallbackSettings(BaseSettings):
    callback_secret: SecretStr | None = Field(
        default=None,
        description="Shared secret callbacks are signed with (header Ades-Signature: sha256=HMAC-SHA256 of "
        "'<Ades-Timestamp>.' + body); unset: callbacks go unsigned.",
    )
    callback_timeout: float = Field(default=10.0, gt=0, description="Seconds one callback POST may take.")
    callback_attempts: int = Field(
        default=5, ge=1, description="Attempts at delivering one state of a job before its subscriber is given up on.",
    )
    callback_retry_delay: float = Field(
        default=2.0, gt=0,
        description="Seconds before the first retry of a failed callback; each next retry waits twice as long (at "
        "most 300).",
    )
    callback_progress_interval: float = Field(
        default=10.0, ge=0, description="Least seconds between two in-progress callbacks of one job.",
    )
    callback_poll_interval: float = Field(
        default=1.0, gt=0,
        description="Seconds between two looks for jobs whose subscriber is to be told something (one search).",
    )
