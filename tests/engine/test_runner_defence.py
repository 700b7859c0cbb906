"""Past the door, the runner still refuses what it can't keep to: a money cap without a price, a prompt pack past its
bounds (styles, prompt length, bytes, images). Job files edited after creation reach the runner through `resume`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ioncannon.job.limits import MAX_IMAGES, MAX_PACK_BYTES, MAX_PROMPT_CHARS, MAX_STYLES
from ioncannon.job.state import JobState, read_state, write_state
from tests.job import test_hostile_inputs as hostile

place = hostile.place


def _resume(work: Path, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ioncannon", "resume", name, "--workdir", str(work)],
                          capture_output=True, text=True, timeout=600)


def _edit(job_file: Path, **changes: object) -> None:
    data = json.loads(job_file.read_text())
    for key, value in changes.items():
        if isinstance(value, dict):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    job_file.write_text(json.dumps(data))


def test_a_money_cap_without_a_price_runs_nothing(place: dict[str, Path]) -> None:
    paths = hostile.make_job(place, "capped")
    _edit(paths.job_file, budget_money=5.0, hourly_price=None)
    run = _resume(place["work"], "capped")
    assert run.returncode == 1 and "could not be kept" in run.stdout and "Traceback" not in run.stdout + run.stderr
    state = read_state(paths)
    assert state.status == "failed" and "hourly_price" in state.hint and state.stages_done == []
    assert not paths.training_samples("dog").exists()


def _styles(n: int, prompt: str = "oil of {token}") -> str:
    return "".join(f'[[style]]\nkeyword = "s{i}"\nprompt = "{prompt}"\nseed = {i}\n' for i in range(n))


PACKS = [
    ("too-many-styles", lambda p: p.write_text(_styles(MAX_STYLES + 1)), f"at most {MAX_STYLES}"),
    ("long-prompt", lambda p: p.write_text(_styles(1, "{token} " + "x" * MAX_PROMPT_CHARS)), "characters"),
    ("huge-file", lambda p: p.open("wb").truncate(MAX_PACK_BYTES * 1024), "bytes"),  # sparse: never read whole
    ("deep", lambda p: p.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n"), "nests too deeply"),
    ("too-many-images", lambda p: p.write_text(_styles(MAX_IMAGES // 1000 + 1)), f"at most {MAX_IMAGES:,}"),
]


@pytest.mark.parametrize("case, write, words", PACKS, ids=[c[0] for c in PACKS])
def test_a_pack_past_its_bounds_is_refused_before_an_image_is_made(place: dict[str, Path], case: str,
                                                                   write: object, words: str) -> None:
    paths = hostile.make_job(place, "packed")
    pack = place["root"] / "pack.toml"
    write(pack)  # type: ignore[operator]
    _edit(paths.job_file, generate={"prompt_pack": str(pack), "images_per_prompt": 1000})
    write_state(paths, JobState(status="stopped", stages_done=["prepare", "class_images", "cache", "train",
                                                               "export"]))
    run = _resume(place["work"], "packed")
    assert run.returncode == 1 and "FAILED in generate" in run.stdout, run.stdout + run.stderr
    assert words in run.stdout and "Traceback" not in run.stdout + run.stderr
    assert not paths.outputs.exists() or not any(paths.outputs.rglob("*.png"))
