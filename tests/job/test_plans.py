"""TrainPlan.size_to_machine: the demo's step count follows the machine's measured speed."""

from __future__ import annotations

from ioncannon.job.plan import presets


def test_a_fast_machine_keeps_the_full_demo() -> None:
    plan = presets.demo_plan()
    assert plan.size_to_machine(0.01, target_s=40) == plan


def test_a_busy_machine_gets_fewer_steps_with_checkpoints_every_quarter() -> None:
    plan = presets.demo_plan().size_to_machine(0.25, target_s=40)
    assert plan.steps == 160
    assert plan.checkpoint_every == 40 and plan.sample_every == 40
    assert plan.learning_rate == presets.demo_plan().learning_rate


def test_a_crawling_machine_still_trains_the_least_steps() -> None:
    plan = presets.demo_plan().size_to_machine(5.0, target_s=40, least=40)
    assert plan.steps == 40 and plan.checkpoint_every == 10


def test_no_measurement_changes_nothing() -> None:
    plan = presets.demo_plan()
    assert plan.size_to_machine(0.0) == plan
