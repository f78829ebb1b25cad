"""The OpenAPI parts of callbacks (OGC conf/callback): the `subscriber` of an execute request, the delivery state a
job's status document shows, and the POSTs a subscriber receives (ades.callbacks, ades.jobs.notifier)."""

from __future__ import annotations

JSON = "application/json"

SUBSCRIBER = {
    "type": "object", "additionalProperties": False,
    "description": "OGC callbacks: the job's status document is POSTed to `inProgressUri` while it runs (at most every "
    "ADES_CALLBACK_PROGRESS_INTERVAL seconds), to `successUri` once it succeeded, to `failedUri` once it failed or was "
    "dismissed; at least once, retried with backoff, signed (`Ades-Signature`). Each URI must be an http(s) URL this "
    "server may reach (no private address unless ADES_FETCH_ALLOW allows it), else 400.",
    "properties": {k: {"type": "string", "format": "uri", "maxLength": 2048}
                   for k in ("successUri", "inProgressUri", "failedUri")},
}
CALLBACK_STATE = {
    "type": "object", "description": "delivery to the job's subscriber (present when it has one)",
    "properties": {"subscriber": {"$ref": "#/components/schemas/subscriber"},
                   "lastDelivered": {"type": "string", "description": "the last status its subscriber took"},
                   "deliveredAt": {"type": "string", "format": "date-time"},
                   "attempts": {"type": "integer", "description": "failed attempts at the state now pending"},
                   "lastError": {"type": "string"}, "nextAttempt": {"type": "string", "format": "date-time"},
                   "gaveUp": {"type": "boolean"}},
}
CALLBACKS = {name: {f"{{$request.body#/subscriber/{member}}}": {"post": {
    "description": "the job's status document (statusInfo), with headers Ades-Timestamp, Ades-Signature "
    "(sha256=HMAC-SHA256 of '<timestamp>.' + body, with ADES_CALLBACK_SECRET) and Ades-Delivery (the same for every "
    "attempt at one state)",
    "requestBody": {"content": {JSON: {"schema": {"$ref": "#/components/schemas/statusInfo"}}}},
    "responses": {"200": {"description": "received (any 2xx); anything else is retried"}}}}}
    for name, member in (("jobSucceeded", "successUri"), ("jobInProgress", "inProgressUri"),
                         ("jobFailed", "failedUri"))}
