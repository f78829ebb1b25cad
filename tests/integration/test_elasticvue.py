"""What Elasticvue (and any client that starts with `GET /`) does against the node `ades services start` runs.

The node is this module's own (its own port and data dir, started by `ensure_running`, the function behind
`ades services start`), with CORS open to one origin, as a user running the Elasticvue web app would set it. The
requests are the ones Elasticvue sends when it connects (`GET /`, then `POST /_search {"size":0}`), when it shows
the cluster (`_cluster/health`, `_cat/indices`), and when its Search tab looks for `labels:demo` in `jobs`: from a
browser on the allowed origin, so each carries that Origin, its JSON headers, and is preceded by a preflight.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from elasticsearch import Elasticsearch

from ades.config import Settings
from ades.models import Job
from ades.services import elasticsearch
from ades.services.es_distribution import cached_distribution
from ades.services.es_root import build_plugin, ensure_root_plugin, installed_version, source_hash
from ades.services.java import find_java_home, java_major
from ades.store import JobStore, ensure_indexes, make_client
from ades.store.setup import physical_index
from tests.conftest import OWN_NODE_GROUP, free_port_pair
from tests.helpers import store_jobs

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group(OWN_NODE_GROUP)]  # a node of its own

ORIGIN = "http://127.0.0.1:8080"
OTHER_ORIGIN = "http://127.0.0.1:8081"
# What Elasticvue's adapter puts on every request (its REQUEST_DEFAULT_HEADERS), plus the page's origin.
BROWSER = {"Origin": ORIGIN, "Accept": "application/json", "Content-Type": "application/json"}
ROOT_VERSION_FIELDS = {
    "number", "build_flavor", "build_type", "build_hash", "build_date", "build_snapshot", "lucene_version",
    "minimum_wire_compatibility_version", "minimum_index_compatibility_version",
}


@pytest.fixture(scope="module")
def node() -> Iterator[Settings]:
    """A node with CORS open to ORIGIN; its data dir outside pytest's tmp (which pytest makes 0700, shutting out the
    node's user). The jobs index is the real `jobs` alias: nothing else uses this node."""
    root = Path(tempfile.mkdtemp(prefix="ades-elasticvue-node-", dir="/tmp"))
    root.chmod(0o755)
    settings = Settings(es_url=None, es_port=free_port_pair(9351), data_dir=root / "data", es_heap="384m",
                        es_java_options=["-XX:TieredStopAtLevel=1"], es_cors_origin=ORIGIN, index_prefix="")
    try:
        elasticsearch.ensure_running(settings)
        yield settings
    finally:
        elasticsearch.stop(settings)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def demo_job(node: Settings) -> Job:
    client = make_client(node)
    ensure_indexes(client, node)
    job = Job(process_id="echo", inputs={"message": "hello"}, labels=["demo"])
    store_jobs(JobStore(client, node), [job, Job(process_id="echo", inputs={"message": "other"}, labels=["other"])],
               refresh=True)
    client.close()
    return job


def _preflight(url: str, method: str, origin: str = ORIGIN) -> requests.Response:
    return requests.options(url, timeout=10, headers={
        "Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": "content-type"})


def _browser_call(url: str, method: str, body: dict | None = None) -> requests.Response:
    """One request as the browser makes it for Elasticvue: the preflight, then the call; both must pass CORS."""
    preflight = _preflight(url, method)
    assert preflight.status_code == 200, (url, preflight.status_code)
    assert preflight.headers.get("Access-Control-Allow-Origin") == ORIGIN
    assert method in preflight.headers.get("Access-Control-Allow-Methods", "")
    assert "content-type" in preflight.headers.get("Access-Control-Allow-Headers", "").lower()
    response = requests.request(method, url, json=body, headers=BROWSER, timeout=10)
    assert response.status_code == 200, (method, url, response.status_code, response.text[:300])
    assert response.headers.get("Access-Control-Allow-Origin") == ORIGIN
    return response


