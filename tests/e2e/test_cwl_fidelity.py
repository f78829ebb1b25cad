"""A package behaves through the server exactly as under bare `cwltool --no-container`: each case here runs one
tool or workflow both ways, with the same job order, and compares the output objects (every CWL field but where
the files lie), or that both fail. Through the server every File and Directory of the results must be a URL it
serves, whose bytes match the checksum and size the result states.

The cases are the gaps the CWL conformance suite found (our own tools, not the suite's): secondary files (listed
and found on disk), formats checked as cwltool checks them, File and Directory literals, Directory outputs with
their listing, Files inside records, an optional output a `cwl.output.json` leaves out, `cwl:requirements` in the
job order, a scattering workflow with an expression tool in a `$graph`, floats that reach a command line as their
author spelled them (`4.5e6` is `4500000` there, `2.50` stays `2.50`).
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from ades.config import Settings
from tests.e2e.conftest import LiveServer, serve_app
from tests.helpers import assert_problem, gate_folder

pytestmark = pytest.mark.integration

EDAM = "http://edamontology.org/"
FASTA, TEXT = EDAM + "format_1929", EDAM + "format_2330"
ASYNC = {"Prefer": "respond-async"}

SECONDARY = """
cwlVersion: v1.2
class: CommandLineTool
id: fid-secondary
inputs:
  ref: {type: File, secondaryFiles: [.fai], format: "http://edamontology.org/format_1929"}
baseCommand: [sh, -c, 'cp "$0" copy.fa && cp "$0.fai" copy.fa.fai && cat "$0.fai" > index.txt']
arguments: [$(inputs.ref.path)]
outputs:
  copy: {type: File, secondaryFiles: [.fai], format: "http://edamontology.org/format_1929",
         outputBinding: {glob: copy.fa}}
  index: {type: File, outputBinding: {glob: index.txt}}
"""

FORMATTED = """
cwlVersion: v1.2
class: CommandLineTool
id: fid-format
inputs:
  text: {type: File, format: "http://edamontology.org/format_2330"}
baseCommand: [cat]
arguments: [$(inputs.text.path)]
stdout: out.txt
outputs:
  out: {type: File, outputBinding: {glob: out.txt}}
"""

LISTING = """
cwlVersion: v1.2
class: CommandLineTool
id: fid-listing
requirements: {InlineJavascriptRequirement: {}}
inputs:
  dir: Directory
  note: File
baseCommand: [sh, -c, 'mkdir made && cp -r "$0"/. made/ && cd "$0" && find . -type f | sort && cat "$1"']
arguments: [$(inputs.dir.path), $(inputs.note.path)]
stdout: seen.txt
outputs:
  seen: {type: File, outputBinding: {glob: seen.txt}}
  made: {type: Directory, outputBinding: {glob: made}}
  record:
    type:
      type: record
      fields:
        first: {type: File, outputBinding: {glob: seen.txt}}
        count: {type: int, outputBinding: {glob: seen.txt, outputEval: "$(self[0].size)"}}
"""

OPTIONAL_OUTPUT = """
cwlVersion: v1.2
class: CommandLineTool
id: fid-optional
inputs: {}
baseCommand: [sh, -c, 'printf "{\\"said\\": \\"only this\\"}" > cwl.output.json']
outputs:
  said: string
  extra: File?
"""

LOADED = """
cwlVersion: v1.2
class: CommandLineTool
id: fid-loaded
requirements: {InlineJavascriptRequirement: {}}
inputs:
  text: {type: File, loadContents: true}
baseCommand: [echo]
arguments: [$(inputs.text.contents.trim().toUpperCase())]
stdout: upper.txt
outputs:
  upper: {type: File, outputBinding: {glob: upper.txt}}
"""

DEFAULTS = """
cwlVersion: v1.2
class: CommandLineTool
id: fid-defaults
inputs:
  rec:
    type: ["null", {type: record, fields: {name: string, doc: File}}]
    default: {name: x, doc: {class: File, path: "INPUTS/note.txt"}}
  ref:
    type: File
    secondaryFiles: [.fai]
    default: {class: File, location: "file://INPUTS/ref.fa"}
baseCommand: [sh, -c, 'cat "$0" "$1" "$1.fai"']
arguments: [$(inputs.rec.doc.path), $(inputs.ref.path)]
stdout: all.txt
outputs:
  all: {type: File, outputBinding: {glob: all.txt}}
