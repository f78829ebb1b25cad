"""The local node's CORS: closed unless ADES_ES_CORS_ORIGIN names origins, and only origins or a /regex/ pass."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from ades.config import Settings
from ades.services.elasticsearch import NodePaths, elasticsearch_yml


def _node_yml(**settings: object) -> dict:
    return yaml.safe_load(elasticsearch_yml(Settings(**settings), NodePaths(Path("/tmp/node"))))


def test_cors_is_closed_by_default():
    config = _node_yml(es_cors_origin=None)
    assert not [key for key in config if key.startswith("http.cors")]


@pytest.mark.parametrize("origin", ["http://localhost:8080", "https://a.test,http://127.0.0.1:8080",
                                    r"/https?:\/\/app\.example\.test/"])
def test_an_origin_opens_cors_for_it_alone(origin: str):
    config = _node_yml(es_cors_origin=origin)
    assert config["http.cors.enabled"] is True
    assert config["http.cors.allow-origin"] == origin
    assert {"Content-Type", "Authorization"} <= set(config["http.cors.allow-headers"].split(","))
    assert config["http.cors.allow-credentials"] is False


def test_an_empty_origin_means_unset():
    assert Settings(es_cors_origin=" ").es_cors_origin is None


@pytest.mark.parametrize("origin", ["*", "localhost:8080", "http://localhost:8080/", "http://a.test/app",
                                    "http://a.test, http://b.test", "/unterminated"])
def test_anything_but_origins_or_a_regex_is_refused(origin: str):
    with pytest.raises(ValidationError, match="neither origins"):
        Settings(es_cors_origin=origin)
