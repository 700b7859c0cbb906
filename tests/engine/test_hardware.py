"""Plan choice for every card size, the CPU cases, step-down order and the probe."""

from __future__ import annotations

import pytest

from ioncannon.engine.hardware import (
    PRESETS,
    GpuInfo,
    HardwareInfo,
    NothingFits,
    choose_plan,
    estimate_seconds,
    plan_key,
    plan_options,
    probe,
    step_down,
)
from ioncannon.job.spec import JobSpec


def card(total_gib: float, name: str = "NVIDIA Test GPU", used_gib: float = 0.5) -> HardwareInfo:
    return HardwareInfo(
        [GpuInfo(0, name, total_gib, total_gib - used_gib)], disk_free_gib=200.0, cpu_count=8, ram_gib=64.0
    )


CPU_ONLY = HardwareInfo([], disk_free_gib=50.0, cpu_count=2, ram_gib=16.0)


@pytest.mark.parametrize(("total", "expected"), [
    (8, "lora"), (12, "full-12gb"), (16, "full-roomy"), (24, "full-roomy"), (80, "full-roomy"),
])
def test_recommended_plan_for_each_card(total: float, expected: str) -> None:
    choice = choose_plan(card(total))
    assert plan_key(choice.plan) == expected
    assert choice.fits
    assert choice.predicted_peak_gib + 1.0 <= total - 0.5
    assert choice.plan.precision == "bf16"
    assert choice.predicted_steps_per_s > 0


def test_ten_gb_card_gets_full_fine_tune_with_checkpointing() -> None:
    choice = choose_plan(card(10, used_gib=1.5))
    assert plan_key(choice.plan) == "full-10gb"
    assert choice.plan.gradient_checkpointing


def test_lora_fallback_says_why() -> None:
    choice = choose_plan(card(8))
    assert choice.plan.mode == "lora"
    assert "full fine-tune does not fit" in choice.why


def test_classic_preset_is_the_notebook_recipe() -> None:
    plan = choose_plan(card(24), preset="classic").plan
    assert (plan.mode, plan.learning_rate, plan.batch_size, plan.steps, plan.train_text_encoder) == (
        "full",
        1e-6,
        1,
        1000,
        True,
    )
    assert set(PRESETS) >= {"classic", "recommended"}
    assert all(len(text.splitlines()) == 1 for text in PRESETS.values())


def test_training_the_text_encoder_needs_more_memory() -> None:
    classic = choose_plan(card(80), preset="classic")
    recommended = choose_plan(card(80))
    assert classic.predicted_peak_gib > recommended.predicted_peak_gib


def test_forced_lora_mode_on_a_big_card() -> None:
    assert choose_plan(card(80), mode="lora").plan.mode == "lora"


def test_nothing_fits_a_tiny_card() -> None:
    with pytest.raises(NothingFits, match="8 GB"):
        choose_plan(card(3))


def test_busy_card_counts_free_not_total_memory() -> None:
    assert plan_key(choose_plan(card(24, used_gib=16)).plan) == "lora"


def test_plan_options_lists_every_plan_with_fit() -> None:
    options = plan_options(card(12))
    keys = [plan_key(o.plan) for o in options]
    assert keys == ["full-roomy", "full-12gb", "full-10gb", "lora", "lora-8gb"]
    assert [o.fits for o in options] == [False, True, True, True, True]


def test_cpu_demo_gets_a_tiny_fp32_plan() -> None:
    choice = choose_plan(CPU_ONLY, demo=True)
    assert choice.fits
    assert choice.plan.precision == "fp32" and not choice.plan.compile
    assert choice.plan.steps <= 500  # about 15 s of training on two CPU cores


def test_cpu_with_a_real_model_does_not_fit() -> None:
    choice = choose_plan(CPU_ONLY)
    assert not choice.fits
    assert "needs a CUDA GPU" in choice.why


def test_step_down_walks_leaner_plans_of_the_same_mode() -> None:
    plan = choose_plan(card(80)).plan
    seen = [plan_key(plan)]
    while (plan := step_down(plan)) is not None:
        seen.append(plan_key(plan))
    assert seen == ["full-roomy", "full-12gb", "full-10gb"]
    lora = choose_plan(card(80), mode="lora").plan
    assert plan_key(step_down(lora)) == "lora-8gb"
    assert step_down(step_down(lora)) is None


def test_estimate_grows_with_steps_and_a_slower_card() -> None:
    spec = JobSpec(name="j", photos_dir="/x", identifier="zq", class_name="dog")
    fast = choose_plan(card(80, name="NVIDIA H100 80GB HBM3"))
    slow = choose_plan(card(24, name="NVIDIA GeForce RTX 3090"))
    assert 60 < estimate_seconds(spec, fast) < estimate_seconds(spec, slow)
    longer = type(fast)(fast.plan.__class__(**{**fast.plan.__dict__, "steps": 4000}), fast.label, fast.why,
                        fast.predicted_peak_gib, fast.predicted_steps_per_s, True)
    assert estimate_seconds(spec, longer) > estimate_seconds(spec, fast)
    demo = choose_plan(CPU_ONLY, demo=True)
    assert estimate_seconds(spec.replace(demo=True, train=demo.plan), demo) < 180


