"""Durations as operators write them: `30d`, `12h`, `1d12h`, `1.5h`, `45s`, `2w` (also a plain number of seconds).

Used by `ades jobs purge --older-than` and the retention settings; a pure module, below every layer."""

from __future__ import annotations

import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
HINT = "a number and a unit, s, m, h, d or w (e.g. 30d, 12h, 1d12h, 1.5h)"


def parse_duration(text: str | float | int) -> float:
    """Seconds in `text`; a number (or a numeric string) is seconds. Raises ValueError with what was wrong."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a duration: use {HINT}")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        word = text.strip().lower()
        try:
            seconds = float(word)
        except ValueError:
            if not _WHOLE.fullmatch(word):
                raise ValueError(f"{text!r} is not a duration: use {HINT}") from None
            seconds = float(sum(float(n) * UNITS[unit] for n, unit in _PART.findall(word)))
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        raise ValueError(f"{text!r} is not a duration: it must be 0 or more ({HINT})")
    return seconds


def format_duration(seconds: float) -> str:
    """A spelling `parse_duration` reads back, in days at most (2592000 -> 30d, 5400 -> 1h30m, 1.5 -> 1.5s)."""
    if seconds != int(seconds):
        return f"{seconds:g}s"
    left = int(seconds)
    if left == 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = UNITS[unit]
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts)
