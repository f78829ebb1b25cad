"""A batch's items from an S3 prefix (`batch.listing.s3`, ades.api.batch): every object under it, each given to its
job as a presigned GET URL, which the job reads through the trust-boundary fetcher like any http(s) input.

Only the prefixes an operator allows (ADES_BATCH_S3_PREFIXES) are listed: the server's credentials reach more than
any one user should (the output bucket holds every user's results), so no user names a bucket of their choosing.
"""

from __future__ import annotations

from typing import Any

from ades.config import Settings
from ades.storage import s3_client


class ListingError(ValueError):
    """Why a prefix cannot be listed (said to the client as a 400)."""


def split_uri(uri: str) -> tuple[str, str]:
    """(bucket, key prefix) of `s3://bucket/prefix`."""
    if not uri.startswith("s3://"):
        raise ListingError(f"expected s3://bucket/prefix, got {uri!r}")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise ListingError(f"no bucket in {uri!r}")
    if ".." in prefix.split("/"):
        raise ListingError(f"'..' in {uri!r}")
    return bucket, prefix


def allowed(uri: str, prefixes: list[str]) -> bool:
    """Whether `uri` lies under one of the allowed prefixes (a whole bucket: `s3://bucket/`)."""
    bucket, prefix = split_uri(uri)
    for entry in prefixes:
        allowed_bucket, allowed_prefix = split_uri(entry)
        if bucket == allowed_bucket and prefix.startswith(allowed_prefix):
            return True
    return False


def list_objects(uri: str, settings: Settings, client: Any = None) -> list[str]:
    """Presigned GET URLs of the objects under `uri` (keys ending in `/`, folder markers, left out), in key order.
    Raises ListingError: not allowed, too many objects, or S3 refused."""
    from botocore.exceptions import BotoCoreError, ClientError

    if not allowed(uri, settings.batch_s3_prefixes):
        shown = ", ".join(settings.batch_s3_prefixes) or "none"
        raise ListingError(f"{uri!r} is not under a prefix this server lists (ADES_BATCH_S3_PREFIXES: {shown})")
    bucket, prefix = split_uri(uri)
    s3 = client if client is not None else s3_client(settings)
    keys: list[str] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [entry["Key"] for entry in page.get("Contents", []) if not entry["Key"].endswith("/")]
            if len(keys) > settings.batch_listing_max_items:
                raise ListingError(f"more than {settings.batch_listing_max_items} objects under {uri!r} "
                                   "(ADES_BATCH_LISTING_MAX_ITEMS)")
    except (BotoCoreError, ClientError) as err:
        raise ListingError(f"could not list {uri!r}: {err}") from None
    if not keys:
        raise ListingError(f"no objects under {uri!r}")
    return [str(s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                          ExpiresIn=settings.presign_expiry)) for key in keys]
