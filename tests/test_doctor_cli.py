"""`ioncannon doctor` end to end: the real CLI, its table, its JSON and its exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ioncannon.cli.doctor import main
from tests.engine import photo_corpus

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("doctor") / "photos"
    photo_corpus.good_photos(folder, 5)
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "placeholder.txt").write_text("put photos here\n")
    (folder / "broken.jpg").write_bytes(b"")
    return folder


def _run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_json_schema_through_the_real_cli(photos: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "samples"
    proc = subprocess.run(
        [sys.executable, "-m", "ioncannon.cli.doctor", str(photos), "--identifier", "zwx", "--class", "man",
         "--out", str(out_dir), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    items = json.loads(proc.stdout)
    assert isinstance(items, list) and len(items) == 8
    for item in items:
        assert {"file", "status", "reasons", "output"} <= item.keys()
        assert item["status"] in ("ok", "fixed", "flagged", "rejected", "ignored")
        assert isinstance(item["reasons"], list) and all(isinstance(r, str) for r in item["reasons"])
        assert item["output"] is None or Path(item["output"]).is_file()
    by = {i["file"]: i for i in items}
    assert by["broken.jpg"]["status"] == "rejected" and by["broken.jpg"]["output"] is None
    assert by[".DS_Store"]["status"] == by["placeholder.txt"]["status"] == "ignored"
    outputs = sorted(Path(i["output"]).name for i in items if i["output"])
    assert outputs == [f"zwx man_{n:03d}.png" for n in range(1, 6)]
    assert Path(by["good_00.jpg"]["output"]).parent == out_dir


def test_table_lists_every_file_with_status_and_output(photos: Path, tmp_path: Path) -> None:
    code, out, _ = _run(str(photos), "--identifier", "zwx", "--class", "dog", "--out", str(tmp_path / "o"))
    assert code == 0
    header, rule, *rows = out.splitlines()
    assert header.split()[:2] == ["file", "status"] and "output" in header and set(rule) <= {"-", " "}
    for name, status in (("good_03.jpg", "ok"), ("broken.jpg", "rejected"), (".DS_Store", "ignored")):
        assert any(r.startswith(name) and f"  {status}  " in r for r in rows), name
    assert any("zwx dog_005.png" in r for r in rows)
    assert "5 photos written to" in out and "a photo of zwx dog" in out


@pytest.mark.parametrize("case, needle", [
    ("missing", "does not exist"), ("empty", "no usable photos"), ("junk_only", "no usable photos"),
    ("underscore", "'_'"), ("slash", "'/'"),
])
def test_bad_input_exits_2_with_a_message(photos: Path, tmp_path: Path, case: str, needle: str) -> None:
    folder, ident = photos, "zwx"
    if case == "missing":
        folder = tmp_path / "nope"
    elif case == "empty":
        folder = tmp_path / "empty"
        folder.mkdir()
    elif case == "junk_only":
        folder = tmp_path / "junk"
        folder.mkdir()
        (folder / "readme.txt").write_text("hello")
        (folder / "Thumbs.db").write_bytes(b"\xd0\xcf")
    elif case == "underscore":
        ident = "my_subject"
    else:
        ident = "a/b"
    code, out, err = _run(str(folder), "--identifier", ident, "--class", "man", "--out", str(tmp_path / "o"))
    assert code == 2 and needle in err and "Traceback" not in err + out
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize("inside", ["", "samples"])
def test_out_must_be_outside_the_photo_folder(photos: Path, inside: str) -> None:
    before = sorted(p.name for p in photos.iterdir())
    code, _, err = _run(str(photos), "--identifier", "zwx", "--class", "man", "--out", str(photos / inside))
    assert code == 2 and "never changed" in err
    assert sorted(p.name for p in photos.iterdir()) == before


def test_common_word_identifier_warns_but_runs(photos: Path, tmp_path: Path) -> None:
    code, _, err = _run(str(photos), "--identifier", "ship", "--class", "man", "--out", str(tmp_path / "o"),
                        "--resolution", "256")
    assert code == 0 and "common word" in err and "rare alternatives" in err
    from PIL import Image

    with Image.open(next((tmp_path / "o").iterdir())) as im:
        assert im.size == (256, 256)
