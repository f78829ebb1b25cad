"""The ades-root plugin's preparation, on real directories: what identifies its source, what is missing when it
cannot be built, when it is not needed. (Its build and install: tests/integration/test_elasticvue.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from ades.config import Settings
from ades.services.base import MissingPrerequisite
from ades.services.es_distribution import Distribution
from ades.services.es_root import SOURCES, ensure_root_plugin, installed_version, source_hash


def test_the_sources_are_package_data_and_hash_stably():
    assert (SOURCES / "pom.xml").is_file()
    assert sorted(p.name for p in (SOURCES / "src" / "main" / "java" / "ades" / "esroot").glob("*.java")) == [
        "RootInfoHandler.java", "RootPlugin.java"]
    assert source_hash() == source_hash() and len(source_hash()) == 16


def _bare_dist(tmp_path: Path) -> Distribution:
    home = tmp_path / "elasticsearch-8.19.21"
    (home / "modules").mkdir(parents=True)
    (home / "plugins").mkdir()
    return Distribution("8.19.21", home)


def test_no_maven_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(MissingPrerequisite, match=r"Maven not found.*apt-get install"):
        ensure_root_plugin(Settings(cache_dir=tmp_path / "cache"), _bare_dist(tmp_path), tmp_path / "jdk")


def test_a_distribution_with_its_own_root_module_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # neither Maven nor a JDK would be found
    dist = _bare_dist(tmp_path)
    (dist.home / "modules" / "rest-root").mkdir()
    ensure_root_plugin(Settings(cache_dir=tmp_path / "cache"), dist, tmp_path / "jdk")
    assert installed_version(dist) is None
