"""The settings of batches (ades/api/batch.py), apart from the rest of ades.config.Settings, which inherits them."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class BatchSettings(BaseSettings):
    batch_s3_prefixes: list[str] = Field(
        default_factory=list,
        description="S3 prefixes (s3://bucket/prefix/) a batch's `listing.s3` may list, a JSON list; empty: S3 "
        "listings are refused. Every object listed becomes an item whose File input is a presigned GET URL (valid "
        "ADES_PRESIGN_EXPIRY seconds), read by the job through the fetcher like any http(s) input.",
    )
    batch_listing_max_items: int = Field(
        default=100_000, ge=1, description="Most items one listing (S3 prefix or STAC ItemCollection) may give.",
    )
