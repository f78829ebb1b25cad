"""Loading application packages with cwltool: media types, $graph selection, metadata, rejection messages."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from ades.cwl import PackageError, load_package

EXAMPLES = Path(__file__).resolve().parents[2] / "cwl" / "examples"

TOOL = textwrap.dedent(
    """\
    cwlVersion: v1.2
    class: CommandLineTool
    id: hello
    label: Hello
    doc: Says hello.
    baseCommand: echo
    inputs:
      name: {type: string, inputBinding: {position: 1}}
    outputs:
      out: stdout
    """
)

GRAPH_TWO_WORKFLOWS = {
    "cwlVersion": "v1.2",
    "$graph": [
        {
            "class": "Workflow",
            "id": wid,
            "inputs": {"x": "string"},
            "outputs": {"o": {"type": "File", "outputSource": "s/out"}},
            "steps": {"s": {"run": "#tool", "in": {"x": "x"}, "out": ["out"]}},
        }
        for wid in ("first", "second")
    ]
    + [
        {
            "class": "CommandLineTool",
            "id": "tool",
            "baseCommand": "echo",
            "inputs": {"x": {"type": "string", "inputBinding": {}}},
            "outputs": {"out": "stdout"},
        }
    ],
}


def test_single_tool_yaml():
    package = load_package(TOOL, "application/cwl+yaml")
    assert package.id == "hello"
    assert package.version == "1.0.0"  # no s:softwareVersion
    assert package.title == "Hello" and package.description == "Says hello."
    assert list(package.inputs) == ["name"] and package.inputs["name"].type == "string"
    assert package.outputs["out"].type == "File"
    assert package.main_ref is None and package.process_class == "CommandLineTool"


def test_json_text_and_dict_give_the_same_package():
    from ades.cwl.package import parse_cwl_text

    doc = parse_cwl_text(TOOL)
    from_json = load_package(json.dumps(doc), "application/cwl+json")
    from_dict = load_package(doc, "application/cwl")
    assert from_json.model_dump() == from_dict.model_dump()


def test_graph_package_takes_the_workflow_id_version_and_keywords():
    package = load_package((EXAMPLES / "two-step" / "two-step.cwl").read_text(), "application/cwl")
    assert package.id == "two-step"
    assert package.version == "1.2.0"
    assert package.keywords == ["example", "text"]
    assert package.title == "Shout"
    assert package.main_ref == "two-step" and package.process_class == "Workflow"
    assert list(package.outputs) == ["shouted"]


def test_several_workflows_need_a_choice():
    with pytest.raises(PackageError, match=r"several Workflows.*'first', 'second'"):
        load_package(GRAPH_TWO_WORKFLOWS, "application/cwl")
    assert load_package(GRAPH_TWO_WORKFLOWS, "application/cwl", workflow_id="second").id == "second"
    with pytest.raises(PackageError, match=r"no process 'third'.*'first', 'second', 'tool'"):
        load_package(GRAPH_TWO_WORKFLOWS, "application/cwl", workflow_id="third")


def test_missing_id_is_refused():
    with pytest.raises(PackageError, match="the CWL needs an id"):
        load_package(TOOL.replace("id: hello\n", ""), "application/cwl")


def test_software_version_with_any_schema_org_prefix():
    text = TOOL + "$namespaces: {schema: 'https://schema.org/'}\nschema:softwareVersion: '2.3'\n"
    assert load_package(text, "application/cwl").version == "2.3"


def test_cwltool_rejection_carries_its_message_without_temp_paths():
    with pytest.raises(PackageError) as err:
        load_package(TOOL.replace("type: string", "type: strin"), "application/cwl")
    message = str(err.value)
    assert "cwltool rejected the CWL" in message and "strin" in message
    assert "package.cwl" in message and "/tmp/" not in message


def test_yaml_syntax_error():
    with pytest.raises(PackageError, match="not valid YAML"):
        load_package("cwlVersion: v1.2\nclass: [", "application/cwl")


def test_unsupported_media_type():
    with pytest.raises(PackageError, match="unsupported media type"):
        load_package(TOOL, "text/plain")


def test_ogc_package_inline_value_and_plain_cwl_object():
    inline = {"processDescription": {"id": "hello"}, "executionUnit": {"value": TOOL, "mediaType": "application/cwl"}}
    assert load_package(json.dumps(inline), "application/ogcapppkg+json").id == "hello"
    from ades.cwl.package import parse_cwl_text

    as_object = {"executionUnit": parse_cwl_text(TOOL)}
    assert load_package(as_object, "application/ogcapppkg+json").id == "hello"


def test_ogc_package_file_href_inside_and_outside_the_roots(tmp_path):
    href = {"executionUnit": {"href": (EXAMPLES / "echo.cwl").as_uri(), "type": "application/cwl"}}
    package = load_package(href, "application/ogcapppkg+json", allowed_roots=[EXAMPLES])
    assert package.id == "echo" and package.keywords == ["test", "echo"]
    with pytest.raises(PackageError, match="outside the directories"):
        load_package(href, "application/ogcapppkg+json", allowed_roots=[tmp_path])
    sneaky = {"executionUnit": {"href": f"file://{tmp_path}/../{tmp_path.name}/../../etc/passwd"}}
    with pytest.raises(PackageError, match="outside the directories"):
        load_package(sneaky, "application/ogcapppkg+json", allowed_roots=[tmp_path])


def test_file_href_with_relative_run_is_packed():
    href = {"executionUnit": {"href": (EXAMPLES / "progress" / "progress.cwl").as_uri()}}
    package = load_package(href, "application/ogcapppkg+json", allowed_roots=[EXAMPLES.parent])
    assert package.id == "progress"
    assert "$graph" in package.cwl and package.main_ref == "main"
    assert "ades_job_id" in package.inputs  # kept: the author's update-job step uses it


def test_other_href_schemes_are_refused():
    with pytest.raises(PackageError, match="only file://"):
        load_package({"executionUnit": {"href": "ftp://127.0.0.1/x.cwl"}}, "application/ogcapppkg+json")


def test_http_href_is_fetched_from_allowed_addresses_only(tmp_path):
    import http.server
    import threading

    from ades.fetch import Fetcher, FetchPolicy

    (tmp_path / "hello.cwl").write_text(TOOL)
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    allowing = Fetcher(FetchPolicy(allow=["127.0.0.1/32"]))  # the test server plays a public host
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hello.cwl"
        unit = {"executionUnit": {"href": url}}
        assert load_package(unit, "application/ogcapppkg+json", fetcher=allowing).id == "hello"
        with pytest.raises(PackageError, match=r"cannot fetch.*404"):
            load_package({"executionUnit": {"href": url + ".missing"}}, "application/ogcapppkg+json",
                         fetcher=allowing)
        with pytest.raises(PackageError, match=r"127.0.0.1 is a loopback address"):
            load_package(unit, "application/ogcapppkg+json")  # the default policy
    finally:
        server.shutdown()


def test_remote_schemas_are_not_fetched():
    import time

    text = TOOL + "$schemas: ['http://schema.org/version/9.0/schemaorg-current-http.rdf']\n"
    started = time.perf_counter()
    assert load_package(text, "application/cwl").id == "hello"
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("name", ["echo.cwl", "failing/failing.cwl", "sleep/sleep.cwl"])
def test_examples_load(name):
    assert load_package((EXAMPLES / name).read_text(), "application/cwl").id
