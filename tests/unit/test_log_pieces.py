"""The pure parts of shipping and reading job logs: where a chunk is cut, and when following a log stops."""

from __future__ import annotations

import threading

from ades.api.logs import LogSource, follow, last_lines
from ades.jobs.logship import next_chunk
from ades.store.logs import LogRead, whole_characters


def test_a_chunk_ends_at_a_line_end_and_a_line_being_written_waits() -> None:
    assert next_chunk(b"one\ntwo\nthr", final=False) == b"one\ntwo\n"
    assert next_chunk(b"half a line", final=False) == b""
    assert next_chunk(b"half a line", final=True) == b"half a line"


def test_a_chunk_is_at_most_the_limit_and_never_splits_a_character() -> None:
    assert next_chunk(b"aaaa\nbbbb\ncccc\n", final=True, limit=12) == b"aaaa\nbbbb\n"
    long_line = "é".encode() * 10  # 20 bytes, no line end
    piece = next_chunk(long_line, final=False, limit=9)
    assert piece == "é".encode() * 4 and piece.decode() == "éééé"


def test_whole_characters_leaves_out_a_character_being_written() -> None:
    satellite = "🛰".encode()
    assert whole_characters(b"ab" + satellite) == 6
    assert whole_characters(b"ab" + satellite[:3]) == 2
    assert whole_characters(b"ab" + "é".encode()[:1]) == 2
    assert whole_characters(b"") == 0


def test_last_lines() -> None:
    assert last_lines("a\nb\nc\n", 2) == "b\nc\n"
    assert last_lines("a\nb", 5) == "a\nb"


class Growing:
    """A log that gains a line per read until it has `lines`, then (if `final`) says it is complete."""

    def __init__(self, lines: int, final: bool) -> None:
        self.lines, self.final, self.reads = lines, final, 0

    def read(self, offset: int) -> LogRead:
        self.reads += 1
        text = "".join(f"line {i}\n" for i in range(min(self.reads, self.lines)))
        return LogRead(text[offset:], len(text), self.final and self.reads >= self.lines)


def test_following_stops_at_the_last_chunk() -> None:
    log = Growing(3, final=True)
    got = "".join(follow(LogSource(log.read, 15.0), lambda: False, 0, 60))
    assert got == "line 0\nline 1\nline 2\n"


def test_following_a_local_log_reads_once_more_after_the_end_then_stops() -> None:
    log = Growing(2, final=False)
    ended = iter([False, True])
    got = "".join(follow(LogSource(log.read, 0.0), lambda: next(ended, True), 0, 60))
    assert got == "line 0\nline 1\n"


def test_following_stops_when_asked() -> None:
    stop = threading.Event()
    stop.set()
    log = Growing(100, final=False)
    assert "".join(follow(LogSource(log.read, 15.0), lambda: False, 0, 60, stop)) == "line 0\n"
