"""`ades-cwl-runner`: run a CWL tool or workflow on an ades server as `cwltool` runs it on this machine.

    ADES_URL=http://127.0.0.1:5000 ades-cwl-runner [--outdir D] [--quiet] TOOL[#id] [JOB]

TOOL is packed as `cwltool --pack` packs it (the files its steps run, its imports, its File defaults resolved to
absolute URIs), deployed under a fresh process id (so runs side by side never collide) and executed with JOB's
inputs: a File or Directory given by a relative `location` or `path` becomes an absolute file:// URI, resolved
against JOB's folder, which the server reads only inside its input roots (ADES_INPUT_ROOTS); File literals
(`contents`), Directory literals (`listing`) and every other field go as written. When the job has ended, every File
and Directory of its results is downloaded into --outdir and the CWL output object is printed on stdout, each
`location` and `path` naming the local copy, as cwltool prints it. The process is undeployed afterwards.

The command line is cwltool's, as `cwltest --tool ades-cwl-runner` calls it; cwltool options without a meaning
here are accepted and ignored. Exit codes: 0 the outputs were printed; 1 the job failed or the server refused (its
reason on stderr); 33 the server refused a requirement it does not support (cwltest's "unsupported feature");
2 usage; 130 stopped by SIGTERM or Ctrl-C (the job is dismissed and the process undeployed first).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import uuid
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit
from urllib.request import url2pathname

from ades import floats
from ades.client import DEFAULT_URL, ApiError, Client
from ades.cwl_runner_files import OutputFetcher, RunnerError, job_inputs, results_to_outputs

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNSUPPORTED = 33
EXIT_STOPPED = 130
UNSUPPORTED = re.compile(r"unsupported[-_ ]requirement", re.IGNORECASE)
"""How the server says it refuses a requirement it does not support (in the exception's type, title or detail)."""
MAIN = "#main"
CWL_JSON = "application/cwl+json"
OGC_PACKAGE = "application/ogcapppkg+json"

IGNORED_FLAGS = ("--debug", "--verbose", "--no-container", "--disable-pull", "--enable-dev", "--strict",
                 "--non-strict", "--leave-tmpdir", "--leave-outputs", "--move-outputs", "--copy-outputs",
                 "--relax-path-checks", "--parallel", "--no-compute-checksum", "--compute-checksum",
                 "--enable-ext", "--no-doc-cache", "--disable-color")
"""cwltool options that change nothing about a run on a server (a runner of `cwltest` may pass them)."""
IGNORED_VALUE_OPTIONS = ("--basedir", "--tmpdir-prefix", "--tmp-outdir-prefix", "--cachedir", "--timeout",
                         "--default-container", "--user-space-docker-cmd", "--singularity", "--podman")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ades-cwl-runner",
        description="Run a CWL tool or workflow on an ades server as cwltool runs it here: deploy, execute with the "
                    "job order's inputs, wait, download the outputs into --outdir, print the CWL output object.",
        epilog="The server: --url, else env ADES_URL, else " + DEFAULT_URL + "; a bearer token: --token, else env "
               "ADES_TOKEN. Exit codes: 0 ok, 1 the job failed or the server refused, 2 usage, 33 a requirement the "
               "server does not support, 130 stopped (SIGTERM, Ctrl-C: the job is dismissed, the process undeployed).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tool", help="the CWL file (`file.cwl#id` picks a process of a $graph)")
    p.add_argument("job", nargs="?", help="the job order: the inputs, as YAML or JSON (none: no inputs)")
    p.add_argument("--outdir", default=".", help="where the output files go (default: the current folder)")
    p.add_argument("--quiet", action="store_true", help="print nothing but the output object and errors")
    p.add_argument("--url", default=None, help=f"the ades server (default: env ADES_URL, else {DEFAULT_URL})")
    p.add_argument("--token", default=None, help="bearer token sent as Authorization (default: env ADES_TOKEN)")
    p.add_argument("--keep", action="store_true", help="leave the process deployed (it is undeployed by default)")
    for flag in IGNORED_FLAGS:
        p.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    for option in IGNORED_VALUE_OPTIONS:
        p.add_argument(option, default=None, help=argparse.SUPPRESS)
    return p


# --- the package -------------------------------------------------------------------------------------------------
def tool_uri(tool: str) -> str:
    """An absolute URI of TOOL (a path, possibly with `#fragment`, or a URL)."""
    if "://" in tool:
        return tool
    path, _, fragment = ("", "", "") if os.path.exists(tool) else tool.partition("#")
    path = path or tool
    return Path(os.path.abspath(path)).as_uri() + (f"#{fragment}" if fragment else "")


