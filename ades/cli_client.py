"""The `ades` commands that talk to a server over HTTP, built on ades.client:

    ades deploy FILE…                                   deploy CWL application packages
    ades processes                                      list deployed processes
    ades execute PROCESS -i name=value … [--label L] [--batch ITEMS.jsonl] [--wait]
    ades jobs list [--label L] [--status S] [--process P] [--limit N]
    ades jobs status|wait|logs [--follow]|results [--download DIR]|dismiss ID
    ades jobs purge --older-than AGE [...]             (on the store directly: ades.cli_purge)

Every command takes --url (default: env ADES_URL, else http://127.0.0.1:5000), --token (env ADES_TOKEN), --json
(one JSON document on stdout, for scripts) and --quiet (no progress bars; bars are also off when stderr is not a
terminal). Exit codes: 0 ok, 1 error or the job ended failed/dismissed, 2 usage.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from ades.cli_purge import add_purge_command
from ades.client import DEFAULT_URL, TERMINAL, ApiError, Client, Job, ogc_status

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


# --- helpers -----------------------------------------------------------------------------------------------------
class UsageError(Exception):
    """A bad argument found after parsing (an -i value, a file): exit code 2, like argparse's own errors."""


def parse_input(text: str) -> tuple[str, Any]:
    """`name=value`: the value as JSON when it parses as JSON, else the string itself; `name=@file.json` reads the
    value from a JSON file."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise UsageError(f"-i {text!r}: expected name=value")
    if raw.startswith("@"):
        path = Path(raw[1:])
        try:
            return name, json.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise UsageError(f"-i {name}: cannot read {path}: {err.strerror or err}") from None
        except ValueError as err:
            raise UsageError(f"-i {name}: {path} is not JSON: {err}") from None
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def parse_inputs(items: list[str]) -> dict[str, Any]:
    """All -i options; a name given several times becomes an array (CWL array inputs)."""
    inputs: dict[str, Any] = {}
    repeated: set[str] = set()
    for item in items:
        name, value = parse_input(item)
        if name not in inputs:
            inputs[name] = value
        elif name in repeated:
            inputs[name].append(value)
        else:
            inputs[name] = [inputs[name], value]
            repeated.add(name)
    return inputs


def _client(args: argparse.Namespace) -> Client:
    url = args.url or os.environ.get("ADES_URL") or DEFAULT_URL
    return Client(url, token=args.token or os.environ.get("ADES_TOKEN") or None)


def _bars(args: argparse.Namespace) -> bool:
    # bars are for people: never into a pipe or a log file, never when asked to be quiet or to print JSON
    return not getattr(args, "quiet", False) and not args.as_json and sys.stderr.isatty()


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _job_line(info: dict[str, Any]) -> str:
    process = info.get("processID") or "-"
    if info.get("processVersion"):
        process += f":{info['processVersion']}"
    labels = ",".join(info.get("labels") or []) or "-"
    progress = f"{int(info.get('progress') or 0)}%"
    return f"{info['jobID']}  {info['status']:<10} {progress:>4}  {process}  {info.get('created') or '-'}  {labels}"


def _outcome(status: str) -> int:
    return EXIT_OK if status == "successful" else EXIT_ERROR


def _guarded(handler: Handler) -> Handler:
    """One line on stderr and exit 1 for what the server or the network said, instead of a traceback."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except UsageError as err:
            print(f"ades: error: {err}", file=sys.stderr)
            return EXIT_USAGE
        except ApiError as err:
            print(f"ades: error: {err}", file=sys.stderr)
            return EXIT_ERROR
        except requests.ConnectionError:
            url = args.url or os.environ.get("ADES_URL") or DEFAULT_URL
            print(f"ades: error: cannot reach the ades server at {url} (is `ades serve` running? set --url or "
                  "ADES_URL)", file=sys.stderr)
            return EXIT_ERROR
        except (requests.RequestException, OSError, TimeoutError) as err:
            print(f"ades: error: {err}", file=sys.stderr)
            return EXIT_ERROR

    return run


