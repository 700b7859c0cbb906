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


def load_trained(ctx: StageContext, dtype: torch.dtype | None = None, on_device: bool = True,
                 adapters_dtype: torch.dtype | None = None) -> Components:
    """Base components with the trained weights applied, in eval mode, on ctx.device (in host memory when not
    `on_device`: a LoRA export, or a sampler that places the weights itself); a LoRA run's adapters in
    `adapters_dtype` when given (else in `dtype` with the rest)."""
    family = family_for(ctx.spec.family)
    dtype = dtype or ctx.dtype
    components = family.load(ctx.spec.base_model, dtype=family.working_dtype(dtype))
    device = ctx.device if on_device else torch.device("cpu")
    for module in components.modules():
        module.to(device=device, dtype=family.vae_dtype(dtype) if module is components.vae else dtype)
    # the trained weights go in where the base weights now are (adapters are made in their layers' dtype)
    apply_trained(components, ctx.paths, adapters_dtype)
    for module in components.modules():
        module.eval()
        module.requires_grad_(False)
    return components
