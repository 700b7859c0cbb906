"""The check step judges the photos at the size the job will train at: the planner's family decides it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ioncannon.job.plan.box import GpuInfo, HardwareInfo
from ioncannon.tui.app import IonCannonApp
from ioncannon.tui.screens.check import CheckScreen
from ioncannon.tui.session import SessionStore, WizardSession
from tests.engine.test_photos_duplicates import GREY, portrait

from .conftest import wait_for

RTX_4090 = HardwareInfo([GpuInfo(0, "NVIDIA GeForce RTX 4090", 24.0, 23.2)], 180.0, 16, 62.0)
RTX_3060_8GB = HardwareInfo([GpuInfo(0, "NVIDIA GeForce RTX 3060", 8.0, 7.6)], 180.0, 8, 32.0)


@pytest.mark.parametrize(("card", "family", "size", "small"), [
    (RTX_4090, None, 1024, True),  # SDXL fits: trained at 1024 px, so a 768 px photo is upscaled
    (RTX_4090, "sd15", 512, False),  # the person picked SD 1.5: 512 px
    (RTX_3060_8GB, None, 512, False),  # only SD 1.5 fits
])
async def test_photos_are_checked_at_the_familys_size(tui_workdir: Path, tmp_path: Path, card: HardwareInfo,
                                                      family: str | None, size: int, small: bool) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    portrait(GREY).resize((768, 768)).save(photos / "a.jpg", quality=92)
    SessionStore(tui_workdir, WizardSession()).update(step="check", photos_dir=str(photos), identifier="zwx",
                                                      family=family)
    app = IonCannonApp(tui_workdir, hardware_probe=lambda _: card, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, CheckScreen) and app.screen.scanned, what="scan")
        screen = app.screen
        assert isinstance(screen, CheckScreen) and screen.resolution == size
        finding = next(f for f in screen.findings if f.file == "a.jpg")
        assert any(f"upscaled to {size} px" in r for r in finding.reasons) is small, finding.reasons