# --- commands ----------------------------------------------------------------------------------------------------
def cmd_deploy(args: argparse.Namespace) -> int:
    client = _client(args)
    summaries = []
    for path in args.file:
        if not Path(path).is_file():
            raise UsageError(f"{path}: no such file")
        summary = client.deploy(path)
        summaries.append(summary)
        if not args.as_json:
            print(f"deployed {summary['id']}:{summary.get('version')}")
    if args.as_json:
        _print_json(summaries[0] if len(summaries) == 1 else summaries)
    return EXIT_OK


def cmd_processes(args: argparse.Namespace) -> int:
    processes = _client(args).processes()
    if args.as_json:
        _print_json(processes)
        return EXIT_OK
    for process in processes:
        print(f"{process['id']}:{process.get('version')}  {process.get('title') or ''}".rstrip())
    return EXIT_OK


def read_batch(path: str) -> list[dict[str, Any]]:
    """The items of `--batch FILE` (`-`: stdin): one JSON object per line, `{"inputs": {...}, "labels": [...]}`."""
    with (contextlib.nullcontext(sys.stdin) if path == "-" else open(path, encoding="utf-8")) as lines:
        items = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as err:
                raise SystemExit(f"{path}:{number}: not a JSON object: {err}") from None
            if not isinstance(item, dict):
                raise SystemExit(f"{path}:{number}: not a JSON object")
            items.append(item)
    if not items:
        raise SystemExit(f"{path}: no items")
    return items


def cmd_execute(args: argparse.Namespace) -> int:
    inputs = parse_inputs(args.input)
    if args.create and args.batch:
        print("ades execute: --create makes one job to start later; a --batch runs at once", file=sys.stderr)
        return EXIT_USAGE
    batch = read_batch(args.batch) if args.batch else None
    if args.create:
        job = _client(args).create(args.process, inputs, labels=args.label)
    else:
        job = _client(args).execute(args.process, inputs, labels=args.label, batch=batch)
    if not args.wait or args.create:
        if args.as_json:
            _print_json(job.info)
        else:
            print(job.id)
        return EXIT_OK
    if not args.as_json and not getattr(args, "quiet", False):
        print(f"job {job.id} {job.info['status']}", file=sys.stderr, flush=True)  # the id before a long wait
    status = job.wait(timeout=args.timeout, progress=_bars(args))
    _report(args, job)
    return _outcome(status)


def _report(args: argparse.Namespace, job: Job) -> None:
    if args.as_json:
        _print_json(job.info)
    else:
        message = job.info.get("message") or ""
        print(f"{job.id} {job.info['status']}" + (f" - {message}" if message else ""))


def cmd_jobs_list(args: argparse.Namespace) -> int:
    statuses = [ogc_status(s) for raw in args.status for s in raw.split(",") if s]
    jobs = _client(args).jobs(labels=args.label, status=statuses, process=args.process, parent=args.parent,
                              page_size=min(args.limit, 1000) if args.limit else 100)
    found: list[dict[str, Any]] = []
    for job in jobs:
        if args.limit and len(found) >= args.limit:
            break
        found.append(job.info)
        if not args.as_json:
            print(_job_line(job.info), flush=True)
    if args.as_json:
        _print_json(found)
    return EXIT_OK


def cmd_jobs_status(args: argparse.Namespace) -> int:
    job = _client(args).job(args.job_id)
    if args.as_json:
        _print_json(job.info)
    else:
        print(_job_line(job.info))
        if job.info.get("message"):
            print(f"  {job.info['message']}")
    return EXIT_OK


def cmd_jobs_wait(args: argparse.Namespace) -> int:
    job = _client(args).job(args.job_id)
    status = job.wait(timeout=args.timeout, progress=_bars(args))
    _report(args, job)
    return _outcome(status)


def cmd_jobs_logs(args: argparse.Namespace) -> int:
    job = _client(args).job(args.job_id)
    if not args.follow:
        text = job.logs()
        if args.as_json:
            _print_json({"jobID": job.id, "status": job.info["status"], "log": text})
        else:
            sys.stdout.write(text)
        return EXIT_OK
    pieces = []
    for piece in job.follow_logs(poll=args.poll):
        if args.as_json:
            pieces.append(piece)
        else:
            sys.stdout.write(piece)
            sys.stdout.flush()
    if args.as_json:
        _print_json({"jobID": job.id, "status": job.info["status"], "log": "".join(pieces)})
    # following to the end is waiting: the job's outcome is the exit code, as with `jobs wait`
    return _outcome(job.info["status"])


