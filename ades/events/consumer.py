"""The status consumer: an SQS batch in, Elasticsearch updated, the records that need another try out.

Used unchanged by the AWS Lambda (lambdas/status_consumer/handler.py) and by `ades consumer` locally.
A malformed record is logged and reported as a batch item failure (so SQS moves it to the dead-letter queue
after its receives run out) and never stops the rest of the batch.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from ades.events.messages import BadMessage, SqsEvent, SqsRecord, parse_body
from ades.models import StatusUpdate
from ades.store.jobs import JobStore

log = logging.getLogger("ades.consumer")


def process_event(event: dict[str, Any], store: JobStore) -> dict[str, list[dict[str, str]]]:
    """Apply an SQS batch event; return `{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}`."""
    failures: list[str] = []
    try:
        raw_records = SqsEvent.model_validate(event).Records
    except ValidationError as err:
        log.error("event is not an SQS batch: %s", err)
        return {"batchItemFailures": []}

    updates: list[StatusUpdate] = []
    owners: list[str] = []
    for raw in raw_records:
        try:
            record = SqsRecord.model_validate(raw)
        except ValidationError as err:
            log.error("record without messageId/body dropped: %s", err)
            continue
        try:
            update = parse_body(record.body)
        except BadMessage as err:
            log.error("message %s rejected: %s", record.message_id, err)
            failures.append(record.message_id)
            continue
        updates.append(update)
        owners.append(record.message_id)

    if updates:
        for message_id, result in zip(owners, store.apply_many(updates), strict=True):
            if result.ok:
                log.debug("message %s: %s %s", message_id, result.job_id, result.outcome)
            else:
                log.warning("message %s for job %s not applied: %s", message_id, result.job_id, result.reason)
                failures.append(message_id)
    # One message may carry one update only, but SQS may hand us the same message id twice in a batch.
    unique = list(dict.fromkeys(failures))
    return {"batchItemFailures": [{"itemIdentifier": m} for m in unique]}
