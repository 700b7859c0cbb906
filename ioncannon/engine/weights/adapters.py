"""LoRA adapters on trained components: read them out (peft and kohya layouts) and merge them into the weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class LoraPair:
    """One adapted layer: its module path, down (A) and up (B) weights and the effective alpha."""

    module: str
    down: torch.Tensor
    up: torch.Tensor
    alpha: float


def _lora_layer_type() -> type | None:
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return None
    return LoraLayer


def _unwrap_name(name: str) -> str:
    # a PeftModel wrapper adds this prefix; the layer's own path comes after it
    for prefix in ("base_model.model.",):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def has_adapters(module: Any) -> bool:
    layer_type = _lora_layer_type()
    return layer_type is not None and any(isinstance(m, layer_type) for m in module.modules())


def lora_pairs(module: Any) -> list[LoraPair]:
    """Every LoRA layer of `module` with the active adapter's weights; alpha = scaling x rank."""
    layer_type = _lora_layer_type()
    pairs: list[LoraPair] = []
    if layer_type is None:
        return pairs
    for name, layer in module.named_modules():
        if not isinstance(layer, layer_type):
            continue
        active = [a for a in layer.active_adapters if a in layer.lora_A]
        if not active:
            continue
        adapter = active[0]
        down = layer.lora_A[adapter].weight.detach()
        up = layer.lora_B[adapter].weight.detach()
        rank = down.shape[0]
        pairs.append(LoraPair(_unwrap_name(name), down, up, float(layer.scaling[adapter]) * rank))
    return pairs


def kohya_state_dict(unet: Any, text_encoder: Any, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """kohya/A1111 LoRA keys: lora_unet_<path with _>.lora_down.weight / .lora_up.weight / .alpha."""
    out: dict[str, torch.Tensor] = {}
    from ioncannon.engine.weights.ldm_keys import clip_name

    for prefix, module in (("lora_unet_", unet), ("lora_te_", text_encoder)):
        for pair in lora_pairs(module):
            path = clip_name(pair.module) if module is text_encoder else pair.module
            base = prefix + path.replace(".", "_")
            out[f"{base}.lora_down.weight"] = pair.down.to(dtype).cpu().contiguous()
            out[f"{base}.lora_up.weight"] = pair.up.to(dtype).cpu().contiguous()
            out[f"{base}.alpha"] = torch.tensor(pair.alpha, dtype=dtype)
    return out


def peft_state_dict(module: Any) -> dict[str, torch.Tensor]:
    """The adapter weights in diffusers' LoRA naming, as `save_lora_weights` expects them."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    return convert_state_dict_to_diffusers(get_peft_model_state_dict(module))


def adapter_metadata(module: Any) -> dict[str, Any] | None:
    """The LoRA config (rank, alpha, targets) so a loader rebuilds the same scaling.

    Taken from the module's peft_config when it has one, else read off the layers themselves (adapters
    injected with peft's `inject_adapter_in_model` leave no config behind).
    """
    configs = getattr(module, "peft_config", None)
    if configs:
        data = next(iter(configs.values())).to_dict()
        # sets are not JSON; the loader reads lists back fine
        return {k: (sorted(v) if isinstance(v, set) else v) for k, v in data.items()}
    layer_type = _lora_layer_type()
    ranks: dict[str, int] = {}
    alphas: dict[str, float] = {}
    for name, layer in module.named_modules():
        if layer_type is not None and isinstance(layer, layer_type):
            adapter = next((a for a in layer.active_adapters if a in layer.lora_A), None)
            if adapter is not None:
                ranks[name] = int(layer.r[adapter])
                alphas[name] = float(layer.lora_alpha[adapter])
    if not ranks:
        return None
    rank = max(set(ranks.values()), key=list(ranks.values()).count)
    alpha = max(set(alphas.values()), key=list(alphas.values()).count)
    return {
        "r": rank,
        "lora_alpha": alpha,
        "target_modules": sorted(
            {n.rsplit(".", 1)[-1] if not n.endswith(".0") else ".".join(n.split(".")[-2:]) for n in ranks}
        ),
        "rank_pattern": {_unwrap_name(n): r for n, r in ranks.items() if r != rank},
        "alpha_pattern": {_unwrap_name(n): a for n, a in alphas.items() if a != alpha},
    }


def merge_adapters(module: Any) -> Any:
    """Fold every LoRA layer into its base weight and drop the adapter; returns the plain module."""
    layer_type = _lora_layer_type()
    if layer_type is None:
        return module
    if hasattr(module, "merge_and_unload") and hasattr(module, "base_model"):
        return module.merge_and_unload()
    for name, layer in list(module.named_modules()):
        if not isinstance(layer, layer_type):
            continue
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, layer.get_base_layer())
    for attr in ("peft_config",):
        if hasattr(module, attr):
            delattr(module, attr)
    if hasattr(module, "_hf_peft_config_loaded"):
        module._hf_peft_config_loaded = False
    return module
