"""TOML job files and prompt packs read the same on Python 3.10, where tomllib is missing and tomli serves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import sys
sys.modules["tomllib"] = None  # what Python 3.10 looks like: no tomllib in the standard library
from ioncannon.job import toml
from ioncannon.job.prompts import enabled_styles, load_pack
print(toml.loads.__module__)
print(toml.loads('name = "zwx"\\nsteps = 800')["steps"])
print(len(enabled_styles(load_pack(None))) > 0)
"""


def test_without_tomllib_the_tomli_parser_reads_job_files_and_the_pack(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["tomli._parser", "800", "True"]


def test_on_this_python_the_standard_parser_serves() -> None:
    from ioncannon.job import toml

    expected = "tomllib._parser" if sys.version_info >= (3, 11) else "tomli._parser"
    assert toml.loads.__module__ == expected
    assert toml.loads('identifier = "zwx"') == {"identifier": "zwx"}
