"""System accounts that ades runs things as: the local Elasticsearch node's user, the user job tools run as.

Stdlib only (the service launchers import it and must start fast).
"""

from __future__ import annotations

import pwd
import shutil
import subprocess
from pathlib import Path


class AccountError(RuntimeError):
    """A system user could not be found or made; the message says why, for a person."""


def system_user(name: str) -> pwd.struct_passwd:
    """The system user `name`, created (no home, no login shell, a group of its own) if missing. Needs root to
    create one. Never root itself."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        if not Path(useradd).exists():
            raise AccountError(f"cannot create user {name!r}: useradd not found (install it with "
                               "`apt-get install -y passwd`)") from None
        nologin = next((s for s in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false") if Path(s).exists()), "")
        command = [useradd, "--system", "--no-create-home", "--user-group"]
        if nologin:
            command += ["--shell", nologin]
        result = subprocess.run([*command, name], capture_output=True, text=True, check=False)
        if result.returncode not in (0, 9):  # 9: the name already exists (a concurrent start created it)
            raise AccountError(f"could not create user {name!r}: {result.stderr.strip()}") from None
        entry = pwd.getpwnam(name)
    if entry.pw_uid == 0:
        raise AccountError(f"user {name!r} is root; choose an unprivileged user")
    return entry
