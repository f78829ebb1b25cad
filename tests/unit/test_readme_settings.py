"""The README's settings table stays true: every setting is there, under its environment name."""

from __future__ import annotations

import re
from pathlib import Path

from ades.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    rows = re.findall(r"^\| (.+?) \|", README.read_text(), re.M)
    documented = set(re.findall(r"`ADES_([A-Z0-9_]+)`", " ".join(rows)))
    missing = [f"ADES_{name.upper()}" for name in Settings.model_fields if name.upper() not in documented]
    assert not missing, f"README settings table lacks {missing}"
