"""Settings: the one place where defaults live. Every field can be set from the environment as ADES_<NAME>."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from ades.config_batches import BatchSettings
from ades.config_callbacks import CallbackSettings
from ades.config_node import LocalNodeSettings

DEFAULT_RUNNING_JOBS_PER_USER = 1000
"""Unfinished jobs per user when auth is configured and max_running_jobs_per_user is unset: a tenth of
max_queued_jobs' default, so no one user fills the queue every user shares."""
DEFAULT_SYNC_EXECUTES_PER_USER = 2
"""Synchronous executes per user at once when auth is configured and max_sync_executes_per_user is unset: a
few of the 16 request threads `ades serve` runs by default (2 processes of 8), across which the places are
counted."""


DURATION_PATTERN = r"^\s*(\d+(\.\d+)?|(\d+(\.\d+)?[smhdwSMHDW])+)\s*$"
"""A duration as ades.durations reads it (30d, 1d12h, or seconds); parsed where it is used, since the status
consumer's Lambda carries this module without that one."""


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "ades"


class Settings(LocalNodeSettings, CallbackSettings, BatchSettings):
    # `ades services start` writes what it started (the moto endpoint, topic and queue) to .ades/services.env,
    # so every later `ades …` in the same folder finds them; real environment variables always win.
    model_config = SettingsConfigDict(env_prefix="ADES_", extra="ignore", env_file=".ades/services.env")

    # --- Elasticsearch -------------------------------------------------------------------------------------
    es_url: str | None = Field(
        default=None,
        description="URL of an existing Elasticsearch cluster. When set, ades starts no local node and uses this one.",
    )
    es_url_secret_arn: str | None = Field(
        default=None,
        description="ARN of a Secrets Manager secret whose value is the cluster URL with its credentials, for the "
        "status-consumer Lambda of infra/ades.yaml, which reads it at start when es_url is unset (so the "
        "credentials are in no environment variable).",
    )
    es_request_timeout: float = Field(default=30.0, gt=0, description="Seconds before an ES request gives up.")
    es_max_retries: int = Field(default=3, ge=0, description="Retries of a failed ES request (with backoff).")
    es_bulk_max_bytes: int = Field(
        default=16 * 1024**2, ge=1024**2,
        description="Largest bulk request that stores accepted jobs (the group commit), in bytes; a batch larger is "
        "sent in several, a job larger goes alone. Under the node's http.max_content_length (100 MB) with room to "
        "spare: a bulk is held in the node's heap while it is indexed.",
    )
    index_prefix: str = Field(
        default="",
        pattern=r"^[a-z0-9_.-]*$",
        description="Prefix of every index and alias ades creates (tests use it to stay apart).",
    )
    conflict_retries: int = Field(
        default=8, ge=0, description="How often a status update is retried after an optimistic-concurrency conflict."
    )
    jobs_track_total_hits: int = Field(
        default=10_000, ge=1, le=2**31 - 1,
        description="Job listings count matches exactly up to this many and say 'at least' beyond (OGC "
        "numberMatched): past it Elasticsearch stops counting, and on the sorted jobs index a first page stops as "
        "soon as it has its jobs and this count.",
    )

    # --- AWS: status events (SNS topic -> SQS queue -> consumer) ---------------------------------------------
    aws_region: str = Field(default="us-east-1", description="AWS region of the topic and queues.")
    aws_endpoint_url: str | None = Field(
        default=None, description="AWS endpoint override (the local moto server); unset for real AWS."
    )
    aws_public_endpoint_url: str | None = Field(
        default=None, description="The S3 endpoint presigned output URLs name, when clients reach object storage "
        "at another address than ades does (docker-compose: the host's published moto port); unset: the endpoint "
        "ades uses.")
    sns_topic_arn: str | None = Field(
        default=None, description="Topic the update-job steps publish to. When unset, events go straight to ES."
    )
    sqs_queue_url: str | None = Field(default=None, description="Queue the consumer reads status events from.")
    sqs_dlq_url: str | None = Field(default=None, description="Dead-letter queue of the status queue.")
    status_topic_name: str = Field(default="ades-job-status", description="Name of the topic ades creates.")
    status_queue_name: str = Field(default="ades-job-status", description="Name of the queue ades creates.")
    max_receive_count: int = Field(default=5, ge=1, description="Receives before a message goes to the DLQ.")
    queue_visibility_timeout: int = Field(
        default=30, ge=0, le=43200, description="Seconds a received status message stays hidden before it returns."
    )
    raw_message_delivery: bool = Field(
        default=True, description="Subscribe the queue with raw delivery (the consumer also reads SNS envelopes)."
    )
    event_sink: Literal["auto", "sns", "direct"] = Field(
        default="auto",
        description="Where workers send status: sns (topic -> queue -> consumer), direct (straight to ES), or auto "
        "(sns when a topic or an AWS endpoint is configured).",
    )
    moto_host: str = Field(default="127.0.0.1", description="Address the local moto server binds to.")
    moto_port: int = Field(default=5055, ge=1, le=65535, description="Port of the local moto server.")
    aws_timeout: float = Field(default=10.0, gt=0, description="Seconds before an SNS/SQS call gives up.")
    aws_max_attempts: int = Field(default=5, ge=1, description="Attempts of an SNS/SQS call (with backoff).")

    # --- Executor: where jobs run ------------------------------------------------------------------------
    executor: Literal["local", "dask"] = Field(
        default="local",
        description="local: warm worker processes of the server itself; dask: a Dask distributed cluster "
        "(ADES_DASK_SCHEDULER).",
    )
    dask_scheduler: str | None = Field(
        default=None,
        description="Address of the Dask scheduler jobs go to (tcp://127.0.0.1:8786 style); unset: the local one "
        "`ades services start --dask` runs, tcp://127.0.0.1:<dask_port>.",
    )
    dask_workers: int = Field(default=2, ge=1, description="Dask worker processes `ades services start --dask` starts.")
    dask_port: int = Field(default=8786, ge=1, le=65535, description="Port of the local Dask scheduler.")
    dask_retry_lost: bool = Field(
        default=False,
        description="Run a job whose Dask worker died once more (on a live worker) instead of failing it.",
    )

    # --- Jobs ------------------------------------------------------------------------------------------------
    max_queued_jobs: int = Field(
        default=10_000, ge=0,
        description="Back-pressure: past this many queued (submitted) jobs, execute answers 503 with Retry-After "
        "and writes nothing. 0: no cap.",
    )
    process_cache_ttl: float = Field(
        default=1.0, ge=0,
        description="Seconds a server process trusts its cache of deployed processes before asking the store whether "
        "another server sharing it deployed, replaced or undeployed one; changes made through this server (same "
        "data dir) are seen at once. 0: ask on every request.",
    )
    max_delay: float = Field(default=86_400.0, ge=0, description="Largest `delay` (seconds) a request may ask.")
    host_lease: float = Field(
        default=30.0, gt=0,
        description="Seconds an API node's (or Dask worker's) lease in the `hosts` index lasts: it is renewed every "
        "sixth of it; a node whose lease expired is taken for dead, and its unfinished jobs are adopted or failed "
        "by a live node (ades.jobs.leases).",
    )
    adopt_lost_jobs: bool = Field(
        default=False,
        description="A job that never started on a node whose lease expired is taken over once by a live node "
        "(rebuilt from its document) instead of failed; a job that was running there fails either way.",
    )
    job_timeout: float | None = Field(
        default=86_400.0, gt=0,
        description="Run-time limit of a job in seconds: past it the job is killed and fails with the reason. "
        "Unset (empty) for none.",
    )
    job_nice: int = Field(
        default=10, ge=0, le=19,
        description="Niceness of local job workers: jobs take the CPU the API leaves, so the server stays responsive "
        "under load.",
    )
    sandbox: Literal["bwrap", "none"] = Field(
        default="bwrap",
        description="How job tools are confined: bwrap (bubblewrap: a user of their own, the system and their inputs "
        "read-only, only their own folders writable, no network unless declared) or none (they run as the server's "
        "user and see all it sees: for packages you trust as you trust the server).",
    )
    job_user: str = Field(
        default="ades-job",
        description="Unprivileged system user job tools run as in the sandbox when the server runs as root (created "
        "on first use); a server that is not root runs them as itself, in a user namespace.",
    )
    job_network: Literal["declared", "never"] = Field(
        default="declared",
        description="Network for sandboxed tools: declared (only tools whose CWL has NetworkAccess: true) or never.",
    )
    sandbox_read_only: list[Path] = Field(
        default_factory=list,
        description="More host paths sandboxed tools may read (tools installed outside /usr and /opt), a JSON list.",
    )
    container_runtime: Literal["none", "podman", "docker", "singularity", "apptainer"] = Field(
        default="none",
        description="Container runtime cwltool runs DockerRequirement tools in (their image is then their "
        "confinement, not the sandbox; see Security), installed on every worker: none (no containers: a package that "
        "requires DockerRequirement is refused at deploy unless docker_without_container is set; a hint is ignored), "
        "podman, docker, singularity or apptainer.",
    )
    docker_without_container: bool = Field(
        default=False,
        description="With container_runtime none, accept packages that require DockerRequirement and run their tools "
        "on the workers without a container, in the sandbox like any tool (the image is ignored: the tools must be "
        "installed on the workers).",
    )

    # --- Reaching out (ades/fetch.py): http(s) inputs, executionUnit hrefs, $include/$import; file:// inputs ----
    input_roots: list[Path] = Field(
        default_factory=list,
        description="Directories file:// inputs, a deploy's file:// executionUnit href and its $include/$import may "
        "be read from, a JSON list; empty: every file:// reference is refused.",
    )
    fetch_allow: list[str] = Field(
        default_factory=list,
        description="Host names, addresses or networks (CIDR, e.g. 10.1.0.0/16) that http(s) fetches may reach "
        "although they are loopback, private, link-local or cloud-metadata addresses (refused otherwise), a JSON list.",
    )
    fetch_max_bytes: int = Field(
        default=4 * 1024**3, ge=1,
        description="Largest download of one http(s) input (a job whose input is larger fails with the reason).",
    )
    fetch_timeout: float = Field(
        default=600.0, gt=0,
        description="Seconds one http(s) input may take to download, redirects included (past it the job fails).",
    )

    # --- Request limits (each refused with a 4xx OGC exception; nothing is written) ----------------------------
    max_body_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024,
        description="Largest request body in bytes (execute requests, deployed packages); larger ones get 413.",
    )
    max_labels: int = Field(default=100, ge=0, description="Most labels one job may carry.")
    max_label_length: int = Field(
        default=256, ge=1, le=1024,
        description="Longest label, in characters (at most 1024: the index keeps longer labels unsearchable).",
    )
    max_page_limit: int = Field(
        default=1000, ge=1, le=10_000,
        description="Most jobs one GET /jobs page returns: a larger `limit` is refused with 400 (ES caps a page at "
        "10,000).",
    )
    max_running_jobs_per_user: int | None = Field(
        default=None, ge=0,
        description="Most unfinished (submitted or running) jobs one user may have; past it execute answers 429 with "
        "Retry-After and writes nothing. 0: no cap. Unset: 1000 with auth configured, else none (without auth "
        "everyone is the one user `anonymous`, so the cap would be a second global cap beside max_queued_jobs).",
    )
    max_sync_executes_per_user: int | None = Field(
        default=None, ge=0,
        description="Most synchronous executes (each holds a request thread until its job ends) one user may have "
        "at once on a host; past it a request that may be answered asynchronously gets a job (201 with Location, "
        "as with Prefer: respond-async), others (mode sync, response raw) get 429. 0: no cap. Unset: 2 with auth "
        "configured, else none.",
    )
    user_shares: dict[str, float] = Field(
        default_factory=dict,
        description="Shares of users in the order queued jobs start, a JSON object (user id -> share; others have "
        "1): users with jobs queued take turns, a user of share 2 getting two turns to another's one.",
    )
    max_output_bytes: int = Field(
        default=10 * 1024**3, ge=0,
        description="The most one job may write into its folder (outputs, working and temporary files, log), in "
        "bytes: watched while it runs and checked at its end; past it the job is stopped and fails with the "
        "reason, and its outputs are removed. 0: no cap.",
    )
    min_free_disk_bytes: int = Field(
        default=1024**3, ge=0,
        description="Free space the data dir's disk must keep, in bytes: below it new jobs get 503 with Retry-After "
        "(jobs write their files there, and the local Elasticsearch its data). 0: no check.",
    )

    # --- Files ---------------------------------------------------------------------------------------------
    cache_dir: Path = Field(
        default_factory=_default_cache_dir, description="Downloads (the Elasticsearch zip) are kept here."
    )
    data_dir: Path = Field(
        default=Path(".ades"), description="Run-time state: Elasticsearch data and logs, pid files, job folders."
    )

    # --- Job logs seen from every node (ades/store/logs.py, ades/jobs/logship.py) -------------------------
    log_store: Literal["local", "elasticsearch"] = Field(
        default="local",
        description="Where a job's log is read from when its folder is not on the node asked: local (nowhere else: "
        "one host, or a data dir every node shares) or elasticsearch (the host running a job ships its log to the "
        "job-logs index once a second and at its end; every node reads and follows it there).",
    )
    log_ship_max_bytes: int = Field(
        default=16 * 1024 * 1024, ge=4096,
        description="The most of one job's log shipped to the job-logs index (log_store=elasticsearch); past it the "
        "shipped log says where it was cut, and the whole log stays in the job's folder on its host.",
    )

    # --- Job outputs (ades/storage.py) ---------------------------------------------------------------------
    output_storage: Literal["local", "s3"] = Field(
        default="local",
        description="Where job output files end up: local (served by this server from the job folder) or s3 "
        "(uploaded to output_bucket; the job's outputs hold presigned URLs).",
    )
    output_bucket: str | None = Field(default=None, description="S3 bucket of job outputs (output_storage=s3).")
    output_prefix: str = Field(
        default="jobs", description="Key prefix in output_bucket: objects are <prefix>/<job id>/<output id>/<name>."
    )
    presign_expiry: int = Field(
        default=604800, ge=1, le=604800, description="Seconds a presigned output URL stays valid (S3 allows 7 days)."
    )

    # --- Retention (ades/jobs/retention.py): the server's periodic `ades jobs purge` ----------------------------
    retention: str | None = Field(
        default=None, pattern=DURATION_PATTERN,
        description="Age past which the server removes finished jobs (succeeded, failed, dismissed) with their "
        "folders and stored outputs, counted from their end (stop-time), or their creation when they have none: "
        "a duration such as 30d, 12h or 1d12h (units s, m, h, d, w), or seconds. Unset: never (`ades jobs purge` "
        "does it by hand).",
    )
    retention_interval: str = Field(
        default="1h", pattern=DURATION_PATTERN,
        description="How often the server runs that purge, a duration such as 1h (or seconds, above 0); the first "
        "run is at start. One process per data dir runs it: the one that reconciles the data dir.",
    )

    @field_validator("retention", mode="before")
    @classmethod
    def _no_retention(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("retention_interval", mode="after")
    @classmethod
    def _some_interval(cls, value: str) -> str:
        if not any(digit in value for digit in "123456789"):
            raise ValueError("the interval must be above 0")
        return value

    # --- Auth (ades/api/auth.py): bearer tokens; with neither set the server is open, everyone is `anonymous` ------
    auth_tokens_file: Path | None = Field(
        default=None,
        description="YAML or JSON file mapping each bearer token to {user, roles}; re-read when it changes.",
    )
    auth_jwt_key: str | None = Field(
        default=None,
        description="Verifies JWT bearer tokens: an HMAC secret, or a PEM public key; `@path` reads it from a file.",
    )
    auth_jwt_algorithms: list[str] = Field(
        default=["HS256", "RS256", "ES256"],
        description="JWT algorithms accepted; only those fitting the key's kind (HMAC secret or public key) apply.",
    )
    auth_jwt_audience: str | None = Field(default=None, description="Required `aud` of JWTs, when set.")
    auth_jwt_issuer: str | None = Field(default=None, description="Required `iss` of JWTs, when set.")
    auth_user_claim: str = Field(default="sub", min_length=1, description="JWT claim holding the user id.")
    auth_roles_claim: str = Field(
        default="roles", min_length=1,
        description="JWT claim holding the roles (a list or a space-separated string); dots reach into objects, "
        "e.g. realm_access.roles.",
    )
    auth_jwt_max_age: float = Field(
        default=86_400.0, gt=0,
        description="Longest lifetime of a JWT in seconds: exp - iat (or exp - now when it has no iat) past it is "
        "refused, so a leaked token does not work for ever; a JWT without exp is always refused.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="A bearer token that may read /metrics and nothing else (for a Prometheus scraper); with auth "
        "on, /metrics otherwise needs a user's token.",
    )

    # --- Exposure (ades/serve.py, ades/api/hosts.py): who reaches the server at all ----------------------------
    allow_unauthenticated_bind: bool = Field(
        default=False,
        description="Let `ades serve` listen on an address other than loopback with auth off (every caller then acts "
        "as `anonymous`): only when something in front of the server authenticates every request.",
    )
    anonymous_roles: list[str] = Field(
        default_factory=list,
        description="Roles of `anonymous`, whom every request acts as while auth is off, a JSON list (e.g. "
        "[\"deployer\"]). None by default: anonymous runs processes and sees its own jobs, but neither deploys nor "
        "sees anyone else's jobs.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="More names a request's Host header may carry, a JSON list, besides localhost, 127.0.0.1, ::1, "
        "the bind address and the host of ADES_PUBLIC_URL (and any IP address when bound to all interfaces); any "
        "other Host gets 400, which defeats DNS rebinding. [\"*\"]: any Host.",
    )

    @field_validator("auth_tokens_file", "auth_jwt_key", "auth_jwt_audience", "auth_jwt_issuer", "job_timeout",
                     "max_running_jobs_per_user", "max_sync_executes_per_user", "metrics_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `ADES_AUTH_TOKENS_FILE=` must mean "no tokens file", not the current directory
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("user_shares", mode="after")
    @classmethod
    def _positive_shares(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [user for user, share in value.items() if not share > 0]
        if bad:
            raise ValueError(f"the share of {', '.join(map(repr, bad))} must be a number above 0")
        return value

    @field_validator("cache_dir", "data_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()


    @property
    def auth_enabled(self) -> bool:
        """Whether requests need a bearer token (a tokens file or a JWT key is set)."""
        return self.auth_tokens_file is not None or self.auth_jwt_key is not None

    @property
    def elasticsearch_url(self) -> str:
        """The cluster ades talks to: the external one if given, else the local node."""
        return self.es_url or f"http://{self.es_host}:{self.es_port}"

    @property
    def auth_configured(self) -> bool:
        """Whether requests carry users of their own (a tokens file or a JWT key), not everyone `anonymous`."""
        return self.auth_tokens_file is not None or self.auth_jwt_key is not None

    @property
    def running_jobs_cap(self) -> int:
        """max_running_jobs_per_user in force (0: none): its default is on with auth."""
        if self.max_running_jobs_per_user is not None:
            return self.max_running_jobs_per_user
        return DEFAULT_RUNNING_JOBS_PER_USER if self.auth_configured else 0

    @property
    def sync_executes_cap(self) -> int:
        """max_sync_executes_per_user in force (0: none): its default is on with auth."""
        if self.max_sync_executes_per_user is not None:
            return self.max_sync_executes_per_user
        return DEFAULT_SYNC_EXECUTES_PER_USER if self.auth_configured else 0

    @property
    def dask_scheduler_address(self) -> str:
        return self.dask_scheduler or f"tcp://127.0.0.1:{self.dask_port}"

    @property
    def uses_external_es(self) -> bool:
        return self.es_url is not None

    @property
    def uses_sns(self) -> bool:
        if self.event_sink == "auto":
            return bool(self.sns_topic_arn or self.aws_endpoint_url)
        return self.event_sink == "sns"

    @property
    def jobs_alias(self) -> str:
        return f"{self.index_prefix}jobs"

    @property
    def processes_alias(self) -> str:
        return f"{self.index_prefix}processes"

    @property
    def logs_alias(self) -> str:
        return f"{self.index_prefix}job-logs"

    @property
    def hosts_alias(self) -> str:
        return f"{self.index_prefix}hosts"