def local_path(reference: str, fragment: bool = False) -> Path:
    """The file a command-line reference names: a path, or a file:// URI (cwltest passes either); `fragment`: a
    `#id` may follow."""
    if fragment and not os.path.exists(reference):
        reference = reference.partition("#")[0]
    if reference.startswith("file://"):
        return Path(url2pathname(urlsplit(reference).path))
    return Path(reference)


def pack(tool: str) -> dict[str, Any]:
    """TOOL as one document, as `cwltool --pack` prints it: the chosen process is `#main`. Raises RunnerError with
    cwltool's reason when cwltool cannot load it."""
    from cwltool.context import LoadingContext
    from cwltool.errors import WorkflowException
    from cwltool.load_tool import fetch_document, resolve_and_validate_document
    from cwltool.pack import pack as cwl_pack
    from schema_salad.exceptions import ValidationException

    try:
        context, document, uri = fetch_document(tool_uri(tool), LoadingContext())
        context, uri = resolve_and_validate_document(context, document, uri)
        packed = floats.plain(cwl_pack(context, uri), default=str)
        if parameter_imported(packed):
            # cwltool's pack replaces an object whose id it has met before by an $import of it; a tool with an
            # input and an output of the same name then loses the output's definition. Packed again without that
            # folding, each parameter keeps its own.
            with mock.patch("cwltool.pack.import_embed", lambda *args, **kwargs: None):
                packed = floats.plain(cwl_pack(context, uri), default=str)
    except (ValidationException, WorkflowException, OSError, ValueError, KeyError, TypeError) as err:
        raise RunnerError(f"cwltool cannot load {tool}: {err}") from err
    graph = packed.get("$graph")
    if isinstance(graph, list) and len(graph) == 1:
        # one process: the document itself, as `cwltool --pack` prints it
        single = {key: value for key, value in packed.items() if key != "$graph"}
        return {**single, **graph[0]}
    return packed


def parameter_imported(packed: dict[str, Any]) -> bool:
    """Whether an input or output of a packed process is an `$import` of another object."""
    processes = packed.get("$graph") if isinstance(packed.get("$graph"), list) else [packed]
    return any(isinstance(item, dict) and "$import" in item
               for process in processes if isinstance(process, dict)
               for field in ("inputs", "outputs") if isinstance(process.get(field), list)
               for item in process[field])


def renamed(node: Any, process_id: str) -> Any:
    """`node` with the packed main process `#main` (and every id under it) renamed `#<process_id>`."""
    if isinstance(node, str):
        if node == MAIN or node.startswith(MAIN + "/"):
            return f"#{process_id}{node[len(MAIN):]}"
        return node
    if isinstance(node, list):
        return [renamed(item, process_id) for item in node]
    if isinstance(node, dict):
        return {renamed(key, process_id): renamed(value, process_id) for key, value in node.items()}
    return node


def raw_document(tool: str, process_id: str) -> dict[str, Any]:
    """TOOL as written, its id replaced, for a server to judge when cwltool here could not pack it."""
    from ruamel.yaml import YAML

    path = local_path(tool, fragment=True)
    try:
        doc = YAML(typ="safe", pure=True).load(Path(path).read_text(encoding="utf-8"))
    except Exception as err:  # any YAML error: the document is unreadable, there is nothing to send
        raise RunnerError(f"cannot read {path}: {err}") from err
    if not isinstance(doc, dict):
        raise RunnerError(f"{path} is not a CWL document (a YAML or JSON object)")
    if "$graph" not in doc:
        doc["id"] = process_id
    return doc


def declared(doc: dict[str, Any], process_id: str, field: str = "inputs") -> set[str] | None:
    """The names of the inputs (or outputs) of the process `process_id` in a packed document (None when they cannot
    be told)."""
    graph = doc.get("$graph")
    main = next((p for p in graph if isinstance(p, dict) and p.get("id") == f"#{process_id}"), None) \
        if isinstance(graph, list) else doc
    inputs = main.get(field) if isinstance(main, dict) else None
    if isinstance(inputs, dict):
        return {str(name).rsplit("/", 1)[-1].lstrip("#") for name in inputs}
    if isinstance(inputs, list):
        return {str(p.get("id", "")).rsplit("/", 1)[-1].lstrip("#") for p in inputs if isinstance(p, dict)}
    return None


def deploy_request(doc: dict[str, Any], process_id: str) -> tuple[bytes, str]:
    """The body and media type that deploy `doc` as `process_id`: the CWL itself, or (when its $graph holds several
    Workflows, which the server cannot choose between) an OGC application package that names the process."""
    graph = doc.get("$graph")
    workflows = [p for p in graph if isinstance(p, dict) and p.get("class") == "Workflow"] if graph else []
    if len(workflows) > 1:
        body = {"processDescription": {"id": process_id},
                "executionUnit": {"value": doc, "mediaType": CWL_JSON}}
        return floats.dumps(body).encode(), OGC_PACKAGE
    return floats.dumps(doc).encode(), CWL_JSON


