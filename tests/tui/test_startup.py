"""The wizard appears fast: importing it must not pull in torch or diffusers (the engine loads them in workers)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_app_leaves_torch_alone() -> None:
    code = (
        "import sys, ioncannon.tui.app, ioncannon.tui.session; "
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'cv2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_session_file_needs_no_textual() -> None:
    code = "import sys, ioncannon.tui.session; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
