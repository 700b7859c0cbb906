"""After `wipe --results`, no image of the subject is left anywhere the program wrote: the work dir (job folder,
shared cache, a bundle cut short), the temp dir and the caches. A whole job runs first, through the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ioncannon.engine.demo import demo_photos_dir

IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"PK\x03\x04", b"RIFF")


def _files(root: Path) -> list[Path]:
    return [Path(d) / n for d, _dirs, names in os.walk(root) for n in names] if root.exists() else []


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_wipe_leaves_no_subject_image_anywhere(tmp_path: Path, tiny_model: Path) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(demo_photos_dir(), photos)
    work, tmp, cache, hf = (tmp_path / name for name in ("work", "tmp", "cache", "hf"))
    for folder in (tmp, cache):
        folder.mkdir()
    (tmp_path / "pack.toml").write_text('[[style]]\nkeyword = "oil"\nprompt = "oil of {token}"\nseed = 7\n')
    job = {
        "name": "alice", "photos_dir": str(photos), "identifier": "zwx", "class_name": "woman",
        "base_model": str(tiny_model), "resolution": 64, "device": "cpu", "threads": 1,
        "train": {"mode": "full", "preset": "demo", "steps": 4, "learning_rate": 1e-3, "num_class_images": 2,
                  "precision": "fp32", "compile": False, "checkpoint_every": 2, "sample_every": 2},
        "generate": {"steps": 2, "images_per_prompt": 2, "batch_size": 2, "bare_token_images": 1,
                     "prompt_pack": str(tmp_path / "pack.toml")},
    }
    jobfile = tmp_path / "job.json"
    jobfile.write_text(json.dumps(job))
    env = {**os.environ, "TMPDIR": str(tmp), "XDG_CACHE_HOME": str(cache), "HF_HOME": str(hf),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

    def ioncannon(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ioncannon", *args, "--workdir", str(work)], env=env,
                              capture_output=True, text=True, timeout=600)

    run = ioncannon("run", str(jobfile), "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    root = work / "alice"
    subject = {_digest(p) for p in _files(root / "training_samples")}
    subject |= {_digest(p) for p in _files(root / "outputs") if p.suffix == ".png"}
    assert len(subject) >= 10 + 3  # the ten photos' copies and the generated images
    assert ioncannon("bundle", "alice", "--yes").returncode == 0
    zips = list(root.glob("*-results.zip"))
    assert len(zips) == 1
    shutil.copy(zips[0], root / f".{zips[0].name}.partial")  # what a kill -9 during `bundle` leaves
    originals = {p.name: _digest(p) for p in _files(photos)}

    wipe = ioncannon("wipe", "alice", "--results", "--yes-i-downloaded")
    assert wipe.returncode == 0, wipe.stdout + wipe.stderr

    class_images = {root / "class_images", work / ".cache" / "class_images"}  # generic, never the subject
    left = [p for place in (work, tmp, cache, hf) for p in _files(place)
            if not any(p.is_relative_to(c) for c in class_images)]
    images = [p for p in left if p.read_bytes()[:4] in IMAGE_MAGIC]
    assert images == [], images
    assert not [p for p in left if _digest(p) in subject]
    assert not [p for p in left if p.suffix in (".safetensors", ".zip", ".partial", ".pt", ".npy")], left
    assert not [p for p in _files(tmp) if "ioncannon" in str(p)]  # nothing of ours in the temp dir either
    assert {p.name: _digest(p) for p in _files(photos)} == originals  # and the originals are untouched
