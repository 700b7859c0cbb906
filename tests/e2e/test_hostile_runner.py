"""Hostile surroundings for a real runner: planted modules, deleted files, damaged job.json, a full disk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ioncannon.job import handle
from ioncannon.job.fsio import write_json
from ioncannon.job.jobfile import read_jobfile
from ioncannon.job.paths import JobPaths
from ioncannon.job.plan.box import HardwareInfo
from ioncannon.job.plan.demo import demo_photos_dir
from ioncannon.job.plan.planner import Plan, plan_job
from tests.waiting import patience

CONSOLE_SCRIPT = Path(sys.executable).parent / "ioncannon"  # what a user types: it puts no cwd on sys.path
PICTURES = (".png", ".jpg", ".jpeg", ".safetensors")


def job_toml(tmp_path: Path, model: Path, name: str, steps: int = 12, checkpoint_every: int = 6) -> Path:
    pack = tmp_path / "pack.toml"
    pack.write_text('[[style]]\nkeyword = "oil"\nprompt = "an oil painting of {token}"\nseed = 7\n')
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(f"""\
        name = "{name}"
        photos_dir = "{demo_photos_dir()}"
        identifier = "zwx"
        class_name = "dog"
        base_model = "{model}"
        resolution = 64
        device = "cpu"
        [train]
        steps = {steps}
        num_class_images = 2
        precision = "fp32"
        optimizer = "adamw"
        compile = false
        checkpoint_every = {checkpoint_every}
        sample_every = 100000
        learning_rate = 1e-4
        [generate]
        steps = 2
        images_per_prompt = 1
        bare_token_images = 1
        batch_size = 2
        prompt_pack = "{pack}"
        """))
    return path


def ioncannon(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CONSOLE_SCRIPT), *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, stdin=subprocess.DEVNULL,
                          timeout=patience(timeout))


def status(wd: Path, name: str) -> dict:
    return json.loads(ioncannon("status", name, "--json", "--workdir", str(wd)).stdout)


def private(root: Path) -> list[str]:
    """Paths under root that anyone but the owner can read or enter."""
    return [str(p) for p in [root, *root.rglob("*")] if not p.is_symlink() and p.lstat().st_mode & 0o077]


@pytest.mark.slow
def test_planted_modules_in_the_launch_folder_stay_out_and_results_are_private_then_wiped(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    wd = tmp_path / "work"
    marker = tmp_path / "planted-code-ran"
    launch = tmp_path / "launch"
    (launch / "ioncannon").mkdir(parents=True)
    (launch / "numpy.py").write_text(f"open({str(marker)!r}, 'w').write('numpy')\nraise ImportError('planted')\n")
    (launch / "ioncannon" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('pkg')\n")
    jobfile = job_toml(tmp_path, tiny_model_dir, "planted")

    out = ioncannon("run", str(jobfile), "--yes", "--workdir", str(wd), cwd=launch, timeout=400)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "job finished" in out.stdout
    assert not marker.exists(), marker.read_text()  # neither the planted numpy nor the checkout was imported

    root = wd / "planted"
    assert list(root.glob("outputs/zwx_*/zwx_*-0000.jpg")) and (root / "DOWNLOAD.txt").is_file()
    assert private(root) == []  # photos, models, images, collages, job files: 0600 / 0700

    bundle = ioncannon("bundle", "planted", "--yes", "--workdir", str(wd))
    assert bundle.returncode == 0, bundle.stderr
    assert list(root.glob("*.zip")) and private(root) == []

    wipe = ioncannon("wipe", "planted", "--results", "--yes-i-downloaded", "--workdir", str(wd))
    assert wipe.returncode == 0, wipe.stdout + wipe.stderr
    left = [p for p in root.rglob("*") if p.suffix.lower() in PICTURES + (".zip",)
            and "class_images" not in p.parts]
    assert left == []  # no image, model or zip of the subject is left anywhere in the job
    escaped = [p for p in tmp_path.rglob("zwx*") if not p.is_relative_to(wd)]
    assert escaped == []


@pytest.mark.slow
def test_resume_rebuilds_deleted_stage_files_and_keeps_the_pinned_thread_count(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wd = tmp_path / "work"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    plan = plan_job(read_jobfile(job_toml(tmp_path, tiny_model_dir, "rebuilt"), wd), HardwareInfo([], 50.0, 2, 8.0))
    assert isinstance(plan, Plan), plan
    paths = handle.create(wd, plan.spec)
    assert json.loads(paths.job_file.read_text())["threads"] == 1  # pinned from the creating shell
    # as if prepare, class images and the cache had run and their files were deleted since
    write_json(paths.state_file, {"status": "stopped", "stages_done": ["prepare", "class_images", "cache"],
                                  "stage": "train", "message": "stopped", "hint": "resume"})

    out = ioncannon("resume", "rebuilt", "--workdir", str(wd), env={"OMP_NUM_THREADS": "2"}, timeout=400)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    info = status(wd, "rebuilt")
    assert info["status"] == "finished" and info["stages_done"][-1] == "package"
    log = paths.log_file.read_text()
    assert "running again" in log and "using 1 CPU threads" in log  # not the resuming shell's 2
    assert list(paths.training_samples("dog").glob("zwx dog_*.png"))


def test_a_runner_started_on_an_empty_job_file_records_why_and_exits(tmp_path: Path) -> None:
    paths = JobPaths(tmp_path / "work" / "emptied")
    paths.ensure()
    paths.job_file.write_bytes(b"")
    write_json(paths.state_file, {"status": "running", "stage": "train", "stages_done": ["prepare"]})
    out = subprocess.run(handle.runner_command(paths, tmp_path / "work"), capture_output=True, text=True,
                         env=handle.runner_env(), cwd=paths.meta, timeout=patience(60))
    assert out.returncode == 1
    info = status(tmp_path / "work", "emptied")
    assert info["status"] == "damaged" and not info["alive"]  # not "running" forever
    state = json.loads(paths.state_file.read_text())
    assert state["status"] == "failed" and "job.json is damaged" in state["message"]
    assert "ioncannon wipe" in state["hint"]


DISK_FULL_DRIVER = """
import json, os, subprocess, sys, time
wd, jobfile, script = sys.argv[1:4]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200m", "tmpfs", wd], check=True)  # room for the door's 1 GB spare
def cli(*a):
    return subprocess.run([script, *a, "--workdir", wd], capture_output=True, text=True)
