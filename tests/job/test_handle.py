"""The one client API: create refuses bad specs and taken names, find takes a name or a folder, follow reports news."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ioncannon.job import handle
from ioncannon.job.errors import JobError
from ioncannon.job.events import Message, StageStarted
from ioncannon.job.fsio import append_line
from ioncannon.job.spec import JobSpec


def spec_for(photos: Path, name: str = "zwx-1", identifier: str = "zwx") -> JobSpec:
    return JobSpec(name=name, photos_dir=str(photos), identifier=identifier, class_name="dog", device="cpu")


def test_create_checks_the_spec_and_refuses_a_taken_name(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    paths = handle.create(tmp_path / "work", spec_for(photos))
    assert paths.job_file.is_file()
    with pytest.raises(JobError, match="already exists"):
        handle.create(tmp_path / "work", spec_for(photos))
    with pytest.raises(JobError, match="does not exist"):
        handle.create(tmp_path / "work", spec_for(tmp_path / "missing", name="other"))
    with pytest.raises(JobError, match="identifier contains '/'"):
        handle.create(tmp_path / "work", spec_for(photos, name="third", identifier="a/b"))


def test_find_by_name_by_folder_or_the_newest(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    work = tmp_path / "work"
    paths = handle.create(work, spec_for(photos))
    assert handle.find(work, "zwx-1").paths.root == paths.root
    assert handle.find(work, None).name == "zwx-1"
    assert handle.find(tmp_path / "elsewhere", str(paths.root)).name == "zwx-1"
    with pytest.raises(JobError, match="no job called 'nope'"):
        handle.find(work, "nope")


def test_follow_reports_new_events_state_and_whether_a_runner_lives(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    paths = handle.create(tmp_path / "work", spec_for(photos))
    append_line(paths.events_file, StageStarted(stage="prepare").dumps())
    looks = handle.follow(paths, from_start=True, interval_s=0.0)
    first = next(looks)
    assert [type(e) for e in first.events] == [StageStarted] and not first.alive and first.state.status == "new"
    append_line(paths.events_file, Message(level="info", text="hello").dumps())
    assert [e.text for e in next(looks).events] == ["hello"]
    assert next(looks).events == []
    stopped = list(handle.follow(paths, cancelled=lambda: True))
    assert stopped == [] and handle.stop(paths) is False


def test_running_the_same_job_file_twice_says_what_to_do(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    work = tmp_path / "work"
    handle.create(work, spec_for(photos))
    jobfile = tmp_path / "job.json"
    jobfile.write_text(json.dumps({"name": "zwx-1", "photos_dir": str(photos), "identifier": "zwx",
                                   "class_name": "dog", "device": "cpu"}))
    out = subprocess.run([sys.executable, "-m", "ioncannon", "run", str(jobfile), "--yes", "--workdir", str(work)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "already exists" in out.stderr and "ioncannon resume zwx-1" in out.stderr
    assert "Traceback" not in out.stderr
