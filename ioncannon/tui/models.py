"""The model choice on the hardware step: the families and sizes ctrl+f goes round (the planner decides the rest)."""

from __future__ import annotations

from ioncannon.job.families import family_info, offered_families

Model = tuple[str, int]  # (family, resolution)


def model_choices(demo: bool) -> list[Model]:
    """SD 1.5, SDXL 1024 px, SDXL 768 px, ...; the demo's tiny models have one size, so it offers families."""
    if demo:
        return [(f.name, f.default_resolution) for f in offered_families()]
    return [(f.name, r) for f in offered_families() for r in f.resolutions]


def following_model(family: str, resolution: int, demo: bool) -> Model:
    """Where ctrl+f goes from (family, resolution), round the list."""
    models = model_choices(demo)
    current = (family, family_info(family).default_resolution if demo else resolution)
    return models[(models.index(current) + 1) % len(models)] if current in models else models[0]
