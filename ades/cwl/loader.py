"""cwltool loading, shared by deploy-time validation and the runner.

Loading is where cwltool spends its start-up time (the CWL schemas are parsed on the first load, about half a second;
later loads of a small document take ~10 ms), so the base loading context is built once per process and copied.
The fetcher refuses remote URLs: validation must work offline and fast, and OGC 20-089 packages routinely carry
`$schemas: [http://schema.org/...rdf]`, which cwltool would otherwise download (a few MB) on every load. The remote
documents a package `$include`s or `$import`s are fetched beforehand through ades.fetch (ades.cwl.parse) and handed
to the load. Local files are read only inside the load's roots: a package must not `$include` the server's files.
"""

from __future__ import annotations

import functools
import logging
import re
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from schema_salad.exceptions import ValidationException
from schema_salad.fetcher import DefaultFetcher

from ades import floats

MAX_ERROR_LINES = 40
MAX_ERROR_CHARS = 4000

log = logging.getLogger(__name__)


class CwlLoadError(ValueError):
    """cwltool rejected a document; the message is cwltool's, trimmed and with temporary paths removed."""


class OfflineFetcher(DefaultFetcher):
    """Reads local files inside `roots` only (none: any, for documents ades wrote itself), and remote documents only
    from `remote` (fetched beforehand); anything else fails at once instead of waiting on the network."""

    def __init__(self, cache: Any, session: Any, *, roots: Sequence[Path] | None = None,
                 remote: Mapping[str, str] | None = None) -> None:
        super().__init__(cache, session)
        self.roots = None if roots is None else [Path(root).resolve() for root in roots]
        self.remote = dict(remote or {})

    def _outside(self, url: str) -> bool:
        if self.roots is None:
            return False
        path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path)).resolve()
        return not any(path.is_relative_to(root) for root in self.roots)

    def fetch_text(self, url: str, content_types: list[str] | None = None) -> str:
        if url in self.remote:
            return self.remote[url]
        if not url.startswith("file:"):
            raise ValidationException(f"remote reference {url} is not fetched (ades loads CWL offline)")
        if self._outside(url):
            raise ValidationException(f"{url} is outside the directories packages may be read from")
        return super().fetch_text(url, content_types)

    def check_exists(self, url: str) -> bool:
        if url in self.remote:
            return True
        if not url.startswith("file:") or self._outside(url):
            return False
        return super().check_exists(url)


def confined_context(roots: Sequence[Path], remote: Mapping[str, str] | None = None) -> Any:
    """A copy of the base loading context whose loads read local files inside `roots` only, and of remote documents
    only those in `remote`."""
    context = base_loading_context().copy()
    context.fetcher_constructor = functools.partial(OfflineFetcher, roots=list(roots), remote=remote)
    return context


@functools.cache
def base_loading_context() -> Any:
    """The LoadingContext every load copies (cwltool.context.LoadingContext)."""
    from cwltool.context import LoadingContext
    from cwltool.workflow import default_make_tool

    return LoadingContext(
        {
            "construct_tool_object": default_make_tool,
            "fetcher_constructor": OfflineFetcher,
            "strict": True,
            "do_validate": True,
            "enable_dev": False,
        }
    )


def clean_message(text: str, *paths: str | Path) -> str:
    """cwltool's error text, readable: temporary directories removed, colour codes gone, length bounded."""
    for path in paths:
        # schema-salad prints absolute, file:// and cwd-relative forms of the same path
        text = re.sub(r"(?:file://)?[^\s'\"]*" + re.escape(Path(path).name) + "/", "", text)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = [line.rstrip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) > MAX_ERROR_LINES:
        lines = [*lines[:MAX_ERROR_LINES], f"... ({len(lines) - MAX_ERROR_LINES} more lines)"]
    message = "\n".join(lines)
    return message if len(message) <= MAX_ERROR_CHARS else message[: MAX_ERROR_CHARS - 3] + "..."


def load_process(uri: str, context: Any | None = None) -> Any:
    """Load, validate and construct the cwltool Process at `uri` (a file URI, with `#id` for a `$graph` member).

    Raises CwlLoadError with cwltool's message for anything cwltool rejects.
    """
    from cwltool.errors import WorkflowException
    from cwltool.load_tool import load_tool

    loading_context = (context or base_loading_context()).copy()
    try:
        return load_tool(uri, loading_context)
    except (ValidationException, WorkflowException) as err:
        raise CwlLoadError(str(err)) from err
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        # cwltool reports some malformed documents (a list where a map is expected...) as plain Python errors
        raise CwlLoadError(f"{type(err).__name__}: {err}") from err


def load_text(text: str, fragment: str | None, name: str = "package.cwl", roots: Sequence[Path] = (),
              remote: Mapping[str, str] | None = None) -> Any:
    """Validate CWL given as text: it is written to a temporary file so line numbers in errors match the author's
    file, and the file name in messages is `name`. It may read local files beside it and inside `roots`, and the
    remote documents in `remote`."""
    with tempfile.TemporaryDirectory(prefix="ades-cwl-") as tmp:
        path = Path(tmp) / name
        path.write_text(text, encoding="utf-8")
        uri = path.as_uri() + (f"#{fragment}" if fragment else "")
        try:
            return load_process(uri, confined_context([Path(tmp), *roots], remote))
        except CwlLoadError as err:
            raise CwlLoadError(clean_message(str(err), tmp)) from err


def pack_file(path: Path, fragment: str | None = None, roots: Sequence[Path] = (),
              remote: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A self-contained copy of a CWL file whose steps `run:` other files, or that `$include`s or `$import`s them
    (what `cwltool --pack` prints): the result deploys without the files beside it. Ids may be rewritten (the top
    process becomes `main`). Local files are read inside `roots` only, remote ones from `remote` only."""
    from cwltool.errors import WorkflowException
    from cwltool.load_tool import fetch_document, resolve_and_validate_document
    from cwltool.pack import pack

    uri = path.as_uri() + (f"#{fragment}" if fragment else "")
    try:
        context, document, uri = fetch_document(uri, confined_context(roots or [path.parent], remote))
        context, uri = resolve_and_validate_document(context, document, uri)
        packed = pack(context, uri)
    except (ValidationException, WorkflowException) as err:
        raise CwlLoadError(clean_message(str(err), path.parent)) from err
    return floats.plain(packed)  # cwltool's floats keep their spelling