"""

STAGED = """
cwlVersion: v1.2
class: CommandLineTool
id: fid-staged
requirements:
  InitialWorkDirRequirement:
    listing:
      - {class: File, location: "file://INPUTS/note.txt"}
      - {entryname: script.sh, entry: "cat note.txt > copy.txt", writable: true}
inputs: {}
baseCommand: [sh, script.sh]
outputs:
  copy: {type: File, outputBinding: {glob: copy.txt}}
"""

SECONDARY_BY_EXPRESSION = """
cwlVersion: v1.2
class: CommandLineTool
id: fid-secondary-expression
requirements: {InlineJavascriptRequirement: {}}
inputs: {}
baseCommand: [sh, -c, 'echo data > data.txt && echo index > data.idx']
outputs:
  data:
    type: File
    outputBinding: {glob: data.txt}
    secondaryFiles: |
      ${ return [{"class": "File", "path": self.path.replace(/txt$/, "idx"), "basename": "renamed.idx"}]; }
"""

IN_RECORDS = """
cwlVersion: v1.2
class: CommandLineTool
id: fid-records
requirements: {InlineJavascriptRequirement: {}}
inputs:
  pair:
    type:
      type: record
      fields:
        ref: {type: File, secondaryFiles: [.fai]}
  renamed:
    type: File
    secondaryFiles: '${ return [{"class": "File", "location": self.location + ".fai"}]; }'
baseCommand: [sh, -c, 'cat "$0.fai" "$1.fai"']
arguments: [$(inputs.pair.ref.path), $(inputs.renamed.path)]
stdout: both.txt
outputs:
  both: {type: File, outputBinding: {glob: both.txt}}
"""

SUBCLASS = """
cwlVersion: v1.2
class: CommandLineTool
id: fid-ontology
$namespaces: {ex: "http://example.com/formats#"}
$schemas: ["file://INPUTS/formats.ttl"]
inputs:
  text: {type: File, format: "ex:parent"}
baseCommand: [cat]
arguments: [$(inputs.text.path)]
stdout: out.txt
outputs:
  out: {type: File, format: $(inputs.text.format), outputBinding: {glob: out.txt}}
"""

UNICODE = """
cwlVersion: v1.2
class: CommandLineTool
id: fid-unicode
inputs:
  word: {type: string, default: "naïve"}
arguments: ["🕺", $(inputs.word), "日本"]
baseCommand: echo
stdout: out.txt
outputs:
  out: {type: File, outputBinding: {glob: out.txt}}
"""

IN_PLACE = """
cwlVersion: v1.2
$graph:
- class: CommandLineTool
  id: make
  inputs: {}
  baseCommand: [sh, -c, 'echo 1 > count.txt']
  outputs: {made: {type: File, outputBinding: {glob: count.txt}}}
- class: CommandLineTool
  id: bump
  requirements:
    InplaceUpdateRequirement: {inplaceUpdate: true}
    InitialWorkDirRequirement: {listing: [{entry: $(inputs.file), writable: true}]}
  inputs: {file: File}
  baseCommand: [sh, -c, 'echo 2 >> count.txt']
  outputs: {bumped: {type: File, outputBinding: {glob: count.txt}}}
- class: Workflow
  id: fid-in-place
  requirements: {InlineJavascriptRequirement: {}}
  inputs: {}
  steps:
    make: {run: "#make", in: {}, out: [made]}
    bump: {run: "#bump", in: {file: make/made}, out: [bumped]}
  outputs:
    result: {type: File, outputSource: bump/bumped}
"""

GREETING = """
cwlVersion: v1.2
class: CommandLineTool
id: fid-greeting
inputs: {}
baseCommand: [sh, -c, 'echo "$GREETING"']
stdout: greeting.txt
outputs:
  greeting: {type: File, outputBinding: {glob: greeting.txt, loadContents: true}}
"""

SCATTER = """
cwlVersion: v1.2
$graph:
- class: CommandLineTool
  id: shout
  inputs: {word: string}
  baseCommand: [sh, -c, 'echo "$0" | tr a-z A-Z']
  arguments: [$(inputs.word)]
  stdout: $(inputs.word).txt
  outputs: {loud: {type: File, outputBinding: {glob: "*.txt"}}}
