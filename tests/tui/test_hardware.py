"""The hardware screen's keys: preset, mode and GPUs switch the plan the job would run, and are remembered."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Static

from ioncannon.job.paths import JobPaths
from ioncannon.job.plan.box import GpuInfo, HardwareInfo
from ioncannon.job.plan.memory import choose_plan
from ioncannon.job.spec import load_spec
from ioncannon.tui.app import IonCannonApp
from ioncannon.tui.dialogs.choice import ChoiceDialog
from ioncannon.tui.screens.hardware import HardwareScreen
from ioncannon.tui.session import SessionStore, WizardSession, load_session
from tests.hanging_hub import LocalHub

from .conftest import shown, wait_for

L4 = HardwareInfo(gpus=[GpuInfo(0, "NVIDIA L4", 22.5, 22.0)], disk_free_gib=200.0, cpu_count=8, ram_gib=31.0)
TWO_H100 = HardwareInfo(gpus=[GpuInfo(i, "NVIDIA H100 80GB HBM3", 79.1, 78.6) for i in range(2)],
                        disk_free_gib=412.3, cpu_count=32, ram_gib=251.0)
TINY_CARD = HardwareInfo(gpus=[GpuInfo(0, "NVIDIA T400", 2.0, 1.8)], disk_free_gib=200.0, cpu_count=8, ram_gib=31.0)


def open_on_hardware(workdir: Path, tmp_path: Path, hardware: HardwareInfo, **answers: object) -> IonCannonApp:
    photos = tmp_path / "photos"  # beside the work dir, never around it (the door refuses that)
    photos.mkdir(exist_ok=True)
    SessionStore(workdir, WizardSession()).update(step="hardware", photos_dir=str(photos), identifier="zwx",
                                                  **answers)
    return IonCannonApp(workdir, hardware_probe=lambda _: hardware, proc=tmp_path / "no-proc")


async def test_preset_and_mode_keys_change_the_plan(tui_workdir: Path, tmp_path: Path) -> None:
    app = open_on_hardware(tui_workdir, tmp_path, L4, family="sd15")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.choice is not None,
                       what="plan")
        screen = app.screen
        assert isinstance(screen, HardwareScreen) and screen.choice is not None
        assert screen.choice.plan.mode == "full" and screen.choice.plan.preset == "recommended"
        await pilot.press("ctrl+l")
        assert screen.choice.plan.mode == "lora" and load_session(tui_workdir).mode == "lora"
        await pilot.press("ctrl+p")
        assert screen.choice.plan.preset == "classic" and load_session(tui_workdir).preset == "classic"
        assert "classic preset" in shown(screen.query_one("#hardware-plan", Static))
        # what is shown is what would run
        assert screen.spec_for("x").train == screen.choice.plan


async def test_a_card_too_small_for_every_plan_is_refused(tui_workdir: Path, tmp_path: Path) -> None:
    app = open_on_hardware(tui_workdir, tmp_path, TINY_CARD)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.hardware is not None,
                       what="probe")
        await pilot.press("ctrl+n")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ChoiceDialog)
        message = shown(app.screen.query_one("#hardware-message", Static))
        assert "Can't start" in message and "NVIDIA T400" in message
    assert not any(p.is_dir() for p in tui_workdir.iterdir())  # no job was created


async def test_budget_cap_in_dollars_or_minutes_reaches_the_spec(tui_workdir: Path, tmp_path: Path,
                                                                 answering_hub: LocalHub) -> None:
    app = open_on_hardware(tui_workdir, tmp_path, L4)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.estimate_s is not None,
                       what="plan")
        screen = app.screen
        assert isinstance(screen, HardwareScreen)
        note = screen.query_one("#hardware-budget-note", Static)
        await pilot.press("tab", *"20")  # dollars, but no hourly price yet
        assert "needs the price per hour" in shown(note)
        await pilot.press("ctrl+n")
        assert not isinstance(app.screen, ChoiceDialog)
        assert "needs the price per hour" in shown(screen.query_one("#hardware-message", Static))

        await pilot.press("shift+tab", *"2.5")
        assert "stops the job at $20.00 (after 8 h 00 min)" in shown(note)
        spec = screen.spec_for("x")
        assert (spec.budget_money, spec.budget_minutes, spec.hourly_price) == (20.0, None, 2.5)

        await pilot.press("tab", "ctrl+u", *"90m")
        assert "stops the job after 1 h 30 min, ≈ $3.75" in shown(note)
        assert (screen.spec_for("x").budget_money, screen.spec_for("x").budget_minutes) == (None, 90.0)
        assert load_session(tui_workdir).budget == "90m"
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), what="confirm")
        assert "stops itself after 1 h 30 min" in shown(app.screen.query_one(".dialog-body", Static))
        await pilot.press("escape")

        await pilot.press("ctrl+u", *"soon")
        assert "not a budget" in shown(note)
        await pilot.press("ctrl+n")
        assert "Budget cap" in shown(screen.query_one("#hardware-message", Static))


async def test_two_gpus_offer_data_parallel_and_the_job_runs_on_both(tui_workdir: Path, tmp_path: Path,
                                                                     answering_hub: LocalHub) -> None:
    app = open_on_hardware(tui_workdir, tmp_path, TWO_H100, family="sd15")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.estimate_s is not None,
                       what="plan")
        screen = app.screen
        assert isinstance(screen, HardwareScreen) and screen.choice is not None
        facts = screen.query_one("#hardware-facts", Static)
        # one GPU until the person asks for all: the offer states the per-GPU batch and the learning-rate scaling
        single = choose_plan(TWO_H100, family="sd15")
        assert screen.choice.plan == single.plan and screen.choice.plan.num_processes == 1
        assert "2 × NVIDIA H100 80GB HBM3" in shown(facts) and "use all 2 (ctrl+g)" in shown(facts)
        assert "per GPU" in shown(facts) and "global batch 2" in shown(facts) and "sqrt(2)" in shown(facts)
        assert "All GPUs" in {b.binding.description for b in screen.active_bindings.values() if b.binding.show}
        one_gpu_estimate = screen.estimate_s

        await pilot.press("ctrl+g")
        plan = screen.choice.plan
        assert plan.num_processes == 2 and plan.batch_size == single.plan.batch_size
        assert plan.steps == single.plan.steps // 2 and plan.learning_rate > single.plan.learning_rate
        assert "training on all 2" in shown(facts) and "on 2 GPUs" in shown(screen.query_one("#hardware-plan", Static))
        assert screen.estimate_s is not None and one_gpu_estimate is not None and screen.estimate_s < one_gpu_estimate
        assert load_session(tui_workdir).all_gpus is True
        await pilot.press("ctrl+g")
        assert screen.choice.plan.num_processes == 1 and load_session(tui_workdir).all_gpus is False
        await pilot.press("ctrl+g")

        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), what="confirm")
        assert "on 2 GPUs, one process each" in shown(app.screen.query_one(".dialog-body", Static))
        await pilot.press("enter")
        await wait_for(pilot, lambda: load_session(tui_workdir).job_name is not None, what="the job")
    job = JobPaths(tui_workdir / str(load_session(tui_workdir).job_name))
    spec = load_spec(job)
    assert spec.train.num_processes == 2 and spec.train == plan


async def test_one_gpu_has_no_gpus_key(tui_workdir: Path, tmp_path: Path) -> None:
    app = open_on_hardware(tui_workdir, tmp_path, L4, all_gpus=True)  # remembered from a bigger box
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.estimate_s is not None,
                       what="plan")
        screen = app.screen
        assert isinstance(screen, HardwareScreen) and screen.choice is not None
        assert screen.session.all_gpus and screen.parallel is None and screen.choice.plan.num_processes == 1
        assert "ctrl+g" not in shown(screen.query_one("#hardware-facts", Static))
        assert "All GPUs" not in {b.binding.description for b in screen.active_bindings.values() if b.binding.show}
        await pilot.press("ctrl+g")
        assert screen.choice.plan.num_processes == 1


TWELVE_GB = HardwareInfo(gpus=[GpuInfo(0, "NVIDIA GeForce RTX 3060", 12.0, 11.5)], disk_free_gib=200.0, cpu_count=8,
                         ram_gib=31.0)
EIGHT_GB = HardwareInfo(gpus=[GpuInfo(0, "NVIDIA GeForce RTX 3070", 8.0, 7.6)], disk_free_gib=200.0, cpu_count=8,
                        ram_gib=31.0)


async def test_sdxl_where_it_fits_and_ctrl_f_switches_family(tui_workdir: Path, tmp_path: Path) -> None:
    app = open_on_hardware(tui_workdir, tmp_path, TWELVE_GB)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.estimate_s is not None,
                       what="plan")
        screen = app.screen
        assert isinstance(screen, HardwareScreen) and screen.choice is not None
        spec = screen.spec_for("x")
        # a 12 GB card gets SDXL's leanest LoRA plan, at 1024 px, from SDXL's own base model
        assert (spec.family, spec.resolution, spec.base_model) == (
            "sdxl",
            1024,
            "stabilityai/stable-diffusion-xl-base-1.0",
        )
        assert spec.train.mode == "lora" and spec.train.gradient_checkpointing
        plan_text = shown(screen.query_one("#hardware-plan", Static))
        assert "SDXL · 1024 px · ctrl+f: SDXL 768 px" in plan_text

        await pilot.press("ctrl+f")  # SDXL at 768 px, for speed
        await wait_for(pilot, lambda: screen.choice is not None and screen.spec_for("x").resolution == 768,
                       what="the 768 px plan")
        assert screen.spec_for("x").family == "sdxl" and load_session(tui_workdir).resolution == 768
        await pilot.press("ctrl+f")  # Flux.1: no plan fits 12 GB, and the screen says what would
        await wait_for(pilot, lambda: screen.decided is not None and screen.decided.family == "flux"
                       and screen.hardware is not None and screen.refusal != "", what="the Flux refusal")
        assert screen.choice is None and "at least 24 GB" in screen.refusal
        await pilot.press("ctrl+f")  # Flux.1 at 512 px
        await wait_for(pilot, lambda: screen.decided is not None and screen.decided.resolution == 512
                       and screen.decided.family == "flux", what="Flux at 512 px")
        await pilot.press("ctrl+f")
        await wait_for(pilot, lambda: screen.choice is not None and screen.spec_for("x").family == "sd15",
                       what="the SD 1.5 plan")
        spec = screen.spec_for("x")
        assert (spec.resolution, spec.base_model) == (512, "stable-diffusion-v1-5/stable-diffusion-v1-5")
        assert spec.train.mode == "full" and load_session(tui_workdir).family == "sd15"
        assert "ctrl+f: SDXL 1024 px" in shown(screen.query_one("#hardware-plan", Static))


async def test_an_sdxl_file_with_sd15_chosen_is_one_sentence(tui_workdir: Path, tmp_path: Path) -> None:
    import json
    import struct

    # a single-file checkpoint is recognised by its keys (only the safetensors header is read)
    header = json.dumps({"conditioner.embedders.1.model.positional_embedding":
                         {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]}}).encode()
    model = tmp_path / "my-favourite-model.safetensors"
    model.write_bytes(struct.pack("<Q", len(header)) + header + b"\0\0")
    app = open_on_hardware(tui_workdir, tmp_path, EIGHT_GB, base_model=str(model))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.estimate_s is not None,
                       what="plan")
        screen = app.screen
        assert isinstance(screen, HardwareScreen) and screen.spec_for("x").family == "sd15"  # 8 GB: SD 1.5
        await pilot.press("ctrl+n")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ChoiceDialog)
        message = shown(screen.query_one("#hardware-message", Static))
        assert "my-favourite-model.safetensors is an SDXL model but the job is set to SD 1.5" in message


async def test_without_a_gpu_it_says_exactly_how_to_try_these_photos_on_the_cpu(tui_workdir: Path,
                                                                               tmp_path: Path) -> None:
    no_gpu = HardwareInfo(gpus=[], disk_free_gib=41.0, cpu_count=2, ram_gib=23.5)
    app = open_on_hardware(tui_workdir, tmp_path, no_gpu)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.hardware is not None,
                       what="probe")
        plan = " ".join(shown(app.screen.query_one("#hardware-plan", Static)).split())
        assert "no GPU here" in plan and "ioncannon --demo" in plan and str(tmp_path) in plan
        assert "noise" in plan and "minutes" in plan  # said plainly: fast, real plumbing, no real pictures
        await pilot.press("ctrl+n")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ChoiceDialog)
        assert "`ioncannon --demo`" in shown(app.screen.query_one("#hardware-message", Static))
    assert not any(p.is_dir() for p in tui_workdir.iterdir())


FOUR_090 = HardwareInfo(gpus=[GpuInfo(0, "NVIDIA GeForce RTX 4090", 24.0, 23.4)], disk_free_gib=300.0, cpu_count=16,
                        ram_gib=62.0)


async def test_flux_on_24_gb_takes_the_fp8_plan_and_waits_for_a_hub_login(
    tui_workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answering_hub: LocalHub
) -> None:
    import huggingface_hub.constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    app = open_on_hardware(tui_workdir, tmp_path, FOUR_090, family="flux", resolution=1024)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.choice is not None,
                       what="plan")
        screen = app.screen
        assert isinstance(screen, HardwareScreen)
        spec = screen.spec_for("x")
        assert (spec.family, spec.base_model) == ("flux", "black-forest-labs/FLUX.1-dev")
        assert spec.train.mode == "lora" and spec.train.base_weights == "fp8" and spec.train.gradient_checkpointing
        assert not spec.train.prior_preservation and not spec.train.train_text_encoder
        plan = shown(screen.query_one("#hardware-plan", Static))
        assert "Non-Commercial" in plan and "hf auth login" in plan and "prior preservation off" in plan
        assert "Full/LoRA" not in {b.binding.description for b in screen.active_bindings.values() if b.binding.show}
        await pilot.press("ctrl+n")  # nothing starts, and nothing downloads, without a login
        assert "hf auth login" in shown(screen.query_one("#hardware-message", Static))
        assert not isinstance(app.screen, ChoiceDialog)
        (tmp_path / "hf").mkdir()
        (tmp_path / "hf" / "token").write_text("hf_login")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), what="the start dialog")
