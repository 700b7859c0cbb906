"""SDXL in the original (SGM) layout: the single-file checkpoint's keys and kohya's LoRA names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ioncannon.engine.weights.adapters import lora_pairs
from ioncannon.engine.weights.ldm_keys import _rename, clip_name, unet_module_map, unet_to_ldm, vae_to_ldm

TEXT1_PREFIX = "conditioner.embedders.0.transformer."
TEXT2_PREFIX = "conditioner.embedders.1.model."

# OpenCLIP's names for the pieces of a Hugging Face CLIP text tower (inside one residual block, then outside)
_OPENCLIP_LAYER = (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                   ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"))


def text1_to_sgm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The CLIP-L tower keeps Hugging Face names under the first embedder."""
    return {TEXT1_PREFIX + clip_name(k): v for k, v in state.items() if not k.endswith("position_ids")}


def text2_to_openclip(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The bigG tower in OpenCLIP's layout: fused q/k/v projections, a transposed text projection."""
    plain = {clip_name(k) if not k.startswith("text_projection") else k: v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in plain.items():
        if key.endswith("position_ids"):
            continue
        if key == "text_projection.weight":
            out[TEXT2_PREFIX + "text_projection"] = value.T.contiguous()  # OpenCLIP computes x @ P
        elif key == "text_model.embeddings.token_embedding.weight":
            out[TEXT2_PREFIX + "token_embedding.weight"] = value
        elif key == "text_model.embeddings.position_embedding.weight":
            out[TEXT2_PREFIX + "positional_embedding"] = value
        elif key.startswith("text_model.final_layer_norm."):
            out[TEXT2_PREFIX + "ln_final." + key.rsplit(".", 1)[-1]] = value
        elif key.startswith("text_model.encoder.layers."):
            index, rest = key[len("text_model.encoder.layers."):].split(".", 1)
            block = f"{TEXT2_PREFIX}transformer.resblocks.{index}."
            if rest.startswith(("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")):
                which, kind = rest.split(".")[1][0], rest.rsplit(".", 1)[-1]
                fused.setdefault(f"{block}attn.in_proj_{kind}", {})[which] = value
                continue
            for old, new in _OPENCLIP_LAYER:
                if rest.startswith(old + "."):
                    rest = new + rest[len(old):]
                    break
            out[block + rest] = value
        else:
            raise KeyError(f"text encoder 2 weight {key!r} has no place in the SDXL layout")
    for key, parts in fused.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def to_sgm_checkpoint(unet: Any, vae: Any, text_encoder: Any, text_encoder_2: Any,
                      dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """The whole SDXL model as the one flat state dict AUTOMATIC1111 and ComfyUI load."""
    merged: dict[str, torch.Tensor] = {}
    merged.update(unet_to_ldm(unet.state_dict(), unet.config))
    merged.update(vae_to_ldm(vae.state_dict(), vae.config))
    merged.update(text1_to_sgm(text_encoder.state_dict()))
    merged.update(text2_to_openclip(text_encoder_2.state_dict()))
    return {k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous() for k, v in merged.items()}


def kohya_sdxl_lora(unet: Any, text_encoder: Any, text_encoder_2: Any,
                    dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """kohya's SDXL LoRA: UNet layers under their SGM names (as kohya trains them), text towers as te1/te2."""
    out: dict[str, torch.Tensor] = {}
    modules = unet_module_map(unet.config)
    named: list[tuple[str, Any]] = [("lora_unet_", unet), ("lora_te1_", text_encoder), ("lora_te2_", text_encoder_2)]
    for prefix, module in named:
        if module is None:
            continue
        for pair in lora_pairs(module):
            if module is unet:
                path = _rename(pair.module + ".weight", modules, "UNet")[0][: -len(".weight")]
            else:
                path = clip_name(pair.module)
            base = prefix + path.replace(".", "_")
            out[f"{base}.lora_down.weight"] = pair.down.to(dtype).cpu().contiguous()
            out[f"{base}.lora_up.weight"] = pair.up.to(dtype).cpu().contiguous()
            out[f"{base}.alpha"] = torch.tensor(pair.alpha, dtype=dtype)
    return out
