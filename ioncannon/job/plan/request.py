"""JobRequest: what the person asked for at either door; what they left open, the planner decides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ioncannon.job.prompts import PromptStyle


@dataclass(frozen=True)
class JobRequest:
    """The wizard's answers or a job file's fields, before anything is decided.

    `answers` holds the job's own fields as given (name, photos_dir, identifier, class_name, device, prices and
    budgets, crops, excluded, kept, threads); the planner checks each. None or empty below means "decide for me".
    """

    answers: Mapping[str, Any]
    family: str | None = None  # None: from the base model's files (`model_names_family`), else what fits the card
    model_names_family: bool = True  # False: the wizard, where the family is the person's choice (ctrl+f)
    resolution: int | None = None  # None: the family's default
    base_model: str = ""  # "": the family's default model
    preset: str = "recommended"
    mode: str | None = None  # None: full where it fits, else LoRA
    all_gpus: bool = False  # spread training over every GPU the plan fits
    train: Mapping[str, Any] | None = None  # a job file's [train] table: the recipe as written, no memory choice
    generate: Mapping[str, Any] = field(default_factory=dict)  # fields over the family's generation plan
    demo: bool = False
    workdir: str | None = None  # where the job will live (checked against the photo folder)
    pack_follows: bool = False  # the wizard writes the job's own prompt pack once the job exists ...
    styles: tuple[PromptStyle, ...] | None = None  # ... with these styles (checked and counted now)
    source: str = ""  # "job file X": said before every problem of a file someone typed (unknown keys refused)
