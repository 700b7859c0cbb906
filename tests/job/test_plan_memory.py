"""The memory plans: which plan fits each card, the CPU cases, GPU scaling and the step-down order."""

from __future__ import annotations

import pytest

from ioncannon.job.plan.box import GpuInfo, HardwareInfo
from ioncannon.job.plan.memory import (
    DEMO_TRAIN_SECONDS,
    PRESETS,
    NothingFits,
    choose_plan,
    data_parallel,
    default_family,
    plan_key,
    plan_options,
    scale_for_processes,
    step_down,
)


def card(total_gib: float, name: str = "NVIDIA Test GPU", used_gib: float = 0.5, count: int = 1) -> HardwareInfo:
    return HardwareInfo([GpuInfo(i, name, total_gib, total_gib - used_gib) for i in range(count)],
                        disk_free_gib=200.0, cpu_count=8, ram_gib=64.0)


CPU_ONLY = HardwareInfo([], disk_free_gib=50.0, cpu_count=2, ram_gib=16.0)


@pytest.mark.parametrize(("total", "expected"), [
    (8, "lora"), (12, "full-12gb"), (16, "full-roomy"), (24, "full-roomy"), (80, "full-roomy"),
])
def test_recommended_plan_for_each_card(total: float, expected: str) -> None:
    choice = choose_plan(card(total), family="sd15")
    assert plan_key(choice.plan, "sd15") == expected
    assert choice.fits
    assert choice.predicted_peak_gib + 1.0 <= total - 0.5
    assert choice.plan.precision == "bf16"
    assert choice.predicted_steps_per_s > 0


def test_ten_gb_card_gets_full_fine_tune_with_checkpointing() -> None:
    choice = choose_plan(card(10, used_gib=1.5), family="sd15")
    assert plan_key(choice.plan, "sd15") == "full-10gb"
    assert choice.plan.gradient_checkpointing


def test_lora_fallback_says_why() -> None:
    choice = choose_plan(card(8), family="sd15")
    assert choice.plan.mode == "lora"
    assert "full fine-tune does not fit" in choice.why


def test_classic_preset_is_the_notebook_recipe() -> None:
    plan = choose_plan(card(24), preset="classic", family="sd15").plan
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
    classic = choose_plan(card(80), preset="classic", family="sd15")
    recommended = choose_plan(card(80), family="sd15")
    assert classic.predicted_peak_gib > recommended.predicted_peak_gib


def test_forced_lora_mode_on_a_big_card() -> None:
    assert choose_plan(card(80), mode="lora", family="sd15").plan.mode == "lora"


def test_nothing_fits_a_tiny_card() -> None:
    with pytest.raises(NothingFits, match="8 GB"):
        choose_plan(card(3), family="sd15")


def test_busy_card_counts_free_not_total_memory() -> None:
    assert plan_key(choose_plan(card(24, used_gib=16), family="sd15").plan, "sd15") == "lora"


def test_plan_options_lists_every_plan_with_fit() -> None:
    options = plan_options(card(12), family="sd15")
    keys = [plan_key(o.plan, "sd15") for o in options]
    assert keys == ["full-roomy", "full-12gb", "full-10gb", "lora", "lora-8gb"]
    assert [o.fits for o in options] == [False, True, True, True, True]


def test_cpu_demo_gets_a_tiny_fp32_plan() -> None:
    choice = choose_plan(CPU_ONLY, demo=True, family="sd15")
    assert choice.fits
    assert choice.plan.precision == "fp32" and not choice.plan.compile
    assert choice.plan.steps <= 500  # about 15 s of training on two CPU cores


def test_cpu_with_a_real_model_does_not_fit() -> None:
    choice = choose_plan(CPU_ONLY, family="sd15")
    assert not choice.fits
    assert "needs a CUDA GPU" in choice.why


def test_step_down_walks_leaner_plans_of_the_same_mode() -> None:
    plan = choose_plan(card(80), family="sd15").plan
    seen = [plan_key(plan, "sd15")]
    while (plan := step_down(plan, "sd15")) is not None:
        seen.append(plan_key(plan, "sd15"))
    assert seen == ["full-roomy", "full-12gb", "full-10gb"]
    lora = choose_plan(card(80), mode="lora", family="sd15").plan
    assert plan_key(step_down(lora, "sd15"), "sd15") == "lora-8gb"
    assert step_down(step_down(lora, "sd15"), "sd15") is None


@pytest.mark.parametrize(("total", "family", "key"), [
    (8, "sd15", "lora"), (12, "sdxl", "lora-12gb"), (24, "sdxl", "lora"), (80, "sdxl", "full-roomy"),
])
def test_sdxl_where_it_fits_and_its_plans_per_card(total: float, family: str, key: str) -> None:
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
    measured = HardwareInfo(gpus=[], disk_free_gib=50, cpu_count=2, ram_gib=8, demo_step_s=0.5)
    choice = choose_plan(measured, "recommended", "full", demo=True, family="sd15")
    assert choice.plan.steps == int(DEMO_TRAIN_SECONDS / 0.5) // 10 * 10
    assert choice.predicted_steps_per_s == 2.0
    unmeasured = HardwareInfo(gpus=[], disk_free_gib=50, cpu_count=2, ram_gib=8)
    assert choose_plan(unmeasured, "recommended", "full", demo=True, family="sd15").plan.steps == 400


def test_a_two_gpu_full_fine_tune_still_checkpoints() -> None:
    """800 steps checkpointed every 400 on one GPU become 400 steps on two: the cadence halves with them, so a
    kill -9 half-way resumes from step 200, not from step 0."""
    single = choose_plan(card(80, count=2), family="sd15")
    assert (single.plan.steps, single.plan.checkpoint_every) == (800, 400)
    assert single.plan.checkpoints_written() == 1
    both = data_parallel(single, card(80, count=2))
    assert both is not None
    assert (both.plan.num_processes, both.plan.steps, both.plan.checkpoint_every) == (2, 400, 200)
    assert both.plan.checkpoints_written() == 1
    assert [s for s in range(1, both.plan.steps + 1) if both.plan.checkpoint_due(s)] == [200]


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_scaling_keeps_the_checkpoint_and_preview_cadence_in_images_seen(n: int) -> None:
    plan = choose_plan(card(80), family="sd15").plan
    scaled = scale_for_processes(plan, n)
    assert scaled.checkpoints_written() >= plan.checkpoints_written() >= 1
    assert scaled.sample_every == -(-plan.sample_every // n)
    assert scale_for_processes(plan, 1) is plan


def test_the_checkpoint_count_is_the_loops_rule() -> None:
    from ioncannon.job.plans import TrainPlan

    for steps, every in [(800, 400), (800, 200), (801, 400), (399, 400), (5, 1), (10, 0)]:
        plan = TrainPlan(steps=steps, checkpoint_every=every)
        assert plan.checkpoints_written() == sum(plan.checkpoint_due(d) for d in range(1, steps + 1))
    assert TrainPlan(steps=800, checkpoint_every=400).checkpoints_written() == 1  # not 800 // 400
