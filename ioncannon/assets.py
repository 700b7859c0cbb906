"""Where the shipped assets (demo photos, prompt pack) are, in a checkout or an installed package."""

from __future__ import annotations

from pathlib import Path


def assets_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "assets", here / "assets"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("ioncannon's assets folder is missing; reinstall ioncannon.")