started = cli("run", jobfile, "--yes", "--detach")
assert started.returncode == 0, started.stderr
def info():
    out = cli("status", "full", "--json").stdout
    return json.loads(out) if out else {}
deadline = time.time() + float(sys.argv[4])
while time.time() < deadline and not (info().get("stage") == "train" and info().get("step", 0) > 0):
    time.sleep(0.5)
with open(os.path.join(wd, "filler"), "wb") as fh:   # the disk fills up under the running job
    try:
        while True:
            fh.write(b"\\0" * (1 << 20))
    except OSError:
        pass
while time.time() < deadline and info().get("alive"):
    time.sleep(0.5)
print(json.dumps(info()))
print(cli("status", "full").stdout)
"""


@pytest.mark.slow
def test_a_full_disk_is_recorded_where_status_reads(tmp_path: Path, tiny_model_dir: Path) -> None:
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("needs user namespaces (unshare -rm) to mount a small tmpfs without privileges")
    wd = tmp_path / "work"
    wd.mkdir()
    jobfile = job_toml(tmp_path, tiny_model_dir, "full", steps=100_000, checkpoint_every=5)
    driver = tmp_path / "driver.py"
    driver.write_text(DISK_FULL_DRIVER)
    out = subprocess.run(
        ["unshare", "-rm", sys.executable, str(driver), str(wd), str(jobfile), str(CONSOLE_SCRIPT),
         str(patience(120))], capture_output=True, text=True, timeout=patience(200),
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    final, _, shown = out.stdout.partition("\n")
    info = json.loads(final)
    assert info["status"] == "failed" and not info["alive"], info
    assert "disk full" in info["message"].lower().replace("disk is full", "disk full") and info["hint"], info
    assert "note     " in shown and "Traceback" not in out.stdout + out.stderr
