"""`ades jobs purge --older-than 30d [--status S] [--label L] [--dry-run] [--json]`: retention by hand.

An operator's command, unlike the other `ades jobs` commands: it works on the store (ADES_ES_URL or the local node,
the settings' index prefix), the data dir and the output bucket directly, not through a server (ades.jobs.retention).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ades.durations import HINT, parse_duration
from ades.status import Status

if TYPE_CHECKING:
    from ades.config import Settings
    from ades.jobs.retention import PurgeReport

EXIT_OK = 0
EXIT_ERROR = 1

DESCRIPTION = (
    "Remove finished jobs (succeeded, failed, dismissed) and created ones never started (never submitted or running "
    "ones) older than --older-than "
    "from the jobs index, with their folders in this host's ADES_DATA_DIR and, when ADES_OUTPUT_BUCKET is set, their "
    "stored outputs in that bucket. A job's age counts from its end (stop-time), or from its creation (created) when "
    "it has no end time. --status and --label narrow the selection (any of the statuses, all of the labels). Jobs "
    "are read page by page and deleted with bulk requests (no _delete_by_query), each delete conditional on the "
    "version found: a job written to while the purge runs is kept (the next purge looks at it again). Works on "
    "Elasticsearch and the data dir directly (ADES_ES_URL or the local node, ADES_INDEX_PREFIX), not through a "
    "server. --dry-run counts the jobs by status and deletes nothing. A progress bar goes to stderr on a terminal. "
    "Ctrl-C or SIGTERM stops it after the page of jobs in hand. Exit codes: 0 ok, 1 a delete or a removal failed, "
    "the store cannot be reached, or it was stopped; 2 usage."
)


def older_than(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def finished_statuses(text: str) -> list[Status]:
    statuses = []
    for word in (w.strip() for w in text.split(",")):
        try:
            status = Status.parse(word)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{word!r} is not a job status (created, succeeded, failed, "
                                             "dismissed)") from None
        if not (status.terminal or status is Status.CREATED):
            raise argparse.ArgumentTypeError(f"{word!r} jobs are never purged: only finished or created ones "
                                             "(created, succeeded, failed, dismissed)")
        statuses.append(status)
    return statuses


def add_purge_command(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    purge = actions.add_parser("purge", help="remove old finished jobs, their folders and stored outputs (on the "
                               "store directly)", description=DESCRIPTION)
    purge.add_argument("--older-than", required=True, type=older_than, metavar="AGE",
                       help=f"how long ago the job ended (or, never ended, was created): {HINT}")
    purge.add_argument("-s", "--status", action="append", type=finished_statuses, default=[], metavar="STATUS",
                       help="only jobs with this status: created, succeeded, failed or dismissed (the OGC words "
                       "successful, failed, dismissed work too; repeatable, or comma-separated; default all four)")
    purge.add_argument("-l", "--label", action="append", default=[], metavar="LABEL",
                       help="only jobs with this label (repeatable: jobs with all of them)")
    purge.add_argument("-n", "--dry-run", action="store_true", help="count the jobs by status; delete nothing")
    purge.add_argument("--json", dest="as_json", action="store_true", help="print the report as one JSON document")
    purge.set_defaults(handler=cmd_jobs_purge)


def cmd_jobs_purge(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ades.config import Settings
    from ades.jobs.retention import Purge
    from ades.store import StoreUnavailable, make_client
    from ades.store.purge import PURGEABLE, PurgeFilter

    settings = Settings()
    statuses = [status for group in args.status for status in group] or list(PURGEABLE)
    purge_filter = PurgeFilter(older_than=args.older_than, statuses=statuses, labels=args.label)
    bars = not args.quiet and not args.as_json and not args.dry_run and sys.stderr.isatty()
    client = make_client(settings)
    stop = threading.Event()
    try:
        with tqdm(total=None, unit="job", desc="purging", disable=not bars, file=sys.stderr) as bar, \
                _stopped_by_signals(stop):
            report = Purge(settings, client).run(purge_filter, dry_run=args.dry_run, stop=stop,
                                                 on_total=lambda n: bar.reset(total=n), progress=bar.update)
    except StoreUnavailable as err:
        print(f"ades: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        client.close()
    if args.as_json:
        print(json.dumps(report.model_dump(), indent=2))
    else:
        _print_report(report, settings)
    return EXIT_OK if report.ok and not report.stopped else EXIT_ERROR


@contextlib.contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM end the purge after the page in hand, whose jobs' files are then removed too (an
    interruption between a page's deletes and its files would leave folders of jobs no longer in the store)."""
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _by_status(counts: dict[str, int]) -> str:
    return ", ".join(f"{status} {counts[status]:,}" for status in sorted(counts)) or "none"


def _print_report(report: PurgeReport, settings: Settings) -> None:
    what = (f"finished or created jobs ended before {report.cutoff} (older than {report.older_than}"
            + (f", status {'/'.join(report.statuses)}" if len(report.statuses) < 4 else "")
            + (f", labels {', '.join(report.labels)}" if report.labels else "") + ")")
    if report.dry_run:
        print(f"dry run: {report.total_matched:,} {what} would be purged: {_by_status(report.matched)}; "
              "nothing was deleted")
        return
    where = f"{report.folders:,} folders from {settings.data_dir}"
    if settings.output_bucket:
        where += f", {report.objects:,} stored outputs from s3://{settings.output_bucket}"
    print(f"purged {report.total_purged:,} {what}: {_by_status(report.purged)}; removed {where}; "
          f"{report.seconds:.1f} s")
    if report.gone:
        print(f"{report.gone:,} more were removed meanwhile by another purge")
    if report.kept:
        print(f"kept {len(report.kept):,} jobs written to while the purge ran (the next purge looks at them again): "
              + ", ".join(report.kept[:10]) + (" ..." if len(report.kept) > 10 else ""))
    if report.stopped:
        print("ades: stopped before the end (a signal): run it again to go on", file=sys.stderr)
    for job_id, reason in list(report.failed.items())[:10]:
        print(f"ades: error: job {job_id} could not be deleted: {reason}", file=sys.stderr)
    for problem in report.file_errors[:10]:
        print(f"ades: error: {problem}", file=sys.stderr)
