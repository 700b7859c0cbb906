"""The wizard's steps and the rules for moving between them (pure: no Textual, no engine I/O)."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from ioncannon.job.stages import STAGES


class Step(str, Enum):
    WELCOME = "welcome"
    PHOTOS = "photos"
    CHECK = "check"
    SUBJECT = "subject"
    PROMPTS = "prompts"
    HARDWARE = "hardware"
    TRAIN = "train"
    GENERATE = "generate"
    FINISH = "finish"

    @classmethod
    def parse(cls, value: str | None) -> Step:
        """A saved step name, or WELCOME for anything unknown (an older or damaged session file)."""
        try:
            return cls(value)
        except ValueError:
            return cls.WELCOME


ORDER: tuple[Step, ...] = tuple(Step)
# The prompt pack is chosen before the hardware step, so its estimate counts the images it will make.
SETUP_STEPS: tuple[Step, ...] = (Step.PHOTOS, Step.CHECK, Step.SUBJECT, Step.PROMPTS, Step.HARDWARE)
JOB_STEPS: tuple[Step, ...] = (Step.TRAIN, Step.GENERATE, Step.FINISH)
# Stages after training belong to the generate screen: export, then the prompt pack, then packaging.
GENERATE_STAGES: frozenset[str] = frozenset(s.name for s in STAGES if s.screen == "generate")

ResumeAction = Literal["attach", "resume", "none"]
JobAction = Literal["attach", "resume", "open"]


def next_step(step: Step) -> Step | None:
    """The step after `step` in a setup walk; None past the hardware step (the job drives from there)."""
    if step is Step.WELCOME:
        return Step.PHOTOS
    if step in SETUP_STEPS:
        return ORDER[ORDER.index(step) + 1]
    return None


def previous_step(step: Step) -> Step | None:
    """Where `escape` goes; None once a job exists (its screens are left with quit, not back)."""
    if step in SETUP_STEPS:
        return ORDER[ORDER.index(step) - 1]
    return None


def opening_step(saved: Step, job_needs_a_look: bool = False) -> Step:
    """Where a (re)started wizard opens: mid-setup on the saved screen, otherwise on welcome.

    Welcome is where a live or dead job is offered for attach / resume, so a job step never
    reopens blind: the job may have finished, failed or lost its runner while nobody watched.
    A job that runs, was interrupted or failed is news even mid-setup: welcome says so first
    (and its first row carries on with the setup).
    """
    if saved in SETUP_STEPS and not job_needs_a_look:
        return saved
    return Step.WELCOME


def needs_a_look(status: str) -> bool:
    """Whether a job in this state is news when the wizard opens: it runs, was cut off, or failed."""
    return status in ("running", "stopping", "failed", "unknown")


def job_action(status: str, alive: bool) -> JobAction:
    """What enter does on a job of the welcome list: watch it, resume it, or open it to read.

    A failed job only opens (its screen says why it failed): pressing enter out of habit must
    never run a doomed job again; resuming it is its own key.
    """
    if status in ("finished", "failed"):
        return "open"
    if alive and status in ("running", "stopping", "new", "unknown"):
        return "attach"
    return "resume"


def job_step(status: str, stage: str | None) -> Step:
    """The screen that shows a job in this state."""
    if status == "finished":
        return Step.FINISH
    if stage in GENERATE_STAGES:
        return Step.GENERATE
    return Step.TRAIN


def follow_job(current: Step, status: str, stage: str | None) -> Step:
    """Where a job screen moves as the job advances: only forward, never back to training.

    A finished job stops on the generate screen: the person looks at the images there and moves on
    to finish with enter (a jump would take the pictures away the moment the last one lands).
    """
    if current not in JOB_STEPS:
        return current
    target = job_step(status, stage)
    if target is Step.FINISH:
        target = Step.GENERATE
    return target if ORDER.index(target) > ORDER.index(current) else current


def resume_action(status: str, alive: bool) -> ResumeAction:
    """What welcome offers for an unfinished job: watch its live runner, or restart a dead one."""
    if status == "finished":
        return "none"
    return "attach" if alive else "resume"
