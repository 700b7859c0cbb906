"""The wizard's answers and current step, saved atomically to <workdir>/session.json on every change."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ioncannon.job.families import FAMILIES
from ioncannon.job.fsio import StateFileError, read_json, write_json
from ioncannon.job.spec import DEFAULT_BASE_MODEL
from ioncannon.job.validate import typed_fields

SESSION_FILE = "session.json"
CLASS_CHOICES: tuple[str, ...] = ("man", "woman", "person", "dog", "cat", "custom")
PRESET_CHOICES: tuple[str, ...] = ("recommended", "classic")
# Images per prompt of each run length; "bare" makes only the bare-token likeness check.
RUN_LENGTHS: dict[str, int] = {"bare": 0, "short": 16, "medium": 64, "long": 100}
# The demo keeps its own tiny count, so it stays a few-minutes run on a CPU.
DEMO_RUN_LENGTH = "demo"
STYLE_FIELDS: tuple[str, ...] = ("keyword", "prompt", "negative", "seed", "enabled")
# The answers about one job's subject (start over forgets them); price, base model and the like are kept per box.
ANSWER_FIELDS: tuple[str, ...] = ("photos_dir", "identifier", "class_choice", "custom_class", "crops", "excluded",
                                  "kept", "prompt_styles", "run_length", "budget")


@dataclass
class WizardSession:
    """Everything the person has answered so far, and where they are."""

    step: str = "welcome"
    demo: bool = False
    photos_dir: str = ""
    identifier: str = ""
    class_choice: str = "person"  # one of CLASS_CHOICES
    custom_class: str = ""
    crops: dict[str, str] = field(default_factory=dict)  # photo file -> "face" | "centre" | "top"
    excluded: list[str] = field(default_factory=list)  # photos the person dropped
    kept: list[str] = field(default_factory=list)  # photos the doctor would drop but the person keeps
    base_model: str = DEFAULT_BASE_MODEL
    hourly_price: float | None = None
    preset: str = "recommended"
    mode: str | None = None  # None: the plan picks full or LoRA from free VRAM
    job_name: str | None = None  # set once the hardware step created the job
    # The prompt pack as edited on the prompts screen (dicts of STYLE_FIELDS); None: the plan's pack as shipped.
    prompt_styles: list[dict[str, Any]] | None = None
    run_length: str = "short"  # a key of RUN_LENGTHS, or DEMO_RUN_LENGTH
    budget: str = ""  # the budget cap as typed ("20" dollars, "90m" minutes); empty: no cap
    all_gpus: bool = False  # train data-parallel on every GPU the plan fits (asked only on multi-GPU boxes)
    family: str | None = None  # sd15 | sdxl; None: SDXL where it fits the card, SD 1.5 otherwise
    resolution: int | None = None  # one of the family's sizes; None: its default

    def differs_from(self, start: WizardSession) -> bool:
        """Whether anything was answered that starting over (back to `start`) would forget."""
        return any(getattr(self, name) != getattr(start, name) for name in ANSWER_FIELDS)

    @property
    def class_name(self) -> str:
        return self.custom_class.strip() if self.class_choice == "custom" else self.class_choice

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WizardSession:
        known, _ = typed_fields(cls, data)  # a field of the wrong type falls back to its default
        session = cls(**known)
        # A hand-edited or older file must not crash the wizard: fall back field by field.
        default = cls()
        for name in ("crops",):
            if not isinstance(getattr(session, name), dict):
                setattr(session, name, dict(getattr(default, name)))
        for name in ("excluded", "kept"):
            value = getattr(session, name)
            setattr(session, name, [str(v) for v in value] if isinstance(value, list) else [])
        if session.class_choice not in CLASS_CHOICES:
            session.class_choice = default.class_choice
        if session.preset not in PRESET_CHOICES:
            session.preset = default.preset
        if session.mode not in (None, "full", "lora"):
            session.mode = None
        if not isinstance(session.hourly_price, (int, float)) or isinstance(session.hourly_price, bool):
            session.hourly_price = None
        if not _valid_styles(session.prompt_styles):
            session.prompt_styles = None
        if session.run_length not in (*RUN_LENGTHS, DEMO_RUN_LENGTH):
            session.run_length = default.run_length
        if not isinstance(session.budget, str):
            session.budget = ""
        if not isinstance(session.all_gpus, bool):
            session.all_gpus = default.all_gpus
        if session.family not in (None, *FAMILIES):
            session.family = None
        if session.resolution is not None and not isinstance(session.resolution, int):
            session.resolution = None
        return session

    def for_new_job(self) -> WizardSession:
        """A fresh start that keeps what a person types once: price, base model, preset, GPUs used."""
        return WizardSession(
            step="photos", demo=self.demo, base_model=self.base_model,
            hourly_price=self.hourly_price, preset=self.preset, prompt_styles=self.prompt_styles,
            run_length=self.run_length, budget=self.budget, all_gpus=self.all_gpus,
            # a demo job tries one family: the next one starts from the demo's own again
            family=None if self.demo else self.family, resolution=None if self.demo else self.resolution,
        )


def _valid_styles(styles: object) -> bool:
    """None, or a list of style tables with every field (a hand-edited file may hold anything)."""
    if styles is None:
        return True
    return isinstance(styles, list) and all(
        isinstance(s, dict) and all(name in s for name in STYLE_FIELDS) for s in styles
    )


def session_file(workdir: str | Path) -> Path:
    return Path(workdir) / SESSION_FILE


def load_session(workdir: str | Path, demo: bool = False) -> WizardSession:
    """The saved session, or a fresh one; never raises (a damaged file starts over, keeping nothing)."""
    try:
        session = WizardSession.from_json(read_json(session_file(workdir)))
    except (StateFileError, TypeError, ValueError):
        return WizardSession(demo=demo)
    if session.demo != demo:
        # The demo's answers must not leak into a real run (or the other way round).
        fresh = session.for_new_job()
        fresh.step, fresh.demo, fresh.base_model = "welcome", demo, DEFAULT_BASE_MODEL
        fresh.prompt_styles, fresh.run_length = None, WizardSession().run_length
        return fresh
    return session


def save_session(workdir: str | Path, session: WizardSession) -> None:
    write_json(session_file(workdir), session.to_json(), mode=0o600)


class SessionStore:
    """Owns the live session and writes it to disk on every change, so a dropped link loses nothing."""

    def __init__(self, workdir: str | Path, session: WizardSession) -> None:
        self.workdir = Path(workdir)
        self.session = session
        self.save_error = ""  # why the last save failed (an unwritable work dir); the wizard still works

    @classmethod
    def open(cls, workdir: str | Path, demo: bool = False) -> SessionStore:
        return cls(workdir, load_session(workdir, demo))

    def update(self, **changes: Any) -> WizardSession:
        for name, value in changes.items():
            if not hasattr(self.session, name) or name == "class_name":
                raise AttributeError(f"WizardSession has no field {name!r}")
            setattr(self.session, name, value)
        self.save()
        return self.session

    def replace(self, session: WizardSession) -> WizardSession:
        self.session = session
        self.save()
        return session

    def start_over(self) -> WizardSession:
        """Forget every answer (the demo's are filled in again by the app)."""
        return self.replace(WizardSession(demo=self.session.demo))

    def save(self) -> None:
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            save_session(self.workdir, self.session)
        except OSError as exc:
            self.save_error = f"answers can't be saved in {self.workdir}: {exc.strerror or exc}"
        else:
            self.save_error = ""
