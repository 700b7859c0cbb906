"""The wizard's answers survive a dropped link: saved atomically, read back, damage tolerated."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from ioncannon.job.spec import DEFAULT_BASE_MODEL
from ioncannon.tui.session import SessionStore, WizardSession, load_session, save_session, session_file


def test_every_update_is_on_disk_at_once(tmp_path: Path) -> None:
    store = SessionStore.open(tmp_path)
    store.update(step="subject", identifier="ohwx", class_choice="custom", custom_class="teddy bear")
    store.update(crops={"a.jpg": "top"}, excluded=["b.jpg"], hourly_price=1.25)
    again = load_session(tmp_path)
    assert again.step == "subject"
    assert again.identifier == "ohwx"
    assert again.class_name == "teddy bear"
    assert again.crops == {"a.jpg": "top"}
    assert again.excluded == ["b.jpg"]
    assert again.hourly_price == 1.25
    assert stat.S_IMODE(session_file(tmp_path).stat().st_mode) == 0o600


def test_unknown_field_is_refused(tmp_path: Path) -> None:
    store = SessionStore.open(tmp_path)
    with pytest.raises(AttributeError):
        store.update(identifer="typo")


@pytest.mark.parametrize("content", ["{not json", "[]", json.dumps({"schema_version": 99, "step": "check"})])
def test_damaged_or_foreign_file_starts_fresh(tmp_path: Path, content: str) -> None:
    session_file(tmp_path).write_text(content)
    assert load_session(tmp_path) == WizardSession()


def test_wrong_types_fall_back_field_by_field(tmp_path: Path) -> None:
    save_session(tmp_path, WizardSession(step="check", identifier="zwx"))
    data = json.loads(session_file(tmp_path).read_text())
    data.update(crops=["x"], excluded="b.jpg", class_choice="dragon", hourly_price="cheap", mode="turbo")
    session_file(tmp_path).write_text(json.dumps(data))
    session = load_session(tmp_path)
    assert (session.step, session.identifier) == ("check", "zwx")
    assert session.crops == {} and session.excluded == []
    assert session.class_choice == "person" and session.hourly_price is None and session.mode is None


def test_demo_answers_do_not_leak_into_a_real_run(tmp_path: Path) -> None:
    save_session(tmp_path, WizardSession(step="hardware", demo=True, identifier="zwx",
                                         base_model="/w/.cache/models/tiny", hourly_price=0.5))
    real = load_session(tmp_path, demo=False)
    assert real.step == "welcome" and real.identifier == "" and not real.demo
    assert real.base_model == DEFAULT_BASE_MODEL
    assert real.hourly_price == 0.5  # the box's price is the same either way


def test_a_new_job_keeps_what_is_typed_once() -> None:
    done = WizardSession(step="finish", identifier="zwx", photos_dir="/p", hourly_price=2.0,
                         base_model="my/model", preset="classic", job_name="zwx-1", excluded=["a"])
    fresh = done.for_new_job()
    assert (fresh.hourly_price, fresh.base_model, fresh.preset) == (2.0, "my/model", "classic")
    assert (fresh.identifier, fresh.photos_dir, fresh.job_name) == ("", "", None)
    assert (fresh.excluded, fresh.step) == ([], "photos")


def test_prompt_answers_survive_and_damage_falls_back(tmp_path: Path) -> None:
    style = {"keyword": "pirate", "prompt": "a pirate {token}", "negative": "", "seed": 5, "enabled": False}
    store = SessionStore.open(tmp_path)
    store.update(prompt_styles=[style], run_length="long", budget="90m")
    again = load_session(tmp_path)
    assert (again.prompt_styles, again.run_length, again.budget) == ([style], "long", "90m")
    fresh = again.for_new_job()  # the pack, its length and the cap are typed once
    assert (fresh.prompt_styles, fresh.run_length, fresh.budget) == ([style], "long", "90m")

    data = json.loads(session_file(tmp_path).read_text())
    data.update(prompt_styles=[{"keyword": "x"}], run_length="forever", budget=20)
    session_file(tmp_path).write_text(json.dumps(data))
    damaged = load_session(tmp_path)
    assert (damaged.prompt_styles, damaged.run_length, damaged.budget) == (None, "short", "")


def test_a_new_demo_job_starts_from_the_demo_family_a_real_one_keeps_its_own() -> None:
    demo = WizardSession(demo=True, family="flux", resolution=512, job_name="zwx-1")
    assert (demo.for_new_job().family, demo.for_new_job().resolution) == (None, None)
    real = WizardSession(family="sdxl", resolution=768, job_name="zwx-1")
    assert (real.for_new_job().family, real.for_new_job().resolution) == ("sdxl", 768)
