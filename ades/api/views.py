"""How stored things look over HTTP: statusInfo of a job, the results document, process summaries.

Pure functions of stored documents (plus the job's folder for results), shared by the jobs, processes and WPS-T
routes so a job looks the same whichever route created it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pygeoapi.util import render_j2_template

from ades import callbacks
from ades.api.outputs import served
from ades.status import Status
from ades.store.processes import DeployedProcess

JSON = "application/json"
SUMMARY_KEYS = ("id", "version", "title", "description", "keywords", "jobControlOptions", "outputTransmission")


def job_links(base_url: str, job_id: str, status: Status) -> list[dict[str, str]]:
    base = base_url.rstrip("/")
    links = [
        {"href": f"{base}/jobs/{job_id}", "rel": "self", "type": JSON, "title": "this job"},
        # what a client follows to monitor the job (OGC's `status` relation), wherever it found this document
        {"href": f"{base}/jobs/{job_id}", "rel": "status", "type": JSON, "title": "the job's status"},
        # the same, by the name OGC's Link headers give it (a synchronous answer's `rel=monitor`)
        {"href": f"{base}/jobs/{job_id}", "rel": "monitor", "type": JSON, "title": "monitor the job"},
        {"href": f"{base}/jobs/{job_id}/logs", "rel": "log", "type": "text/plain", "title": "the job log"},
    ]
    if status is Status.SUCCEEDED:
        links.append({"href": f"{base}/jobs/{job_id}/results", "rel": "http://www.opengis.net/def/rel/ogc/1.0/results",
                      "type": JSON, "title": "results"})
        # the same results as a STAC Item (assets, footprint): same rel, another media type, as OGC APIs do
        links.append({"href": f"{base}/jobs/{job_id}/results?f=stac",
                      "rel": "http://www.opengis.net/def/rel/ogc/1.0/results", "type": "application/geo+json",
                      "title": "results as a STAC Item"})
    return links


def status_info(doc: dict[str, Any], base_url: str) -> dict[str, Any]:
    """OGC statusInfo of a `jobs` document, plus the ades fields people filter on (labels, processVersion). What is
    not known yet (`started` of an accepted job, `finished` of a running one) is left out: OGC's schema has no null
    for them."""
    status = Status(doc["status"])
    info = {
        "jobID": doc["id"],
        "processID": doc.get("process-id"),
        "processVersion": doc.get("process-version"),
        "type": "process",
        "status": status.ogc,
        "message": doc.get("message") or "",
        "progress": doc.get("progress") or 0,
        "created": doc.get("created"),
        "started": doc.get("start-time"),
        "finished": doc.get("stop-time"),
        "updated": doc.get("updated"),
        "labels": list(doc.get("labels") or []),
        "callback": callbacks.shown(doc),  # the delivery to the job's subscriber, if it has one
        "parentID": doc.get("parent-id"),
        "batchIndex": doc.get("batch-index"),
        "links": job_links(base_url, doc["id"], status),
    }
    return {key: value for key, value in info.items() if value is not None}


def callback_body(doc: dict[str, Any], base_url: str) -> dict[str, Any]:
    """What a job's subscriber is POSTed: its status document, without the record of the delivery itself."""
    info = status_info(doc, base_url)
    info.pop("callback", None)
    return info


def process_summary(process: DeployedProcess, base_url: str) -> dict[str, Any]:
    summary = {k: process.description[k] for k in SUMMARY_KEYS if k in process.description}
    summary.update(id=process.id, version=process.version, mutable=process.mutable)
    summary["links"] = process_links(process, base_url)
    return summary


def process_description(process: DeployedProcess, base_url: str) -> dict[str, Any]:
    description = dict(process.description)
    description.update(process_summary(process, base_url))
    description.setdefault("inputs", {})
    description.setdefault("outputs", {})
    return description


