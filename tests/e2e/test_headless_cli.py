"""The real `ioncannon` command, headless: the whole demo, status, and clear messages for bad input."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.waiting import patience


def ioncannon(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ioncannon", *args], capture_output=True, text=True, timeout=patience(timeout),
        stdin=subprocess.DEVNULL, **kw,
    )


@pytest.mark.slow
def test_demo_runs_every_stage_headless(tmp_path: Path) -> None:
    wd = tmp_path / "work"
    t = time.time()
    out = ioncannon("run", "--demo", "--yes", "--workdir", str(wd), timeout=400)
    seconds = time.time() - t
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    for stage in ("prepare", "class_images", "cache", "train", "export", "generate", "package"):
        assert any(f"stage {stage} done" in line for line in lines), f"no line for {stage}"
    assert any("train " in line and "loss" in line for line in lines)
    assert "job finished" in lines[-1]

    (job,) = [p for p in wd.iterdir() if (p / ".ioncannon" / "job.json").exists()]
    samples = sorted((job / "training_samples" / "person").glob("*.png"))
    assert samples and samples[0].name == "zwx person_001.png"
    assert (job / "trained_models" / "zwx_model.safetensors").stat().st_size > 0
    collages = sorted(job.glob("outputs/zwx_*/zwx_*-0000.jpg"))
    assert len(collages) >= 8
    assert not list(job.rglob("*.ckpt")) and not list(job.rglob("*.bin"))

    status = ioncannon("status", "--json", "--workdir", str(wd))
    info = json.loads(status.stdout)
    assert info["status"] == "finished" and info["job"] == job.name
    assert info["stages_done"][-1] == "package"
    print(f"demo wall time: {seconds:.1f} s")


def test_run_refuses_without_confirmation_when_not_a_terminal(tmp_path: Path) -> None:
    out = ioncannon("run", "--demo", "--workdir", str(tmp_path))
    assert out.returncode == 2 and "--yes" in out.stderr
    assert not [p for p in tmp_path.iterdir() if (p / ".ioncannon").exists()]


@pytest.mark.parametrize(
    "job, message",
    [
        ({"photos_dir": "/nonexistent/photos", "identifier": "zwx", "class_name": "man"}, "does not exist"),
        ({"photos_dir": ".", "identifier": "a/b", "class_name": "man"}, "identifier contains '/'"),
        ({"photos_dir": ".", "identifier": "", "class_name": "man"}, "identifier is empty"),
        ({"photos_dir": ".", "identifier": "zwx", "class_name": "man"}, "no CUDA GPU is visible"),
        ({"photos_dir": ".", "identifier": "zwx", "class_name": "man", "family": "sd3"}, "is not a model family"),
    ],
)
def test_bad_job_files_get_a_message_not_a_traceback(tmp_path: Path, job: dict, message: str) -> None:
    jobfile = tmp_path / "job.json"
    jobfile.write_text(json.dumps(job))
    out = ioncannon("run", str(jobfile), "--yes", "--workdir", str(tmp_path / "w"))
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr


def test_a_job_file_naming_sdxl_gets_its_model_and_resolution(tmp_path: Path, tiny_model_dir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.engine.hub_repos import point_at
    from tests.hanging_hub import local_hub

    jobfile = tmp_path / "job.json"
    jobfile.write_text(json.dumps({"photos_dir": ".", "identifier": "zwx", "class_name": "man", "family": "sdxl",
                                   "device": "cpu", "train": {"mode": "lora"}}))
    with local_hub() as hub:  # the door asks the hub whether the model can be had
        hub.add("stabilityai/stable-diffusion-xl-base-1.0", tiny_model_dir)
        point_at(hub, tmp_path / "hf", monkeypatch)
        out = ioncannon("run", str(jobfile), "--workdir", str(tmp_path / "w"))  # shows the plan, asks for --yes
    assert out.returncode == 2 and "--yes" in out.stderr
    assert "base model stabilityai/stable-diffusion-xl-base-1.0 (sdxl, 1024 px)" in out.stdout
    assert "guidance 6" in out.stdout  # SDXL's own pack defaults


def test_unwritable_workdir_is_explained(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/ioncannon-cannot-write-here")
    else:
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(stat.S_IRUSR | stat.S_IXUSR)
    out = ioncannon("resume", "--workdir", str(target / "w"))  # a command that writes there
    assert out.returncode == 2 and "not writable" in out.stderr and "--workdir" in out.stderr
    out = ioncannon("status", "--workdir", str(target / "w"))  # one that only looks makes nothing and says so
    assert out.returncode == 0 and "does not exist" in out.stdout and not (target / "w").exists()


def test_status_with_no_jobs_says_so_and_is_no_error(tmp_path: Path) -> None:
    out = ioncannon("status", "--workdir", str(tmp_path))
    assert out.returncode == 0 and "no jobs in" in out.stdout and "`ioncannon`" in out.stdout
    out = ioncannon("status", "--json", "--workdir", str(tmp_path))
    assert out.returncode == 0 and json.loads(out.stdout)["jobs"] == []
    out = ioncannon("status", "nosuchjob", "--workdir", str(tmp_path))  # a name that isn't there is a mistake
    assert out.returncode == 2 and "no job called 'nosuchjob'" in out.stderr


@pytest.mark.slow
def test_job_file_detach_stop_and_resume(tmp_path: Path, tiny_model_dir: Path) -> None:
    from ioncannon.job.plan.demo import demo_photos_dir

    wd = tmp_path / "work"
    jobfile = tmp_path / "job.toml"
    jobfile.write_text(
        f'name = "stoppable"\nphotos_dir = "{demo_photos_dir()}"\nidentifier = "zwx"\nclass_name = "dog"\n'
        f'base_model = "{tiny_model_dir}"\nresolution = 64\ndevice = "cpu"\n'
        "[train]\nsteps = 5000\nnum_class_images = 2\nprecision = \"fp32\"\ncompile = false\n"
        "checkpoint_every = 50\nsample_every = 100000\nlearning_rate = 1e-4\n"
    )
    out = ioncannon("run", str(jobfile), "--yes", "--detach", "--workdir", str(wd))
    assert out.returncode == 0 and "started" in out.stdout, out.stderr

    def status() -> dict:
        return json.loads(ioncannon("status", "stoppable", "--json", "--workdir", str(wd)).stdout)

    deadline = time.time() + 180
    while time.time() < deadline and not (status()["stage"] == "train" and status()["step"] > 5):
        time.sleep(0.5)
    info = status()
    assert info["status"] == "running" and info["alive"] and info["stage"] == "train"

    stop = ioncannon("stop", "stoppable", "--workdir", str(wd), timeout=180)
    assert stop.returncode == 0 and "stopped" in stop.stdout
    stopped = status()
    assert stopped["status"] == "stopped" and not stopped["alive"]
    assert "resume" in stopped["hint"]

    resumed = ioncannon("resume", "stoppable", "--detach", "--workdir", str(wd))
    assert resumed.returncode == 0 and "resumed" in resumed.stdout
    deadline = time.time() + 120
    while time.time() < deadline and status()["step"] <= stopped["step"]:
        time.sleep(0.5)
    again = status()
    assert again["status"] == "running" and again["step"] > stopped["step"]
    assert "cache" in again["stages_done"]
    ioncannon("stop", "stoppable", "--workdir", str(wd), timeout=180)


def test_run_example_prints_a_job_file_that_runs(tmp_path: Path) -> None:
    from ioncannon.job.jobfile import read_jobfile
    from ioncannon.job.plan.demo import demo_photos_dir

    out = ioncannon("run", "--example")
    assert out.returncode == 0 and out.stdout.startswith("# An ioncannon job file")
    assert "photos_dir" in out.stdout and "[train]" in out.stdout and "--example" not in out.stderr
    jobfile = tmp_path / "job.toml"
    jobfile.write_text(out.stdout.replace("~/photos/rex", str(demo_photos_dir())))
    # as printed (photo folder aside), it passes the door on a card of its family
    from ioncannon.job.plan.box import GpuInfo, HardwareInfo
    from ioncannon.job.plan.planner import Plan, plan_job

    plan = plan_job(read_jobfile(jobfile, tmp_path / "work"), HardwareInfo([GpuInfo(0, "NVIDIA L4", 24.0, 23.0)],
                                                                           200.0, 8, 32.0))
    assert isinstance(plan, Plan), plan
    assert (plan.spec.identifier, plan.spec.class_name, plan.spec.family) == ("zwx", "dog", "sd15")
    assert "ioncannon run --example" in ioncannon("run", "--help").stdout


def test_a_cpu_job_without_a_train_table_gets_the_cpu_plan(tmp_path: Path, tiny_model_dir: Path) -> None:
    from ioncannon.job.plan.demo import demo_photos_dir
    from ioncannon.job.plan.presets import demo_plan

    jobfile = tmp_path / "job.toml"
    jobfile.write_text(f'photos_dir = "{demo_photos_dir()}"\nidentifier = "zwx"\nclass_name = "dog"\n'
                       f'base_model = "{tiny_model_dir}"\ndevice = "cpu"\n')
    out = ioncannon("run", str(jobfile), "--workdir", str(tmp_path / "work"))  # no --yes, no terminal: plan only
    assert out.returncode == 2 and "add --yes" in out.stderr
    plan = demo_plan()
    training = next(line for line in out.stdout.splitlines() if line.startswith("training"))
    assert f"{plan.steps} steps" in training and "fp32" in training and "bf16" not in training
    assert f"({plan.num_class_images} class images)" in training and "200 class images" not in training


def test_the_headless_plan_comes_first_without_library_chatter(tmp_path: Path) -> None:
    out = ioncannon("run", "--demo", "--workdir", str(tmp_path / "work"), timeout=120)  # no --yes: plan only
    wait, sizing, plan = out.stdout.splitlines()[:3]
    assert out.returncode == 2 and plan.startswith("job ")
    # the seconds before the plan say what they wait for, step by step
    assert wait.startswith("checking the job and this machine") and sizing.startswith("loading torch, then timing")
    assert "torchvision" not in out.stdout + out.stderr and "Writing model shards" not in out.stdout + out.stderr
    assert out.stderr.strip() == "ioncannon: not starting without confirmation: add --yes."


def test_a_flux_plan_names_the_sampler_and_guidance_that_will_run(tmp_path: Path) -> None:
    out = ioncannon("run", "--demo", "--family", "flux", "--workdir", str(tmp_path / "work"), timeout=120)
    assert out.returncode == 2, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    assert "prior preservation off (no class images)" in lines["training"]
    assert "FlowMatch Euler" in lines["generation"] and "guidance 3.5" in lines["generation"]
    assert "dpm" not in lines["generation"]
