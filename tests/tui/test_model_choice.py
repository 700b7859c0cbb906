"""The hardware step's model choice rules (pure): ctrl+f's round, sizes per family, the base model that follows."""

from __future__ import annotations

from ioncannon.tui.models import base_model_for, following_model, model_choices, resolution_for


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


def test_sizes_and_base_models_follow_the_family_unless_chosen() -> None:
    assert resolution_for("sdxl", None) == 1024 and resolution_for("sdxl", 768) == 768
    assert resolution_for("sd15", 768) == 512  # not an SD 1.5 size
    sd15, sdxl = "stable-diffusion-v1-5/stable-diffusion-v1-5", "stabilityai/stable-diffusion-xl-base-1.0"
    assert base_model_for("sdxl", sd15) == sdxl  # an untouched default follows the family
    assert base_model_for("sd15", "") == sd15
    assert base_model_for("sdxl", " /models/juggernaut.safetensors ") == "/models/juggernaut.safetensors"
    assert base_model_for("flux", sdxl) == "black-forest-labs/FLUX.1-dev"
    assert resolution_for("flux", 768) == 1024 and resolution_for("flux", 512) == 512