- class: ExpressionTool
  id: sizes
  requirements: {InlineJavascriptRequirement: {}}
  inputs: {files: "File[]"}
  expression: '$({"total": inputs.files.reduce(function(n, f) { return n + f.size; }, 0)})'
  outputs: {total: int}
- class: Workflow
  id: fid-scatter
  requirements: {ScatterFeatureRequirement: {}}
  inputs: {words: "string[]"}
  steps:
    shout: {run: "#shout", scatter: word, in: {word: words}, out: [loud]}
    sizes: {run: "#sizes", in: {files: shout/loud}, out: [total]}
  outputs:
    loud: {type: "File[]", outputSource: shout/loud}
    total: {type: int, outputSource: sizes/total}
"""

FLOATS = """
cwlVersion: v1.2
class: CommandLineTool
id: fid-floats
inputs:
  small: {type: float, default: 0.000012, inputBinding: {position: 1}}
  big: {type: float, default: 4.5e6, inputBinding: {position: 2}}
  trailing: {type: float, default: 2.50, inputBinding: {position: 3}}
  given: {type: float, inputBinding: {position: 4}}
  many: {type: "float[]", inputBinding: {position: 5}}
baseCommand: [echo, -n]
stdout: floats.txt
outputs:
  said: {type: string, outputBinding: {glob: floats.txt, loadContents: true, outputEval: "$(self[0].contents)"}}
"""
FLOATS_ORDER = '{"given": 7.7e4, "many": [1e2, 3.0E-2, 10.50, 1e-05]}'
"""The job order as text: its floats are spelled as no Python float would write them."""


@pytest.fixture(scope="module")
def inputs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = gate_folder(tmp_path_factory.mktemp("fidelity"))
    (folder / "ref.fa").write_text(">one\nACGT\n")
    (folder / "ref.fa.fai").write_text("one\t4\t5\t4\t5\n")
    (folder / "note.txt").write_text("a note\n")
    (folder / "formats.ttl").write_text("@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .\n"
                                        "<http://example.com/formats#child> rdfs:subClassOf "
                                        "<http://example.com/formats#parent> .\n")
    (folder / "tree" / "deeper").mkdir(parents=True)
    (folder / "tree" / "one.txt").write_text("one\n")
    (folder / "tree" / "deeper" / "two.txt").write_text("two\n")
    return folder


@pytest.fixture(scope="module")
def web(inputs_dir: Path) -> Iterator[str]:
    """The input files served over http on 127.0.0.1, as a data server would."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(inputs_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.fixture(scope="module")
