"""A Python client for an ades server (any OGC API Processes server with ades' job listing, in fact).

    from ades.client import Client

    ades = Client("http://127.0.0.1:5000")
    ades.deploy("cwl/examples/two-step/two-step.cwl")
    job = ades.execute("two-step", {"message": "hi"}, labels=["demo"])
    job.wait(progress=True)             # "successful" | "failed" | "dismissed"
    job.download("out/")                # every result file, plus results.json
    for other in ades.jobs(labels=["demo"], status=["failed"]):   # all pages, following the server's next links
        print(other.id, other.info["message"])

Every 4xx/5xx answer becomes an `ApiError` carrying the server's OGC exception (type, title, status, detail).
Only HTTP: it imports nothing of the server, so it works against a remote ades.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import requests
from tqdm import tqdm

from ades import floats

DEFAULT_URL = "http://127.0.0.1:5000"
TERMINAL = ("successful", "failed", "dismissed")
STORE_TO_OGC = {"submitted": "accepted", "succeeded": "successful"}
"""The stored status words people see in Elasticsearch, accepted too where the API speaks OGC words."""

CWL_TYPES = {".json": "application/cwl+json", ".cwl": "application/cwl+yaml", ".yaml": "application/cwl+yaml",
             ".yml": "application/cwl+yaml"}
CHUNK = 64 * 1024


class ApiError(Exception):
    """The server said no: an OGC exception document (or, from something that is not ades, whatever it sent)."""

    def __init__(self, status: int, title: str, detail: str, type_: str = "", url: str = "") -> None:
        super().__init__(f"{status} {title}: {detail}" if detail else f"{status} {title}")
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_
        self.url = url

    @classmethod
    def from_response(cls, response: requests.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and ("detail" in body or "title" in body):
            return cls(response.status_code, str(body.get("title") or response.reason), str(body.get("detail") or ""),
                       str(body.get("type") or ""), response.url)
        text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
        return cls(response.status_code, response.reason or "HTTP error", text, "", response.url)


def ogc_status(word: str) -> str:
    """An OGC status word from either vocabulary (`succeeded` -> `successful`)."""
    return STORE_TO_OGC.get(word, word)


class Client:
    """One ades server. `token`: sent as `Authorization: Bearer <token>` on every request."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 60.0,
                 session: requests.Session | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.http = session or requests.Session()
        self.http.headers["Accept"] = "application/json"
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    # --- plumbing ---
    def request(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        """`path_or_url` relative to the server (`/jobs`) or absolute (links the server handed out)."""
        url = path_or_url if "://" in path_or_url else f"{self.url}/{path_or_url.lstrip('/')}"
        kwargs.setdefault("timeout", self.timeout)
        if urlsplit(url).netloc != urlsplit(self.url).netloc:
            # result hrefs may point elsewhere (object storage, presigned): our token is not theirs, and an
            # extra Authorization header breaks a presigned URL's signature
            kwargs["headers"] = {**kwargs.get("headers", {}), "Authorization": None}
        response = self.http.request(method, url, **kwargs)
        if response.status_code >= 400:
            raise ApiError.from_response(response)
        return response

    def _json(self, method: str, path_or_url: str, **kwargs: Any) -> Any:
        return self.request(method, path_or_url, **kwargs).json()

    # --- processes ---
    def deploy(self, path: str | Path) -> dict[str, Any]:
        """Deploy a CWL file (YAML or JSON, by extension); the server's processSummary of it."""
        path = Path(path)
        media = CWL_TYPES.get(path.suffix.lower(), "application/cwl+yaml")
        response = self._json("POST", "/processes", data=path.read_bytes(), headers={"Content-Type": media})
        return response["processSummary"]

    def undeploy(self, process: str) -> None:
        self.request("DELETE", f"/processes/{process}")

    def processes(self) -> list[dict[str, Any]]:
        return self._json("GET", "/processes")["processes"]

    def process(self, process: str) -> dict[str, Any]:
        return self._json("GET", f"/processes/{process}")

    # --- jobs ---
    def execute(self, process: str, inputs: dict[str, Any] | None = None, labels: Iterable[str] = (),
                sync: bool = False, batch: Iterable[dict[str, Any]] | None = None) -> Job:
        """Start a job (OGC execute). `sync=True` lets the server run it to the end before answering; a job that
        outlives the server's sync budget comes back still running, as an async one would. `batch`: items
        (`{"inputs": {...}, "labels": [...]}`, merged over `inputs` and `labels`), one child job each; the job
        returned is their parent (always asynchronous)."""
        body: dict[str, Any] = {"inputs": inputs or {}, "labels": list(labels), "response": "document"}
        if batch is not None:
            body["batch"] = {"items": list(batch)}
            sync = False
        headers = {} if sync else {"Prefer": "respond-async"}
        url = f"{self.url}/processes/{process}/execution"
        # floats go as spelled in the job order: ades.floats
        response = self.http.post(url, data=floats.dumps(body).encode(), timeout=None if sync else self.timeout,
                                  headers={**headers, "Content-Type": "application/json"})
        location = response.headers.get("Location") or _monitor_link(response.headers.get("Link", ""))
        if response.status_code >= 400 and not (sync and location and response.status_code >= 500):
            raise ApiError.from_response(response)
        if response.status_code == 201:
            return Job(self, response.json())
        if not location:
            raise ApiError(response.status_code, "No job", "the server answered without a job location", url=url)
        # sync: the body is the results document (or the failure); the job itself is at its location
        return self.job(location.rstrip("/").rsplit("/", 1)[-1])

    def create(self, process: str, inputs: dict[str, Any] | None = None, labels: Iterable[str] = ()) -> Job:
        """Make a job that does not run until started (OGC API Processes Part 4, `POST /jobs`): status `created`;
        change it with Job.edit, run it with Job.start."""
        body = {"process": process, "inputs": inputs or {}, "labels": list(labels)}
        return Job(self, self._json("POST", "/jobs", data=floats.dumps(body).encode(),
                                    headers={"Content-Type": "application/json"}))

    def job(self, job_id: str) -> Job:
        return Job(self, self._json("GET", f"/jobs/{job_id}"))

    def jobs(self, labels: Iterable[str] = (), status: Iterable[str] = (), process: str | None = None,
             page_size: int | None = None, parent: str | None = None) -> Iterator[Job]:
        """Every matching job, newest first, across all pages (the server's `next` links). `labels`: jobs with all
        of them; `status`: any of these (OGC words, or the stored ones); `parent`: the children of this batch."""
        params: dict[str, Any] = {}
        if labels := list(labels):
            params["labels"] = ",".join(labels)
        if statuses := [ogc_status(s) for s in status]:
            params["status"] = ",".join(statuses)
        if process:
            params["processID"] = process
        if parent:
            params["parentID"] = parent
        if page_size:
            params["limit"] = page_size
        url: str | None = f"{self.url}/jobs"
        seen: set[str] = set()
        while url:
            page = self._json("GET", url, params=params)
            params = {}  # the next link carries the filters itself
            for info in page.get("jobs", []):
                yield Job(self, info)
            url = next((link["href"] for link in page.get("links", []) if link.get("rel") == "next"), None)
            if url in seen:  # a server that hands out the same page again would loop forever
                break
            if url:
                seen.add(url)


class Job:
    """A job on the server. `info` is its last statusInfo (refreshed by status(), wait() and friends)."""

    def __init__(self, client: Client, info: dict[str, Any]) -> None:
        self.client = client
        self.info = info
        self.id: str = info["jobID"]

    def __repr__(self) -> str:
        return f"Job({self.id!r}, status={self.info.get('status')!r})"

    @property
    def done(self) -> bool:
        return self.info.get("status") in TERMINAL

    def refresh(self) -> dict[str, Any]:
        self.info = self.client._json("GET", f"/jobs/{self.id}")
        return self.info

    def status(self) -> str:
        """The current OGC status word (asks the server)."""
        return self.refresh()["status"]

    def wait(self, timeout: float | None = None, progress: bool = False, poll: float = 0.5,
             file: IO[str] | None = None) -> str:
        """Poll until the job ends; its final status. `progress`: a bar (0-100 %, the job's own progress) on
        `file` (stderr). Raises TimeoutError after `timeout` seconds, leaving the job running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = min(poll, 0.2)
        bar = tqdm(total=100, desc=self.id[:8], unit="%", disable=not progress, file=file or sys.stderr,
                   bar_format="{desc} {bar} {n:.0f}%", leave=True)
        try:
            while True:
                info = self.refresh()
                batch = info.get("batch")
                counted = f" {batch['ended']}/{batch['total']} ended" if batch else ""
                bar.set_description_str(f"{self.id[:8]} {info['status']:<10}{counted}", refresh=False)
                bar.update(max(0, int(info.get("progress") or 0) - bar.n))
                bar.refresh()
                if self.done:
                    return info["status"]
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"job {self.id} is still {info['status']} after {timeout:g} s")
                time.sleep(delay)
                delay = min(delay * 1.5, poll)  # quick jobs answer quickly; long ones are not hammered
        finally:
            bar.close()

    def logs(self) -> str:
        return self.client.request("GET", f"/jobs/{self.id}/logs", headers={"Accept": "text/plain"}).text

    def follow_logs(self, poll: float = 0.5) -> Iterator[str]:
        """The log as it grows, in pieces, until the job has ended (then whatever was written last)."""
        sent = 0
        while True:
            finished = self.status() in TERMINAL  # before reading: the final read then has everything
            text = self.logs()
            if len(text) < sent:  # the log was removed (dismissed): nothing more will come
                return
            if len(text) > sent:
                yield text[sent:]
                sent = len(text)
            if finished:
                return
            time.sleep(poll)

    def results(self) -> dict[str, Any]:
        """The results document: output id -> {"href", "type"} for files, {"value": ...} for values."""
        return self.client._json("GET", f"/jobs/{self.id}/results")

    def download(self, directory: str | Path, progress: bool = False, file: IO[str] | None = None) -> list[Path]:
        """Fetch every result file into `directory` (created) and write the results document there as
        results.json; the paths written. Files keep the server's names; clashes get the output id in front."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        document = self.results()
        written: list[Path] = []
        for output, value in document.items():
            entries = value if isinstance(value, list) else [value]
            for entry in entries:
                if isinstance(entry, dict) and isinstance(entry.get("href"), str):
                    written.append(self._fetch(entry["href"], target, output, written, progress, file))
        summary = target / "results.json"
        summary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        written.append(summary)
        return written

    def _fetch(self, href: str, target: Path, output: str, taken: list[Path], progress: bool,
               file: IO[str] | None) -> Path:
        with self.client.request("GET", href, stream=True, headers={"Accept": "*/*"}) as response:
            name = _safe_name(served_filename(response) or output)
            path = target / name
            if path in taken or path.name == "results.json":
                path = target / _safe_name(f"{output}-{name}")
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, desc=path.name, unit="B", unit_scale=True, unit_divisor=1024,
                      disable=not progress, file=file or sys.stderr, leave=True) as bar, \
                    path.open("wb") as out:
                for chunk in response.iter_content(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
        return path

    def edit(self, inputs: dict[str, Any] | None = None, labels: Iterable[str] | None = None) -> dict[str, Any]:
        """Replace the inputs and/or the labels of a created job (`PATCH /jobs/{id}`; 409 once it was started)."""
        body: dict[str, Any] = {}
        if inputs is not None:
            body["inputs"] = inputs
        if labels is not None:
            body["labels"] = list(labels)
        self.info = self.client._json("PATCH", f"/jobs/{self.id}", data=floats.dumps(body).encode(),
                                      headers={"Content-Type": "application/json"})
        return self.info

    def start(self) -> dict[str, Any]:
        """Run a created job (`POST /jobs/{id}/results`): it is accepted, then runs as any job (409 if it was
        started already)."""
        self.info = self.client._json("POST", f"/jobs/{self.id}/results")
        return self.info

    def dismiss(self) -> dict[str, Any]:
        """Cancel a running job, or remove a finished job's files; its statusInfo afterwards."""
        self.info = self.client._json("DELETE", f"/jobs/{self.id}")
        return self.info


# --- helpers -----------------------------------------------------------------------------------------------------
def _monitor_link(header: str) -> str | None:
    match = re.search(r'<([^>]+)>\s*;\s*rel="?monitor"?', header)
    return match.group(1) if match else None


def served_filename(response: requests.Response) -> str | None:
    """The file name a response gives (Content-Disposition), else the last part of its URL."""
    disposition = response.headers.get("Content-Disposition", "")
    match = re.search(r"filename\*=(?:UTF-8'')?([^;]+)", disposition, re.IGNORECASE)
    if match:
        return unquote(match.group(1).strip().strip('"'))
    match = re.search(r'filename="?([^";]+)"?', disposition, re.IGNORECASE)
    if match:
        return match.group(1)
    tail = unquote(urlsplit(response.url).path.rsplit("/", 1)[-1])
    return tail or None


def _safe_name(name: str) -> str:
    """A plain file name: a server cannot make us write outside the target folder."""
    cleaned = Path(name.replace("\\", "/")).name.strip()
    return cleaned if cleaned not in ("", ".", "..") else "output"