def process_links(process: DeployedProcess, base_url: str) -> list[dict[str, str]]:
    base = base_url.rstrip("/")
    ref = f"{process.id}:{process.version}"
    return [
        {"href": f"{base}/processes/{ref}", "rel": "self", "type": JSON, "title": "process description"},
        {"href": f"{base}/processes/{ref}/package", "rel": "http://www.opengis.net/def/rel/ogc/1.0/application-package",
         "type": "application/cwl+json", "title": "the CWL application package"},
        {"href": f"{base}/processes/{ref}/execution", "rel": "http://www.opengis.net/def/rel/ogc/1.0/execute",
         "type": JSON, "title": "execute (OGC)"},
        {"href": f"{base}/processes/{ref}/jobs", "rel": "http://www.opengis.net/def/rel/ogc/1.0/job-list",
         "type": JSON, "title": "execute (WPS-T)"},
    ]


# --- results ---------------------------------------------------------------------------------------------------
def _file_entry(shown: dict[str, Any], value: dict[str, Any], href: str) -> dict[str, Any]:
    """An OGC link to a File output (`href`, `type`) that is also the CWL File object, every field kept."""
    entry: dict[str, Any] = {"href": href, **shown}
    fmt = value.get("format")
    if isinstance(fmt, str) and "media-types/" in fmt:
        entry["type"] = fmt.split("media-types/", 1)[1]
    return entry


def results_document(doc: dict[str, Any], outputs: dict[str, Any] | None, outputs_dir: Path,
                     base_url: str) -> dict[str, Any]:
    """Output id -> {href} (files, served by /jobs/{id}/results/{output} or /files/...) or the value itself.

    `outputs` is cwltool's output object, with its files in `outputs_dir` (ades.api.job_outputs: the job's folder
    here, or its results manifest); without it (files removed, or another host ran the job and outputs are not in
    object storage) the URLs the finish step reported stand in."""
    base = base_url.rstrip("/")
    job_id = doc["id"]
    if outputs is None:
        reported = doc.get("outputs") or {}
        return {name: {"href": url} if isinstance(url, str) else url for name, url in reported.items()}
    files = f"{base}/jobs/{job_id}/files"
    result: dict[str, Any] = {}
    for name, value in outputs.items():
        if value is None:
            continue  # an optional output the job did not produce
        if _is_file(value):
            result[name] = _file_entry(served(value, files, outputs_dir) or {}, value,
                                       f"{base}/jobs/{job_id}/results/{name}")
        elif isinstance(value, list) and value and all(_is_file(v) for v in value):
            shown = [(served(v, files, outputs_dir), v) for v in value]
            result[name] = [_file_entry(s, v, s["location"]) for s, v in shown if s is not None]
        else:
            result[name] = {"value": served(value, files, outputs_dir)}
    return result


def _is_file(value: Any) -> bool:
    return isinstance(value, dict) and value.get("class") == "File"


# --- HTML ------------------------------------------------------------------------------------------------------
TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


def _with_format(href: str, fmt: str) -> str:
    parts = urlsplit(href)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "f"] + [("f", fmt)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def jobs_page(tpl_config: dict[str, Any], locale: Any, jobs: list[dict[str, Any]], links: list[dict[str, str]],
              total: int, exact: bool, filters: dict[str, str], base_url: str) -> str:
    """The jobs list as HTML. ades/templates come first on the template path, so `jobs.html` is ours and extends
    pygeoapi's `_base.html` (same frame as the landing page). Page links keep `f=html` whatever the request used
    (Accept header or `f`), so paging stays in HTML."""
    self_href = next((link["href"] for link in links if link["rel"] == "self"), "")
    html_links = [
        {"href": _with_format(self_href, "html"), "rel": "self", "type": "text/html", "title": "this page"},
        {"href": _with_format(self_href, "json"), "rel": "alternate", "type": JSON, "title": "this page as JSON"},
    ]
    html_links += [{**link, "href": _with_format(link["href"], "html"), "type": "text/html"} for link in links
                   if link["rel"] == "next"]
    # our own base URL, not the template config's: that one can be another app's when one process holds several
    data = {"base": base_url.rstrip("/"), "jobs": jobs, "links": html_links, "numberMatched": total, "exact": exact,
            "filters": filters,
            "statuses": [status.ogc for status in Status]}
    return render_j2_template(tpl_config, {"path": str(TEMPLATES)}, "jobs.html", data, locale)
