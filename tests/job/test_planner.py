"""plan_job: one answer to "what job runs?" for either door, and every door check as one sentence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ioncannon.job.jobfile import read_jobfile
from ioncannon.job.limits import MAX_PROMPT_CHARS, MAX_STYLES
from ioncannon.job.plan.box import GpuInfo, HardwareInfo
from ioncannon.job.plan.demo import demo_request
from ioncannon.job.plan.estimate import ESTIMATED_STAGES
from ioncannon.job.plan.planner import Plan, Problems, plan_job
from ioncannon.job.plan.request import JobRequest
from ioncannon.job.stages import STAGE_NAMES

from .test_families import fake_checkpoint

SDXL_KEY = "conditioner.embedders.1.model.positional_embedding"


def box(total_gib: float = 80.0, count: int = 1, disk_gib: float = 500.0, name: str = "NVIDIA H100") -> HardwareInfo:
    return HardwareInfo([GpuInfo(i, name, total_gib, total_gib - 0.5) for i in range(count)], disk_gib, 8, 64.0)


CPU = HardwareInfo([], 50.0, 2, 8.0)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    return folder


def answers(photos: Path, **more: object) -> dict[str, object]:
    return {"name": "j", "photos_dir": str(photos), "identifier": "zwx", "class_name": "dog", **more}


def planned(result: Plan | Problems) -> Plan:
    assert isinstance(result, Plan), result
    return result


def refused(result: Plan | Problems) -> tuple[str, ...]:
    assert isinstance(result, Problems), result
    return result.sentences


def job_file(tmp_path: Path, **fields: object) -> JobRequest:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(fields))
    return read_jobfile(path, tmp_path / "work")


@pytest.mark.parametrize(("card", "family", "resolution", "model"), [
    (24.0, "sdxl", 1024, "stabilityai/stable-diffusion-xl-base-1.0"),
    (8.0, "sd15", 512, "stable-diffusion-v1-5/stable-diffusion-v1-5"),
])
def test_family_resolution_and_model_follow_the_card_when_not_asked(photos: Path, card: float, family: str,
                                                                    resolution: int, model: str) -> None:
    plan = planned(plan_job(JobRequest(answers(photos)), box(card)))
    assert (plan.spec.family, plan.spec.resolution, plan.spec.base_model) == (family, resolution, model)
    assert plan.choice.plan == plan.spec.train and plan.choice.fits


def test_a_job_files_family_comes_from_its_model_file(tmp_path: Path, photos: Path) -> None:
    model = fake_checkpoint(tmp_path / "realvis.safetensors", [SDXL_KEY])
    plan = planned(plan_job(job_file(tmp_path, **answers(photos), base_model=str(model)), box(24.0)))
    assert (plan.spec.family, plan.spec.resolution) == ("sdxl", 1024)


def test_an_sdxl_model_in_an_sd15_job_file_is_refused_at_the_door(tmp_path: Path, photos: Path) -> None:
    model = fake_checkpoint(tmp_path / "realvis.safetensors", [SDXL_KEY])
    problems = refused(plan_job(job_file(tmp_path, **answers(photos), family="sd15", base_model=str(model)),
                                box(24.0)))
    assert problems == ("realvis.safetensors is an SDXL model but the job is set to SD 1.5: pick SDXL as the model "
                        "family or choose an SD 1.5 base model.",)


def test_another_familys_own_hub_model_is_refused_at_the_door(tmp_path: Path, photos: Path) -> None:
    problems = refused(plan_job(job_file(tmp_path, **answers(photos), family="sd15",
                                         base_model="stabilityai/stable-diffusion-xl-base-1.0"), box(24.0)))
    assert problems == ("stable-diffusion-xl-base-1.0 is an SDXL model but the job is set to SD 1.5: pick SDXL as "
                        "the model family or choose an SD 1.5 base model.",)


def test_a_resolution_the_family_does_not_train_at_is_refused(tmp_path: Path, photos: Path) -> None:
    problems = refused(plan_job(job_file(tmp_path, **answers(photos), family="sdxl", resolution=512), box()))
    assert problems == ("resolution 512 is not a size SDXL trains at: write 1024 or 768.",)


def test_a_dollar_budget_without_the_hourly_price_is_refused(tmp_path: Path, photos: Path) -> None:
    problems = refused(plan_job(job_file(tmp_path, **answers(photos), family="sd15", budget_money=20), box()))
    assert len(problems) == 1 and "needs the price per hour" in problems[0]
    assert isinstance(plan_job(job_file(tmp_path, **answers(photos), family="sd15", budget_money=20,
                                        hourly_price=2.0), box()), Plan)


def _pack(tmp_path: Path, styles: list[tuple[str, str]]) -> Path:
    path = tmp_path / "pack.toml"
    path.write_text("".join(f'[[style]]\nkeyword = "{k}"\nprompt = "{p}"\nseed = {n}\n\n'
                            for n, (k, p) in enumerate(styles)))
    return path


@pytest.mark.parametrize(("styles", "says"), [
    ([("Bad Keyword", "a {token}")], "keyword 'Bad Keyword' must be lower-case"),
    ([(f"s{n}", "a {token}") for n in range(MAX_STYLES + 1)], f"a pack holds at most {MAX_STYLES}"),
    ([("long", "a {token} " + "x" * MAX_PROMPT_CHARS)], f"keep each under {MAX_PROMPT_CHARS}"),
])
def test_a_prompt_pack_is_checked_at_the_door(tmp_path: Path, photos: Path, styles: list[tuple[str, str]],
                                              says: str) -> None:
    pack = _pack(tmp_path, styles)
    problems = refused(plan_job(job_file(tmp_path, **answers(photos), family="sd15",
                                         generate={"prompt_pack": str(pack)}), box()))
    assert len(problems) == 1 and problems[0].startswith("generate.prompt_pack") and says in problems[0], problems


def test_a_huge_prompt_pack_is_refused_unread(tmp_path: Path, photos: Path) -> None:
    pack = tmp_path / "huge.toml"
    with open(pack, "wb") as fh:
        fh.truncate(2 << 20)  # sparse: two megabytes of nothing
    problems = refused(plan_job(job_file(tmp_path, **answers(photos), family="sd15",
                                         generate={"prompt_pack": str(pack)}), box()))
    assert len(problems) == 1 and "2,097,152 bytes" in problems[0]


def test_no_gpu_refuses_a_real_job_and_plans_the_cpu_one(tmp_path: Path, photos: Path) -> None:
    problems = refused(plan_job(job_file(tmp_path, **answers(photos), family="sd15"), CPU))
    assert any("no CUDA GPU is visible" in p for p in problems)
    cpu = planned(plan_job(job_file(tmp_path, **answers(photos), family="sd15", device="cpu"), CPU))
    assert cpu.spec.train.precision == "fp32"


def test_the_demo_is_one_input_of_the_planner(tmp_path: Path) -> None:
    measured = HardwareInfo([], 50.0, 2, 8.0, demo_step_s=0.5)
    model = tmp_path / "tiny"
    model.mkdir()
    plan = planned(plan_job(demo_request(tmp_path, None, str(model), "demo"), measured))
    spec = plan.spec
    assert spec.demo and spec.device == "cpu" and spec.resolution == 64 and spec.family == "sd15"
    assert spec.train.steps == 80  # 40 s of training at the measured 0.5 s a step
    assert spec.threads == 1 and spec.generate.images_per_prompt == 4


def test_the_estimate_has_one_entry_per_stage_and_counts_checkpoints_as_the_loop_writes_them(photos: Path) -> None:
    plan = planned(plan_job(JobRequest(answers(photos), family="sd15"), box()))
    assert tuple(e.stage for e in plan.estimate) == STAGE_NAMES
    assert set(STAGE_NAMES) <= ESTIMATED_STAGES  # a new stage must say how long it takes
    train = plan.spec.train
    assert (train.steps, train.checkpoint_every, train.checkpoints_written()) == (800, 400, 1)
    seconds = plan.stage_seconds()
    speed = plan.choice.predicted_steps_per_s
    assert seconds["train"] == pytest.approx(65.0 + 800 / speed + 1 * 1.0, abs=0.1)
    assert plan.seconds == pytest.approx(sum(seconds.values()))


def test_several_gpus_when_asked_scale_the_plan_and_its_estimate(photos: Path) -> None:
    one = planned(plan_job(JobRequest(answers(photos), family="sd15"), box(count=2)))
    two = planned(plan_job(JobRequest(answers(photos), family="sd15", all_gpus=True), box(count=2)))
    assert one.parallel is not None and one.choice is one.single and one.spec.train.num_processes == 1
    assert two.spec.train.num_processes == 2 and two.spec.train.checkpoints_written() == 1
    assert two.stage_seconds()["train"] < one.stage_seconds()["train"]


def test_handle_checks_a_spec_with_the_planners_checks(tmp_path: Path, photos: Path) -> None:
    from ioncannon.job import handle
    from ioncannon.job.validate import SpecError

    plan = planned(plan_job(JobRequest(answers(photos), family="sd15"), box()))
    handle.check_spec(plan.spec, tmp_path / "work")
    with pytest.raises(SpecError, match="needs the price per hour"):
        handle.check_spec(plan.spec.replace(budget_money=5.0), tmp_path / "work")


def test_every_problem_is_said_at_once(tmp_path: Path) -> None:
    problems = refused(plan_job(job_file(tmp_path, photos_dir=str(tmp_path / "none"), identifier="a_b",
                                         class_name="dog", family="sd15", budget_money=3), box()))
    assert any("identifier" in p for p in problems)
    problems = refused(plan_job(job_file(tmp_path, photos_dir=str(tmp_path / "none"), identifier="ab",
                                         class_name="dog", family="sd15", budget_money=3), box()))
    assert len(problems) == 2 and "does not exist" in problems[0] and "budget_money" in problems[1]
