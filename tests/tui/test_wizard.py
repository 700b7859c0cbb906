"""The wizard's step rules, without Textual."""

from __future__ import annotations

import pytest

from ioncannon.job.state import is_live
from ioncannon.tui.wizard import (
    ORDER,
    SETUP_STEPS,
    Step,
    follow_job,
    job_action,
    job_step,
    needs_a_look,
    next_step,
    opening_step,
    previous_step,
    resume_action,
)


def test_setup_walks_forward_one_step_at_a_time() -> None:
    walk = [Step.WELCOME]
    while (step := next_step(walk[-1])) is not None:
        walk.append(step)
    assert walk == [Step.WELCOME, Step.PHOTOS, Step.CHECK, Step.SUBJECT, Step.PROMPTS, Step.HARDWARE, Step.TRAIN]


@pytest.mark.parametrize("step", [Step.TRAIN, Step.GENERATE, Step.FINISH])
def test_job_steps_have_no_next_key(step: Step) -> None:
    """Once the job exists, the job (not a key) moves the wizard on."""
    assert next_step(step) is None


def test_back_retraces_setup_and_stops_at_welcome() -> None:
    assert [previous_step(s) for s in SETUP_STEPS] == [
        Step.WELCOME,
        Step.PHOTOS,
        Step.CHECK,
        Step.SUBJECT,
        Step.PROMPTS,
    ]
    assert previous_step(Step.WELCOME) is None


@pytest.mark.parametrize("step", [Step.TRAIN, Step.GENERATE, Step.FINISH])
def test_no_back_out_of_a_running_job(step: Step) -> None:
    assert previous_step(step) is None


@pytest.mark.parametrize("saved", SETUP_STEPS)
def test_reopens_mid_setup_on_the_saved_screen(saved: Step) -> None:
    assert opening_step(saved) is saved


@pytest.mark.parametrize("saved", [Step.WELCOME, Step.TRAIN, Step.GENERATE, Step.FINISH])
def test_reopens_job_steps_on_welcome_to_offer_attach_or_resume(saved: Step) -> None:
    assert opening_step(saved) is Step.WELCOME


def test_unknown_saved_step_falls_back_to_welcome() -> None:
    assert Step.parse("teleport") is Step.WELCOME
    assert Step.parse(None) is Step.WELCOME
    assert Step.parse("check") is Step.CHECK


@pytest.mark.parametrize(
    ("status", "stage", "expected"),
    [
        ("new", None, Step.TRAIN),
        ("running", "prepare", Step.TRAIN),
        ("running", "class_images", Step.TRAIN),
        ("running", "cache", Step.TRAIN),
        ("running", "train", Step.TRAIN),
        ("running", "export", Step.GENERATE),
        ("failed", "generate", Step.GENERATE),
        ("running", "package", Step.GENERATE),
        ("finished", None, Step.FINISH),
    ],
)
def test_job_state_picks_its_screen(status: str, stage: str | None, expected: Step) -> None:
    assert job_step(status, stage) is expected


def test_job_screens_only_move_forward() -> None:
    assert follow_job(Step.TRAIN, "running", "export") is Step.GENERATE
    # a finished job waits on the generate screen until the person moves on (enter)
    assert follow_job(Step.GENERATE, "finished", None) is Step.GENERATE
    assert follow_job(Step.TRAIN, "finished", None) is Step.GENERATE
    # a stale state.json that still says "train" must not pull the generate screen back
    assert follow_job(Step.GENERATE, "running", "train") is Step.GENERATE
    # setup screens are never moved by a job
    assert follow_job(Step.SUBJECT, "running", "export") is Step.SUBJECT


@pytest.mark.parametrize(
    ("status", "alive", "action"),
    [
        ("running", True, "attach"),
        ("stopping", True, "attach"),
        ("running", False, "resume"),  # killed: state still says running
        ("stopped", False, "resume"),
        ("failed", False, "resume"),
        ("new", False, "resume"),
        ("finished", False, "none"),
    ],
)
def test_welcome_offers_attach_for_a_live_runner_and_resume_for_a_dead_one(status: str, alive: bool,
                                                                           action: str) -> None:
    assert resume_action(status, alive) == action


def test_quit_warns_only_while_the_job_really_runs() -> None:
    assert is_live("running", True)
    assert not is_live("running", False)
    assert not is_live("stopped", True)  # the runner is on its way out
    assert not is_live("finished", False)


def test_order_lists_every_step_once() -> None:
    assert len(set(ORDER)) == len(ORDER) == len(Step)


@pytest.mark.parametrize(
    ("status", "alive", "action"),
    [
        ("running", True, "attach"),
        ("running", False, "resume"),
        ("stopped", False, "resume"),
        ("unknown", False, "resume"),
        ("failed", False, "open"),  # enter never runs a failed job again
        ("failed", True, "open"),
        ("finished", False, "open"),
    ],
)
def test_enter_on_a_listed_job_never_repeats_a_failure(status: str, alive: bool, action: str) -> None:
    assert job_action(status, alive) == action


@pytest.mark.parametrize("status", ["running", "failed", "unknown"])
def test_news_of_a_job_opens_welcome_even_mid_setup(status: str) -> None:
    assert opening_step(Step.SUBJECT, needs_a_look(status)) is Step.WELCOME
    assert opening_step(Step.SUBJECT, needs_a_look("finished")) is Step.SUBJECT
