"""The modes of what a host writes in its data dir (the attack on a live server is tests/security/test_files.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ades.jobs.folder import DataDir, make_tree_private, private_folder, write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_dir_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        root = tmp_path / "a" / "data"
        assert DataDir(root).make_private() == []
        private_folder(root / "jobs" / "one")
        write_private(root / "jobs" / "one" / "job.log", "x")
        write_private(root / "jobs" / "one" / "job.log", "y", append=True)
    finally:
        os.umask(old)
    assert [mode(p) for p in (tmp_path / "a", root, root / "jobs", root / "jobs" / "one")] == [0o700] * 4
    assert mode(root / "jobs" / "one" / "job.log") == 0o600
    assert (root / "jobs" / "one" / "job.log").read_text() == "xy"


def test_an_open_data_dir_is_narrowed_but_keeps_its_search_bits(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "jobs").mkdir(parents=True)
    (root / "elasticsearch").mkdir()
    for path in (root, root / "jobs", root / "elasticsearch"):
        path.chmod(0o755)
    assert DataDir(root).make_private() == [root, root / "jobs"]
    assert (mode(root), mode(root / "jobs"), mode(root / "elasticsearch")) == (0o711, 0o700, 0o755)
    assert DataDir(root).make_private() == []


def test_a_tools_outputs_are_made_private(tmp_path: Path) -> None:
    (tmp_path / "out" / "sub").mkdir(parents=True)
    (tmp_path / "out" / "sub" / "a.tif").write_text("a")
    (tmp_path / "out" / "sub" / "a.tif").chmod(0o644)
    (tmp_path / "out" / "sub").chmod(0o755)
    make_tree_private(tmp_path / "out")
    assert (mode(tmp_path / "out" / "sub"), mode(tmp_path / "out" / "sub" / "a.tif")) == (0o700, 0o600)
