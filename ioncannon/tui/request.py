"""The wizard's answers as the planner's request (pure: no Textual); the planner decides the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ioncannon.job.families import FAMILIES
from ioncannon.job.paths import JobPaths
from ioncannon.job.plan.request import JobRequest
from ioncannon.job.prompts import PromptStyle
from ioncannon.tui import format as fmt
from ioncannon.tui.session import RUN_LENGTHS, WizardSession


def pack_path(workdir: Path, name: str) -> Path:
    """The job's own copy of the prompt pack: later edits of the wizard's pack don't change a started job."""
    return JobPaths(workdir.expanduser().resolve() / name).prompt_pack_file


def budget(session: WizardSession) -> tuple[float | None, float | None]:
    """The typed cap as (dollars, minutes); (None, None) when empty or unreadable (the screen says why)."""
    try:
        return fmt.parse_budget(session.budget)
    except ValueError:
        return None, None


def _chosen_size(session: WizardSession) -> int | None:
    """The size picked with ctrl+f, if the family offers it (else the planner takes the family's default)."""
    if session.family is None or session.family not in FAMILIES:
        return None
    return session.resolution if session.resolution in FAMILIES[session.family].resolutions else None


def wizard_request(session: WizardSession, workdir: Path, name: str, *, demo: bool, demo_model: str = "",
                   styles: tuple[PromptStyle, ...] | None = None) -> JobRequest:
    """What the wizard asks the planner for: the answers so far, the job's own pack (written once the job exists)
    with `styles`, and for the demo its tiny model (`demo_model`) and photos unless the person typed theirs."""
    dollars, minutes = budget(session)
    answers: dict[str, Any] = {
        "name": name, "photos_dir": session.photos_dir, "identifier": session.identifier,
        "class_name": session.class_name, "hourly_price": session.hourly_price, "budget_money": dollars,
        "budget_minutes": minutes, "crops": dict(session.crops), "excluded": list(session.excluded),
        "kept": list(session.kept),
    }
    generate: dict[str, Any] = {"prompt_pack": str(pack_path(workdir, name))}
    if session.run_length in RUN_LENGTHS:  # the demo's own length keeps the demo plan's count
        generate["images_per_prompt"] = RUN_LENGTHS[session.run_length]
    if demo:
        from ioncannon.job.plan.demo import demo_photos_dir

        answers["photos_dir"] = session.photos_dir or str(demo_photos_dir())
    typed = session.base_model.strip()
    # a family's default model typed (or kept from before) follows the family: it is no choice of the person's
    model = "" if typed in {f.default_model for f in FAMILIES.values()} else typed
    return JobRequest(
        answers, family=session.family, resolution=_chosen_size(session),
        base_model=demo_model if demo else model, preset=session.preset, mode=session.mode,
        all_gpus=session.all_gpus, generate=generate, model_names_family=False, demo=demo, workdir=str(workdir),
        pack_follows=True, styles=styles,
    )
