"""JobService: what the API asks of jobs on this host (submit, cancel or dismiss, wait) and the wiring behind it.

One per server process (under gunicorn, one per worker): its table of held jobs, its journal, the group commit of
submissions, the scheduler of waiting jobs and the executor (made on first use: importing cwltool and starting
warm workers costs seconds, and a read-only server never needs them).

    submit:   admission (free disk, queue cap) -> group commit: journal, index `submitted`, JOURNALED -> scheduler
              -> executor (in a fair order across users)
    cancel:   cancel requested in the job's folder -> stopped where it runs -> `dismissed` in the store
    wait:     the job's outcome once it has ended here (the server's synchronous execute)
    restart:  reconciliation re-queues, adopts or fails what a previous run left unfinished
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import IO, Any

from ades.config import Settings
from ades.cwl import PackageError, load_package, to_job_order
from ades.cwl.package import Package
from ades.durations import parse_duration
from ades.events.sinks import SinkConfig
from ades.execute.sandbox import Sandbox
from ades.fetch import Fetcher, FetchPolicy
from ades.jobs import groups
from ades.jobs.acceptance import CreateBatcher
from ades.jobs.admission import Admission, DiskFloor
from ades.jobs.adoption import LostJobSweep
from ades.jobs.adoption import claim as claim_job
from ades.jobs.batches import Batches
from ades.jobs.created import started_document
from ades.jobs.dismissals import DismissalWatch
from ades.jobs.executor import DEFAULT_GRACE, Executor
from ades.jobs.folder import DataDir, JobFolder
from ades.jobs.journal import Journal
from ades.jobs.leases import Lease, node_id
from ades.jobs.lifecycle import HostState, JobTable
from ades.jobs.notifier import Notifier
from ades.jobs.publisher import Publisher
from ades.jobs.quota import SyncSlots, UserQuota
from ades.jobs.reconcile import Reconciler, Report, claim
from ades.jobs.retention import Retention
from ades.jobs.scheduler import JobScheduler
from ades.jobs.spec import QueuedJob, RunSpec
from ades.models import Job, StatusUpdate
from ades.status import Status
from ades.storage import S3Storage, StorageConfig
from ades.store import JobStore, ProcessStore
from ades.store.callbacks import CallbackStore
from ades.store.freshness import WriteMarks
from ades.store.hosts import HostStore
from ades.store.job_edits import Versioned, replace
from ades.store.logs import LogShipConfig


class JobService:
    def __init__(self, settings: Settings, job_store: JobStore, base_url: str, workers: int | None = None) -> None:
        """`base_url`: how clients reach the server (results URLs); `workers`: warm local job workers (default:
        CPU count)."""
        self.settings = settings
        self.store = job_store
        self.base_url = base_url
        self.workers = workers
        self.data = DataDir(settings.data_dir)
        self.table = JobTable()
        self._executor: Executor | None = None
        self._lock = threading.Lock()
        self._reconcile_lock: IO[str] | None = None
        self._reconciler: Reconciler | None = None
        self._dismissals: DismissalWatch | None = None
        self.retention: Retention | None = None
        self.lease: Lease | None = None
        self.sweep: LostJobSweep | None = None
        self.notifier: Notifier | None = None
        self.status_document: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        """A job document -> what its subscriber is POSTed (the API's status document); callbacks need it."""

    # --- wiring, each made on first use ---
    @functools.cached_property
    def sink_config(self) -> SinkConfig:
        """Where jobs' events go. Resolved once: against a local endpoint without a topic ARN the topic is found by
        name, which is AWS calls that must not be repeated on every submission."""
        return SinkConfig.from_settings(self.settings)

    @functools.cached_property
    def log_shipping(self) -> LogShipConfig | None:
        return LogShipConfig.from_settings(self.settings)

    @functools.cached_property
    def publisher(self) -> Publisher:
        return Publisher(self.sink_config)

    @functools.cached_property
    def storage_config(self) -> StorageConfig:
        """Where job outputs go (ADES_OUTPUT_STORAGE); an S3 bucket is created if missing (local setups)."""
        config = StorageConfig.from_settings(self.settings, self.base_url)
        storage = config.make()
        if isinstance(storage, S3Storage):
            storage.ensure_bucket(self.settings.aws_region)
        return config

    @functools.cached_property
    def output_storage(self) -> S3Storage | None:
        """The bucket every host keeps job outputs in (ADES_OUTPUT_STORAGE=s3), one client per server process; else
        None."""
        storage = self.storage_config.make()
        return storage if isinstance(storage, S3Storage) else None

    @functools.cached_property
    def write_marks(self) -> WriteMarks:
        """Listings see this host's new jobs at once, refreshing only when something was written."""
        return WriteMarks(self.data.write_marks(self.settings.index_prefix), self.store.refresh)

    @functools.cached_property
    def node_id(self) -> str:
        """This node's lease id (ades.jobs.leases), the `host` of the jobs it accepts."""
        return node_id(self.data.root)

    @functools.cached_property
    def journal(self) -> Journal:
        return Journal(self.data.root, self.store.statuses)

    @functools.cached_property
    def acceptance(self) -> CreateBatcher[QueuedJob]:
        return CreateBatcher(self.store, on_written=self.write_marks.mark, journal=self.journal.append_many,
                             then=self._accepted)

    @functools.cached_property
    def batches(self) -> Batches:
        """Batches' children fed to this host's executor, their parents settled (ades.jobs.batches)."""
        return Batches(self.store, self.table, self.node_id, self._rebuild_child, self.journal.append_many,
                       self._fed, self.stop_here)

    @functools.cached_property
    def admission(self) -> Admission:
        return Admission(lambda: self.store.count([Status.SUBMITTED]), self.settings.max_queued_jobs)

    @functools.cached_property
    def disk_floor(self) -> DiskFloor:
        return DiskFloor(self.data.root, self.settings.min_free_disk_bytes)

    @functools.cached_property
    def quota(self) -> UserQuota:
        """Per-user cap on unfinished jobs, shared by this host's server processes."""
        return UserQuota(self._unfinished_of, self.settings.running_jobs_cap, self.data.quota)

    @functools.cached_property
    def sync_slots(self) -> SyncSlots:
        """Per-user cap on synchronous executes at once, shared by this host's server processes."""
        return SyncSlots(self.settings.sync_executes_cap, self.data.sync_slots)

    @functools.cached_property
    def scheduler(self) -> JobScheduler:
        return JobScheduler(self.table, self.store.statuses, lambda spec: self.executor.submit(spec), self.publisher)

    @property
    def executor(self) -> Executor:
        with self._lock:
            if self._executor is None:
                self._executor = self._make_executor()
                # jobs run here from now on: one dismissed through another node must stop here too
                self._dismissals = DismissalWatch(self.store, self.table, self.stop_here)
            return self._executor

    def _make_executor(self) -> Executor:
        if self.settings.executor == "dask":
            from ades.jobs.dask_checks import StoreAddress
            from ades.jobs.dask_server import DaskExecutor

            return DaskExecutor(self.settings.dask_scheduler_address, self.data.root, table=self.table,
                                retry_lost=self.settings.dask_retry_lost, shares=self.settings.user_shares,
                                store=StoreAddress.from_settings(self.settings))
        from ades.jobs.local import LocalExecutor

        return LocalExecutor(self.workers, table=self.table, nice=self.settings.job_nice,
                             shares=self.settings.user_shares)

    def _unfinished_of(self, user: str) -> int:
        self.store.refresh()
        return self.store.count([Status.SUBMITTED, Status.RUNNING], user_id=user)

    # --- what the API asks ---
    def folder(self, job_id: str) -> JobFolder:
        return self.data.job(job_id)

    @functools.cached_property
    def sandbox(self) -> Sandbox:
        s = self.settings
        return Sandbox(kind=s.sandbox, user=s.job_user, network=s.job_network == "declared",
                       read_only=s.sandbox_read_only, container=s.container_runtime,
                       without_container=s.docker_without_container)

    @functools.cached_property
    def fetch_policy(self) -> FetchPolicy:
        return FetchPolicy.from_settings(self.settings)

    def run_spec(self, package: Package, job_id: str, job_order: dict[str, Any],
                 user_id: str | None = None) -> RunSpec:
        s = self.settings
        return RunSpec.for_package(package, job_id, job_order, self.data.root, self.sink_config, self.base_url,
                                   self.storage_config, s.job_timeout, sandbox=self.sandbox, fetch=self.fetch_policy,
                                   input_roots=s.input_roots, user_id=user_id, max_output_bytes=s.max_output_bytes,
                                   logs=self.log_shipping)

    def submit(self, package: Package, job: Job, job_order: dict[str, Any]) -> None:
        """Accept a validated job: journaled, indexed `submitted`, then scheduled. Raises LowDisk or TooManyQueued
        (nothing written), StoreUnavailable or JobExists."""
        spec = self.run_spec(package, job.id, job_order, job.user_id)
        queued = QueuedJob(spec=spec, depends_on=job.depends_on, delay=job.delay)
        job.host = job.host or self.node_id
        self.executor  # noqa: B018 (started before indexing: if workers cannot start, no job is left `submitted`)
        self.disk_floor.check()
        self.admission.admit()
        # journaled, indexed, then scheduled, by the group commit's writer for its whole batch: a job indexed as
        # `submitted` can always be re-queued after a crash. If indexing fails its journal line stays, inert: only
        # jobs the store holds as unfinished are ever re-queued.
        self.acceptance.create(job, queued)

    def start(self, package: Package, job: Job, job_order: dict[str, Any], read: Versioned) -> bool:
        """Start a created job (OGC API Processes Part 4; `read`: its document as read, `job`: it validated again),
        admitted as a submission is: journaled, its document moved to `submitted` only if nobody wrote it since it was
        read, then scheduled. False when someone had (nothing changed in the store; its journal line is taken back).
        Raises LowDisk, TooManyQueued (nothing written) or StoreUnavailable."""
        spec = self.run_spec(package, job.id, job_order, job.user_id)
        queued = QueuedJob(spec=spec, depends_on=job.depends_on, delay=job.delay)
        self.executor  # noqa: B018 (as in submit: no job is left `submitted` that workers cannot start)
        self.disk_floor.check()
        self.admission.admit()
        self.journal.append(queued)
        # a write that failed may still have landed: its line stays, inert unless the job is `submitted` (as a
        # submission's does, ades.jobs.acceptance); a write refused for a newer version certainly did not
        if not replace(self.store, read, started_document(read.source, job.message, self.node_id)):
            self.journal.void(job.id)
            return False
        self.write_marks.mark()
        self._accepted(queued)
        return True

    def submit_batch(self, jobs: list[Job]) -> None:
        """Accept a validated batch (ades.api.batch: the parent first): admitted as one submission, its jobs indexed
        `submitted` in bulk; the children are fed to an executor later (ades.jobs.batches). Raises LowDisk,
        TooManyQueued (nothing written) or StoreUnavailable."""
        for job in jobs:
            job.host = job.host or self.node_id
        self.disk_floor.check()
        self.admission.admit()
        self.batches.accept(jobs)
        self.write_marks.mark()

    def _rebuild_child(self, doc: dict[str, Any], packages: dict[str, Package] | None = None) -> QueuedJob:
        return self.rebuild(doc, float(doc.get("delay") or 0.0), packages)

    def _fed(self, queued: QueuedJob) -> None:
        """A batch's child fed to this process's executor (journaled already)."""
        self.executor  # noqa: B018 (made on first use)
        self.table.transition(queued.job_id, HostState.JOURNALED, "fed from its batch", payload=queued)
        self.scheduler.add(queued)

    def _accepted(self, queued: QueuedJob) -> None:
        # on the group commit's writer thread, once the job is journaled and indexed
        self.table.transition(queued.job_id, HostState.JOURNALED, "accepted", payload=queued)
        self.scheduler.add(queued)

    def requeue(self, queued: QueuedJob) -> None:
        """A job reconciliation found waiting: journaled here again (its old journal goes), then scheduled."""
        self.journal.append(queued)
        self.table.transition(queued.job_id, HostState.JOURNALED, "found unstarted in a dead process's journal",
                              payload=queued)
        self.scheduler.add(queued)

    def dismiss(self, job_id: str, status: Status) -> None:
        """OGC dismiss: an ended job's files go (its status stays what it was), its objects in the output bucket
        first, so that no node serves them again (raises StorageError, having removed nothing here, when they
        cannot be removed); an unfinished job is cancelled."""
        if status.terminal:
            storage = self.output_storage
            if storage is not None:
                storage.delete_keys(storage.job_keys(job_id))
            self.folder(job_id).remove()
        elif status is Status.CREATED:
            # nothing of it exists outside the store: no folder to ask, no worker holds it
            self.store.apply(StatusUpdate(job_id=job_id, status=Status.DISMISSED, message="dismissed on request"))
            self.store.refresh()
        else:
            self.cancel(job_id)

    def cancel(self, job_id: str) -> None:
        """Stop the job wherever it is on this host (waiting, queued, running), and record it `dismissed` in the
        store at once: the worker's own report is then a stale no-op."""
        # a Dask executor reaches every worker, so any server process may make one to cancel; a local one only
        # holds the jobs of its own process
        reaches = self._executor is not None or self.settings.executor == "dask"
        if not (reaches and self.executor.cancel(job_id)):
            self.stop_elsewhere(self.folder(job_id))
        self.store.apply(StatusUpdate(job_id=job_id, status=Status.DISMISSED, message="dismissed on request"))
        self.store.refresh()

    def stop_here(self, job_id: str) -> None:
        """Stop a job this process holds without recording anything (it was dismissed through another node)."""
        with self._lock:
            executor = self._executor
        if executor is None or not executor.cancel(job_id):
            self.stop_elsewhere(self.folder(job_id))

    @staticmethod
    def stop_elsewhere(folder: JobFolder, grace: float = DEFAULT_GRACE) -> int:
        """Request the job's cancel and stop the process groups working in its folder: a job another server process
        of this host holds (a queued one is dismissed by its worker when it would start). How many groups."""
        folder.request_cancel()
        found = groups.working_in(folder.path)
        if found:
            threading.Thread(target=groups.stop, args=(found, grace), name="ades-cancel", daemon=True).start()
        return len(found)

    def wait(self, job_id: str, timeout: float) -> Status | None:
        """The job's outcome once it has ended here (the worker's word, final; the store may still be catching
        up through SNS and the consumer), or None after `timeout` seconds."""
        return self.table.wait_ended(job_id, timeout)

    def reconcile(self) -> Report | None:
        """Settle jobs a previous run left unfinished, if this process wins the data dir's lock; None if another
        process of this server does it."""
        # a retry (the store did not answer the first time) keeps the lock it holds: a second open of the lock file
        # would be refused by this very process's first one
        handle = self._reconcile_lock or claim(self.data.root)
        if handle is None:
            return None
        self._reconcile_lock = handle
        self._start_retention()  # once: a retry finds it running
        self._start_lease()
        self._start_callbacks()
        if self._reconciler is not None:
            self._reconciler.close()
        held_elsewhere = self._held_by_workers if self.settings.executor == "dask" else None
        self._reconciler = Reconciler(self.store, self.data.root, self.requeue, self.publisher, self.table,
                                      held_elsewhere=held_elsewhere, node=self.node_id,
                                      claim=lambda job_id: claim_job(self.store, job_id, self.node_id))
        report = self._reconciler.run()
        # after the re-queues: the feeder skips the children this table holds, and a journaled child must be found
        # there, not fed a second time
        self.batches.start()
        return report

    def _start_retention(self) -> None:
        """The periodic purge (ADES_RETENTION), in the one process of the data dir that holds its reconcile lock."""
        if self.settings.retention is None or self.retention is not None:
            return
        self.retention = Retention(self.settings, self.store.client, parse_duration(self.settings.retention),
                                   parse_duration(self.settings.retention_interval), self.data.root)
        self.retention.start()

    def _start_lease(self) -> None:
        """This node's lease and the sweep for lost jobs, in the one process of the data dir that holds its reconcile
        lock: one beat per node however many server processes it runs. Raises StoreUnavailable (retried)."""
        if self.lease is not None:
            return
        hosts = HostStore(self.store.client, self.settings)
        self.lease = Lease(hosts, self.node_id, url=self.base_url, length=self.settings.host_lease).start()
        self.sweep = LostJobSweep(hosts, self.store, self.node_id, self.settings.host_lease,
                                  self.settings.adopt_lost_jobs, self.rebuild, self.journal.append, self.adopted,
                                  self.publisher, self._dask_knows if self.settings.executor == "dask" else None)
        self.sweep.start()

    def _start_callbacks(self) -> None:
        """The notifier of jobs' subscribers (ades.jobs.notifier), in the one process of the data dir that holds its
        reconcile lock."""
        if self.notifier is not None or self.status_document is None:
            return
        self.notifier = Notifier(CallbackStore(self.store.client, self.settings), Fetcher(self.fetch_policy),
                                 self.status_document, self.node_id, self.settings).start()

    def rebuild(self, doc: dict[str, Any], delay: float, packages: dict[str, Package] | None = None) -> QueuedJob:
        """The QueuedJob of a stored job, as its accepting node made it (a lost node's job this node adopts, a
        batch's child); `packages` keeps the packages loaded for several jobs at once (process ref -> package)."""
        ref = f"{doc['process-id']}:{doc['process-version']}"
        roots = list(self.settings.input_roots)
        package = packages.get(ref) if packages is not None else None
        if package is None:
            process = ProcessStore(self.store.client, self.settings).get(ref)
            try:
                package = load_package(process.package, "application/cwl+json", allowed_roots=roots)
            except PackageError:  # a $graph with several Workflows: the process id says which one
                package = load_package(process.package, "application/cwl+json", workflow_id=process.id,
                                       allowed_roots=roots)
            if packages is not None:
                packages[ref] = package
        job_order = to_job_order(package, doc.get("inputs") or {}, roots, Fetcher(self.fetch_policy))
        spec = self.run_spec(package, doc["id"], job_order, doc.get("user-id"))
        return QueuedJob(spec=spec, depends_on=doc.get("depends-on") or [], delay=delay)

    def adopted(self, queued: QueuedJob) -> None:
        """A lost node's job this node took over (journaled already): scheduled here."""
        self.table.transition(queued.job_id, HostState.JOURNALED, "adopted from a lost node", payload=queued)
        self.scheduler.add(queued)

    def _dask_knows(self, job_ids: list[str]) -> set[str]:
        """The jobs whose tasks the Dask scheduler still holds (the Dask executor's `known_tasks`)."""
        known = getattr(self.executor, "known_tasks", None)
        return set(known(job_ids)) if known is not None else set()

    def _held_by_workers(self) -> set[str]:
        return set(self.executor.running())  # type: ignore[attr-defined] (the Dask executor asks every worker)

    def close(self) -> None:
        for part in (self.notifier, self.sweep, self.lease):
            if part is not None:
                part.close()
        with self._lock:
            executor, self._executor = self._executor, None
            dismissals, self._dismissals = self._dismissals, None
        if dismissals is not None:
            dismissals.close()
        if executor is not None:
            executor.close()
        for name in ("batches", "acceptance", "scheduler"):
            if name in self.__dict__:
                self.__dict__[name].close()
        if "journal" in self.__dict__:
            self.journal.close()
        if self._reconciler is not None:
            self._reconciler.close()
        if self.retention is not None:
            self.retention.close()
        if self._reconcile_lock is not None:
            self._reconcile_lock.close()
            self._reconcile_lock = None
