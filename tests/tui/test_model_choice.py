"""The hardware step's model choice: ctrl+f's round, and the size and base model the planner gives each family."""

from __future__ import annotations

from pathlib import Path

import pytest

from ioncannon.job.plan.box import GpuInfo, HardwareInfo
from ioncannon.job.plan.planner import Plan, plan_job
from ioncannon.tui.models import following_model, model_choices
from ioncannon.tui.request import wizard_request
from ioncannon.tui.session import WizardSession

H100 = HardwareInfo([GpuInfo(0, "NVIDIA H100", 80.0, 79.0)], 500.0, 16, 128.0)


def test_ctrl_f_goes_round_families_and_sizes() -> None:
    assert model_choices(demo=False) == [("sd15", 512), ("sdxl", 1024), ("sdxl", 768), ("flux", 1024), ("flux", 512)]
    assert following_model("sd15", 512, demo=False) == ("sdxl", 1024)
    assert following_model("sdxl", 1024, demo=False) == ("sdxl", 768)
    assert following_model("sdxl", 768, demo=False) == ("flux", 1024)
    assert following_model("flux", 1024, demo=False) == ("flux", 512)
    assert following_model("flux", 512, demo=False) == ("sd15", 512)
    # the demo's tiny models have one size (64 px), so it only switches family
    assert following_model("sd15", 64, demo=True) == ("sdxl", 1024)
    assert following_model("sdxl", 64, demo=True) == ("flux", 1024)
    assert following_model("flux", 64, demo=True) == ("sd15", 512)


def test_sizes_and_base_models_follow_the_family_unless_chosen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_test")  # FLUX.1-dev is gated: a login is here
    sd15, sdxl = "stable-diffusion-v1-5/stable-diffusion-v1-5", "stabilityai/stable-diffusion-xl-base-1.0"

    def planned(**answers: object) -> tuple[str, int, str]:
        (tmp_path / "photos").mkdir(exist_ok=True)
        session = WizardSession(photos_dir=str(tmp_path / "photos"), identifier="zwx", **answers)  # type: ignore[arg-type]
        plan = plan_job(wizard_request(session, tmp_path / "work", "j", demo=False), H100)
        assert isinstance(plan, Plan), plan
        return plan.spec.family, plan.spec.resolution, plan.spec.base_model

    assert planned(family="sdxl") == ("sdxl", 1024, sdxl)  # an untouched default model follows the family
    assert planned(family="sdxl", resolution=768) == ("sdxl", 768, sdxl)
    assert planned(family="sd15", resolution=768) == ("sd15", 512, sd15)  # not an SD 1.5 size
    assert planned(family="sd15", base_model="") == ("sd15", 512, sd15)
    model = tmp_path / "juggernaut.safetensors"
    model.write_bytes(b"")  # a file of unknown family: the person's choice stands
    assert planned(family="sdxl", base_model=f" {model} ")[2] == str(model)
    assert planned(family="flux", base_model=sdxl, resolution=768)[:2] == ("flux", 1024)
    assert planned(family="flux", resolution=512) == ("flux", 512, "black-forest-labs/FLUX.1-dev")
    assert planned(family=None)[0] == "sdxl"  # left open: the family that fits the card