def test_estimate_counts_the_styles_the_user_left_on(tmp_path) -> None:
    import dataclasses

    from ioncannon.job.prompts import load_pack, save_pack

    styles = load_pack()
    few = tmp_path / "few.toml"
    save_pack(few, [dataclasses.replace(s, enabled=i < 2) for i, s in enumerate(styles)])
    spec = JobSpec(name="j", photos_dir="/x", identifier="zq", class_name="dog")
    choice = choose_plan(card(80, name="NVIDIA H100 80GB HBM3"))
    full = estimate_seconds(spec, choice)
    trimmed = estimate_seconds(spec.replace(generate=dataclasses.replace(spec.generate, prompt_pack=str(few))), choice)
    per_image = 1 / 6.0  # the estimate's images/s on an H100
    saved = (len(styles) - 2) * spec.generate.images_per_prompt * per_image
    assert full - trimmed == pytest.approx(saved, rel=1e-6)


def test_probe_never_raises(tmp_path) -> None:
    hw = probe(tmp_path / "does" / "not" / "exist")
    assert hw.cpu_count >= 1
    assert hw.disk_free_gib > 0
    assert hw.ram_gib > 0
    assert isinstance(hw.gpus, list)


@pytest.mark.parametrize(("total", "family", "key"), [
    (8, "sd15", "lora"), (12, "sdxl", "lora-12gb"), (24, "sdxl", "lora"), (80, "sdxl", "full-roomy"),
])
def test_sdxl_where_it_fits_and_its_plans_per_card(total: float, family: str, key: str) -> None:
    from ioncannon.engine.hardware import default_family

    hw = card(total)
    assert default_family(hw) == family
    choice = choose_plan(hw, family=family)
    assert plan_key(choice.plan, family) == key and choice.fits
    assert default_family(hw, demo=True) == "sd15"  # the CPU demo stays on the fast family


def test_sdxl_too_big_a_plan_says_which_card_would_do() -> None:
    with pytest.raises(NothingFits, match="at least 12 GB"):
        choose_plan(card(6), family="sdxl")
    # estimates are marked as such until the GPU bench has measured the plan
    full = next(c for c in plan_options(card(80), family="sdxl") if c.plan.mode == "full")
    assert "(estimated)" in full.why
    lora = next(c for c in plan_options(card(80), family="sdxl") if c.plan.mode == "lora")
    assert "(estimated)" not in lora.why


def test_sdxl_steps_down_within_its_own_plans() -> None:
    lora = choose_plan(card(24), family="sdxl").plan
    leaner = step_down(lora, "sdxl")
    assert leaner is not None and leaner.gradient_checkpointing and plan_key(leaner, "sdxl") == "lora-12gb"
    assert step_down(leaner, "sdxl") is None


def test_the_demo_plan_is_sized_from_the_measured_step() -> None:
    from ioncannon.engine import hardware
    from ioncannon.engine.demo import DEMO_TRAIN_SECONDS

    measured = hardware.HardwareInfo(gpus=[], disk_free_gib=50, cpu_count=2, ram_gib=8, demo_step_s=0.5)
    choice = hardware.choose_plan(measured, "recommended", "full", demo=True)
    assert choice.plan.steps == int(DEMO_TRAIN_SECONDS / 0.5) // 10 * 10
    assert choice.predicted_steps_per_s == 2.0
    unmeasured = hardware.HardwareInfo(gpus=[], disk_free_gib=50, cpu_count=2, ram_gib=8)
    assert hardware.choose_plan(unmeasured, "recommended", "full", demo=True).plan.steps == 400


def test_measuring_a_demo_step_takes_seconds_and_pins_nothing() -> None:
    import time

    import torch

    from ioncannon.engine.demo import measure_step_s

    before = torch.get_num_threads()
    t = time.perf_counter()
    step_s = measure_step_s(budget_s=0.5)
    assert 0 < step_s < time.perf_counter() - t
    assert torch.get_num_threads() == before


def test_every_family_gets_a_demo_plan_sized_or_fixed() -> None:
    from ioncannon.engine.demo import sized_demo_plan
    from ioncannon.job.presets import demo_plan_for

    for family in ("sd15", "sdxl", "flux"):
        plan = sized_demo_plan(family)
        fixed = demo_plan_for(family)
        assert plan.mode == fixed.mode and 40 <= plan.steps <= fixed.steps
