"""The `batch` member of both execute bodies: one request, a parent job and one child job per item.

    "batch": {"items": [{"inputs": {...}, "labels": [...], "batch": {...}}, ...]}

Each item's inputs are merged over the body's top-level `inputs` (an item's own batch merges over that in turn),
its labels added to the body's. Every item of the whole tree is checked against the package before anything is
written: a 400 names the item and the input (`batch.items[17].inputs.x: ...`). The jobs are then made here, the
parent first, and handed to the job service (ades.jobs.batches), which indexes them in bulk.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ades.api.context import AdesContext
from ades.api.errors import ApiProblem, problem
from ades.api.submit import checked_labels
from ades.cwl import InputError, to_job_order, wpst_inputs_to_map
from ades.cwl.package import Package
from ades.fetch import FetchError
from ades.models import BatchPlace, Job, new_id
from ades.s3_listing import ListingError, list_objects


class Listing(BaseModel):
    """Items from a listing: a STAC ItemCollection (a file:// URL inside the input roots, or an http(s) URL read
    through the trust-boundary fetcher), one item per feature, whose `asset` (default: its first) becomes the File
    input `input`; or every object under an S3 prefix the operator allows (`s3`, ades.s3_listing), as a presigned
    URL."""

    model_config = ConfigDict(extra="forbid")

    s3: str | None = None
    stac: str | None = None
    input: str = Field(min_length=1)
    asset: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Listing:
        if (self.s3 is None) == (self.stac is None):
            raise ValueError("give either s3 or stac")
        return self


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: dict[str, Any] | list[dict[str, Any]] = Field(default_factory=dict)
    labels: list[str] = Field(default_factory=list)
    batch: BatchRequest | None = None

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any, info: ValidationInfo) -> list[str]:
        return checked_labels(value, info)


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[BatchItem] | None = Field(default=None, min_length=1)
    listing: Listing | None = None

    @model_validator(mode="after")
    def _one_source(self) -> BatchRequest:
        if (self.items is None) == (self.listing is None):
            raise ValueError("give either items or listing")
        return self


def _where(loc: tuple[Any, ...]) -> str:
    text = "batch"
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def parse_batch(raw: Any, ctx: AdesContext) -> BatchRequest:
    """The `batch` member, or a 400 naming where it is wrong."""
    if not isinstance(raw, dict):
        raise problem(400, "invalid-parameter", "batch: must be an object with `items` (or `listing`)")
    try:
        request = BatchRequest.model_validate(raw, context={"settings": ctx.settings})
    except ValidationError as err:
        first = err.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        raise problem(400, "invalid-parameter", f"{_where(first['loc'])}: {message}") from None
    return request


class BatchPlan(BaseModel):
    """Every job of a validated batch request, the parent first, each batch before its children."""

    jobs: list[Job]

    @property
    def parent(self) -> Job:
        return self.jobs[0]


def _inputs(item: BatchItem, where: str) -> dict[str, Any]:
    if isinstance(item.inputs, dict):
        return item.inputs
    try:
        return wpst_inputs_to_map(item.inputs)
    except InputError as err:
        raise ApiProblem(400, "invalid-input", f"{where}.inputs: {err}", "Invalid input") from None


def plan_batch(ctx: AdesContext, package: Package, parent: Job, request: BatchRequest) -> BatchPlan:
    """Check every item of the tree against the package and make its jobs (nothing is written). The parent is given
    as a single job would be; it becomes the batch."""
    jobs = [parent]
    leaves = _plan_items(ctx, package, parent, request, "batch", [], jobs)
    parent.batch = (parent.batch or BatchPlace()).model_copy(update={"leaves": leaves, "is_batch": True})
    return BatchPlan(jobs=jobs)


def _plan_items(ctx: AdesContext, package: Package, batch: Job, request: BatchRequest, where: str,
                ancestors: list[str], jobs: list[Job]) -> int:
    """Add the children of `batch` (and theirs) to `jobs`; how many leaves they hold."""
    above = [*ancestors, batch.id]
    leaves = 0
    items = request.items if request.listing is None else listed_items(ctx, request.listing, f"{where}.listing")
    batch.batch = (batch.batch or BatchPlace()).model_copy(update={"size": len(items)})
    for index, item in enumerate(items):
        here = f"{where}.items[{index}]"
        inputs = {**batch.inputs, **_inputs(item, here)}
        labels = list(dict.fromkeys([*batch.labels, *item.labels]))
        if len(labels) > ctx.settings.max_labels:
            raise problem(400, "invalid-parameter", f"{here}.labels: {len(labels)} labels with the batch's; at most "
                          f"{ctx.settings.max_labels} are allowed (ADES_MAX_LABELS)")
        child = Job(id=new_id(), process_id=batch.process_id, process_version=batch.process_version, inputs=inputs,
                    labels=labels, user_id=batch.user_id, mode="async", depends_on=batch.depends_on,
                    delay=batch.delay, message=batch.message, results_request=batch.results_request,
                    host=batch.host)
        place = BatchPlace(parent_id=batch.id, index=index, ancestors=above)
        child.batch = place
        jobs.append(child)
        if item.batch is not None:
            inner = _plan_items(ctx, package, child, item.batch, f"{here}.batch", above, jobs)
            child.batch = child.batch.model_copy(update={"leaves": inner, "is_batch": True})
            leaves += inner
            continue
        try:
            to_job_order(package, inputs, ctx.file_roots, ctx.fetcher)
        except InputError as err:
            title = "Unsupported requirement" if err.kind == "unsupported-requirement" else "Invalid input"
            raise ApiProblem(400, err.kind, f"{here}.inputs.{err.input_id}: {err.problem}", title) from None
        leaves += 1
    return leaves


def plan_rerun(ctx: AdesContext, package: Package, doc: dict[str, Any], failed: list[dict[str, Any]],
               user_id: str | None, what: str) -> BatchPlan:
    """A new batch of failed jobs (the leaves of the batch `doc`, or jobs `doc` stands for: `what` says which): one
    child per failed job, with its inputs and labels, in their order. Each is checked against the process as
    deployed now."""
    parent = Job(process_id=doc["process-id"], process_version=doc.get("process-version"),
                 inputs=doc.get("inputs") or {}, labels=list(doc.get("labels") or []), user_id=user_id,
                 mode="async", results_request=doc.get("results-request"),
                 message=f"re-runs the {len(failed)} failed jobs of {what}")
    jobs = [parent]
    for index, old in enumerate(failed):
        inputs = old.get("inputs") or {}
        try:
            to_job_order(package, inputs, ctx.file_roots, ctx.fetcher)
        except InputError as err:
            raise problem(409, "invalid-input", f"failed job {old['id']} cannot run again: {err}") from None
        child = Job(process_id=parent.process_id, process_version=parent.process_version, inputs=inputs,
                    labels=list(old.get("labels") or []), user_id=user_id, mode="async",
                    results_request=parent.results_request)
        child.batch = BatchPlace(parent_id=parent.id, index=index, ancestors=[parent.id])
        jobs.append(child)
    parent.batch = BatchPlace(size=len(failed), leaves=len(failed), is_batch=True)
    return BatchPlan(jobs=jobs)


def listed_items(ctx: AdesContext, listing: Listing, where: str) -> list[BatchItem]:
    """The items of a listing: one per object under the S3 prefix (ades.s3_listing), or one per feature of the STAC
    ItemCollection, its asset as the File input."""
    if listing.s3 is not None:
        try:
            urls = list_objects(listing.s3, ctx.settings)
        except ListingError as err:
            raise problem(400, "invalid-parameter", f"{where}.s3: {err}") from None
        return [BatchItem(inputs={listing.input: {"href": url}}) for url in urls]
    if listing.stac is None:
        raise problem(400, "invalid-parameter", f"{where}: give `s3` or `stac`")
    try:
        collection = json.loads(_read_listing(ctx, listing.stac, f"{where}.stac"))
    except ValueError as err:
        raise problem(400, "invalid-parameter", f"{where}.stac: not a JSON document: {err}") from None
    features = collection.get("features") if isinstance(collection, dict) else None
    if not isinstance(features, list) or not features:
        raise problem(400, "invalid-parameter", f"{where}.stac: not a STAC ItemCollection with features")
    if len(features) > ctx.settings.batch_listing_max_items:
        raise problem(400, "invalid-parameter", f"{where}.stac: {len(features)} features; at most "
                      f"{ctx.settings.batch_listing_max_items} (ADES_BATCH_LISTING_MAX_ITEMS)")
    items = []
    for index, feature in enumerate(features):
        assets = feature.get("assets") if isinstance(feature, dict) else None
        key = listing.asset or next(iter(assets or {}), None)
        asset = (assets or {}).get(key) if key is not None else None
        if not isinstance(asset, dict) or not isinstance(asset.get("href"), str):
            wanted = f"an asset {listing.asset!r}" if listing.asset else "an asset"
            raise problem(400, "invalid-parameter", f"{where}.stac: feature {index} has no {wanted} with an href")
        reference = {"href": asset["href"], **({"type": asset["type"]} if isinstance(asset.get("type"), str) else {})}
        items.append(BatchItem(inputs={listing.input: reference}))
    return items


def _read_listing(ctx: AdesContext, url: str, where: str) -> bytes:
    """A listing's bytes, at most ADES_MAX_BODY_BYTES: a file inside the input roots, or an http(s) URL fetched
    through the trust-boundary fetcher."""
    limit = ctx.settings.max_body_bytes
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("http", "https"):
        try:
            return ctx.fetcher.fetch_bytes(url, max_bytes=limit)
        except FetchError as err:
            raise problem(400, "invalid-parameter", f"{where}: {err}") from None
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise problem(400, "invalid-parameter", f"{where}: expected a file:// or http(s) URL, got {url!r}")
    path = Path(urllib.parse.unquote(parts.path)).resolve()
    if not any(path.is_relative_to(root.resolve()) for root in ctx.file_roots):
        raise problem(400, "invalid-parameter", f"{where}: {url!r} is outside the directories this server reads "
                      "input files from")
    try:
        with path.open("rb") as listing:
            data = listing.read(limit + 1)
    except OSError as err:
        raise problem(400, "invalid-parameter", f"{where}: {url!r}: {err.strerror}") from None
    if len(data) > limit:
        raise problem(400, "invalid-parameter", f"{where}: larger than {limit} bytes (ADES_MAX_BODY_BYTES)")
    return data
