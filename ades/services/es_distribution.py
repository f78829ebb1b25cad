"""The Elasticsearch distribution a local node runs: fetched once with Maven, unpacked once, shared by every node.

    ensure_distribution(settings) -> Distribution    the cached one for settings.es_version, else fetched/unpacked
    cache_lock(settings)                             held while one process changes the cache
    version_matches(spec, version) -> bool           Maven version spec ("8.19.21", "[8.19.0,8.20.0)") check

Where things live:

    <cache_dir>/elasticsearch/elasticsearch-<v>.zip     the integ-test-zip, fetched with Maven (kept)
    <cache_dir>/elasticsearch/elasticsearch-<v>/        unpacked, read-only, shared by every node
    <cache_dir>/elasticsearch/.lock                     held while one process fetches, unpacks or adds a plugin

The tree is unpacked with world-readable modes (it holds no secrets) so that a node running as another user than
ades (see ades.services.elasticsearch) can read it without a copy of its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ades.services.base import MissingPrerequisite, ServiceError

if TYPE_CHECKING:
    from ades.config import Settings

log = logging.getLogger(__name__)

MAVEN_GROUP = "org.elasticsearch.distribution.integ-test-zip"
MAVEN_ARTIFACT = "elasticsearch"
MAVEN_HINT = "install it with `apt-get install -y maven`"


# --- versions -------------------------------------------------------------------------------------------------


def _version_key(version: str) -> tuple:
    """Sort key: numeric parts compare as numbers, a qualifier ("8.19.0-SNAPSHOT") sorts before the release."""
    numbers, _, qualifier = version.partition("-")
    parts = tuple(int(p) if p.isdigit() else 0 for p in numbers.split("."))
    return (*parts, 0 if qualifier else 1, qualifier)


def version_matches(spec: str, version: str) -> bool:
    """Whether `version` satisfies a Maven version `spec`: an exact version ("8.19.21") or a range ("[8.19.0,8.20.0)",
    "[8.19,)", "(,8.20.0]"); several ranges may be joined with commas ("[1,2),[3,4)")."""
    spec = spec.strip()
    if not spec or spec[0] not in "[(":
        return version == spec
    key = _version_key(version)
    for piece in re.findall(r"[\[(][^\])]*[\])]", spec):
        inner = piece[1:-1]
        if "," not in inner:  # "[8.19.21]" pins one version
            if inner.strip() == version:
                return True
            continue
        low, high = (part.strip() for part in inner.split(",", 1))
        if low and (_version_key(low) > key or (piece[0] == "(" and _version_key(low) == key)):
            continue
        if high and (_version_key(high) < key or (piece[-1] == ")" and _version_key(high) == key)):
            continue
        return True
    return False


# --- the distribution -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distribution:
    version: str
    home: Path

    @property
    def launcher(self) -> Path:
        return self.home / "bin" / "elasticsearch"


def _dist_root(settings: Settings) -> Path:
    return settings.cache_dir / "elasticsearch"


def cached_distribution(settings: Settings) -> Distribution | None:
    """The newest unpacked distribution in the cache that satisfies `settings.es_version`, or None."""
    root = _dist_root(settings)
    if not root.is_dir():
        return None
    found = []
    for path in root.iterdir():
        match = re.fullmatch(r"elasticsearch-(\d[\w.\-]*)", path.name)
        if (
            match
            and version_matches(settings.es_version, match.group(1))
            and (path / "bin" / "elasticsearch").is_file()
        ):
            found.append(Distribution(match.group(1), path))
    return max(found, key=lambda d: _version_key(d.version), default=None)


def _cached_zip(settings: Settings) -> tuple[str, Path] | None:
    root = _dist_root(settings)
    if not root.is_dir():
        return None
    found = []
    for path in root.glob("elasticsearch-*.zip"):
        version = path.name[len("elasticsearch-") : -len(".zip")]
        if version_matches(settings.es_version, version):
            found.append((version, path))
    return max(found, key=lambda item: _version_key(item[0]), default=None)


def _pom(version: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>ades.local</groupId>
  <artifactId>fetch-elasticsearch</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>{MAVEN_GROUP}</groupId>
      <artifactId>{MAVEN_ARTIFACT}</artifactId>
      <version>{version}</version>
      <type>zip</type>
    </dependency>
  </dependencies>
</project>
"""


