"""The wipe: the subject's copies gone, class images kept, a receipt that is true."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from ioncannon.cli.finish import wipe_main
from ioncannon.job.lock import try_lock
from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec, save_spec
from ioncannon.rental.bundle import archive_path, download_decided, read_finish_record
from ioncannon.rental.wipe import NOT_A_SECURE_ERASE, WipeError, plan_wipe, wipe


def job_with_subject_data(workdir: Path) -> tuple[JobPaths, JobSpec]:
    paths = JobPaths(workdir / "alice")
    spec = JobSpec(name="alice", photos_dir=str(workdir / "photos"), identifier="zwx", class_name="woman")
    save_spec(paths, spec)
    places = {
        paths.training_samples("woman"): 4, paths.class_images("woman"): 3, paths.cache: 2,
        paths.checkpoints / "step-000200": 2, paths.previews: 2, paths.meta / "trained": 1,
        paths.outputs / "zwx_oil" / "samples": 3, paths.trained_models: 1,
    }
    for folder, n in places.items():
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (32 + i, 32), (i * 30, 10, 10)).save(folder / f"zwx woman_{i:03d}.png")
    (paths.cache / "latents.safetensors").write_bytes(os.urandom(5000))
    archive_path(paths, spec).write_bytes(b"PK" + os.urandom(100))
    return paths, spec


def measured(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return sum(p.stat().st_size for p in files), len(files)


def test_wipe_removes_the_subject_keeps_class_images_and_the_receipt_is_true(tmp_path: Path) -> None:
    paths, spec = job_with_subject_data(tmp_path)
    subject_places = [
        paths.root / "training_samples",
        paths.cache,
        paths.checkpoints,
        paths.previews,
        paths.meta / "trained",
    ]
    before = {str(p): measured(p) for p in subject_places}
    planned = plan_wipe(paths, spec)
    assert {i.path for i in planned} == set(before)

    receipt = wipe(paths, spec)

    assert not receipt.failed
    assert {i.path for i in receipt.removed} == set(before)
    for item in receipt.removed:
        assert not Path(item.path).exists()
        assert (item.bytes, item.files) == before[item.path]
    assert receipt.total_bytes == sum(b for b, _ in before.values())
    assert len(list(paths.class_images("woman").glob("*.png"))) == 3
    assert (paths.outputs / "zwx_oil" / "samples").is_dir() and archive_path(paths, spec).is_file()
    assert paths.job_file.is_file()  # the job itself is still readable
    text = "\n".join(receipt.lines(relative_to=paths.root))
    assert "class_images (generic class images, not of your subject)" in text
    assert NOT_A_SECURE_ERASE in text and str(tmp_path / "photos") in text
    assert len(read_finish_record(paths)["wipe"]["removed"]) == 5
    assert plan_wipe(paths, spec) == []  # a second wipe has nothing left to do


def test_wipe_with_results_removes_images_models_and_the_bundle(tmp_path: Path) -> None:
    paths, spec = job_with_subject_data(tmp_path)
    receipt = wipe(paths, spec, include_results=True)
    assert {"generated images", "trained models", "results bundle"} <= {i.label for i in receipt.removed}
    assert not paths.outputs.exists() and not paths.trained_models.exists() and not archive_path(paths, spec).exists()
    assert paths.class_images("woman").is_dir()


def test_a_symlink_is_removed_not_followed(tmp_path: Path) -> None:
    paths, spec = job_with_subject_data(tmp_path)
    elsewhere = tmp_path / "someone-elses-folder"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not ours")
    (paths.previews).rename(tmp_path / "old-previews")
    paths.previews.symlink_to(elsewhere, target_is_directory=True)
    wipe(paths, spec)
    assert not paths.previews.is_symlink() and (elsewhere / "keep.txt").read_text() == "not ours"


def test_wipe_refuses_a_folder_that_is_not_a_job(tmp_path: Path) -> None:
    paths, spec = job_with_subject_data(tmp_path)
    paths.job_file.unlink()
    with pytest.raises(WipeError, match="doesn't look like an ioncannon job"):
        wipe(paths, spec)
    assert (paths.root / "training_samples").exists()


def test_wipe_refuses_while_a_runner_holds_the_job(tmp_path: Path) -> None:
    paths, spec = job_with_subject_data(tmp_path)
    lock = try_lock(paths)  # what a live runner holds
    assert lock is not None
    lock.record(os.getpid())
    try:
        with pytest.raises(WipeError, match="still working"):
            wipe(paths, spec)
    finally:
        lock.release()
    assert (paths.root / "training_samples").exists()
    assert wipe(paths, spec).removed  # the lock released, the wipe goes ahead


def test_wipe_command_needs_the_job_name_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    paths, spec = job_with_subject_data(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("alise\n"))
    assert wipe_main(["alice", "--workdir", str(tmp_path)]) == 1
    assert (paths.root / "training_samples").exists() and "Nothing removed" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # nobody at the keyboard
    assert wipe_main(["alice", "--workdir", str(tmp_path)]) == 1
    assert (paths.root / "training_samples").exists()
    monkeypatch.setattr("sys.stdin", io.StringIO("alice\n"))
    assert wipe_main(["alice", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (
        not (paths.root / "training_samples").exists() and "✓ normalised photos" in out and "not a secure erase" in out
    )
    assert download_decided(paths) == "confirmed"


def test_wipe_command_for_scripts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths, spec = job_with_subject_data(tmp_path)
    assert wipe_main(["--workdir", str(tmp_path), "--yes-i-downloaded", "--results"]) == 0
    assert not paths.outputs.exists() and not (paths.root / "training_samples").exists()
    assert paths.class_images("woman").is_dir()
    assert wipe_main(["--workdir", str(tmp_path), "--yes-i-downloaded"]) == 0
    assert "Nothing of the subject is left" in capsys.readouterr().out
