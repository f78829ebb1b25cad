"""`ades consumer`: long-poll the status queue and feed the same handler the Lambda runs.

Deletes exactly the messages the handler settled; the others come back after a short visibility delay (and, past
the redrive limit, land in the dead-letter queue). SIGTERM/SIGINT finish the batch in hand, then stop.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from ades.config import Settings
from ades.events.aws import client
from ades.events.consumer import process_event
from ades.store import JobStore, make_client

log = logging.getLogger("ades.consumer")


def to_lambda_event(messages: list[dict[str, Any]], queue_arn: str | None = None) -> dict[str, Any]:
    """The SQS event shape AWS Lambda passes to handlers, built from receive_message output."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
            }
            for m in messages
        ]
    }


class Consumer:
    def __init__(self, settings: Settings, *, batch_size: int = 10, wait_seconds: int = 2,
                 retry_delay: int = 2) -> None:
        from ades.events.pipeline import with_pipeline

        settings = with_pipeline(settings, need_queue=True)
        if not settings.sqs_queue_url:
            raise ValueError("the consumer needs a queue: set ADES_SQS_QUEUE_URL or ADES_AWS_ENDPOINT_URL")
        self.settings = settings
        self.queue_url = settings.sqs_queue_url
        self.sqs = client("sqs", settings)
        self.store = JobStore(make_client(settings), settings)
        self.batch_size = min(10, batch_size)  # SQS hands out at most 10 per receive
        self.wait_seconds = wait_seconds
        self.retry_delay = retry_delay
        self.stopping = threading.Event()
        self.settled = 0
        self.failed = 0

    def poll_once(self) -> int:
        """Receive one batch, apply it, delete what was settled. Returns the number of messages received."""
        try:
            res = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=self.batch_size,
                                           WaitTimeSeconds=self.wait_seconds, AttributeNames=["All"])
        except Exception as err:  # the queue being away for a moment must not end the consumer
            log.warning("receive failed: %s", err)
            self.stopping.wait(self.retry_delay)
            return 0
        messages = res.get("Messages", [])
        if not messages:
            return 0
        result = process_event(to_lambda_event(messages), self.store)
        failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
        done = [m for m in messages if m["MessageId"] not in failed]
        retry = [m for m in messages if m["MessageId"] in failed]
        try:
            if done:
                self.sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
                )
            if retry:
                # Come back soon rather than after the whole visibility timeout: most failures are a store hiccup.
                self.sqs.change_message_visibility_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"],
                              "VisibilityTimeout": self.retry_delay} for i, m in enumerate(retry)],
                )
        except Exception as err:  # undeleted messages come back and are recognised as duplicates: safe
            log.warning("could not settle messages with the queue: %s", err)
        self.settled += len(done)
        self.failed += len(retry)
        if retry and not self.store.available():
            self._wait_for_store(retry)
        return len(messages)

    def _wait_for_store(self, held: list[dict[str, Any]]) -> None:
        """Stop receiving while Elasticsearch is away: every receive counts towards the redrive limit, and good
        messages must not end in the dead-letter queue because the store was down. Then release what we hold."""
        log.warning("Elasticsearch is unavailable: pausing the consumer until it answers")
        pause = 0.5
        while not self.stopping.is_set() and not self.store.available():
            self.stopping.wait(pause)
            pause = min(pause * 2, 5.0)
        log.info("Elasticsearch answers again: resuming")
        try:
            self.sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                         for i, m in enumerate(held)],
            )
        except Exception as err:  # they come back by themselves when their visibility lapses
            log.warning("could not release held messages: %s", err)

    def run(self) -> None:
        log.info("consuming %s into %s", self.queue_url, self.settings.jobs_alias)
        while not self.stopping.is_set():
            self.poll_once()
        log.info("consumer stopped: %d settled, %d sent back", self.settled, self.failed)

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