# --- one run -----------------------------------------------------------------------------------------------------
class Runner:
    def __init__(self, client: Client, outdir: Path, quiet: bool) -> None:
        self.client = client
        self.outdir = outdir
        self.quiet = quiet
        self.inputs: set[str] | None = None
        self.outputs: set[str] | None = None

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr)

    def prepare(self, tool: str, process_id: str) -> dict[str, Any]:
        """TOOL as it will be deployed as `process_id`. Remembers the names of its inputs and outputs if known."""
        try:
            doc = renamed(pack(tool), process_id)
        except RunnerError as err:
            self.say(f"{err}; sending it as written")
            return raw_document(tool, process_id)
        self.inputs, self.outputs = declared(doc, process_id), declared(doc, process_id, "outputs")
        return doc

    def deploy(self, tool: str, doc: dict[str, Any], process_id: str) -> str:
        body, media = deploy_request(doc, process_id)
        summary = self.client.request("POST", "/processes", data=body, headers={"Content-Type": media}).json()
        deployed = str(summary.get("processSummary", {}).get("id") or process_id)
        self.say(f"deployed {tool} as {deployed}")
        return deployed

    def run(self, tool: str, job: str | None, keep: bool) -> dict[str, Any]:
        process_id = f"cwlrun-{uuid.uuid4().hex[:12]}"
        doc = self.prepare(tool, process_id)
        # as cwltool reads a job order: `format` prefixes may be the tool's own namespaces
        namespaces = doc.get("$namespaces") if isinstance(doc.get("$namespaces"), dict) else {}
        inputs = job_inputs(local_path(job), namespaces) if job else {}
        process_id = self.deploy(tool, doc, process_id)
        if self.inputs is not None:
            # cwltool ignores what a job order holds beyond the process's inputs; an execute request may not
            # (namespaced keys such as cwl:requirements go: they are the server's to judge)
            extra = sorted(name for name in inputs if name not in self.inputs and ":" not in name)
            if extra:
                self.say(f"not inputs of the process, left out as cwltool ignores them: {', '.join(extra)}")
            inputs = {name: value for name, value in inputs.items() if name not in extra}
        try:
            return self.execute(process_id, inputs)
        finally:
            if not keep:
                try:
                    self.client.undeploy(process_id)
                except (ApiError, OSError) as err:
                    self.say(f"could not undeploy {process_id}: {err}")

    def execute(self, process_id: str, inputs: dict[str, Any]) -> dict[str, Any]:
        job = self.client.execute(process_id, inputs)
        self.say(f"job {job.id} {job.info.get('status')}")
        try:
            status = job.wait(poll=0.5)
        except BaseException:  # stopped (SIGTERM, Ctrl-C, a cwltest timeout): the job goes with us
            try:
                job.dismiss()
            except (ApiError, OSError) as err:
                self.say(f"could not dismiss job {job.id}: {err}")
            raise
        if status != "successful":
            message = job.info.get("message") or ""
            log = job.logs().strip()
            raise RunnerError(f"job {job.id} {status}: {message}" + (f"\n--- job log ---\n{log}" if log else ""))
        document = job.results()
        base = f"{self.client.url}/jobs/{job.id}/results"
        outputs = results_to_outputs(document)
        # an optional output the job did not produce may be left out of the results; cwltool prints it as null
        outputs |= {name: None for name in sorted(self.outputs or ()) if name not in outputs}
        return OutputFetcher(self.client, self.outdir, base).fetch_all(outputs)


def exit_code(err: ApiError) -> int:
    said = " ".join((err.type, err.title, err.detail))
    return EXIT_UNSUPPORTED if err.status < 500 and UNSUPPORTED.search(said) else EXIT_FAILED


def stopped(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # cwltest ends a test that runs too long with SIGTERM: dismiss the job and undeploy on the way out
    signal.signal(signal.SIGTERM, stopped)
    url = args.url or os.environ.get("ADES_URL") or DEFAULT_URL
    client = Client(url, token=args.token or os.environ.get("ADES_TOKEN") or None, timeout=120)
    outdir = Path(args.outdir).resolve()
    runner = Runner(client, outdir, args.quiet)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        outputs = runner.run(args.tool, args.job, args.keep)
    except ApiError as err:
        print(f"ades-cwl-runner: {err}" + (f" ({err.url})" if err.url else ""), file=sys.stderr)
        return exit_code(err)
    except (RunnerError, OSError) as err:
        print(f"ades-cwl-runner: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("ades-cwl-runner: stopped; the job was dismissed and the process undeployed", file=sys.stderr)
        return EXIT_STOPPED
    print(json.dumps(outputs, indent=4))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
