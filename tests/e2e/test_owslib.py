"""OWSLib, a client GIS people already use, against the live server: list, describe and execute `echo`."""

from __future__ import annotations

import pytest
from owslib.ogcapi.processes import Processes

from tests.e2e.conftest import LiveServer

pytestmark = pytest.mark.integration


def test_owslib_lists_describes_and_executes_echo(live: LiveServer):
    client = Processes(live.url)
    ids = [p["id"] for p in client.processes()]
    assert "echo" in ids
    echo = client.process("echo")
    assert echo["id"] == "echo"
    assert "message" in echo["inputs"] and "out" in echo["outputs"]
    result = client.execute("echo", inputs={"message": "hello owslib"})
    href = result["out"]["href"] if isinstance(result.get("out"), dict) else None
    assert href, result
    assert live.http.get(href, timeout=30).text == "hello owslib\n"