def cmd_jobs_results(args: argparse.Namespace) -> int:
    job = _client(args).job(args.job_id)
    if args.download is None:
        _print_json(job.results())  # the document is JSON either way
        return EXIT_OK
    paths = job.download(args.download, progress=_bars(args))
    if args.as_json:
        _print_json([str(path) for path in paths])
    else:
        for path in paths:
            print(path)
    return EXIT_OK


def cmd_jobs_edit(args: argparse.Namespace) -> int:
    job = _client(args).job(args.job_id)
    job.edit(inputs=parse_inputs(args.input) if args.input else None, labels=args.label or None)
    _report(args, job)
    return EXIT_OK


def cmd_jobs_start(args: argparse.Namespace) -> int:
    job = _client(args).job(args.job_id)
    job.start()
    if not args.wait:
        _report(args, job)
        return EXIT_OK
    status = job.wait(timeout=args.timeout, progress=_bars(args))
    _report(args, job)
    return _outcome(status)


def _add_job_management(job_action: Callable[[str, Handler, str, str], argparse.ArgumentParser]) -> None:
    """`ades jobs edit` and `ades jobs start`: a job made with `ades execute --create` (OGC API Processes Part 4)."""
    edit = job_action("edit", cmd_jobs_edit, "change a created job's inputs (-i, all of them) or labels (-l)",
                      "Replace the inputs (every -i given; inputs not given are dropped) and/or the labels of a job "
                      "made with `ades execute --create` (PATCH /jobs/ID); refused once it was started.")
    edit.add_argument("-i", "--input", action="append", default=[], metavar="NAME=VALUE", help="an input")
    edit.add_argument("-l", "--label", action="append", default=[], metavar="LABEL", help="a label (repeatable)")
    start = job_action("start", cmd_jobs_start, "run a created job (--wait: to its end)",
                       "Start a job made with `ades execute --create` (POST /jobs/ID/results). With --wait, follow "
                       "it to its end and exit 1 unless it succeeded.")
    start.add_argument("-w", "--wait", action="store_true", help="wait for the end; exit 1 unless successful")
    start.add_argument("--timeout", type=float, default=None, help="with --wait: give up after this many seconds")


def cmd_jobs_dismiss(args: argparse.Namespace) -> int:
    job = _client(args).job(args.job_id)
    was = job.info["status"]
    job.dismiss()
    if args.as_json:
        _print_json(job.info)
    elif was in TERMINAL:
        print(f"{job.id} {job.info['status']} (files removed)")
    else:
        print(f"{job.id} {job.info['status']}")
    return EXIT_OK


# --- parser ------------------------------------------------------------------------------------------------------
def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=None, help=f"the ades server (default: env ADES_URL, else {DEFAULT_URL})")
    common.add_argument("--token", default=None, help="bearer token sent as Authorization (default: env ADES_TOKEN)")
    common.add_argument("--json", dest="as_json", action="store_true", help="print one JSON document (for scripts)")
    # SUPPRESS: without the flag, keep the top-level `ades -q` value rather than resetting it to False
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars (they are also off when stderr is not a terminal)")
    return common


