"""The group commit's bulk connection (ades.store.bulk) against the real Elasticsearch, directly and through a relay
that injects the faults a network has: an answer lost after the node took the request, a connection closed between
requests, TLS with credentials in the URL."""

from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import socket
import ssl
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from elasticsearch import Elasticsearch

from ades.config import Settings
from ades.models import Job
from ades.store import JobExists, JobStore, StoreUnavailable
from ades.store.bulk import BulkConnection
from ades.store.client import Endpoint
from tests.conftest import free_port

pytestmark = pytest.mark.integration


class Relay:
    """Relays HTTP/1.1 requests to the node, one upstream request per client request. `lose`: answers to swallow
    (the request reaches the node, then the client's connection is closed instead of answered); `close_each`:
    close the client's connection after every answer, without saying so (as an idle timeout does)."""

    def __init__(self, node_url: str, *, lose: int = 0, close_each: bool = False,
                 tls: ssl.SSLContext | None = None) -> None:
        node = urlsplit(node_url)
        self.node = (node.hostname or "127.0.0.1", node.port or 9200)
        self.lose = lose
        self.close_each = close_each
        self.tls = tls
        self.heads: list[dict[str, str]] = []
        self.connections = 0
        self.closed = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.serve_app, args=(client,), daemon=True).start()

    def serve_app(self, client: socket.socket) -> None:
        upstream = http.client.HTTPConnection(*self.node, timeout=30)
        try:
            if self.tls is not None:
                client = self.tls.wrap_socket(client, server_side=True)
            reader = client.makefile("rb")
            while True:
                request_line = reader.readline()
                if not request_line:
                    return
                method, path, _ = request_line.decode().split(" ", 2)
                head: dict[str, str] = {}
                while (line := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    head[name.strip().lower()] = value.strip()
                self.heads.append(head)
                body = reader.read(int(head.get("content-length", "0")))
                upstream.request(method, path, body, {"Content-Type": head.get("content-type", "")})
                answer = upstream.getresponse()
                data = answer.read()
                if self.lose > 0:
                    self.lose -= 1
                    return
                client.sendall(f"HTTP/1.1 {answer.status} {answer.reason}\r\nContent-Type: application/json\r\n"
                               f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
                if self.close_each:
                    client.shutdown(socket.SHUT_RDWR)  # at once: the reader made by makefile() holds the socket
                    self.closed.set()
                    return
        except OSError:  # a client that refused our certificate, say: the test sees it on its side
            return
        finally:
            upstream.close()
            client.close()


def _jobs(n: int) -> list[Job]:
    return [Job(process_id="echo", process_version="1.0.0", inputs={"message": f"hi {i}"}) for i in range(n)]


def _via(job_store: JobStore, connection: BulkConnection) -> JobStore:
    """The same store, creating jobs over `connection`."""
    return JobStore(job_store.client, job_store.settings, bulk=connection)


def _through(relay: Relay, job_store: JobStore, max_retries: int = 2) -> JobStore:
    """The store, its bulk connection going through the relay."""
    return _via(job_store, BulkConnection(Endpoint.from_url(f"http://127.0.0.1:{relay.port}"), 10.0, max_retries))


def test_a_batch_is_stored_in_one_request_and_a_taken_id_is_refused(job_store: JobStore) -> None:
    jobs = _jobs(3)
    assert job_store.create(jobs) == [None, None, None]
    assert [job_store.get(job.id)["inputs"] for job in jobs] == [job.inputs for job in jobs]
    again = job_store.create([jobs[0], *_jobs(1)])
    assert isinstance(again[0], JobExists) and again[1] is None
    job_store.close()


def test_an_answer_lost_after_the_node_stored_the_jobs_is_not_a_conflict(job_store: JobStore, es_url: str) -> None:
    relay = Relay(es_url, lose=1)
    store = _through(relay, job_store)
    try:
        jobs = _jobs(4)
        assert store.create(jobs) == [None] * 4  # resent: 409s that are our own jobs
        assert relay.connections == 2
        assert all(job_store.get(job.id)["status"] == "submitted" for job in jobs)
        # a new request on the same connection still tells a taken id from a resend
        assert isinstance(store.create([jobs[0]])[0], JobExists)
    finally:
        store.close()
        relay.close()


def test_a_connection_the_node_closed_while_idle_is_opened_again_without_a_retry(
        job_store: JobStore, es_url: str) -> None:
    # as when the node restarts between two batches: with no retries allowed, a stale connection must not cost one
    relay = Relay(es_url, close_each=True)
    store = _through(relay, job_store, max_retries=0)
    try:
        for _ in range(3):
            relay.closed.clear()
            assert store.create(_jobs(2)) == [None, None]
            assert relay.closed.wait(10)
        assert relay.connections == 3
    finally:
        store.close()
        relay.close()


def test_first_callers_at_once_share_one_connection(es: Elasticsearch, settings: Settings, es_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    relay = Relay(es_url)
    store = JobStore(es, settings.model_copy(update={"es_url": f"http://127.0.0.1:{relay.port}"}))
    make = BulkConnection.from_settings

    def slow_make(cls: type[BulkConnection], s: Settings) -> BulkConnection:
        time.sleep(0.05)  # widens the window in which a second first caller would make its own connection
        return make(s)

    monkeypatch.setattr(BulkConnection, "from_settings", classmethod(slow_make))
    start = threading.Barrier(4)
    results: list[list[Exception | None]] = []

    def first_call() -> None:
        start.wait()
        results.append(store.create(_jobs(2)))

    threads = [threading.Thread(target=first_call) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert results == [[None, None]] * 4
        assert relay.connections == 1
    finally:
        store.close()
        relay.close()


def test_an_unreachable_node_fails_every_job_after_bounded_retries(job_store: JobStore) -> None:
    store = _via(job_store, BulkConnection(Endpoint.from_url(f"http://127.0.0.1:{free_port()}"), 2.0, 2))
    started = time.monotonic()
    results = store.create(_jobs(2))
    assert time.monotonic() - started < 5
    assert all(isinstance(r, StoreUnavailable) and "Connection refused" in str(r) for r in results)


def test_a_request_the_node_rejects_fails_at_once_with_its_answer(es_url: str) -> None:
    connection = BulkConnection(Endpoint.from_url(es_url), 10.0, 3)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"with 400: .*action") as caught:
        connection.bulk([{"not-an-action": {}}])
    assert time.monotonic() - started < 1, caught.value  # a 400 is not retried
    connection.close()


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1, and a client context that trusts only it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "node.crt", tmp_path / "node.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    return server, ssl.create_default_context(cafile=str(cert_file))


def test_https_with_percent_encoded_credentials_in_the_url(job_store: JobStore, es_url: str, tmp_path: Path) -> None:
    server_tls, client_tls = _self_signed(tmp_path)
    relay = Relay(es_url, tls=server_tls)
    endpoint = Endpoint.from_url(f"https://ad%40es:p%3Ass%2Fw@127.0.0.1:{relay.port}")
    trusting = _via(job_store, BulkConnection(endpoint, 10.0, 0, ssl_context=client_tls))
    # the client verifies the node: one it was not told to trust is refused
    untrusting = _via(job_store, BulkConnection(endpoint, 10.0, 0))
    try:
        jobs = _jobs(2)
        assert trusting.create(jobs) == [None, None]
        assert relay.heads[0]["authorization"] == "Basic " + base64.b64encode(b"ad@es:p:ss/w").decode()
        assert job_store.get(jobs[1].id)["id"] == jobs[1].id
        assert all("CERTIFICATE_VERIFY_FAILED" in str(r) for r in untrusting.create(_jobs(1)))
    finally:
        trusting.close()
        untrusting.close()
        relay.close()


@pytest.mark.parametrize(("url", "expected"), [
    ("http://127.0.0.1:9200", Endpoint(False, "127.0.0.1", 9200, "", None)),
    ("https://es.example.org/", Endpoint(True, "es.example.org", 443, "", None)),
    ("http://node:9200/proxy/es/", Endpoint(False, "node", 9200, "/proxy/es", None)),
    ("https://u:p@node:9243", Endpoint(True, "node", 9243, "", "Basic " + base64.b64encode(b"u:p").decode())),
])
def test_endpoint_from_url(url: str, expected: Any) -> None:
    assert Endpoint.from_url(url) == expected


def test_endpoint_refuses_what_is_not_an_http_url() -> None:
    with pytest.raises(ValueError, match="not an http"):
        Endpoint.from_url(f"ftp://{uuid.uuid4().hex}")
