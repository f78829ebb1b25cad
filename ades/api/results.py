"""Results negotiation (OGC API Processes 1.0, 7.11.4 and 7.13): which outputs a client gets, each by value or by
reference, as a JSON document or raw.

The execute request says it once (`response`; per output, `transmissionMode`). A synchronous execute answers so;
an asynchronous job keeps what was asked in its document (`results-request`), and `GET /jobs/{id}/results` answers
the same way:

- document: JSON, output id -> `{"href", "type"}` (by reference) or `{"value", ...}` (by value; a file's content
  inline, as text or base64 with its `mediaType`);
- raw, one output by value: the value itself, with its media type (a file's bytes; a string as text/plain; any
  other value as JSON);
- raw, every output by reference: 204 No Content, with a `Link` header per output;
- raw, several outputs, some by value: `multipart/related` (RFC 2387), one part per output, its `Content-ID` the
  output id; a part by reference is empty and names the output in `Content-Location`.

An output without a transmissionMode: raw means its value (the content is what raw asks for); a document keeps the
server's default, files by reference and other values by value. An optional output the run did not produce is left
out. Output values are built elsewhere (ades.api.views.results_document); this module only chooses and encodes.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from flask import Response, jsonify
from pydantic import BaseModel, ConfigDict

from ades.api.errors import problem
from ades.api.job_outputs import JobOutputs, OutputFile
from ades.api.views import results_document

VALUE = "value"
REFERENCE = "reference"
RESULTS_REL = "http://www.opengis.net/def/rel/ogc/1.0/results"
INLINE_MAX_BYTES = 16 * 1024 * 1024
"""A file larger than this is never read into memory for a document or a multipart answer: it is given by
reference there. (A single raw output is streamed, whatever its size.)"""
_TEXT_TYPES = ("application/json", "application/xml", "application/yaml", "application/geo+json")

Mode = Literal["value", "reference"]


class ResultsRequest(BaseModel):
    """What an execute request asked of its results; stored with an asynchronous job."""

    model_config = ConfigDict(extra="forbid")

    response: Literal["raw", "document"] = "document"
    outputs: dict[str, Mode | None] | None = None
    """Output id -> transmission mode (None: the default); None: every output the run produced."""

    @classmethod
    def of_job(cls, doc: dict[str, Any]) -> ResultsRequest:
        """The request stored with a job (jobs from before it was stored, and WPS-T jobs: the default)."""
        stored = doc.get("results-request")
        return cls.model_validate(stored) if isinstance(stored, dict) else cls()


def results_request(response: str, outputs: dict[str, Any] | None, known: Iterable[str]) -> ResultsRequest:
    """The execute request's `response` and `outputs`, checked against the process's outputs (a 400 naming the
    output otherwise). An empty `outputs` is the same as none: every output."""
    names = list(known)
    wanted: dict[str, Mode | None] = {}
    for name, spec in (outputs or {}).items():
        if name not in names:
            raise problem(400, "invalid-parameter", f"outputs: the process has no output {name!r}; its outputs are "
                          f"{', '.join(repr(n) for n in names) or 'none'}")
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise problem(400, "invalid-parameter", f"outputs.{name}: must be an object, like "
                          '{"transmissionMode": "value"}')
        mode = spec.get("transmissionMode")
        if mode not in (None, VALUE, REFERENCE):
            raise problem(400, "invalid-parameter", f"outputs.{name}.transmissionMode: must be 'value' or "
                          f"'reference', got {mode!r}")
        wanted[name] = mode
    return ResultsRequest(response=response, outputs=wanted or None)


@dataclass
class _Output:
    name: str
    entry: Any
    """its entry in the results document (the reference form of files, `{"value": v}` of other values)"""
    mode: str
    file: OutputFile | None
    """the file of a single-File output, when this node reaches it (its disk, or object storage)"""

    @property
    def media(self) -> str:
        entry = self.entry if isinstance(self.entry, dict) else {}
        return entry.get("type") or "application/octet-stream"

    @property
    def is_value(self) -> bool:
        return isinstance(self.entry, dict) and "value" in self.entry and "href" not in self.entry


def _chosen(doc: dict[str, Any], found: JobOutputs, base_url: str, request: ResultsRequest) -> list[_Output]:
    entries = results_document(doc, found.outputs, found.root, base_url)
    saved = found.outputs or {}
    names = list(request.outputs) if request.outputs else list(entries)
    chosen = []
    for name in names:
        entry = entries.get(name)
        if entry is None or (isinstance(entry, dict) and "value" in entry and entry["value"] is None):
            continue  # an optional output the run did not produce
        value = saved.get(name)
        path = found.file(value.get("path", "")) if isinstance(value, dict) and value.get("class") == "File" else None
        mode = (request.outputs or {}).get(name)
        if mode is None:
            plain_value = isinstance(entry, dict) and "value" in entry and "href" not in entry
            mode = VALUE if request.response == "raw" or plain_value else REFERENCE
        chosen.append(_Output(name, entry, mode, path))
    return chosen


def answer(doc: dict[str, Any], found: JobOutputs, base_url: str, request: ResultsRequest,
           links: Iterable[str] = ()) -> Response:
    """The results of a successful job as `request` asked, with `links` (Link header values) added."""
    outputs = _chosen(doc, found, base_url, request)
    base = f"{base_url.rstrip('/')}/jobs/{doc['id']}/results"
    if request.response == "document":
        response = jsonify({o.name: _document_entry(o, base) for o in outputs})
    elif all(o.mode == REFERENCE for o in outputs):
        response = Response(status=204)
        for o in outputs:
            for href, media in _references(o, base):
                response.headers.add("Link", f'<{href}>; rel="{RESULTS_REL}"; type="{media}"; title="{o.name}"')
    elif len(outputs) == 1:
        response = _raw_value(outputs[0])
    else:
        response = _multipart(outputs, base)
    for link in links:
        response.headers.add("Link", link)
    return response


# --- one output, encoded -----------------------------------------------------------------------------------------
def _document_entry(output: _Output, base: str) -> Any:
    if output.mode == REFERENCE:
        if output.is_value:
            return {"href": f"{base}/{output.name}", "type": "application/json"}
        return output.entry
    content = _small_content(output)
    if content is None:
        return output.entry  # a value already, or what cannot be inlined (no local file, too large, a list of files)
    if _is_text(output.media):
        try:
            return {"value": content.decode("utf-8"), "mediaType": output.media}
        except UnicodeDecodeError:
            pass
    return {"value": base64.b64encode(content).decode("ascii"), "mediaType": output.media, "encoding": "base64"}


def _small_content(output: _Output) -> bytes | None:
    if output.file is None:
        return None
    return output.file.content(INLINE_MAX_BYTES)


def _is_text(media: str) -> bool:
    media = media.split(";", 1)[0].strip().lower()
    return media.startswith("text/") or media in _TEXT_TYPES or media.endswith(("+json", "+xml"))


def _references(output: _Output, base: str) -> list[tuple[str, str]]:
    """(href, media type) of each file an output refers to; a plain value's own URL."""
    entry = output.entry
    if output.is_value:
        return [(f"{base}/{output.name}", "application/json")]
    items = entry if isinstance(entry, list) else [entry]
    return [(item["href"], item.get("type") or "application/octet-stream") for item in items
            if isinstance(item, dict) and isinstance(item.get("href"), str)]


