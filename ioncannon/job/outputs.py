"""What the generate stage will write: one OutputSet of ImageJobs per prompt, planned from the spec alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ioncannon.job.errors import StageError
from ioncannon.job.limits import MAX_IMAGES
from ioncannon.job.prompts import PromptPackError, enabled_styles, load_pack
from ioncannon.job.spec import JobSpec

BARE_SEED = 1_000
BARE_KEYWORD = "bare"


@dataclass(frozen=True)
class ImageJob:
    """One image to make: where it goes and everything that determines its pixels."""

    path: Path
    prompt: str
    negative: str
    seed: int
    label: str = ""


@dataclass(frozen=True)
class OutputSet:
    """The images of one prompt: `outputs/{identifier}_{keyword}/samples/NNNN.png` and its collage."""

    keyword: str
    folder: Path
    jobs: tuple[ImageJob, ...]

    @property
    def collage(self) -> Path:
        return self.folder / f"{self.folder.name}-0000.jpg"

    @property
    def complete(self) -> bool:
        return all(j.path.exists() for j in self.jobs)


def plan_outputs(spec: JobSpec, outputs: Path) -> list[OutputSet]:
    """The bare-token likeness check first, then every enabled style of the pack, in pack order."""
    try:
        styles = enabled_styles(load_pack(spec.generate.prompt_pack or None))
    except PromptPackError as exc:
        raise StageError(str(exc), "Fix the prompt pack file (or leave its path empty for the built-in pack).") from exc
    plan = spec.generate
    rows: list[tuple[str, str, str, int, int]] = [
        (BARE_KEYWORD, spec.instance_prompt, "", BARE_SEED, plan.bare_token_images)
    ]
    rows += [
        (s.keyword, s.render(spec.identifier, spec.class_name), s.negative, s.seed, plan.images_per_prompt)
        for s in styles
    ]
    total = sum(max(n, 0) for *_, n in rows)
    if total > MAX_IMAGES:
        raise StageError(f"the prompt pack asks for {total:,} images; a job makes at most {MAX_IMAGES:,}.",
                         "Use fewer styles or fewer images per prompt, then resume: `ioncannon resume`.")
    sets = []
    for keyword, prompt, negative, seed, n in rows:
        if n <= 0:
            continue
        folder = outputs / f"{spec.identifier}_{keyword}"
        jobs = tuple(
            ImageJob(folder / "samples" / f"{i:04d}.png", prompt, negative, seed + i, keyword) for i in range(n)
        )
        sets.append(OutputSet(keyword, folder, jobs))
    return sets
