"""The product's own bookkeeping files, hand-edited or damaged: each reader falls back instead of crashing."""

from __future__ import annotations

from pathlib import Path

import pytest

from ioncannon.engine.train.checkpoint import MANIFEST, CheckpointError, CheckpointStore
from ioncannon.engine.weights.trained import INFO_FILE, trained_info
from ioncannon.job.fsio import write_json
from ioncannon.job.paths import JobPaths
from ioncannon.rental.bundle import load_starred
from ioncannon.rental.costs import job_started_at
from ioncannon.tui.session import WizardSession


@pytest.mark.parametrize("manifest", [
    {"format": 1, "step": "ten", "files": {}},
    {"format": 1, "step": 10, "files": ["weights.safetensors"]},
    {"format": 1, "step": 10, "files": {"weights.safetensors": {"bytes": "many", "sha256": "x"}}},
    {"format": 1, "step": 10, "files": {"weights.safetensors": 5}},
])
def test_a_damaged_checkpoint_manifest_is_a_checkpoint_error(tmp_path: Path, manifest: dict) -> None:
    folder = tmp_path / "step-10"
    folder.mkdir()
    write_json(folder / MANIFEST, manifest)
    with pytest.raises(CheckpointError, match="manifest is damaged"):
        CheckpointStore(tmp_path).verify(folder)


@pytest.mark.parametrize("info", [
    {"mode": "full", "steps": "all", "base_model": "m"},
    {"mode": "full", "steps": 800, "base_model": 3},
    {"mode": "sideways", "steps": 800, "base_model": "m"},
])
def test_hand_edited_trained_info_reads_as_not_finished(tmp_path: Path, info: dict) -> None:
    paths = JobPaths(tmp_path / "job")
    write_json(paths.trained / INFO_FILE, info)
    assert trained_info(paths) is None
    write_json(paths.trained / INFO_FILE, {"mode": "full", "steps": 800, "base_model": "m"})
    assert trained_info(paths) is not None  # the same reader accepts what the product writes


def test_starred_list_of_the_wrong_type_is_empty(tmp_path: Path) -> None:
    paths = JobPaths(tmp_path / "job")
    for damaged in (5, "outputs/a.png", {"a": 1}):
        write_json(paths.starred_file, {"starred": damaged})
        assert load_starred(paths) == []
    write_json(paths.starred_file, {"starred": ["outputs/a.png", 3]})
    assert load_starred(paths) == ["outputs/a.png"]


def test_session_fields_of_the_wrong_type_fall_back_one_by_one() -> None:
    session = WizardSession.from_json({"identifier": 42, "photos_dir": ["x"], "demo": "yes", "step": "check",
                                       "budget": 5, "custom_class": "otter"})
    assert session.identifier == "" and session.photos_dir == "" and session.demo is False
    assert session.step == "check" and session.custom_class == "otter" and session.budget == ""


def test_job_start_time_survives_a_damaged_event_log(tmp_path: Path) -> None:
    paths = JobPaths(tmp_path / "job")
    paths.ensure()
    paths.job_file.write_text("{}")
    paths.events_file.write_bytes(b'\xff\xfe garbage\n{"type": "RunnerStarted", "pid": 7, "t": 123.0}\n')
    assert job_started_at(paths) == 123.0
    paths.events_file.write_bytes(b'{"type": "RunnerStarted", "pid": "x", "t": "soon"}\n')
    assert job_started_at(paths) == paths.job_file.stat().st_mtime  # the damaged line is skipped