def add_client_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register deploy, processes, execute and jobs on the `ades` parser's subcommands."""
    common = _common()

    deploy = commands.add_parser("deploy", parents=[common], help="deploy CWL application packages to a server",
                                 description="Deploy each CWL file (YAML, or JSON by a .json extension) with "
                                 "POST /processes; print id:version of each.")
    deploy.add_argument("file", nargs="+", metavar="FILE", help="a CWL file")
    deploy.set_defaults(handler=_guarded(cmd_deploy))

    processes = commands.add_parser("processes", parents=[common], help="list the processes a server offers",
                                    description="List deployed processes (latest version of each).")
    processes.set_defaults(handler=_guarded(cmd_processes))

    execute = commands.add_parser(
        "execute", parents=[common], help="run a process: start a job (and follow it with --wait)",
        description="Start a job of PROCESS (id or id:version) and print its id. -i name=value sets an input: the "
        "value is read as JSON when it parses as JSON (42, true, [1,2], {\"href\": \"...\"}), else taken as a "
        "string; name=@file.json reads it from a JSON file; a name given twice makes an array. With --wait, follow "
        "the job to its end and exit 1 unless it succeeded.")
    execute.add_argument("process", metavar="PROCESS", help="process id, or id:version")
    execute.add_argument("-i", "--input", action="append", default=[], metavar="NAME=VALUE", help="an input")
    execute.add_argument("-l", "--label", action="append", default=[], metavar="LABEL", help="a label (repeatable)")
    execute.add_argument("-w", "--wait", action="store_true", help="wait for the end; exit 1 unless successful")
    execute.add_argument("-b", "--batch", default=None, metavar="ITEMS.jsonl",
                         help="one child job per line ({\"inputs\": {...}, \"labels\": [...]}, merged over -i and "
                         "-l; - reads stdin): the job started is their parent, whose progress --wait shows")
    execute.add_argument("--timeout", type=float, default=None, help="with --wait: give up after this many seconds")
    execute.add_argument("--create", action="store_true", help="only create the job (status created: it runs once "
                         "`ades jobs start ID`; `ades jobs edit ID` changes it meanwhile); print its id")
    execute.set_defaults(handler=_guarded(cmd_execute))

    jobs = commands.add_parser("jobs", help="list and follow jobs on a server; purge old ones",
                               description="Jobs on an ades server: list, status, wait, logs, results, edit and start "
                               "(a job made with `ades execute --create`), dismiss. "
                               "purge removes old finished jobs, working on the store and data dir directly.")
    actions = jobs.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", parents=[common], help="list jobs, newest first, all pages",
                                 description="List jobs newest first, following the server's pages to the end "
                                 "(or --limit). --label: jobs with all the given labels; --status: any of the "
                                 "given statuses (created, accepted, running, successful, failed, dismissed; the "
                                 "stored words submitted and succeeded work too).")
    listing.add_argument("-l", "--label", action="append", default=[], metavar="LABEL", help="a label (repeatable)")
    listing.add_argument("-s", "--status", action="append", default=[], metavar="STATUS",
                         help="a status (repeatable, or comma-separated)")
    listing.add_argument("-p", "--process", default=None, metavar="PROCESS", help="only jobs of this process")
    listing.add_argument("--parent", default=None, metavar="ID", help="only the children of this batch job")
    listing.add_argument("-n", "--limit", type=int, default=None, metavar="N", help="at most N jobs")
    listing.set_defaults(handler=_guarded(cmd_jobs_list))

    def job_action(name: str, handler: Handler, help_: str, description: str) -> argparse.ArgumentParser:
        action = actions.add_parser(name, parents=[common], help=help_, description=description)
        action.add_argument("job_id", metavar="ID", help="the job id")
        action.set_defaults(handler=_guarded(handler))
        return action

    job_action("status", cmd_jobs_status, "show a job's status", "Show a job's status, progress and message.")
    wait = job_action("wait", cmd_jobs_wait, "wait for a job to end; exit 1 unless it succeeded",
                      "Follow a job to its end with a progress bar; print its final status; exit 1 unless "
                      "it succeeded.")
    wait.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (exit 1)")
    logs = job_action("logs", cmd_jobs_logs, "print a job's log (--follow: as it grows, until it ends)",
                      "Print the job's log (cwltool and the tools' stderr). --follow prints it as it grows and "
                      "returns when the job has ended, with exit code 1 unless it succeeded.")
    logs.add_argument("-f", "--follow", action="store_true", help="follow the log until the job ends")
    logs.add_argument("--poll", type=float, default=0.5, help="seconds between reads with --follow (default 0.5)")
    results = job_action("results", cmd_jobs_results, "print a job's results, or --download them",
                         "Print the results document (JSON). --download DIR fetches every result file into DIR "
                         "(created) beside results.json and prints the paths written.")
    results.add_argument("-d", "--download", default=None, metavar="DIR", help="download the result files here")
    _add_job_management(job_action)
    job_action("dismiss", cmd_jobs_dismiss, "cancel a running job, or remove a finished job's files",
               "Dismiss a job (DELETE /jobs/ID): a running job is cancelled; a finished one keeps its status and "
               "its files are removed.")
    add_purge_command(actions)