def _raw_value(output: _Output) -> Response:
    if output.file is not None:
        return output.file.inline(output.media)
    if output.is_value:
        value = output.entry["value"]
        if isinstance(value, str):
            return Response(value, mimetype="text/plain")
        return Response(json.dumps(value), mimetype="application/json")
    # a list of files, or a file this host does not hold: its references, as the document would give them
    return jsonify(output.entry)


def _part(output: _Output, base: str) -> tuple[dict[str, str], bytes]:
    """Headers and body of one output's part of a multipart answer."""
    headers = {"Content-ID": f"<{output.name}>"}
    content = _small_content(output) if output.mode == VALUE else None
    if content is not None:
        return {**headers, "Content-Type": output.media}, content
    if output.mode == VALUE and output.is_value:
        value = output.entry["value"]
        if isinstance(value, str):
            return {**headers, "Content-Type": "text/plain; charset=utf-8"}, value.encode()
        return {**headers, "Content-Type": "application/json"}, json.dumps(value).encode()
    references = _references(output, base)
    if output.mode == REFERENCE and len(references) == 1:
        href, media = references[0]
        return {**headers, "Content-Type": media, "Content-Location": href}, b""
    # several files (or none this host can read) by value: the references, as JSON
    return {**headers, "Content-Type": "application/json"}, json.dumps(output.entry).encode()


def _multipart(outputs: list[_Output], base: str) -> Response:
    boundary = f"ades-{uuid.uuid4().hex}"
    parts = [_part(o, base) for o in outputs]
    chunks = []
    for headers, body in parts:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        chunks.append(f"--{boundary}\r\n{head}\r\n".encode() + body + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    root_type = parts[0][0]["Content-Type"].split(";", 1)[0] if parts else "application/octet-stream"
    mimetype = f'multipart/related; boundary="{boundary}"; type="{root_type}"'
    return Response(b"".join(chunks), headers={"Content-Type": mimetype})