def live(es_url: str, inputs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = Settings(es_url=es_url, index_prefix=f"e2e-{uuid.uuid4().hex[:10]}-", event_sink="direct",
                        data_dir=tmp_path_factory.mktemp("fidelity-server") / "data", input_roots=[inputs_dir],
                        fetch_allow=["127.0.0.1"])
    yield from serve_app(settings, file_roots=[inputs_dir])


def bare(tool: str, order: dict[str, Any] | str, tmp: Path) -> dict[str, Any] | None:
    """What bare cwltool prints for `tool` run on `order` (JSON text, or a value to write as JSON; None: it
    failed)."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "tool.cwl").write_text(tool, encoding="utf-8")
    # not ASCII-escaped: cwltool reads a job file as YAML, which splits an escaped surrogate pair
    text = order if isinstance(order, str) else json.dumps(order, ensure_ascii=False)
    (tmp / "job.json").write_text(text, encoding="utf-8")
    # the console script: `python -m cwltool` exits 0 whatever happened
    cwltool = str(Path(sys.executable).with_name("cwltool"))
    doc = yaml.safe_load(tool)
    fragment = f"#{_main(doc)['id']}" if "$graph" in doc else ""
    done = subprocess.run([cwltool, "--no-container", "--quiet", "--outdir", str(tmp / "out"),
                           f"{tmp / 'tool.cwl'}{fragment}", str(tmp / "job.json")],
                          capture_output=True, text=True, timeout=300)
    return json.loads(done.stdout) if done.returncode == 0 else None


def through_server(live: LiveServer, tool: str, order: dict[str, Any] | str) -> dict[str, Any] | None:
    """The CWL output object the server's results give for `tool` run on `order` (None: the job failed); every
    file in it is fetched and must match its checksum and size."""
    process = _main(yaml.safe_load(tool))["id"]
    deployed = live.post("/processes", data=tool, headers={"Content-Type": "application/cwl+yaml"})
    assert deployed.status_code in (201, 409), deployed.text
    text = order if isinstance(order, str) else json.dumps(order)
    submitted = live.post(f"/processes/{process}/execution", data=f'{{"inputs": {text}}}',
                          headers={**ASYNC, "Content-Type": "application/json"})
    assert submitted.status_code == 201, submitted.text
    info = live.wait_status(submitted.json()["jobID"])
    if info["status"] != "successful":
        print(live.get(f"/jobs/{info['jobID']}/logs").text)  # shown when the comparison fails
        return None
    results = live.get(f"/jobs/{info['jobID']}/results").json()
    cwl = {name: _cwl_value(entry) for name, entry in results.items()}
    _fetch_every_file(live, cwl)
    return cwl


def _main(doc: dict[str, Any]) -> dict[str, Any]:
    """The process a document runs: its Workflow when it is a `$graph`."""
    return next(m for m in doc["$graph"] if m["class"] == "Workflow") if "$graph" in doc else doc


def _cwl_value(entry: Any) -> Any:
    if isinstance(entry, list):
        return [_cwl_value(e) for e in entry]
    if isinstance(entry, dict) and "class" in entry and "href" in entry:
        return {k: v for k, v in entry.items() if k not in ("href", "type")}
    return entry["value"] if isinstance(entry, dict) and "value" in entry else entry


def _fetch_every_file(live: LiveServer, value: Any) -> None:
    if isinstance(value, list):
        for item in value:
            _fetch_every_file(live, item)
    elif isinstance(value, dict):
        if value.get("class") == "File":
            assert value["location"].startswith(live.url + "/jobs/"), value
            body = requests.get(value["location"], timeout=30).content
            assert f"sha1${hashlib.sha1(body).hexdigest()}" == value["checksum"] and len(body) == value["size"]
        for item in value.values():
            _fetch_every_file(live, item)


def normal(value: Any) -> Any:
    """An output object without where its files lie; lists of files in name order."""
    if isinstance(value, list):
        items = [normal(v) for v in value]
        return sorted(items, key=json.dumps) if all(isinstance(v, dict) and "class" in v for v in value) else items
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items() if k not in ("location", "path", "dirname")}
    return value


def file(path: Path, **extra: Any) -> dict[str, Any]:
    return {"class": "File", "location": path.as_uri(), **extra}


def cases(inputs: Path) -> dict[str, tuple[str, dict[str, Any] | str]]:
    literal_dir = {"class": "Directory", "basename": "made-up",
                   "listing": [{"class": "File", "basename": "a.txt", "contents": "A\n"},
                               {"class": "Directory", "basename": "sub",
                                "listing": [{"class": "File", "basename": "b.txt", "contents": "B\n"}]}]}
    return {
        "secondary files found on disk": (SECONDARY, {"ref": file(inputs / "ref.fa", format=FASTA)}),
        "secondary files listed": (SECONDARY, {"ref": file(inputs / "ref.fa", format=FASTA,
                                                           secondaryFiles=[file(inputs / "ref.fa.fai")])}),
        "a wrong format fails": (FORMATTED, {"text": file(inputs / "note.txt", format=FASTA)}),
        "a right format passes": (FORMATTED, {"text": file(inputs / "note.txt", format=TEXT)}),
        "a format that is a subclass, by the package's $schemas": (SUBCLASS.replace("INPUTS", str(inputs)), {
            "text": file(inputs / "note.txt", format="http://example.com/formats#child")}),
        "literals and a directory output": (LISTING, {
            "dir": literal_dir, "note": {"class": "File", "basename": "note.txt", "contents": "literal note\n"}}),
        "a directory input by location": (LISTING, {"dir": {"class": "Directory",
                                                            "location": (inputs / "tree").as_uri()},
                                                    "note": file(inputs / "note.txt")}),
        "an optional output left out": (OPTIONAL_OUTPUT, {}),
        "characters outside the BMP in arguments and inputs": (UNICODE, {"word": "🛰️ über"}),
        "defaults: a File by path in a record, a File with secondary files": (
            DEFAULTS.replace("INPUTS", str(inputs)), {}),
        "InitialWorkDir: a file named by the package, a writable script": (STAGED.replace("INPUTS", str(inputs)), {}),
        "an output's secondaryFiles by an expression": (SECONDARY_BY_EXPRESSION, {}),
        "a step's output updated in place by the next": (IN_PLACE, {}),
        "secondary files of a record field and by an expression": (IN_RECORDS, {
            "pair": {"ref": file(inputs / "ref.fa")}, "renamed": file(inputs / "ref.fa")}),
        "cwl:requirements": (GREETING, {"cwl:requirements": [{"class": "EnvVarRequirement",
                                                              "envDef": [{"envName": "GREETING",
                                                                          "envValue": "hello from the job order"}]}]}),
        "scatter, expression tool, $graph": (SCATTER, {"words": ["alpha", "beta", "gamma"]}),
        "floats on the command line as spelled, in the package and the job order": (FLOATS, FLOATS_ORDER),
    }


@pytest.fixture(scope="module")
def bare_runs(inputs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[Any]]]:
    """Every case under bare cwltool, started at once in the background (each is a cwltool start of a second or
    two), while the server runs the cases one by one."""
    root = tmp_path_factory.mktemp("bare")
    with ThreadPoolExecutor(max_workers=3) as pool:
        yield {name: pool.submit(bare, tool, order, root / f"case-{i}")
               for i, (name, (tool, order)) in enumerate(cases(inputs_dir).items())}


@pytest.mark.parametrize("case", list(cases(Path("/"))))
def test_the_server_gives_what_bare_cwltool_gives(live: LiveServer, inputs_dir: Path,
                                                   bare_runs: dict[str, Future[Any]], case: str) -> None:
    tool, order = cases(inputs_dir)[case]
    got = through_server(live, tool, order)
    expected = bare_runs[case].result(timeout=300)
    assert (got is None) == (expected is None), f"bare cwltool gave {expected}, the server {got}"
    if expected is not None:
        assert normal(got) == normal(expected)


def test_requirements_that_widen_a_job_are_refused_by_name(live: LiveServer) -> None:
    assert live.post("/processes", data=GREETING, headers={"Content-Type": "application/cwl+yaml"}).status_code in (
        201, 409)
    asked = [{"class": "DockerRequirement", "dockerPull": "alpine"}, {"class": "NetworkAccess", "networkAccess": True},
             {"class": "EnvVarRequirement", "envDef": [{"envName": "A", "envValue": "b"}]}]
    before = live.get("/jobs", params={"processID": "fid-greeting"}).json()["numberMatched"]
    response = live.post("/processes/fid-greeting/execution", headers=ASYNC,
                         json={"inputs": {"cwl:requirements": asked}})
    # the type cwl-runners turn into cwltool's exit 33 ("unsupported feature")
    detail = assert_problem(response, 400, "unsupported-requirement")["detail"]
    assert "DockerRequirement" in detail and "NetworkAccess" in detail and "EnvVarRequirement" not in detail.split(
        "Allowed")[0]
    assert live.get("/jobs", params={"processID": "fid-greeting"}).json()["numberMatched"] == before


def test_an_http_input_is_fetched_before_its_contents_are_loaded(live: LiveServer, web: str) -> None:
    """Where the server does better than cwltool alone: cwltool reads `loadContents` of an http File as a local path
    (FileNotFoundError on the URL); the server fetches every http input into the job's folder first."""
    got = through_server(live, LOADED, {"text": {"class": "File", "location": f"{web}/note.txt"}})
    assert got is not None
    assert requests.get(got["upper"]["location"], timeout=30).text == "A NOTE\n"


BUMP = """
cwlVersion: v1.2
class: CommandLineTool
id: fid-bump
requirements:
  InplaceUpdateRequirement: {inplaceUpdate: true}
  InitialWorkDirRequirement: {listing: [{entry: $(inputs.file), writable: true}]}
inputs: {file: File}
baseCommand: [sh, -c, 'echo changed >> "$0"']
arguments: [$(inputs.file.basename)]
outputs: {bumped: {type: File, outputBinding: {glob: $(inputs.file.basename)}}}
"""


def test_a_host_file_is_never_updated_in_place(live: LiveServer, inputs_dir: Path) -> None:
    """A policy where the server differs from cwltool alone: InplaceUpdateRequirement changes only what the job's
    own steps made; an input from the host's input roots stays read-only (the tool fails writing it)."""
    target = inputs_dir / "keep.txt"
    target.write_text("as it was\n")
    got = through_server(live, BUMP, {"file": file(target)})
    assert got is None
    assert target.read_text() == "as it was\n"
