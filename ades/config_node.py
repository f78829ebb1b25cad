"""The settings of the Elasticsearch node `ades services start` runs here (ades/services/elasticsearch.py), apart
from the rest of ades.config.Settings, which inherits them (ADES_ES_HOST, ADES_ES_PORT, ...)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings


class LocalNodeSettings(BaseSettings):
    es_host: str = Field(default="127.0.0.1", description="Address the local Elasticsearch node binds to.")
    es_port: int = Field(default=9200, ge=1, le=65535, description="HTTP port of the local Elasticsearch node.")
    es_version: str = Field(
        default="[8.19.0,8.20.0)",
        description="Maven version (or range) of the Elasticsearch integ-test-zip to fetch; a range picks the newest.",
    )
    es_transport_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Transport (node-to-node) port of the local node; es_port + 100 when unset.",
    )
    es_heap: str = Field(default="512m", pattern=r"^\d+[mMgG]$", description="Fixed JVM heap of the local node.")
    es_java_options: list[str] = Field(
        default_factory=list,
        description="More JVM options of the local node, e.g. [\"-XX:TieredStopAtLevel=1\"] (a quicker start, "
        "slower afterwards: for nodes that are stopped and started often, as in tests).",
    )
    es_user: str = Field(default="ades-es", description="Non-root system user the local node runs as.")
    es_java_home: Path | None = Field(
        default=None, description="Java 17+ home for Elasticsearch; found automatically when unset."
    )
    es_cors_origin: str | None = Field(
        default=None,
        description="Browser origins (scheme://host[:port], several separated by commas, or a /regex/) whose pages "
        "may call the local node (CORS), e.g. http://localhost:8080 for the Elasticvue web app; unset: none may. The "
        "node has no authentication: any page from such an origin can read and change every index.",
    )
    es_start_timeout: float = Field(default=180.0, gt=0, description="Seconds to wait for the node to be yellow.")

    @field_validator("es_cors_origin", mode="before")
    @classmethod
    def _cors_origin(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip() or None
        if isinstance(value, str) and not re.fullmatch(r"https?://[^/\s,]+(,https?://[^/\s,]+)*|/.+/", value):
            raise ValueError(f"{value!r} is neither origins (scheme://host[:port], no path, comma-separated) nor a "
                             "/regex/")
        return value
