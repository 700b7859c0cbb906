"""The results bundle: exact size before writing, manifest with hashes, starred images, model formats."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from ioncannon.cli.finish import bundle_main
from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec, save_spec
from ioncannon.rental import bundle
from ioncannon.rental.bundle import (
    BundleError,
    archive_path,
    available_model_formats,
    download_decided,
    load_starred,
    plan_bundle,
    read_bundle_manifest,
    read_finish_record,
    record_download,
    toggle_star,
    write_bundle,
)


def finished_job(workdir: Path, name: str = "alice") -> tuple[JobPaths, JobSpec]:
    paths = JobPaths(workdir / name)
    spec = JobSpec(name=name, photos_dir="/home/alice/private photos", identifier="zwx", class_name="woman")
    save_spec(paths, spec)
    for keyword in ("oilpainting", "comic"):  # two styles of the built-in prompt pack
        folder = paths.outputs / f"zwx_{keyword}"
        (folder / "samples").mkdir(parents=True)
        for i in range(3):
            info = PngImagePlugin.PngInfo()
            info.add_text("prompt", f"zwx woman, {keyword}")
            info.add_text("seed", str(7 + i))
            Image.new("RGB", (64, 64), (i * 80, 20, 90)).save(folder / "samples" / f"{i:04d}.png", pnginfo=info)
        Image.new("RGB", (128, 128)).save(folder / f"{folder.name}-0000.jpg")
    (paths.outputs / "zwx_comic" / "notes.json").write_text(json.dumps({"note": "kept by hand"}))
    Image.new("RGB", (256, 128)).save(paths.outputs / "contact_sheet.jpg")
    models = paths.trained_models
    (models / "zwx_diffusers" / "unet").mkdir(parents=True)
    (models / "zwx_model.safetensors").write_bytes(os.urandom(30_000))
    (models / "zwx_lora.safetensors").write_bytes(os.urandom(4_000))
    (models / "zwx_lora_diffusers").mkdir()
    (models / "zwx_lora_diffusers" / "pytorch_lora_weights.safetensors").write_bytes(os.urandom(3_000))
    (models / "README.md").write_text("# zwx woman\n")
    (models / "zwx_diffusers" / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(os.urandom(25_000))
    (models / ".staging-1").mkdir()
    (models / ".staging-1" / "half.safetensors").write_bytes(b"partial")
    return paths, spec


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_planned_size_is_the_written_size_and_the_manifest_hashes_every_file(tmp_path: Path) -> None:
    paths, spec = finished_job(tmp_path)
    plan = plan_bundle(paths, spec)
    assert not plan.archive.exists()
    assert plan.counts == {"collage": 2, "contact_sheet": 1, "image": 6, "metadata": 1, "model": 4}
    archive = write_bundle(plan)
    assert archive == archive_path(paths, spec) and archive.stat().st_size == plan.archive_bytes
    with zipfile.ZipFile(archive) as zf:
        assert zf.testzip() is None
        names = set(zf.namelist())
    manifest = read_bundle_manifest(archive)
    listed = {f["path"]: f for f in manifest["files"]}
    assert names == set(listed) | {"manifest.json"}
    for rel, entry in listed.items():
        assert entry["sha256"] == sha256(paths.root / rel) and entry["bytes"] == (paths.root / rel).stat().st_size
    assert "trained_models/zwx_diffusers/unet/diffusion_pytorch_model.safetensors" not in listed  # not chosen
    assert not any(".staging" in n for n in names)
    assert manifest["settings"]["photos_dir"] == "private photos"  # no path of this box in the archive
    assert manifest["instance_prompt"] == "a photo of zwx woman"
    comic = next(n for n in manifest["generation"] if n["folder"] == "outputs/zwx_comic")
    assert comic["keyword"] == "comic" and "zwx woman" in comic["prompt"] and comic["negative_prompt"]
    assert comic["seeds"] == {
        "0000.png": 1005,
        "0001.png": 1006,
        "0002.png": 1007,
    }  # the pack's seed, then +1 per image
    assert comic["note"] == "kept by hand"
    notes = manifest["image_prompts"]["outputs/zwx_oilpainting/samples/0002.png"]
    assert notes == {"prompt": "zwx woman, oilpainting", "seed": "9"}
    assert (
        "trained_models/README.md" in listed
        and "trained_models/zwx_lora_diffusers/pytorch_lora_weights.safetensors" in listed
    )
    assert not list(paths.root.glob(".*partial"))


def test_starred_images_only(tmp_path: Path) -> None:
    paths, spec = finished_job(tmp_path)
    with pytest.raises(BundleError, match="no image is starred"):
        plan_bundle(paths, spec, images="starred")
    first = paths.outputs / "zwx_comic" / "samples" / "0001.png"
    assert toggle_star(paths, first) is True
    assert toggle_star(paths, "outputs/zwx_oilpainting/samples/0000.png") is True
    assert toggle_star(paths, "outputs/zwx_oilpainting/samples/0000.png") is False  # unstarred again
    assert toggle_star(paths, "outputs/zwx_oilpainting/samples/0002.png") is True
    assert load_starred(paths) == ["outputs/zwx_comic/samples/0001.png", "outputs/zwx_oilpainting/samples/0002.png"]
    plan = plan_bundle(paths, spec, images="starred", model_formats=())
    images = sorted(e.name for e in plan.entries if e.kind == "image")
    assert images == load_starred(paths)
    assert plan.counts["collage"] == 2 and plan.counts["contact_sheet"] == 1 and "model" not in plan.counts
    assert write_bundle(plan).stat().st_size == plan.archive_bytes


def test_model_formats(tmp_path: Path) -> None:
    paths, spec = finished_job(tmp_path)
    assert available_model_formats(paths) == {"single": 30_000, "lora": 7_000, "diffusers": 25_000}
    names = {e.name for e in plan_bundle(paths, spec, model_formats=("diffusers",)).entries if e.kind == "model"}
    assert names == {
        "trained_models/zwx_diffusers/unet/diffusion_pytorch_model.safetensors",
        "trained_models/README.md",
    }
    names = {e.name for e in plan_bundle(paths, spec, model_formats=("lora",)).entries if e.kind == "model"}
    assert names == {
        "trained_models/zwx_lora.safetensors", "trained_models/zwx_lora_diffusers/pytorch_lora_weights.safetensors",
        "trained_models/README.md",
    }
    with pytest.raises(BundleError, match="unknown model format"):
        plan_bundle(paths, spec, model_formats=("ckpt",))


def test_zip64_sizing_matches_zipfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Multi-GB members need zip64 fields; lowering zipfile's threshold makes small files take that path for real.
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 20_000)
    monkeypatch.setattr(bundle, "_ZIP64_LIMIT", 20_000)
    paths, spec = finished_job(tmp_path)
    plan = plan_bundle(paths, spec, model_formats=("single", "diffusers", "lora"))
    assert plan.content_bytes > 20_000
    assert write_bundle(plan).stat().st_size == plan.archive_bytes


def test_a_full_disk_is_refused_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths, spec = finished_job(tmp_path)
    plan = plan_bundle(paths, spec)
    # A full disk can't be made for real in a test; the free-space reading is what is replaced.
    monkeypatch.setattr(bundle, "free_bytes", lambda _p: plan.archive_bytes)
    with pytest.raises(BundleError, match="only .* is free"):
        write_bundle(plan)
    assert not plan.archive.exists()


def test_a_cancelled_bundle_leaves_nothing(tmp_path: Path) -> None:
    paths, spec = finished_job(tmp_path)
    plan = plan_bundle(paths, spec)
    with pytest.raises(BundleError, match="cancelled"):
        write_bundle(plan, should_stop=lambda: True)
    assert not plan.archive.exists() and not list(paths.root.glob(".*.partial"))


def test_an_empty_job_has_nothing_to_bundle(tmp_path: Path) -> None:
    paths = JobPaths(tmp_path / "empty")
    spec = JobSpec(name="empty", photos_dir="/p", identifier="zwx", class_name="man")
    save_spec(paths, spec)
    with pytest.raises(BundleError, match="no results yet"):
        plan_bundle(paths, spec)


def test_download_decision_is_recorded(tmp_path: Path) -> None:
    paths, _ = finished_job(tmp_path)
    assert download_decided(paths) is None
    record_download(paths, "declined")
    assert download_decided(paths) == "declined"
    assert read_finish_record(paths)["download"] == "declined"


def test_bundle_command_shows_the_size_then_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    paths, spec = finished_job(tmp_path)
    monkeypatch.setenv("PUBLIC_IPADDR", "203.0.113.7")
    monkeypatch.setenv("VAST_TCP_PORT_22", "41022")
    monkeypatch.setenv("CONTAINER_ID", "4242")
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert bundle_main(["alice", "--workdir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    size = bundle.human_bytes(plan_bundle(paths, spec).archive_bytes)
    assert size in out and "Not written" in out and not archive_path(paths, spec).exists()

    assert bundle_main(["--workdir", str(tmp_path), "--yes", "--model", "all"]) == 0
    out = capsys.readouterr().out
    archive = archive_path(paths, spec)
    assert archive.is_file() and str(archive) in out
    assert f"scp -P 41022 root@203.0.113.7:{archive} ." in out
    assert f"scp -P 41022 root@203.0.113.7:{archive} ." in (paths.root / "DOWNLOAD.txt").read_text()
    assert read_finish_record(paths)["bundle"]["bytes"] == archive.stat().st_size
    assert (
        "trained_models/zwx_diffusers/unet/diffusion_pytorch_model.safetensors" in zipfile.ZipFile(archive).namelist()
    )


def test_bundle_command_names_a_missing_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bundle_main(["nobody", "--workdir", str(tmp_path), "--yes"]) == 2
    assert "no job called 'nobody'" in capsys.readouterr().err
