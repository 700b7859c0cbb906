"""The person's photos are never a job's folder: no overlap either way (through symlinks too), no adopted folder,
and a name that is taken by a file or a full disk is a sentence that leaves nothing behind. Through the real CLI."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from ioncannon.cli.doctor import main as doctor_main
from ioncannon.job import workdir as workdir_module
from tests.job import test_hostile_inputs as hostile
from tests.job.test_hostile_inputs import cli, one_sentence, tree, valid_job

place = hostile.place  # the same work dir and photo folder fixture


def _photos(folder: Path, n: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (96, 80), (30 * i, 90, 160)).save(folder / f"IMG_{i}.jpg")
    return folder


def _run(capsys: pytest.CaptureFixture[str], root: Path, work: Path, photos: Path, name: str,
         **fields: object) -> tuple[int, str]:
    jobfile = root / f"{name}.json"
    jobfile.write_text(json.dumps({**valid_job(photos), "name": name, "train": {"steps": 1}, **fields}))
    code, _, err = cli(capsys, "run", str(jobfile), "--yes", "--detach", "--workdir", str(work))
    return code, err


@pytest.mark.parametrize("where", ["job-folder", "training-samples", "via-symlink"])
def test_a_photo_folder_where_the_job_would_write_is_refused_and_untouched(
    capsys: pytest.CaptureFixture[str], place: dict[str, Path], where: str
) -> None:
    work = place["work"]
    photos = {"job-folder": work / "rex", "training-samples": work / "rex" / "training_samples" / "dog",
              "via-symlink": work / "rex"}[where]
    _photos(photos)
    given = photos
    if where == "via-symlink":  # the job file names a link outside the work dir that leads to the job's folder
        given = place["root"] / "link-to-photos"
        given.symlink_to(photos)
    before = tree(work / "rex")
    mode = (work / "rex").stat().st_mode
    code, err = _run(capsys, place["root"], work, given, "rex")
    assert code == 2 and "overlap" in err, err
    one_sentence(err)
    assert tree(work / "rex") == before and (work / "rex").stat().st_mode == mode  # not even chmodded


def test_a_job_folder_inside_the_photo_folder_is_refused(capsys: pytest.CaptureFixture[str],
                                                         place: dict[str, Path]) -> None:
    photos = _photos(place["root"] / "album")
    link = place["root"] / "work-link"
    link.symlink_to(photos)  # the work dir is the photo folder under another name
    before = tree(photos)
    code, err = _run(capsys, place["root"], link, photos, "rex")
    assert code == 2 and ("overlap" in err or "inside the photo folder" in err), err
    assert tree(photos) == before


def test_a_folder_that_is_not_a_job_is_never_adopted(capsys: pytest.CaptureFixture[str],
                                                     place: dict[str, Path]) -> None:
    work = place["work"]
    other = work / "rex"
    (other / "notes").mkdir(parents=True)
    (other / "notes" / "a.txt").write_text("mine")
    before = tree(other)
    code, err = _run(capsys, place["root"], work, place["photos"], "rex")
    assert code == 2 and "is not a job" in err, err
    one_sentence(err)
    assert tree(other) == before


def test_a_job_name_taken_by_a_file_is_a_sentence(capsys: pytest.CaptureFixture[str],
                                                  place: dict[str, Path]) -> None:
    (place["work"] / "rex").write_text("a file, not a job")
    code, err = _run(capsys, place["root"], place["work"], place["photos"], "rex")
    assert code == 2 and "is not a job" in err, err
    one_sentence(err)
    assert (place["work"] / "rex").read_text() == "a file, not a job"


def test_a_full_disk_at_run_leaves_no_half_made_job(capsys: pytest.CaptureFixture[str], place: dict[str, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*_args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    model = place["root"] / "model"  # a local base model: the door lets it through without asking a hub
    model.mkdir()
    (model / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    monkeypatch.setattr(workdir_module, "save_spec", full)
    code, err = _run(capsys, place["root"], place["work"], place["photos"], "rex", base_model=str(model))
    assert code == 2 and "free some disk space" in err, err
    one_sentence(err)
    assert not (place["work"] / "rex").exists()  # the name is free for the run after space is freed
    monkeypatch.undo()
    code, out, _ = cli(capsys, "status", "--workdir", str(place["work"]))
    assert code == 0 and "no jobs" in out


def test_doctor_refuses_an_out_folder_that_holds_the_photos(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "out" / "photos")
    before = tree(photos)
    code = doctor_main([str(photos), "--identifier", "zwx", "--class", "dog", "--out", str(tmp_path / "out")])
    assert code == 2
    assert tree(photos) == before and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["photos"]


@pytest.mark.parametrize("which", ["state.json", "job.json"])
@pytest.mark.parametrize("depth", [984, 5000])
def test_a_deeply_nested_job_file_is_damage_not_a_traceback(capsys: pytest.CaptureFixture[str],
                                                            place: dict[str, Path],
                                                            which: str, depth: int) -> None:
    healthy = hostile.make_job(place, "healthy")
    hurt = hostile.make_job(place, "hurt")
    nested = "[" * depth + "]" * depth
    (hurt.meta / which).write_text(f'{{"schema_version": 1, "status": "running", "message": {nested}, '
                                   f'"name": {nested}}}')
    for job in ("hurt", "healthy", None):  # one job's damage never stops a command about another
        code, out, err = cli(capsys, "status", *([job] if job else []), "--workdir", str(place["work"]))
        assert code == 0 and "Traceback" not in out + err, err
    code, out, err = cli(capsys, "status", "hurt", "--json", "--workdir", str(place["work"]))
    info = json.loads(out)
    assert code == 0 and info["status"] in ("unknown", "damaged") and "damaged" in info["message"]
    assert healthy.job_file.exists()
