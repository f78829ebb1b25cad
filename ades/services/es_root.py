"""The ades-root plugin: `GET /` and `HEAD /` on the local node, as every Elasticsearch client expects them.

    ensure_root_plugin(settings, dist, java_home)        build once per (ES version, plugin source); install
    build_plugin(version, digest, archive, java_home)    the Maven build alone
    source_hash() -> str                                 identifies the plugin's source (its descriptor's version)

The integ-test-zip that ades runs leaves out the module that answers the root (the default distribution's
rest-root, which Elastic does not publish as an artifact of its own), so Elasticvue's connection test,
elasticsearch-py's info()/ping() and health checks that start with `GET /` get 405. The plugin's Java sources and
pom are package data (es_root_plugin/); Maven builds them against org.elasticsearch:elasticsearch at the exact
version of the distribution (a plugin loads only into the version it was built for):

    <cache_dir>/elasticsearch/ades-root-<es version>-<source hash>.zip    built once, kept
    <distribution>/plugins/ades-root/                                     installed by bin/elasticsearch-plugin

The installed descriptor's version is the source hash, so a start whose plugin is installed and current touches
neither Maven nor the plugin tool; a changed source (a newer ades) is rebuilt and reinstalled.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ades.services.base import MissingPrerequisite, ServiceError
from ades.services.es_distribution import MAVEN_HINT, Distribution, cache_lock

if TYPE_CHECKING:
    from ades.config import Settings

log = logging.getLogger(__name__)

PLUGIN_NAME = "ades-root"
SOURCES = Path(__file__).with_name("es_root_plugin")


def source_hash() -> str:
    """A digest of every file of the plugin's source tree (names and contents), build output excluded."""
    digest = hashlib.sha256()
    for path in sorted(p for p in SOURCES.rglob("*") if p.is_file() and "target" not in p.relative_to(SOURCES).parts):
        digest.update(path.relative_to(SOURCES).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def installed_version(dist: Distribution) -> str | None:
    """The version in the installed plugin's descriptor (the source hash it was built from), or None."""
    descriptor = dist.home / "plugins" / PLUGIN_NAME / "plugin-descriptor.properties"
    if not descriptor.is_file():
        return None
    match = re.search(r"^version=(.*)$", descriptor.read_text(errors="replace"), re.M)
    return match.group(1).strip() if match else None


def ensure_root_plugin(settings: Settings, dist: Distribution, java_home: Path) -> None:
    """Make sure `dist` has the current ades-root plugin: nothing to do when it is installed and current (or when
    the distribution has its own root module); else build it (unless built before) and install it. Raises
    MissingPrerequisite (no Maven) or ServiceError (the build or the install failed)."""
    if (dist.home / "modules" / "rest-root").is_dir():
        log.info("Elasticsearch %s has its own rest-root module: the ades-root plugin is not needed", dist.version)
        return
    wanted = source_hash()
    if installed_version(dist) == wanted:
        return
    with cache_lock(settings):
        if installed_version(dist) == wanted:  # another process installed it while we waited
            return
        archive = _archive_path(settings, dist.version, wanted)
        if not archive.is_file():
            build_plugin(dist.version, wanted, archive, java_home)
        _install(dist, archive, java_home)


def _archive_path(settings: Settings, version: str, digest: str) -> Path:
    return settings.cache_dir / "elasticsearch" / f"{PLUGIN_NAME}-{version}-{digest}.zip"


def build_plugin(version: str, digest: str, archive: Path, java_home: Path) -> None:
    """`mvn package` in a copy of the sources (package data may be read-only), the zip moved to `archive`. Maven
    runs on `java_home`, a JDK or a runtime alone: the pom compiles with the Eclipse compiler, not javac."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingPrerequisite(f"Maven not found (needed to build the ades-root plugin): {MAVEN_HINT}")
    log.info("building the ades-root plugin for Elasticsearch %s with Maven (Java %s)", version, java_home)
    started = time.monotonic()
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=archive.parent) as work:
        project = Path(work) / "ades-root"
        shutil.copytree(SOURCES, project, ignore=shutil.ignore_patterns("target"))
        # Maven's own environment (proxy, MAVEN_OPTS, ~/.m2) is the user's; only its Java is chosen here.
        env = {**os.environ, "JAVA_HOME": str(java_home)}
        result = subprocess.run(
            [mvn, "-B", "-q", "package", f"-Delasticsearch.version={version}", f"-Dades.plugin.version={digest}"],
            cwd=project, env=env, capture_output=True, text=True, check=False,
        )
        built = project / "target" / f"{PLUGIN_NAME}.zip"
        if result.returncode != 0 or not built.is_file():
            detail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
            raise ServiceError(
                f"Maven could not build the ades-root plugin for Elasticsearch {version} (exit {result.returncode}):"
                f"\n{detail}"
            )
        os.chmod(built, 0o644)
        shutil.move(str(built), archive)
    for old in archive.parent.glob(f"{PLUGIN_NAME}-{version}-*.zip"):
        if old != archive:
            old.unlink(missing_ok=True)
    log.info("built %s in %.1f s", archive, time.monotonic() - started)


def _plugin_tool(dist: Distribution, java_home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(dist.home),
        "ES_JAVA_HOME": str(java_home),
    }
    tool = dist.home / "bin" / "elasticsearch-plugin"
    return subprocess.run([str(tool), *args], env=env, capture_output=True, text=True, check=False)


def _install(dist: Distribution, archive: Path, java_home: Path) -> None:
    started = time.monotonic()
    if (dist.home / "plugins" / PLUGIN_NAME).exists():
        log.info("removing the outdated ades-root plugin from %s", dist.home)
        removed = _plugin_tool(dist, java_home, "remove", PLUGIN_NAME)
        if removed.returncode != 0:
            raise ServiceError(f"elasticsearch-plugin remove {PLUGIN_NAME} failed:\n{removed.stdout}{removed.stderr}")
    result = _plugin_tool(dist, java_home, "install", "--batch", archive.resolve().as_uri())
    if result.returncode != 0:
        raise ServiceError(f"elasticsearch-plugin install {archive} failed:\n{result.stdout}{result.stderr}")
    # Readable by the node's user, like the rest of the distribution.
    target = dist.home / "plugins" / PLUGIN_NAME
    for path in [target, *target.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    log.info("installed the ades-root plugin into %s in %.1f s", dist.home, time.monotonic() - started)
