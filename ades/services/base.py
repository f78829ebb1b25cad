"""Small helpers shared by the local services: errors, pid files, process checks, HTTP probes, a run-as user.

Stdlib only, so `ades services …` starts fast and works before the heavy dependencies are imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import stat
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ades.accounts import AccountError, system_user


class ServiceError(Exception):
    """A local service could not be started, stopped or reached. The message is one line meant for a person."""


class MissingPrerequisite(ServiceError):
    """A program a service needs (Java, Maven, …) is not installed. The message says how to install it."""


# --- HTTP -----------------------------------------------------------------------------------------------------


def http_json(url: str, timeout: float = 2.0) -> dict | None:
    """GET `url` and decode JSON; None when nothing answers, it is not JSON, or the status is an error."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read().decode("utf-8"))
    except (OSError, ValueError, urllib.error.URLError):
        return None


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    import socket

    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


# --- processes ------------------------------------------------------------------------------------------------


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def process_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie (an exited child nobody has reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # /proc/<pid>/stat: "pid (comm) state …"; comm may contain spaces or parentheses, so split at the last ')'.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def process_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def processes_matching(text: str) -> list[int]:
    """Live processes whose command line contains `text`."""
    own = os.getpid()
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit()
        and int(entry.name) != own
        and text in process_cmdline(int(entry.name))
        and process_alive(int(entry.name))
    ]


# --- the user a service runs as -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunAs:
    """Who a service process runs as. `switch` is False when we are not root (then we run as ourselves)."""

    name: str
    uid: int
    gid: int
    switch: bool

    def chown(self, path: Path) -> None:
        if self.switch:
            os.chown(path, self.uid, self.gid)

    def chown_tree(self, root: Path) -> None:
        if not self.switch:
            return
        os.chown(root, self.uid, self.gid)
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), self.uid, self.gid, follow_symlinks=False)

    def can_traverse(self, directory: Path) -> bool:
        """Whether this user may pass through `directory` (the x bit that applies to it)."""
        st = directory.stat()
        if not self.switch or self.uid == 0:
            return True
        if st.st_uid == self.uid:
            return bool(st.st_mode & stat.S_IXUSR)
        if st.st_gid == self.gid or st.st_gid in os.getgrouplist(self.name, self.gid):
            return bool(st.st_mode & stat.S_IXGRP)
        return bool(st.st_mode & stat.S_IXOTH)

    def grant_traverse(self, path: Path, log) -> None:
        """Make every directory above `path` (and `path` itself) passable for this user.

        Only the "x" (search) bit for others is added, and only where it is missing: that lets the user reach
        a known path without being able to list the directory. Typically this is needed once for /root when the
        cache or data directory lives in root's home.
        """
        if not self.switch:
            return
        for directory in [*reversed(path.parents), path]:
            if directory.is_dir() and not self.can_traverse(directory):
                mode = directory.stat().st_mode
                os.chmod(directory, stat.S_IMODE(mode) | stat.S_IXOTH)
                log(f"granted traverse permission (o+x) on {directory} so user {self.name} can reach {path}")


def run_as(user: str) -> RunAs:
    """The account to run a service as: `user` (created as a system user if missing) when root, else ourselves."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, switch=False)
    try:
        entry = system_user(user)
    except AccountError as err:
        raise ServiceError(f"{err} (Elasticsearch refuses to run as root)") from None
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, switch=True)
