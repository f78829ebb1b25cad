"""`ades index migrate`: move the `jobs` and `processes` aliases to new indexes made from the current templates,
while the server and the consumer keep running (ades.store.migrate says how, and why nothing is lost)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from typing import Any

from ades.config import Settings

log = logging.getLogger("ades.index")
FAMILIES = ("jobs", "processes")


def add_index_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `index migrate` on the `ades` parser's subcommands."""
    index = commands.add_parser(
        "index", help="manage the Elasticsearch indexes behind the jobs and processes aliases",
        description="The jobs and processes indexes: each alias (jobs, processes, with ADES_INDEX_PREFIX) points "
        "at one index <alias>-vN made from ades' template of its time.")
    actions = index.add_subparsers(dest="action", metavar="ACTION", required=True)
    migrate = actions.add_parser(
        "migrate", help="copy an index into the next <alias>-vN with the current layout and move the alias there",
        description="Create the next <alias>-vN from the current template, copy every document into it while the "
        "server and the consumer keep writing (every write made during the copy is copied too), hold writes for "
        "the last changes (a fraction of a second; held writes wait for it, up to 30 s, rather than fail), move the "
        "alias atomically. "
        "The old index stays, write-blocked, until --drop-old. Without --index, migrates the indexes whose layout "
        "is older than ades' (jobs v2: sorted by creation, so first pages of a frequent label stop early). "
        "Run the writers of this ades version during it (older ones write through the alias with the old index's "
        "sequence numbers). Exit codes: 0 done, 1 refused or failed (the old index is then as it was), 2 usage.")
    migrate.add_argument("--index", choices=FAMILIES, default=None,
                         help="migrate this family even when its layout is current (default: those behind)")
    migrate.add_argument("--drop-old", metavar="NAME", default=None,
                         help="migrate nothing; delete NAME, an earlier index of jobs or processes the alias no "
                         "longer points at (or the target of an interrupted migration, which gives the old "
                         "index its writes back)")
    migrate.add_argument("--batch-size", type=int, default=1000, metavar="N",
                         help="documents per search page and bulk request (default 1000)")
    migrate.set_defaults(handler=cmd_index_migrate)


class _Ticker:
    """Logs the copy's progress every few seconds."""

    def __init__(self, alias: str, every: float = 5.0) -> None:
        self.alias = alias
        self.every = every
        self.started = self.last = time.monotonic()

    def __call__(self, phase: str, written: int) -> None:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            log.info("%s: %s, %d documents written (%.0f/s)", self.alias, phase, written,
                     written / max(now - self.started, 1e-9))


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # so that a migration stopped by SIGTERM gives the old index its writes back


def cmd_index_migrate(args: argparse.Namespace) -> int:
    from elasticsearch import ApiError, TransportError

    from ades.store import make_client
    from ades.store.migrate import MigrationRefused, drop_old, migrate, needs_migration, source_of
    from ades.store.setup import generation

    settings = Settings()
    if args.batch_size < 1:
        print("ades: error: --batch-size must be at least 1", file=sys.stderr)
        return 2
    client = make_client(settings)
    aliases = {"jobs": settings.jobs_alias, "processes": settings.processes_alias}
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.drop_old is not None:
            alias = next((a for a in aliases.values() if generation(a, args.drop_old) is not None), None)
            if alias is None:
                raise MigrationRefused(f"{args.drop_old}: not an index of {' or '.join(aliases.values())} "
                                       "(those are named <alias>-vN)")
            print(drop_old(client, alias, args.drop_old))
            return 0
        for family in [args.index] if args.index else FAMILIES:
            alias = aliases[family]
            if args.index is None and not needs_migration(client, alias):
                print(f"{alias}: {source_of(client, alias)} has the current layout; nothing to do")
                continue
            done = migrate(client, settings, alias, batch=args.batch_size, progress=_Ticker(alias))
            print(f"{alias}: {done.source} -> {done.target}: {done.documents} documents ({done.copied} copied, "
                  f"{done.recopied} copied again after changing, in {done.passes} passes; {done.deleted} deleted), "
                  f"writes held {done.held_s * 1000:.0f} ms, {done.seconds:.1f} s in all")
            print(f"{done.source} is kept, write-blocked: `ades index migrate --drop-old {done.source}` deletes it")
    except MigrationRefused as err:
        print(f"ades: error: {err}", file=sys.stderr)
        return 1
    except (ApiError, TransportError) as err:
        print(f"ades: error: Elasticsearch at {settings.elasticsearch_url}: {err}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0
