"""The identifier linter counts tokens with the base model's own tokenizer, and falls back quietly without it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Static

from ioncannon.engine.demo import ensure_demo_model
from ioncannon.tui.app import IonCannonApp
from ioncannon.tui.screens.subject import SubjectScreen
from ioncannon.tui.session import SessionStore, WizardSession
from ioncannon.tui.tokenizer import HUB_PROBE_S, load_clip_tokenizer
from tests.hanging_hub import hanging_hub as hanging_hub_server
from tests.waiting import patience

from .conftest import shown, wait_for


async def test_subject_relints_once_the_demo_models_tokenizer_arrives(tui_workdir: Path, tmp_path: Path) -> None:
    SessionStore(tui_workdir, WizardSession(demo=True)).update(step="subject", identifier="qwvz", photos_dir="x")
    app = IonCannonApp(tui_workdir, demo=True, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SubjectScreen), what="subject")
        screen = app.screen
        assert isinstance(screen, SubjectScreen)
        assert screen.lint is not None
        if screen.tokenizer is None:  # syntax checks until it arrives (on a quick box it may already be here)
            assert screen.lint.token_count is None
        await wait_for(pilot, lambda: screen.tokenizer is not None, timeout=90, what="the tokenizer")

        reference = load_clip_tokenizer(str(ensure_demo_model(tui_workdir)))
        assert reference is not None
        pieces = len(reference.tokenize("qwvz"))
        assert pieces > 1 and screen.lint.token_count == pieces
        assert f"splits into {pieces} tokens" in shown(screen.query_one("#subject-lint", Static))

        whole = next(w for w in ("cyberpunk", "mosaic", "sculpture", "knight") if len(reference.tokenize(w)) == 1)
        await pilot.press("ctrl+u", *whole)
        lint = shown(screen.query_one("#subject-lint", Static))
        assert "one token for the model's tokenizer" in lint and "splits" not in lint


def test_no_tokenizer_without_its_files(tmp_path: Path) -> None:
    """Offline with an empty cache (the tests' box), a hub id gives None, not an empty-vocabulary tokenizer."""
    assert load_clip_tokenizer("stable-diffusion-v1-5/stable-diffusion-v1-5") is None
    (tmp_path / "model" / "unet").mkdir(parents=True)
    assert load_clip_tokenizer(str(tmp_path / "model")) is None
    assert load_clip_tokenizer(str(tmp_path / "model.safetensors")) is None


@pytest.fixture
def hanging_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[socket.socket]]:
    """The hub this test's wizard talks to hangs; yields the connections it was sent."""
    with hanging_hub_server() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
        yield hub.held


async def test_a_hanging_hub_shows_checking_then_one_verdict(tui_workdir: Path, tmp_path: Path,
                                                             hanging_hub: list[socket.socket]) -> None:
    SessionStore(tui_workdir, WizardSession()).update(step="subject", identifier="qwvz", photos_dir="x",
                                                      base_model="someone/never-cached-model")
    app = IonCannonApp(tui_workdir, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SubjectScreen), what="subject")
        screen = app.screen
        assert isinstance(screen, SubjectScreen)
        lint = screen.query_one("#subject-lint", Static)
        assert "checking 'qwvz'" in shown(lint) and "✓" not in shown(lint)
        started = time.monotonic()
        await wait_for(pilot, lambda: not screen.checking, timeout=10, what="the probe to give up")
        assert time.monotonic() - started < patience(HUB_PROBE_S + 3)
        verdict = shown(lint)
        assert "✓ 'qwvz' looks like a good rare word" in verdict and "did not answer within 2 s" in verdict
        assert hanging_hub  # the probe did knock


async def test_quitting_never_waits_for_the_hub(tui_workdir: Path, tmp_path: Path,
                                                hanging_hub: list[socket.socket],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import ioncannon.tui.tokenizer

    monkeypatch.setattr(ioncannon.tui.tokenizer, "HUB_PROBE_S", 600.0)  # a hub that takes forever to answer
    monkeypatch.setattr(ioncannon.tui.tokenizer.find_clip_tokenizer, "__kwdefaults__", {"probe_s": 600.0})
    SessionStore(tui_workdir, WizardSession()).update(step="subject", identifier="qwvz", photos_dir="x",
                                                      base_model="someone/never-cached-model")
    app = IonCannonApp(tui_workdir, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SubjectScreen), what="subject")
        await wait_for(pilot, lambda: bool(hanging_hub), what="the probe to knock")
        await pilot.press("escape")  # changing screen doesn't wait either
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "CheckScreen", what="check")
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: not app.is_running, timeout=5, what="quit")
    # What still waits on the hub must not hold the process open at exit (Python joins non-daemon threads).
    waiting = [t for t in threading.enumerate() if t.name == "ioncannon-tokenizer"]
    assert waiting and all(t.daemon for t in waiting)


async def test_a_tokenizer_answer_landing_before_a_new_subject_screen_is_mounted_reaches_it_on_mount(
        tui_workdir: Path, tmp_path: Path) -> None:
    """Back and forth through the subject step while the tokenizer is found: its answer may arrive when a new
    subject screen is pushed but not mounted yet; that screen gets it from its own mount, not a crash."""
    from ioncannon.tui.app import TokenizerChecked
    from ioncannon.tui.tokenizer import TokenizerCheck

    SessionStore(tui_workdir, WizardSession(demo=True)).update(step="subject", identifier="qwvz", photos_dir="x")
    app = IonCannonApp(tui_workdir, demo=True, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SubjectScreen) and app.screen.is_mounted,
                       what="subject")
        fresh = SubjectScreen()
        app.push_screen(fresh)   # on the stack, not mounted until the next refresh
        assert app.step_screen() is fresh and not fresh.is_mounted
        app.on_tokenizer_checked(TokenizerChecked("demo", TokenizerCheck(None, "no tokenizer in this test")))
        await wait_for(pilot, lambda: fresh.is_mounted and not fresh.checking, what="the verdict on mount")
        # the answer kept for it, or the real search's (started by the first screen) if that landed after
        assert app.is_running and (fresh.tokenizer is not None or fresh.why_no_tokenizer == "no tokenizer in this test")
