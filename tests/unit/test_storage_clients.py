"""A launcher makes the S3 and SNS clients its job children use before it forks them: a child takes them (no
50-180 ms of client making per job), the launcher itself never does (no connection shared across the fork)."""

from __future__ import annotations

import os
from collections.abc import Callable

from ades.config import Settings
from ades.events import aws
from ades.storage import StorageConfig, prepare_for_children, s3_client


def in_a_forked_child(check: Callable[[], bool]) -> bool:
    """`check()` run in a child forked from this process."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.write(write, b"1" if check() else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    return answer == b"1"


def test_a_forked_child_takes_the_s3_client_its_parent_made_for_it() -> None:
    config = StorageConfig(kind="s3", results_base_url="http://127.0.0.1:5000", bucket="b",
                           aws_endpoint_url="http://127.0.0.1:1")
    prepare_for_children(config)
    made = s3_client(config)  # in the maker: a client of its own, never the one kept for the children
    prepare_for_children(config)  # once per config
    assert in_a_forked_child(lambda: s3_client(config) is s3_client(config) and s3_client(config) is not made)
    assert s3_client(config) is not s3_client(config)
    public = config.model_copy(update={"aws_public_endpoint_url": "http://localhost:1"})
    assert "localhost:1" in s3_client(public, public=True).generate_presigned_url(
        "get_object", Params={"Bucket": "b", "Key": "k"})


def test_a_forked_child_takes_the_sns_client_its_parent_made_for_it() -> None:
    settings = Settings(_env_file=None, aws_endpoint_url="http://127.0.0.1:1", sns_topic_arn="arn:aws:sns:x:1:t")
    aws.prepare_for_children("sns", settings)
    made = aws.client("sns", settings)
    assert in_a_forked_child(lambda: aws.client("sns", settings) is aws.client("sns", settings)
                             and aws.client("sns", settings) is not made)
    assert aws.client("sns", settings) is not aws.client("sns", settings)  # the maker never takes it
    assert aws.client("sqs", settings) is not aws.client("sqs", settings)  # nor another service
