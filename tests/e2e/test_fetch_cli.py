"""`ioncannon run` and `resume --base-model` against a local hub on 127.0.0.1: the door, the download line, a fix."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.e2e.test_headless_cli import ioncannon
from tests.engine.hub_repos import point_at, sd15_repo
from tests.hanging_hub import local_hub
from tests.waiting import wait_until

pytestmark = pytest.mark.slow
REPO = "tiny-org/tiny-sd15"


def _jobfile(tmp_path: Path, base_model: str, name: str) -> Path:
    photos = tmp_path / "photos"
    if not photos.exists():
        shutil.copytree(Path(__file__).parents[2] / "assets" / "demo_photos", photos)
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\nphotos_dir = "{photos}"\nidentifier = "zwx"\nclass_name = "person"\n'
                    f'base_model = "{base_model}"\ndevice = "cpu"\nresolution = 64\n'
                    "[train]\nmode = \"lora\"\nsteps = 4\nprior_preservation = false\nnum_class_images = 0\n"
                    "checkpoint_every = 0\nsample_every = 1000\n"
                    "[generate]\nimages_per_prompt = 1\nbare_token_images = 1\nsteps = 2\n")
    return path


def test_run_fetches_through_the_hub_and_refuses_what_cannot_be_had(
        tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wd = tmp_path / "work"
    with local_hub() as hub:
        hub.add(REPO, sd15_repo(tiny_model_dir, tmp_path / "repo"))
        point_at(hub, tmp_path / "hf", monkeypatch)
        missing = ioncannon("run", str(_jobfile(tmp_path, "tiny-org/no-such-model", "nope")), "--yes",
                            "--workdir", str(wd))
        assert missing.returncode == 2
        assert missing.stderr.strip() == ("ioncannon: tiny-org/no-such-model was not found on the Hugging Face Hub: "
                                          "check the spelling of the model id, then resume.")
        assert not (wd / "nope").exists()  # refused at the door: no job

        t = time.time()
        out = ioncannon("run", str(_jobfile(tmp_path, REPO, "fetched")), "--yes", "--workdir", str(wd), timeout=400)
        seconds = time.time() - t
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    (download,) = [line for line in lines if line.startswith("download ")]
    assert "MB from the hub" in download and "at an assumed 50.0 MB/s" in download
    assert any("stage fetch done" in line for line in lines)
    assert any(" fetch " in line and "MB/" in line for line in lines)  # progress in sizes, not byte counts
    print("\n" + download + "\n" + "\n".join(line for line in lines if " stage " in line or "downloaded" in line)
          + f"\nwhole command: {seconds:.1f} s")


def test_a_failed_download_takes_another_base_model_on_resume(
        tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wd = tmp_path / "work"
    with local_hub() as hub:
        hub.add(REPO, sd15_repo(tiny_model_dir, tmp_path / "repo"))
        point_at(hub, tmp_path / "hf", monkeypatch)
        hub.bytes_per_s = 100_000  # the UNet takes seconds: time enough for the hub to turn the job away
        out = ioncannon("run", str(_jobfile(tmp_path, REPO, "gated")), "--yes", "--detach", "--workdir", str(wd))
        assert out.returncode == 0, out.stderr
        hub.repos[REPO].deny = 403  # the licence now needs accepting: every later request is refused

        def failed() -> bool:
            info = json.loads(ioncannon("status", "gated", "--json", "--workdir", str(wd)).stdout)
            return bool(info["status"] == "failed")

        wait_until(failed, 120, "the job to fail in its download")
    info = json.loads(ioncannon("status", "gated", "--json", "--workdir", str(wd)).stdout)
    assert info["stage"] == "fetch" and "licence" in info["message"] and "\n" not in info["message"]
    assert "--base-model" in info["hint"]
    text = ioncannon("status", "gated", "--workdir", str(wd)).stdout
    assert re.search(r"stage fetch +[\d.]+ [kMG]?B/[\d.]+ [kMG]?B", text), text  # the download's counts as sizes

    refused = ioncannon("resume", "gated", "--base-model", str(tmp_path / "nowhere"), "--workdir", str(wd))
    assert refused.returncode == 2 and "does not exist" in refused.stderr
    resumed = ioncannon("resume", "gated", "--base-model", str(tiny_model_dir), "--workdir", str(wd), timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "base model now" in resumed.stdout and "job finished" in resumed.stdout.splitlines()[-1]
    assert "stage fetch skipped" in resumed.stdout
    spec = json.loads((wd / "gated" / ".ioncannon" / "job.json").read_text())
    assert spec["base_model"] == str(tiny_model_dir.resolve())
