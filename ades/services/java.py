"""Find a Java home for Elasticsearch: an explicit one, else the best installed JDK (17 or 21 preferred)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from ades.services.base import MissingPrerequisite

INSTALL_HINT = "install it with `apt-get install -y openjdk-17-jre-headless` or set ADES_ES_JAVA_HOME"
# Elasticsearch 8.19 is tested on 17 and 21 (LTS); newer JDKs may work but are tried only when nothing else exists.
PREFERRED = (17, 21)
MINIMUM = 17


def java_major(home: Path) -> int | None:
    """Major version of the JDK/JRE at `home`, or None if there is no runnable java there."""
    java = home / "bin" / "java"
    if not (java.is_file() and os.access(java, os.X_OK)):
        return None
    release = home / "release"
    if release.is_file():
        match = re.search(r'^JAVA_VERSION="(\d+)(?:\.(\d+))?', release.read_text(errors="replace"), re.M)
        if match:
            return _major(match.group(1), match.group(2))
    try:
        result = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    return _major(match.group(1), match.group(2)) if match else None


def _major(first: str, second: str | None) -> int:
    # "1.8.0_392" is Java 8; "17.0.15" is 17.
    return int(second) if first == "1" and second else int(first)


def _candidates() -> list[Path]:
    found: list[Path] = []
    for variable in ("ES_JAVA_HOME", "JAVA_HOME"):
        if os.environ.get(variable):
            found.append(Path(os.environ[variable]))
    on_path = shutil.which("java")
    if on_path:
        found.append(Path(os.path.realpath(on_path)).parent.parent)
    for root in (Path("/usr/lib/jvm"), Path("/usr/java"), Path("/opt/java"), Path("/opt")):
        if root.is_dir():
            found.extend(sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()))
    unique: list[Path] = []
    for path in found:
        resolved = path.resolve()
        if resolved not in unique:
            unique.append(resolved)
    return unique


def find_java_home(explicit: Path | None) -> tuple[Path, int]:
    """Return (java home, major version). Raises MissingPrerequisite with a one-line hint when there is none."""
    if explicit is not None:
        major = java_major(explicit)
        if major is None:
            raise MissingPrerequisite(f"Java not found at ADES_ES_JAVA_HOME={explicit}: {INSTALL_HINT}")
        if major < MINIMUM:
            raise MissingPrerequisite(
                f"Java {major} at ADES_ES_JAVA_HOME={explicit} is too old (need {MINIMUM}+): {INSTALL_HINT}"
            )
        return explicit, major
    usable = [(home, major) for home in _candidates() if (major := java_major(home)) and major >= MINIMUM]
    if not usable:
        raise MissingPrerequisite(f"Java {MINIMUM}+ not found: {INSTALL_HINT}")
    preferred = [item for item in usable if item[1] in PREFERRED]
    return (preferred or usable)[0]
