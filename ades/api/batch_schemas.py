"""The OpenAPI parts of batches (an ades extension, ades.api.batch): the `batch` member of an execute request and
what a job's status document shows of the batch it heads or sits in."""

from __future__ import annotations

BATCH = {"type": "object", "description": "run the process once per item (an ades extension): a parent job and a "
         "child job per item, its inputs merged over the top-level inputs, its labels added; an item may carry a batch",
         "properties": {"items": {"type": "array", "minItems": 1, "items": {"type": "object", "properties": {
             "inputs": {"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]},
             "labels": {"type": "array", "items": {"type": "string"}}, "batch": {"type": "object"}}}},
             "listing": {"type": "object", "required": ["input"], "description": "instead of items: one per feature "
                         "of a STAC ItemCollection (`stac`: its URL), whose asset (`asset`, default its first) is the "
                         "File input `input`", "properties": {k: {"type": "string"}
                                                              for k in ("stac", "s3", "input", "asset")}}}}
_INT = {"type": "integer"}
BATCH_COUNTS = {"type": "object", "description": "a batch's children, counted by status over its leaves at any depth",
                "properties": {"size": _INT, "total": _INT, "ended": _INT, "progress": _INT,
                               "counts": {"type": "object"}, "failed": {"type": "object", "properties": {
                                   "count": _INT, "jobs": {"type": "array", "items": {"type": "object"}}}}}}
BATCH_STATUS = {
    "parentID": {"type": "string", "description": "the batch this job is a child of"},
    "batchIndex": {"type": "integer", "description": "its index among the batch's items"},
    "batch": BATCH_COUNTS,
}
