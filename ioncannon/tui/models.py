"""The model choice on the hardware step: which family and size, what ctrl+f moves to, which base model follows."""

from __future__ import annotations

from ioncannon.job.families import FAMILIES, family_info, offered_families

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


def resolution_for(family: str, chosen: int | None) -> int:
    """The size the person chose, if the family offers it, else the family's default."""
    info = family_info(family)
    return chosen if chosen in info.resolutions else info.default_resolution


def base_model_for(family: str, typed: str) -> str:
    """What the person typed, unless it is empty or some family's default: then this family's own default."""
    typed = typed.strip()
    if not typed or typed in {f.default_model for f in FAMILIES.values()}:
        return family_info(family).default_model
    return typed
