"""The demo's answers as data: sample photos of a synthetic subject, a tiny model's folder, its small plans."""

from __future__ import annotations

from pathlib import Path

from ioncannon.job.assets import assets_dir
from ioncannon.job.plan.request import JobRequest
from ioncannon.job.plans import GeneratePlan

DEMO_IDENTIFIER = "zwx"
DEMO_CLASS = "person"
DEMO_RESOLUTION = 64
# The tiny model's kernels are too small to share out: more threads buy nothing on an idle box, and on a busy
# one they wait on each other (measured on two busy cores: 35 minutes with torch's default threads, 2 with one).
DEMO_THREADS = 1

# Small enough that generation takes seconds on two CPU cores, yet every prompt gets a collage.
DEMO_GENERATE_PLAN = GeneratePlan(
    sampler="dpm", steps=10, guidance=7.0, images_per_prompt=4, batch_size=4, bare_token_images=4
)


def demo_photos_dir() -> Path:
    return assets_dir() / "demo_photos"


def demo_model_dir(workdir: str | Path, family: str) -> Path:
    """Where the tiny random-weight model of `family` lives in a work dir (the engine makes it once)."""
    from ioncannon.job.families import DEFAULT_FAMILY

    # the first family's folder keeps the name it had before there were families, so old work dirs reuse it
    name = "tiny-sd-demo" if family == DEFAULT_FAMILY else f"tiny-{family}-demo"
    return Path(workdir) / ".cache" / "models" / name


def demo_request(workdir: str | Path, family: str | None, model: str, name: str, photos_dir: str = "",
                 identifier: str = "", class_name: str = "") -> JobRequest:
    """The demo's request: its photos (or the person's), subject and tiny model; the planner sizes its plan."""
    return JobRequest(
        {"name": name, "photos_dir": photos_dir or str(demo_photos_dir()),
         "identifier": identifier or DEMO_IDENTIFIER, "class_name": class_name or DEMO_CLASS},
        family=family, base_model=model, demo=True, workdir=str(workdir),
    )
