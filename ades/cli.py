"""The `ades` command line.

    ades services start|stop|status [SERVICE …]   real local services (Elasticsearch, moto, the status consumer)
    ades consumer                                 apply status events from the SQS queue to Elasticsearch
    ades dask scheduler|worker                    a Dask scheduler or workers in the foreground (Dask executor)
    ades serve                                    the OGC API Processes server under gunicorn
    ades demo                                     everything once: services, server, deploy, a labelled job
    ades index migrate                            move the jobs/processes aliases to indexes of the current layout

Exit codes: 0 ok, 1 error (one line saying what went wrong), 2 usage.
Settings come from the environment (ADES_*, see ades/config.py and the README).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeAlias

from pydantic import ValidationError

from ades.cli_client import add_client_commands
from ades.cli_index import add_index_commands
from ades.services import DEFAULT_SERVICES, SERVICES, ServiceError, service_module

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

log = logging.getLogger("ades.cli")


def _settings():
    from ades.config import Settings

    return Settings()


def _selected(names: Sequence[str], dask: bool = False) -> list[str]:
    if names:
        return list(names)
    return [*DEFAULT_SERVICES, "dask"] if dask else list(DEFAULT_SERVICES)


# --- ades services --------------------------------------------------------------------------------------------


def cmd_services_start(args: argparse.Namespace) -> int:
    settings = _settings()
    for name in _selected(args.service, args.dask):
        url = service_module(name).ensure_running(settings)
        print(f"{name}: {url}")
    return EXIT_OK


def cmd_services_stop(args: argparse.Namespace) -> int:
    settings = _settings()
    # a plain stop also stops a Dask cluster this data dir started (nothing happens when there is none)
    for name in reversed(_selected(args.service, dask=True)):
        service_module(name).stop(settings)
    return EXIT_OK


def cmd_services_status(args: argparse.Namespace) -> int:
    settings = _settings()
    all_running = True
    for name in _selected(args.service, args.dask):
        info = service_module(name).status(settings)
        if not info["running"]:
            all_running = False
            print(f"{name}: not running ({info['url']})")
            continue
        details = [f"url {info['url']}"]
        if info.get("version"):
            details.append(f"version {info['version']}")
        if info.get("health"):
            details.append(f"health {info['health']}")
        if info.get("workers") is not None:
            details.append(f"{info['workers']} workers")
        if info.get("external"):
            details.append("external (ADES_ES_URL)")
        elif info.get("pid"):
            details.append(f"pid {info['pid']}")
        else:
            details.append("not started by this data dir")
        print(f"{name}: running, " + ", ".join(details))
    return EXIT_OK if all_running or not args.check else EXIT_ERROR


# --- ades consumer --------------------------------------------------------------------------------------------


def cmd_consumer(args: argparse.Namespace) -> int:
    from ades.events.poller import Consumer

    consumer = Consumer(_settings(), batch_size=args.batch_size, wait_seconds=args.wait)
    consumer.install_signal_handlers()
    consumer.run()
    return EXIT_OK


# --- ades dask ------------------------------------------------------------------------------------------------


def cmd_dask_scheduler(args: argparse.Namespace) -> int:
    import os

    port = args.port if args.port is not None else _settings().dask_port
    # exec: the foreground process is Dask's own, so signals and exit codes are the scheduler's
    command = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", args.host, "--port", str(port),
               "--no-dashboard"]
    # A task is sent to a worker only when it has a free thread: one sent ahead waits there, where a job given a
    # higher priority since (the fair order across users, ades.jobs.fairshare) can no longer overtake it. Jobs run
    # for seconds; the round trip this adds between two of them is not felt.
    env = {"DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0", **os.environ}
    sys.stdout.flush()
    os.execve(sys.executable, command, env)
    return EXIT_ERROR  # not reached


def cmd_dask_worker(args: argparse.Namespace) -> int:
    import os

    scheduler = args.scheduler or _settings().dask_scheduler_address
    # --preload: each worker starts its warm cwltool launchers at once (ades.jobs.dask_worker.dask_setup)
    command = [sys.executable, "-m", "distributed.cli.dask_worker", scheduler, "--nworkers", str(args.nworkers),
               "--nthreads", str(args.nthreads), "--no-dashboard", "--preload", "ades.jobs.dask_worker"]
    if args.host:
        command += ["--host", args.host]
    env = dict(os.environ)
    if args.data_dir is not None:  # the workers' own: ades.jobs.dask_worker.own_data_dir reads it
        env["ADES_DATA_DIR"] = str(args.data_dir.expanduser().absolute())
    sys.stdout.flush()
    os.execve(sys.executable, command, env)
    return EXIT_ERROR  # not reached


# --- ades demo ------------------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from ades.demo import run_demo

    return run_demo(_settings(), port=args.port)


# --- ades execution -------------------------------------------------------------------------------------------


def cmd_execution(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from ades.jobs.pause import pause, paused, resume

    settings = _settings()
    data_dir = settings.data_dir
    if args.action == "pause":
        pause(data_dir, args.reason)
        print(f"execution paused in {data_dir}: running jobs finish, new ones wait (`ades execution resume`)")
    elif args.action == "resume":
        print(f"execution resumed in {data_dir}" if resume(data_dir) else f"execution was not paused in {data_dir}")
    state = paused(data_dir)
    store_state = _store_pause(settings, args.action, getattr(args, "reason", None))
    if args.action != "status":
        return EXIT_OK
    if state is None and store_state is None:
        print(f"execution runs in {data_dir}")
    else:
        where, state = (str(data_dir), state) if state is not None else ("the store's Dask workers", store_state)
        assert state is not None
        since = datetime.fromtimestamp(state.since, UTC).isoformat(timespec="seconds")
        print(f"execution paused in {where} since {since}" + (f": {state.reason}" if state.reason else ""))
    return EXIT_OK


def _store_pause(settings, action: str, reason: str | None):
    """The same switch in the store, which every Dask worker serving it reads (ades.jobs.pause); None if not
    paused there or the store did not answer (said on stderr: the data dir's switch still holds this host)."""
    from elasticsearch import ApiError, TransportError

    from ades.jobs.pause import pause_store, paused_store, resume_store
    from ades.store.client import make_client

    client = make_client(settings)
    try:
        if action == "pause":
            return pause_store(client, settings.index_prefix, reason)
        if action == "resume":
            resume_store(client, settings.index_prefix)
            return None
        return paused_store(client, settings.index_prefix)
    except (ApiError, TransportError) as err:
        print(f"the store-wide switch (Dask workers of other hosts) was not reached: {err}", file=sys.stderr)
        return None
    finally:
        client.close()


# --- ades serve -----------------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from ades.serve import ServeRefused, serve

    try:
        serve(_settings(), host=args.host, port=args.port, workers=args.workers, threads=args.threads,
              job_workers=args.job_workers, public_url=args.public_url, access_log=not args.no_access_log,
              keepalive_requests=args.keepalive_requests)
    except ServeRefused as error:
        print(f"ades: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


# --- parser ---------------------------------------------------------------------------------------------------

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What `add_subparsers` returns; argparse has no public name for it."""
Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ades",
        description="ades: an OGC API Processes server that runs CWL workflows and keeps every job in "
        "Elasticsearch. Settings come from ADES_* environment variables (see the README).",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only results and errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_services_commands(commands)
    _add_dask_commands(commands)
    _add_consumer_command(commands)
    _add_execution_commands(commands)
    _add_serve_command(commands)
    _add_demo_command(commands)
    add_client_commands(commands)
    add_index_commands(commands)
    return parser


def _command(commands: Commands, name: str, handler: Handler, help_: str, description: str) -> argparse.ArgumentParser:
    """A sub-command that runs `handler`."""
    command = commands.add_parser(name, help=help_, description=description)
    command.set_defaults(handler=handler)
    return command


def _add_bind_address(command: argparse.ArgumentParser, port: int | None, port_help: str) -> None:
    command.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    command.add_argument("--port", type=int, default=port, help=port_help)


def _add_services_commands(commands: Commands) -> None:
    services = commands.add_parser(
        "services",
        help="start, stop or inspect the real local services (Elasticsearch, moto, consumer)",
        description="Real local services for development and tests. Elasticsearch is fetched once with Maven "
        "(integ-test-zip, cached in ADES_CACHE_DIR) with a plugin of ades that answers GET / (built once with "
        "Maven), runs as a non-root user with its data in ADES_DATA_DIR, "
        "and is reused when one already answers on ADES_ES_HOST:ADES_ES_PORT. With ADES_ES_URL set, nothing is "
        "started and that cluster is used. moto stands in for AWS on ADES_MOTO_PORT and gets the status "
        "topic, queue and dead-letter queue; the consumer applies that queue to Elasticsearch.",
    )
    actions = services.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = _command(
        actions,
        "start",
        cmd_services_start,
        "start the services that are not running yet, wait until they are ready",
        "Start each service unless it already runs; wait until it is ready; print its URL.",
    )
    stop = _command(
        actions,
        "stop",
        cmd_services_stop,
        "stop the services this data dir started",
        "Stop what `ades services start` started for this ADES_DATA_DIR (by pid file). Services "
        "started elsewhere and external clusters are left alone.",
    )
    status = _command(
        actions,
        "status",
        cmd_services_status,
        "show URL, version, health and pid of each service",
        "Show URL, version, health and pid of each service, or 'not running'.",
    )
    status.add_argument("--check", action="store_true", help="exit 1 if a service is not running")
    service_help = f"which services (default: {', '.join(DEFAULT_SERVICES)}; known: {', '.join(SERVICES)})"
    for sub in (start, stop, status):
        sub.add_argument("service", nargs="*", metavar="SERVICE", help=service_help)
        sub.add_argument("--dask", action="store_true",
                         help="also a local Dask cluster: a scheduler on ADES_DASK_PORT and ADES_DASK_WORKERS "
                         "workers; start writes ADES_EXECUTOR=dask and ADES_DASK_SCHEDULER to services.env "
                         "(a plain stop stops it too)")


def _add_dask_commands(commands: Commands) -> None:
    dask = commands.add_parser(
        "dask",
        help="run a Dask scheduler or workers in the foreground (for the Dask executor, docker-compose)",
        description="Run a Dask scheduler or Dask workers in the foreground (the process becomes Dask's). Jobs go "
        "to them when the server runs with ADES_EXECUTOR=dask and ADES_DASK_SCHEDULER. Workers load ades' warm "
        "cwltool launchers; with a data dir of their own (--data-dir, or ADES_DATA_DIR) they share nothing with the "
        "server but Elasticsearch, object storage, the event queue and the scheduler.",
    )
    roles = dask.add_subparsers(dest="action", metavar="ROLE", required=True)
    scheduler = _command(roles, "scheduler", cmd_dask_scheduler, "the Dask scheduler",
                         "Run the Dask scheduler (no dashboard).")
    _add_bind_address(scheduler, None, "port to bind (default ADES_DASK_PORT, 8786)")
    worker = _command(roles, "worker", cmd_dask_worker, "Dask workers that run ades jobs",
                      "Run Dask workers (each under a nanny that restarts it when it dies) that run ades jobs in "
                      "warm cwltool launchers.")
    worker.add_argument("--scheduler", default=None,
                        help="scheduler address (default ADES_DASK_SCHEDULER, else tcp://127.0.0.1:ADES_DASK_PORT)")
    worker.add_argument("--nworkers", type=int, default=1, help="worker processes (default 1)")
    worker.add_argument("--nthreads", type=int, default=1,
                        help="jobs each worker runs at a time (default 1)")
    worker.add_argument("--host", default=None, help="address the workers bind to and advertise (default: Dask's)")
    worker.add_argument("--data-dir", type=Path, default=None,
                        help="the workers' own data dir: jobs run in its job folders, the wrapped workflow is written "
                        "into its cache from the task when missing (default ADES_DATA_DIR when set, else the data "
                        "dir the server names in each job: the same path on every host, or one host)")


def _add_consumer_command(commands: Commands) -> None:
    consumer = _command(
        commands,
        "consumer",
        cmd_consumer,
        "apply status events from the SQS status queue to Elasticsearch (the Lambda, locally)",
        "Long-poll the status queue (ADES_SQS_QUEUE_URL, or the one `ades services start` created "
        "in moto), hand each batch to the same handler the AWS Lambda runs, delete what was applied and let the "
        "rest come back (then go to the dead-letter queue). SIGTERM finishes the batch in hand and exits 0.",
    )
    consumer.add_argument("--batch-size", type=int, default=10, help="messages per receive, 1-10 (default 10)")
    consumer.add_argument("--wait", type=int, default=2, help="long-poll seconds per receive (default 2)")


def _add_execution_commands(commands: Commands) -> None:
    execution = _command(
        commands,
        "execution",
        cmd_execution,
        "pause or resume job execution on this host (the API keeps accepting jobs)",
        "Pause: workers sharing ADES_DATA_DIR (local job workers and Dask workers), and every Dask worker serving "
        "the same Elasticsearch store (ADES_INDEX_PREFIX), start no new job; "
        "running jobs finish, accepted jobs stay submitted and start in order on resume, a dismissed one is dropped. "
        "For draining a host before maintenance, or letting a burst of submissions in first.",
    )
    actions = execution.add_subparsers(dest="action", metavar="ACTION", required=True)
    pause = actions.add_parser("pause", help="start no new job until `resume`")
    pause.add_argument("--reason", default=None, help="shown by `ades execution status`")
    actions.add_parser("resume", help="start waiting jobs again")
    actions.add_parser("status", help="say whether execution is paused, since when and why")


def _add_serve_command(commands: Commands) -> None:
    serve = _command(
        commands,
        "serve",
        cmd_serve,
        "run the OGC API Processes server under gunicorn",
        "Run the server (pygeoapi API + ades routes) under gunicorn. Status events go through SNS "
        "when AWS is configured (ADES_SNS_TOPIC_ARN, or the moto pipeline `ades services start` wrote to "
        ".ades/services.env), else straight to Elasticsearch. With auth off (no ADES_AUTH_TOKENS_FILE nor "
        "ADES_AUTH_JWT_KEY) it listens on loopback only and refuses any other --host (exit 1) unless "
        "ADES_ALLOW_UNAUTHENTICATED_BIND=true; requests naming another Host than the server's get 400 "
        "(ADES_ALLOWED_HOSTS).",
    )
    _add_bind_address(serve, 5000, "port to bind (default 5000)")
    serve.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    serve.add_argument("--threads", type=int, default=8,
                       help="request threads per gunicorn worker (default 8); while a worker has no more keep-alive "
                       "connections than threads, each thread keeps a busy connection")
    serve.add_argument("--no-access-log", action="store_true", help="do not log every request to stdout")
    serve.add_argument("--keepalive-requests", type=int, default=None,
                       help="requests a keep-alive connection may carry before the server closes it, so that "
                       "clients spread over the workers (default 100)")
    serve.add_argument("--job-workers", type=int, default=None,
                       help="warm cwltool worker processes per gunicorn worker (default: CPU count)")
    serve.add_argument("--public-url", default=None,
                       help="URL clients use to reach the server (default http://HOST:PORT; env ADES_PUBLIC_URL)")


def _add_demo_command(commands: Commands) -> None:
    demo = _command(
        commands,
        "demo",
        cmd_demo,
        "start everything, deploy a CWL workflow, run a labelled job and show where to look",
        "Start Elasticsearch, moto and the consumer, start the server, deploy the two-step example "
        "CWL workflow, run it through the WPS-T route with labels, follow it to the end and print the job, its "
        "status history and where to see it (job page, Elasticsearch query). Services stay up afterwards.",
    )
    demo.add_argument("--port", type=int, default=5000, help="port of the demo server (default 5000)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on usage errors
    unknown = [name for name in getattr(args, "service", []) if name not in SERVICES]
    if unknown:
        parser.error(f"unknown service {unknown[0]!r} (choose from {', '.join(SERVICES)})")
    # Our own messages go to stderr; libraries (elasticsearch-py logs every request at INFO) only from WARNING.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ades: %(message)s"))
    ades_logger = logging.getLogger("ades")
    ades_logger.addHandler(handler)
    ades_logger.setLevel(logging.WARNING if args.quiet else logging.INFO)
    ades_logger.propagate = False
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        return args.handler(args)
    except ValidationError as error:
        problems = "; ".join(f"ADES_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in error.errors())
        print(f"ades: error: invalid settings: {problems}", file=sys.stderr)
        return EXIT_ERROR
    except ServiceError as error:
        print(f"ades: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("ades: interrupted", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
