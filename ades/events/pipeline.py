"""The SNS topic → SQS queue (+ dead-letter queue) that carries status events, created idempotently.

Locally the resources live in the moto server and are found again by name; in AWS they come from the stack in
infra/ and their ARN/URL are given as settings.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from ades.config import Settings
from ades.events.aws import client


class Pipeline(BaseModel):
    topic_arn: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    subscription_arn: str


def _queue(sqs: Any, name: str, attributes: dict[str, str]) -> tuple[str, str]:
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        url = None
    if url is None:
        try:
            url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        except sqs.exceptions.QueueNameExists:  # created meanwhile by a concurrent start
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    # An existing queue keeps its old attributes unless told: set them so a changed setting takes effect.
    sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def ensure_pipeline(settings: Settings) -> Pipeline:
    """Create (or find) the topic, the DLQ, the queue with its redrive policy, and the subscription."""
    sns, sqs = client("sns", settings), client("sqs", settings)
    topic_arn = sns.create_topic(Name=settings.status_topic_name)["TopicArn"]
    dlq_url, dlq_arn = _queue(sqs, f"{settings.status_queue_name}-dlq", {"MessageRetentionPeriod": "1209600"})
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": "*",
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }
    queue_url, queue_arn = _queue(
        sqs,
        settings.status_queue_name,
        {
            "VisibilityTimeout": str(settings.queue_visibility_timeout),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(settings.max_receive_count)}
            ),
            "Policy": json.dumps(policy),
        },
    )
    subscription_arn = None
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn):
        for sub in page["Subscriptions"]:
            if sub["Protocol"] == "sqs" and sub["Endpoint"] == queue_arn:
                subscription_arn = sub["SubscriptionArn"]
    if subscription_arn is None:
        subscription_arn = sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn,
                                         ReturnSubscriptionArn=True)["SubscriptionArn"]
    sns.set_subscription_attributes(
        SubscriptionArn=subscription_arn,
        AttributeName="RawMessageDelivery",
        AttributeValue="true" if settings.raw_message_delivery else "false",
    )
    return Pipeline(topic_arn=topic_arn, queue_url=queue_url, queue_arn=queue_arn, dlq_url=dlq_url,
                    dlq_arn=dlq_arn, subscription_arn=subscription_arn)


def with_pipeline(settings: Settings, *, need_queue: bool = False) -> Settings:
    """Settings with topic ARN (and queue URLs if `need_queue`) filled in: as given, or, against a local
    endpoint, found or created by name. A given topic ARN is never replaced."""
    if settings.sns_topic_arn and (settings.sqs_queue_url or not need_queue):
        return settings
    if not settings.aws_endpoint_url:
        return settings
    p = ensure_pipeline(settings)
    return settings.model_copy(
        update={
            "sns_topic_arn": settings.sns_topic_arn or p.topic_arn,
            "sqs_queue_url": settings.sqs_queue_url or p.queue_url,
            "sqs_dlq_url": settings.sqs_dlq_url or p.dlq_url,
        }
    )
