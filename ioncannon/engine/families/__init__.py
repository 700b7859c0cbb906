"""Model families behind one interface (base.Family); `family_for(name)` imports a family's module on first use."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import torch

from ioncannon.engine.context import StageContext
from ioncannon.engine.models.load import Components
from ioncannon.engine.weights.trained import apply_trained
from ioncannon.job.families import UnknownFamily, family_info

if TYPE_CHECKING:
    from ioncannon.engine.families.base import Family

_LOADED: dict[str, Family] = {}


def family_for(name: str) -> Family:
    """The family called `name` (sd15, sdxl, flux); UnknownFamily when this version cannot run it."""
    if name not in _LOADED:
        info = family_info(name)
        try:
            module = importlib.import_module(f"ioncannon.engine.families.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"ioncannon.engine.families.{name}":
                raise
            raise UnknownFamily(f"{info.label} is not available in this version of ioncannon; pick another model "
                                "family.") from None
        _LOADED[name] = module.FAMILY
    return _LOADED[name]


def load_trained(ctx: StageContext, dtype: torch.dtype | None = None, on_device: bool = True) -> Components:
    """Base components with the trained weights applied, in eval mode, on ctx.device (in host memory when not
    `on_device`: a sampler that places the weights itself)."""
    family = family_for(ctx.spec.family)
    dtype = dtype or ctx.dtype
    components = family.load(ctx.spec.base_model, dtype=family.working_dtype(dtype))
    device = ctx.device if on_device else torch.device("cpu")
    for module in components.modules():
        module.to(device=device, dtype=family.vae_dtype(dtype) if module is components.vae else dtype)
    # the trained weights go in where the base weights now are (adapters are made in their layers' dtype)
    apply_trained(components, ctx.paths)
    for module in components.modules():
        module.eval()
        module.requires_grad_(False)
    return components


def trained_adapters(ctx: StageContext, dtype: torch.dtype = torch.float32) -> Components:
    """A LoRA run's trained adapters, in `dtype`, on a weightless skeleton of the denoiser (no base weights are read,
    so writing the LoRA files of a 12B-parameter model takes seconds and no host memory to speak of); the other
    components are None."""
    family = family_for(ctx.spec.family)
    components = Components(family.denoiser_skeleton(ctx.spec.base_model), None, None, None, None,
                            source=ctx.spec.base_model, family=family.name)
    apply_trained(components, ctx.paths, dtype)
    components.unet.eval()
    components.unet.requires_grad_(False)
    return components
