"""Keys behave the same on every screen: ctrl+q quits, letters type; welcome can start over."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Static

from ioncannon.engine.demo import DEMO_IDENTIFIER, demo_photos_dir
from ioncannon.tui.app import IonCannonApp
from ioncannon.tui.dialogs.choice import ChoiceDialog
from ioncannon.tui.screens.photos import PhotosScreen
from ioncannon.tui.screens.subject import SubjectScreen
from ioncannon.tui.screens.welcome import WelcomeScreen
from ioncannon.tui.session import SessionStore, WizardSession, load_session

from .conftest import shown, wait_for


@pytest.mark.parametrize("step", ["photos", "subject"])
async def test_a_stray_q_neither_quits_nor_replaces_the_answer(tui_workdir: Path, tmp_path: Path, step: str) -> None:
    SessionStore(tui_workdir, WizardSession()).update(step=step, photos_dir=str(tmp_path), identifier="zwx")
    app = IonCannonApp(tui_workdir, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        screen_type = PhotosScreen if step == "photos" else SubjectScreen
        await wait_for(pilot, lambda: isinstance(app.screen, screen_type), what=step)
        box = app.screen.query_one("#photos-path" if step == "photos" else "#subject-identifier", Input)
        answer = box.value
        assert app.focused is box  # the screen opens with the cursor in its box
        await pilot.press("q")
        await pilot.pause()
        assert app.is_running and box.value == answer + "q"  # typed after the answer, not over it
        await pilot.press("backspace", "ctrl+q")
        await wait_for(pilot, lambda: not app.is_running, what="ctrl+q quits")
    assert load_session(tui_workdir).photos_dir == str(tmp_path)


async def test_q_quits_no_screen_and_the_footer_names_ctrl_q(tui_workdir: Path, tmp_path: Path) -> None:
    app = IonCannonApp(tui_workdir, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen), what="welcome")
        await pilot.press("q")
        await pilot.pause()
        assert app.is_running
        keys = {binding.key: binding.description for (_, binding, _, _) in app.screen.active_bindings.values()}
        assert keys.get("ctrl+q") == "Quit" and "q" not in keys


async def test_welcome_restores_the_demo_answers_after_a_stray_answer(tui_workdir: Path, tmp_path: Path) -> None:
    SessionStore(tui_workdir, WizardSession(demo=True)).update(
        step="welcome", photos_dir="q", identifier="qq", class_choice="dog")
    app = IonCannonApp(tui_workdir, demo=True, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen), what="welcome")
        answers = app.screen.query_one("#welcome-answers", Static)
        assert "photos q · subject qq dog" in shown(answers)
        await pilot.press("x")
        await pilot.pause()
        assert app.store.session.photos_dir == "q"  # x only asks
        await pilot.press("y")
        await pilot.pause()
        session = app.store.session
        assert session.photos_dir == str(demo_photos_dir())
        assert (session.identifier, session.class_choice) == (DEMO_IDENTIFIER, "person")
        assert shown(answers).strip() == "" and app.screen.check_action("start_over", ()) is False  # nothing to undo
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PhotosScreen), what="photos")
        assert app.screen.query_one("#photos-path", Input).value == str(demo_photos_dir())
    assert load_session(tui_workdir, demo=True).photos_dir == str(demo_photos_dir())  # saved, not only shown


async def test_start_over_forgets_a_real_run_answers(tui_workdir: Path, tmp_path: Path) -> None:
    SessionStore(tui_workdir, WizardSession()).update(step="welcome", photos_dir="q", identifier="zwx")
    app = IonCannonApp(tui_workdir, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen), what="welcome")
        assert app.screen.check_action("start_over", ()) is True
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ChoiceDialog) and "can't be undone" in app.screen.body_text
        await pilot.press("escape")  # kept: one stray letter forgets nothing
        await pilot.pause()
        assert app.store.session.photos_dir == "q" and app.store.session.identifier == "zwx"
        await pilot.press("x", "y")
        await pilot.pause()
        assert app.store.session.photos_dir == "" and app.store.session.identifier == ""
        assert app.screen.check_action("start_over", ()) is False  # nothing left to forget


async def test_zwx_with_the_class_cat_picked_by_keyboard_gets_one_true_verdict(tui_workdir: Path,
                                                                              tmp_path: Path) -> None:
    SessionStore(tui_workdir, WizardSession()).update(step="subject", identifier="", photos_dir=str(tmp_path))
    app = IonCannonApp(tui_workdir, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SubjectScreen), what="subject")
        screen = app.screen
        assert isinstance(screen, SubjectScreen)
        await wait_for(pilot, lambda: not screen.checking, what="the tokenizer check (offline here)")
        await pilot.press(*"zwx", "tab", "right", "right", "enter")  # person → dog → cat
        await pilot.pause()
        assert app.store.session.class_choice == "cat"
        lint = shown(screen.query_one("#subject-lint", Static))
        assert "✓ 'zwx' looks like a good rare word" in lint
        assert "person" not in lint and "⚠" not in lint and "names a kind" not in lint
        assert "a photo of zwx cat" in shown(screen.query_one("#subject-prompt", Static))
