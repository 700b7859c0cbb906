"""The built-in demo: sample photos of a synthetic subject and a tiny random-weight model, all offline."""

from __future__ import annotations

from pathlib import Path

from ioncannon.job import presets
from ioncannon.job.assets import assets_dir
from ioncannon.job.plans import GeneratePlan
from ioncannon.job.spec import JobSpec

DEMO_IDENTIFIER = "zwx"
DEMO_CLASS = "person"
DEMO_RESOLUTION = 64

# Small enough that generation takes seconds on two CPU cores, yet every prompt gets a collage.
DEMO_GENERATE_PLAN = GeneratePlan(
    sampler="dpm", steps=10, guidance=7.0, images_per_prompt=4, batch_size=4, bare_token_images=4
)


def demo_photos_dir() -> Path:
    return assets_dir() / "demo_photos"


def ensure_demo_model(workdir: str | Path, family: str = "sd15") -> Path:
    """The tiny random-weight diffusers folder the demo trains (made once per work dir and family, a few seconds)."""
    from ioncannon.engine.families import family_for

    name = "tiny-sd-demo" if family == "sd15" else f"tiny-{family}-demo"
    return family_for(family).save_tiny(Path(workdir) / ".cache" / "models" / name)


def demo_spec(
    workdir: str | Path, name: str = "", photos_dir: str | Path | None = None,
    identifier: str = DEMO_IDENTIFIER, class_name: str = DEMO_CLASS, family: str = "sd15",
) -> JobSpec:
    from ioncannon.job.workdir import new_job_name

    return JobSpec(
        name=name or new_job_name(workdir, identifier),
        photos_dir=str(photos_dir or demo_photos_dir()),
        identifier=identifier,
        class_name=class_name,
        base_model=str(ensure_demo_model(workdir, family)),
        family=family,
        resolution=DEMO_RESOLUTION,
        device="cpu",
        demo=True,
        train=presets.demo_plan_for(family),
        generate=DEMO_GENERATE_PLAN,
    )
