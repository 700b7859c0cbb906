"""The probe: what this machine has, never raising; the demo's step measurement (the plans: tests/job)."""

from __future__ import annotations

import pytest

from ioncannon.engine.hardware import probe
from ioncannon.job.plan.memory import choose_plan
from ioncannon.job.plan.presets import demo_plan_for


def test_probe_never_raises(tmp_path) -> None:
    hw = probe(tmp_path / "does" / "not" / "exist")
    assert hw.cpu_count >= 1
    assert hw.disk_free_gib > 0
    assert hw.ram_gib > 0
    assert isinstance(hw.gpus, list)


def test_measuring_a_demo_step_takes_seconds_and_pins_nothing() -> None:
    import time

    import torch

    from ioncannon.engine.demo import measure_step_s

    before = torch.get_num_threads()
    t = time.perf_counter()
    step_s = measure_step_s(budget_s=0.5)
    assert 0 < step_s < time.perf_counter() - t
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("family", ["sd15", "sdxl", "flux"])
def test_every_family_gets_a_demo_plan_sized_or_fixed(tmp_path, family: str) -> None:
    box = probe(tmp_path, demo=True, family=family)
    plan = choose_plan(box, demo=True, family=family).plan
    fixed = demo_plan_for(family)
    assert plan.mode == fixed.mode and 40 <= plan.steps <= fixed.steps