def test_elasticvue_connects_and_browses_the_jobs(node: Settings, demo_job: Job):
    url = node.elasticsearch_url
    # Connection test: GET / then POST /_search {"size": 0}.
    root = _browser_call(url + "/", "GET").json()
    nodes = requests.get(url + "/_nodes/_local?filter_path=nodes.*.version,nodes.*.build_hash", timeout=10).json()
    local = next(iter(nodes["nodes"].values()))
    uuid = requests.get(url + "/_cluster/state/metadata?filter_path=metadata.cluster_uuid", timeout=10).json()
    assert root["name"] == elasticsearch.node_name(node)
    assert root["cluster_name"] == "ades"
    assert root["cluster_uuid"] == uuid["metadata"]["cluster_uuid"]
    assert set(root["version"]) == ROOT_VERSION_FIELDS
    assert root["version"]["number"] == local["version"]
    assert root["version"]["build_hash"] == local["build_hash"]
    assert root["version"]["build_flavor"] == "default"
    assert root["version"]["build_snapshot"] is False
    assert root["tagline"] == "You Know, for Search"
    assert _browser_call(url + "/_search", "POST", {"size": 0}).json()["hits"]["hits"] == []

    # The home page and the indices list.
    assert _browser_call(url + "/_cluster/health", "GET").json()["status"] in ("green", "yellow")
    indices = _browser_call(url + "/_cat/indices?format=json", "GET").json()
    assert physical_index("jobs") in {entry["index"] for entry in indices}

    # Search tab: index `jobs`, query `labels:demo`.
    hits = _browser_call(url + "/jobs/_search", "POST",
                         {"query": {"query_string": {"query": "labels:demo"}}, "size": 10}).json()["hits"]
    assert [hit["_id"] for hit in hits["hits"]] == [demo_job.id]
    assert hits["hits"][0]["_source"]["labels"] == ["demo"]


def test_clients_that_ask_the_root(node: Settings):
    url = node.elasticsearch_url
    client = Elasticsearch(url)
    try:
        info = client.info()
        assert info["version"]["number"] == elasticsearch.status(node)["version"]
        assert info["tagline"] == "You Know, for Search"
        assert client.ping() is True
    finally:
        client.close()
    head = requests.head(url + "/", timeout=10)
    assert head.status_code == 200 and head.content == b""


def test_cors_is_for_the_configured_origin_only(node: Settings):
    url = node.elasticsearch_url
    refused = _preflight(url + "/_search", "POST", origin=OTHER_ORIGIN)
    assert refused.status_code == 403
    assert "Access-Control-Allow-Origin" not in refused.headers
    call = requests.get(url + "/", headers={**BROWSER, "Origin": OTHER_ORIGIN}, timeout=10)
    assert call.status_code == 403 and "Access-Control-Allow-Origin" not in call.headers
    # Without an Origin (not a browser) nothing changes: curl and the clients above are not CORS requests.
    assert requests.get(url + "/_cluster/health", timeout=10).ok


def test_a_second_start_builds_and_installs_nothing(node: Settings, monkeypatch: pytest.MonkeyPatch):
    """The plugin is cached: with it installed, preparing the distribution again needs neither Maven nor a JDK
    (no `mvn` on PATH here) and leaves the installed plugin as it was."""
    dist = cached_distribution(node)
    assert dist is not None and installed_version(dist) == source_hash()
    descriptor = dist.home / "plugins" / "ades-root" / "plugin-descriptor.properties"
    before = descriptor.stat().st_mtime_ns
    java_home, _ = find_java_home(node.es_java_home)
    monkeypatch.setenv("PATH", "/nonexistent")
    ensure_root_plugin(node, dist, java_home)
    assert descriptor.stat().st_mtime_ns == before


def test_a_java_runtime_without_a_compiler_builds_the_plugin(node: Settings, tmp_path: Path):
    """The node needs only a Java runtime (README: openjdk-17-jre-headless), which has no javac: Maven on such a
    runtime (here a jlink image of the JDK without its compiler module) still builds the plugin. Maven finds what it
    needs in its local repository, filled by the node's own build."""
    java_home, _ = find_java_home(node.es_java_home)
    jlink = java_home / "bin" / "jlink"
    if not jlink.is_file():
        pytest.skip("no jlink (a JDK) to make a runtime without a compiler from")
    # made once per JDK and kept beside the cached distribution (jlink takes seconds)
    runtime = Path(node.cache_dir) / f"test-runtime-without-javac-{java_major(java_home)}"
    if not (runtime / "bin" / "java").is_file():
        made = tmp_path / "jre"
        subprocess.run([str(jlink), "--add-modules", "java.se,jdk.unsupported,jdk.crypto.ec,jdk.zipfs",
                        "--output", str(made)], check=True, capture_output=True)
        shutil.rmtree(runtime, ignore_errors=True)
        shutil.move(str(made), str(runtime))
    assert not (runtime / "bin" / "javac").exists() and java_major(runtime) is not None
    dist = cached_distribution(node)
    assert dist is not None
    archive = tmp_path / "ades-root.zip"
    build_plugin(dist.version, "jre-build", archive, runtime)
    with zipfile.ZipFile(archive) as built:
        assert sorted(built.namelist()) == ["ades-root.jar", "plugin-descriptor.properties"]
        descriptor = built.read("plugin-descriptor.properties").decode()
    assert f"elasticsearch.version={dist.version}" in descriptor and "version=jre-build" in descriptor
