"""Rename diffusers state dicts (UNet, VAE, CLIP text encoder) to the original Stable Diffusion (LDM) layout."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."

# inside a UNet ResBlock the LDM code numbers the layers of two Sequentials
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


class KeyMappingError(Exception):
    """A weight has no place in the original layout (an unsupported architecture)."""


def _get(config: Any, name: str) -> Any:
    return config[name] if isinstance(config, Mapping) else getattr(config, name)


def unet_module_map(config: Any) -> dict[str, tuple[str, dict[str, str]]]:
    """diffusers module prefix -> (LDM module prefix, renames of its direct children)."""
    down_types = list(_get(config, "down_block_types"))
    up_types = list(_get(config, "up_block_types"))
    layers = _get(config, "layers_per_block")
    if not isinstance(layers, int):
        raise KeyMappingError("per-block layer counts are not supported in the single-file export")
    plain: dict[str, str] = {}
    m: dict[str, tuple[str, dict[str, str]]] = {
        "time_embedding.linear_1": ("time_embed.0", plain),
        "time_embedding.linear_2": ("time_embed.2", plain),
        # SDXL's added (pooled text + size/crop) conditioning MLP
        "add_embedding.linear_1": ("label_emb.0.0", plain),
        "add_embedding.linear_2": ("label_emb.0.2", plain),
        "conv_in": ("input_blocks.0.0", plain),
        "conv_norm_out": ("out.0", plain),
        "conv_out": ("out.2", plain),
        "mid_block.resnets.0": ("middle_block.0", _UNET_RESNET),
        "mid_block.attentions.0": ("middle_block.1", plain),
        "mid_block.resnets.1": ("middle_block.2", _UNET_RESNET),
    }
    # LDM numbers every resnet, and every down/upsampler, as one step of a flat list of blocks
    index = 1
    for i, kind in enumerate(down_types):
        for j in range(layers):
            m[f"down_blocks.{i}.resnets.{j}"] = (f"input_blocks.{index}.0", _UNET_RESNET)
            if "CrossAttn" in kind:
                m[f"down_blocks.{i}.attentions.{j}"] = (f"input_blocks.{index}.1", plain)
            index += 1
        if i < len(down_types) - 1:
            m[f"down_blocks.{i}.downsamplers.0.conv"] = (f"input_blocks.{index}.0.op", plain)
            index += 1
    index = 0
    for i, kind in enumerate(up_types):
        has_attention = "CrossAttn" in kind
        for j in range(layers + 1):
            m[f"up_blocks.{i}.resnets.{j}"] = (f"output_blocks.{index}.0", _UNET_RESNET)
            if has_attention:
                m[f"up_blocks.{i}.attentions.{j}"] = (f"output_blocks.{index}.1", plain)
            if j == layers and i < len(up_types) - 1:
                slot = 2 if has_attention else 1
                m[f"up_blocks.{i}.upsamplers.0.conv"] = (f"output_blocks.{index}.{slot}.conv", plain)
            index += 1
    return m


def vae_module_map(config: Any) -> dict[str, tuple[str, dict[str, str]]]:
    """diffusers VAE module prefix -> (LDM prefix, child renames); the decoder's blocks are numbered in reverse."""
    blocks = len(_get(config, "block_out_channels"))
    layers = _get(config, "layers_per_block")
    plain: dict[str, str] = {}
    m: dict[str, tuple[str, dict[str, str]]] = {
        "quant_conv": ("quant_conv", plain),
        "post_quant_conv": ("post_quant_conv", plain),
    }
    for part in ("encoder", "decoder"):
        m[f"{part}.conv_in"] = (f"{part}.conv_in", plain)
        m[f"{part}.conv_out"] = (f"{part}.conv_out", plain)
        m[f"{part}.conv_norm_out"] = (f"{part}.norm_out", plain)
        m[f"{part}.mid_block.resnets.0"] = (f"{part}.mid.block_1", _VAE_RESNET)
        m[f"{part}.mid_block.resnets.1"] = (f"{part}.mid.block_2", _VAE_RESNET)
        m[f"{part}.mid_block.attentions.0"] = (f"{part}.mid.attn_1", _VAE_ATTENTION)
    for i in range(blocks):
        for j in range(layers):
            m[f"encoder.down_blocks.{i}.resnets.{j}"] = (f"encoder.down.{i}.block.{j}", _VAE_RESNET)
        m[f"encoder.down_blocks.{i}.downsamplers.0.conv"] = (f"encoder.down.{i}.downsample.conv", plain)
        ldm = blocks - 1 - i
        for j in range(layers + 1):
            m[f"decoder.up_blocks.{i}.resnets.{j}"] = (f"decoder.up.{ldm}.block.{j}", _VAE_RESNET)
        m[f"decoder.up_blocks.{i}.upsamplers.0.conv"] = (f"decoder.up.{ldm}.upsample.conv", plain)
    return m


def _rename(key: str, modules: dict[str, tuple[str, dict[str, str]]], what: str) -> tuple[str, bool]:
    """New key, and whether it belongs to a VAE attention (whose linear weights become 1x1 convs)."""
    parts = key.split(".")
    # the longest matching module prefix wins (e.g. 'mid_block.resnets.0' over nothing shorter)
    for cut in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in modules:
            target, children = modules[prefix]
            rest = ".".join(parts[cut:])
            for old in sorted(children, key=len, reverse=True):
                if rest == old or rest.startswith(old + "."):
                    rest = children[old] + rest[len(old):]
                    break
            return f"{target}.{rest}", children is _VAE_ATTENTION
    raise KeyMappingError(f"{what} weight {key!r} has no place in the original Stable Diffusion layout")


def unet_to_ldm(state: Mapping[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    modules = unet_module_map(config)
    return {UNET_PREFIX + _rename(k, modules, "UNet")[0]: v for k, v in state.items()}


def vae_to_ldm(state: Mapping[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    modules = vae_module_map(config)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new, attention = _rename(key, modules, "VAE")
        if attention and new.endswith(".weight") and value.ndim == 2:
            value = value.reshape(*value.shape, 1, 1)  # LDM's VAE attention uses 1x1 convolutions
        out[VAE_PREFIX + new] = value
    return out


def clip_name(key: str) -> str:
    """The classic Hugging Face CLIP name: newer transformers drop the `text_model.` level, checkpoints keep it."""
    return key if key.startswith("text_model.") else "text_model." + key


def text_encoder_to_ldm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SD1.x keeps the Hugging Face CLIP names under one prefix."""
    return {TEXT_PREFIX + clip_name(k): v for k, v in state.items() if not k.endswith("position_ids")}


def to_ldm_checkpoint(
    unet: Any, vae: Any, text_encoder: Any, dtype: torch.dtype = torch.float16
) -> dict[str, torch.Tensor]:
    """The whole model as one flat LDM state dict, contiguous and cast to `dtype`."""
    merged: dict[str, torch.Tensor] = {}
    merged.update(unet_to_ldm(unet.state_dict(), unet.config))
    merged.update(vae_to_ldm(vae.state_dict(), vae.config))
    merged.update(text_encoder_to_ldm(text_encoder.state_dict()))
    return {k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous() for k, v in merged.items()}
