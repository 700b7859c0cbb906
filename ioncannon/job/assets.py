"""Where the shipped assets (demo photos, prompt pack) are, in a checkout or an installed package."""

from __future__ import annotations

from pathlib import Path

import ioncannon.assets


def assets_dir() -> Path:
    here = Path(ioncannon.assets.__file__).resolve().parent
    if not (here / "prompt_pack.toml").is_file():
        raise FileNotFoundError("ioncannon's assets folder is missing; reinstall ioncannon.")
    return here
