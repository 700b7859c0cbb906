"""Outside text reaches the terminal printable: file names, paths and model metadata with ESC sequences, newlines
or direction overrides are shown escaped by doctor, run, status and the runner's state file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ioncannon.job.printable import printable
from tests.job import test_hostile_inputs as hostile
from tests.job.test_hostile_inputs import cli, one_sentence, valid_job

place = hostile.place
HOSTILE_NAMES = ["a\x1b]0;owned\x07.jpg", "b\x1b[2J.jpg", "c\nfake row.jpg", "d\u202egpj.exe.jpg"]
RAW = ("\x1b", "\x07", "\u202e")


def test_printable_escapes_what_a_terminal_acts_on() -> None:
    assert printable("a\x1b[2Jb\n\u202ec\udcff") == "a\\x1b[2Jb\\x0a\\u202ec\\udcff"
    assert printable("zwx é 日本 photo.jpg") == "zwx é 日本 photo.jpg"
    assert printable("x" * 50, 10) == "x" * 9 + "…"


def test_doctor_shows_hostile_file_names_escaped(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, name in enumerate(HOSTILE_NAMES + ["e.jpg", "f.jpg"]):
        Image.new("RGB", (96, 80), (40 * i, 90, 160)).save(photos / name, format="JPEG")
    for extra in ([], ["--json"]):
        proc = subprocess.run([sys.executable, "-m", "ioncannon", "doctor", str(photos), "--identifier", "zwx",
                               "--class", "dog", "--out", str(tmp_path / "out"), *extra],
                              capture_output=True, text=True, timeout=120)
        shown = proc.stdout + proc.stderr
        assert proc.returncode == 0, shown
        assert not any(ch in shown for ch in RAW), shown
        assert "fake row" in shown and not any(line.startswith("fake row") for line in shown.splitlines())
    assert json.loads(proc.stdout)[0]["file"] in HOSTILE_NAMES  # the JSON keeps the exact names, escaped


def test_a_direction_override_in_photos_dir_is_refused_at_the_door(capsys: pytest.CaptureFixture[str],
                                                                    place: dict[str, Path]) -> None:
    odd = place["root"] / "photos\u202egpj"
    place["photos"].rename(odd)
    jobfile = place["root"] / "job.json"
    jobfile.write_text(json.dumps({**valid_job(odd), "name": "odd"}))
    code, out, err = cli(capsys, "run", str(jobfile), "--yes", "--workdir", str(place["work"]))
    assert code == 2 and "control characters" in err
    one_sentence(err)
    assert not any(ch in out + err for ch in RAW)


def test_model_metadata_in_a_failure_reaches_run_status_and_state_printable(place: dict[str, Path]) -> None:
    model = place["root"] / "model"
    model.mkdir()
    (model / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
        "unet": ["diffusers", "UNet2DConditionModel\x1b]0;owned\x07\x1b[2J\u202e"],
    }))
    for i in range(3, 6):
        Image.new("RGB", (96, 80), (30 * i, 60, 20 * i)).save(place["photos"] / f"IMG_{i}.jpg")
    jobfile = place["root"] / "job.json"
    jobfile.write_text(json.dumps({**valid_job(place["photos"]), "name": "meta", "base_model": str(model),
                                   "resolution": 64, "train": {"steps": 1, "prior_preservation": False}}))
    run = subprocess.run([sys.executable, "-m", "ioncannon", "run", str(jobfile), "--yes", "--workdir",
                          str(place["work"])], capture_output=True, text=True, timeout=600)
    shown = run.stdout + run.stderr
    assert "FAILED" in shown and "Traceback" not in shown, shown
    assert "local folder" in shown and "no connection" not in shown  # the hub was never asked
    status = subprocess.run([sys.executable, "-m", "ioncannon", "status", "meta", "--workdir", str(place["work"])],
                            capture_output=True, text=True, timeout=120)
    state = (place["work"] / "meta" / ".ioncannon" / "state.json").read_text()
    log = (place["work"] / "meta" / ".ioncannon" / "runner.log").read_text(errors="replace")
    assert "Traceback" in log  # the details are kept for whoever reads the log, escaped like the rest
    for text in (shown, status.stdout + status.stderr, json.loads(state)["message"], log):
        assert not any(ch in text for ch in RAW), text
    assert "\\x1b" in status.stdout
