"""The photo step's path box: what it says about bad folders, and how it completes a typed path."""

from __future__ import annotations

import os
from pathlib import Path

from ioncannon.tui.screens.photos import PathSuggester, folder_problem


def test_folder_problems_say_what_to_do(tmp_path: Path) -> None:
    assert "Type the folder's path" in (folder_problem("  ") or "")
    assert "does not exist" in (folder_problem(str(tmp_path / "nope")) or "")
    (tmp_path / "file.jpg").write_bytes(b"x")
    assert "is a file" in (folder_problem(str(tmp_path / "file.jpg")) or "")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".DS_Store").write_bytes(b"")  # hidden junk alone still means empty
    assert "is empty" in (folder_problem(str(empty)) or "") and "scp" in (folder_problem(str(empty)) or "")
    assert folder_problem(str(tmp_path)) is None


async def test_suggester_completes_folders_only(tmp_path: Path) -> None:
    (tmp_path / "photos_of_rex").mkdir()
    (tmp_path / "photos.txt").write_text("not a folder")
    (tmp_path / ".photos_hidden").mkdir()
    suggester = PathSuggester()
    assert await suggester.get_suggestion(str(tmp_path / "pho")) == str(tmp_path / "photos_of_rex") + os.sep
    assert await suggester.get_suggestion(str(tmp_path / "zzz")) is None
    assert await suggester.get_suggestion(str(tmp_path / "nowhere" / "x")) is None
    assert await suggester.get_suggestion(str(tmp_path) + os.sep) == str(tmp_path / "photos_of_rex") + os.sep
