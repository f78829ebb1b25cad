"""Real local services ades needs, started and stopped by ades itself (`ades services start|stop|status`).

Each service is a module with the same three functions:

    ensure_running(settings) -> str    start only if needed; returns the URL to use
    stop(settings) -> None             stop what this data dir started; leave anything else alone
    status(settings) -> dict           at least: service, url, running, pid

`SERVICES` lists them in start order (stop runs in reverse). Modules are imported lazily.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ades.services.base import MissingPrerequisite, ServiceError

# name -> module; start order. Add moto, dask, … here as they arrive.
SERVICES: dict[str, str] = {
    "elasticsearch": "ades.services.elasticsearch",
    "moto": "ades.services.moto",
    "consumer": "ades.services.consumer",
    "dask": "ades.services.dask",
}

OPTIONAL: frozenset[str] = frozenset({"dask"})
"""Started only when asked for (`ades services start --dask` or by name); a plain start leaves them out."""

DEFAULT_SERVICES: list[str] = [name for name in SERVICES if name not in OPTIONAL]

__all__ = ["DEFAULT_SERVICES", "OPTIONAL", "SERVICES", "MissingPrerequisite", "ServiceError", "service_module"]


def service_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(SERVICES[name])
    except KeyError:
        raise ServiceError(f"unknown service {name!r}; known: {', '.join(SERVICES)}") from None
