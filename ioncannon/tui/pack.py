"""The prompt pack as the wizard edits it: styles to and from the saved answers, run lengths (pure: no Textual)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ioncannon.job.plans import GeneratePlan
from ioncannon.job.prompts import (
    PromptPackError,
    PromptStyle,
    load_pack,
    validate_styles,
)
from ioncannon.tui.session import DEMO_RUN_LENGTH, RUN_LENGTHS

RUN_LENGTH_LABELS: dict[str, str] = {
    "bare": "bare token only",
    "short": "short",
    "medium": "medium",
    "long": "long",
    DEMO_RUN_LENGTH: "demo",
}


def plan_pack(demo: bool) -> str:
    """The pack a new job starts from: the demo's, or the built-in one (empty path)."""
    if demo:
        from ioncannon.job.plan import demo as demo_module
        return demo_module.DEMO_GENERATE_PLAN.prompt_pack
    return GeneratePlan().prompt_pack


def starting_styles(saved: list[dict[str, Any]] | None, demo: bool) -> list[PromptStyle]:
    """The styles as last edited, else the plan's pack; raises PromptPackError for a broken pack file."""
    if saved is not None:
        return [style_from_json(s) for s in saved]
    return load_pack(plan_pack(demo) or None)


def style_from_json(data: dict[str, Any]) -> PromptStyle:
    try:
        return PromptStyle(keyword=str(data["keyword"]), prompt=str(data["prompt"]), negative=str(data["negative"]),
                           seed=int(data["seed"]), enabled=bool(data["enabled"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise PromptPackError(f"a saved style is damaged ({exc}); press r to start again from the pack") from exc


def styles_to_json(styles: list[PromptStyle]) -> list[dict[str, Any]]:
    return [asdict(s) for s in styles]


def with_style(styles: list[PromptStyle], index: int | None, style: PromptStyle) -> list[PromptStyle]:
    """The pack with `style` at `index` (None appends); raises PromptPackError when the result is invalid."""
    edited = list(styles)
    if index is None:
        edited.append(style)
    else:
        edited[index] = style
    validate_styles(edited, "the pack")
    return edited


def next_seed(styles: list[PromptStyle]) -> int:
    """A seed for a new style: one past the largest, so every style stays reproducible and distinct."""
    return max((s.seed for s in styles), default=1000) + 1


def images_per_prompt(run_length: str, demo_plan: GeneratePlan | None = None) -> int:
    """Images each enabled style makes; the demo length keeps the demo plan's own count."""
    if run_length == DEMO_RUN_LENGTH:
        return (demo_plan or GeneratePlan()).images_per_prompt
    return RUN_LENGTHS.get(run_length, RUN_LENGTHS["short"])


def run_lengths(demo: bool) -> list[str]:
    return [*RUN_LENGTHS, DEMO_RUN_LENGTH] if demo else list(RUN_LENGTHS)


def total_images(styles: list[PromptStyle], per_prompt: int, bare_images: int) -> int:
    return bare_images + per_prompt * sum(1 for s in styles if s.enabled)
