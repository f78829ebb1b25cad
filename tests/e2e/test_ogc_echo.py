"""The built-in `echo` has what OGC clients (and the OGC test suite) look for in an echo process: an array, a
bounding box and a value of mixed type, as inputs and as outputs, described the OGC way, and echoed back."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import LiveServer

pytestmark = pytest.mark.integration


def test_echo_has_array_bounding_box_and_mixed_inputs_and_outputs(live: LiveServer) -> None:
    echo = live.get("/processes/echo").json()
    inputs, outputs = echo["inputs"], echo["outputs"]
    assert inputs["numbers"]["schema"]["type"] == "array" and inputs["numbers"]["maxOccurs"] == "unbounded"
    for described in (inputs["area"], outputs["area_echo"]):
        # OGC's bounding-box form: no top-level type, `format: ogc-bbox` under allOf
        assert "type" not in described["schema"]
        assert all(member["format"] == "ogc-bbox" for member in described["schema"]["allOf"])
    for described in (inputs["choice"], outputs["choice_echo"]):
        assert [member["type"] for member in described["schema"]["oneOf"]] == ["string", "integer"]
    assert all(inputs[name]["minOccurs"] == 0 for name in ("numbers", "area", "choice", "pause"))

    box = {"bbox": [51.9, 7, 52, 7.1], "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}
    inputs = {"message": "all", "numbers": [1, 2, 3], "area": box, "choice": "text"}
    answer = live.post("/processes/echo/execution", json={"inputs": inputs})
    assert answer.status_code == 200, answer.text
    results = answer.json()
    assert results["numbers_echo"] == {"value": [1, 2, 3]}
    assert results["area_echo"] == {"value": box}
    assert results["choice_echo"] == {"value": "text"}
    number = live.post("/processes/echo/execution", json={"inputs": {"message": "n", "choice": 9}})
    assert number.json()["choice_echo"] == {"value": 9}
