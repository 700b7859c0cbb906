"""The identifier linter counts tokens with the base model's own tokenizer, and falls back quietly without it."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from ioncannon.engine.demo import ensure_demo_model
from ioncannon.tui.app import IonCannonApp
from ioncannon.tui.screens.subject import SubjectScreen
from ioncannon.tui.session import SessionStore, WizardSession
from ioncannon.tui.tokenizer import load_clip_tokenizer

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