def _download_zip(settings: Settings, mvn: str) -> tuple[str, Path]:
    root = _dist_root(settings)
    log.info("downloading Elasticsearch %s (integ-test-zip) with Maven into %s", settings.es_version, root)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=root) as work:
        work_path = Path(work)
        (work_path / "pom.xml").write_text(_pom(settings.es_version))
        out = work_path / "out"
        result = subprocess.run(
            [mvn, "-B", "-q", "dependency:copy-dependencies", f"-DoutputDirectory={out}"],
            cwd=work_path,
            capture_output=True,
            text=True,
            check=False,
        )
        zips = sorted(out.glob("elasticsearch-*.zip")) if out.is_dir() else []
        if result.returncode != 0 or len(zips) != 1:
            detail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise ServiceError(
                f"Maven could not fetch {MAVEN_GROUP}:{MAVEN_ARTIFACT}:{settings.es_version} (exit "
                f"{result.returncode}):\n{detail}"
            )
        version = zips[0].name[len("elasticsearch-") : -len(".zip")]
        target = root / zips[0].name
        shutil.move(str(zips[0]), target)
    os.chmod(target, 0o644)
    log.info("downloaded %s (%.0f MB) in %.1f s", target, target.stat().st_size / 1e6, time.monotonic() - started)
    return version, target


def _unpack(version: str, archive: Path, root: Path) -> Distribution:
    """Unpack into a temporary directory and rename into place, so a half-unpacked tree is never used."""
    started = time.monotonic()
    target = root / f"elasticsearch-{version}"
    with tempfile.TemporaryDirectory(prefix=".unpack-", dir=root) as work, zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            path = Path(zf.extract(info, work))
            unix_mode = info.external_attr >> 16
            if info.is_dir():
                os.chmod(path, 0o755)
            else:
                # Read-only for everyone, executable where the archive says so (bin/*, native libs).
                os.chmod(path, 0o755 if unix_mode & stat.S_IXUSR else 0o644)
        unpacked = Path(work) / f"elasticsearch-{version}"
        if not (unpacked / "bin" / "elasticsearch").is_file():
            raise ServiceError(f"{archive} does not contain elasticsearch-{version}/bin/elasticsearch")
        if target.exists():
            shutil.rmtree(target)
        os.rename(unpacked, target)
    log.info("unpacked %s in %.1f s", target, time.monotonic() - started)
    return Distribution(version, target)


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cache_lock(settings: Settings) -> contextlib.AbstractContextManager:
    """The lock held while one process changes the Elasticsearch cache (fetch, unpack, install a plugin)."""
    return _locked(_dist_root(settings) / ".lock")


def ensure_distribution(settings: Settings) -> Distribution:
    """The unpacked distribution for `settings.es_version`: from the cache, else unpacked from a cached zip, else
    downloaded with Maven. Needs Maven only in the last case."""
    root = _dist_root(settings)
    dist = cached_distribution(settings)
    if dist is not None:
        log.info("using cached Elasticsearch %s at %s", dist.version, dist.home)
        return dist
    mvn = shutil.which("mvn")
    if mvn is None and _cached_zip(settings) is None:
        # Check before taking the lock (creating the cache dir) so a missing Maven is reported plainly.
        raise MissingPrerequisite(f"Maven not found (needed to download Elasticsearch): {MAVEN_HINT}")
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock"):
        dist = cached_distribution(settings)  # another process may have finished while we waited
        if dist is not None:
            log.info("using cached Elasticsearch %s at %s", dist.version, dist.home)
            return dist
        cached = _cached_zip(settings)
        if cached is not None:
            log.info("using cached archive %s (unpacking it)", cached[1])
            version, archive = cached
        else:
            assert mvn is not None
            version, archive = _download_zip(settings, mvn)
        return _unpack(version, archive, root)
