"""Flux transformer names: diffusers' layout and Black Forest Labs' original one (ComfyUI, kohya LoRA files).

The original layout fuses what diffusers keeps apart: a double block's q, k and v are one `qkv` linear (for the
image and the text stream), and a single block's q, k, v and MLP input are one `linear1`. Weights convert by
concatenating rows; a LoRA on the separate layers becomes one LoRA on the fused layer whose down weights are
stacked and whose up weight is block-diagonal (so it is exactly the sum of the parts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ioncannon.engine.weights.adapters import LoraPair


@dataclass(frozen=True)
class Fused:
    """One module of the original layout and the diffusers modules it is made of, in row order."""

    original: str
    parts: tuple[str, ...]
    swap_halves: bool = False  # the final adaLN: diffusers keeps (scale, shift), the original (shift, scale)


def _top_level(guidance: bool) -> list[Fused]:
    pairs = [
        ("img_in", "x_embedder"), ("txt_in", "context_embedder"),
        ("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1"),
        ("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2"),
        ("vector_in.in_layer", "time_text_embed.text_embedder.linear_1"),
        ("vector_in.out_layer", "time_text_embed.text_embedder.linear_2"),
        ("final_layer.linear", "proj_out"),
    ]
    if guidance:
        pairs += [("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1"),
                  ("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2")]
    return [Fused(o, (d,)) for o, d in pairs] + [Fused("final_layer.adaLN_modulation.1", ("norm_out.linear",), True)]


def _double(i: int) -> list[Fused]:
    d, o = f"transformer_blocks.{i}.", f"double_blocks.{i}."
    return [
        Fused(o + "img_mod.lin", (d + "norm1.linear",)),
        Fused(o + "txt_mod.lin", (d + "norm1_context.linear",)),
        Fused(o + "img_attn.qkv", (d + "attn.to_q", d + "attn.to_k", d + "attn.to_v")),
        Fused(o + "img_attn.proj", (d + "attn.to_out.0",)),
        Fused(o + "img_mlp.0", (d + "ff.net.0.proj",)),
        Fused(o + "img_mlp.2", (d + "ff.net.2",)),
        Fused(o + "txt_attn.qkv", (d + "attn.add_q_proj", d + "attn.add_k_proj", d + "attn.add_v_proj")),
        Fused(o + "txt_attn.proj", (d + "attn.to_add_out",)),
        Fused(o + "txt_mlp.0", (d + "ff_context.net.0.proj",)),
        Fused(o + "txt_mlp.2", (d + "ff_context.net.2",)),
    ]


def _double_norms(i: int) -> list[tuple[str, str]]:
    d, o = f"transformer_blocks.{i}.attn.", f"double_blocks.{i}."
    return [(o + "img_attn.norm.query_norm.scale", d + "norm_q.weight"),
            (o + "img_attn.norm.key_norm.scale", d + "norm_k.weight"),
            (o + "txt_attn.norm.query_norm.scale", d + "norm_added_q.weight"),
            (o + "txt_attn.norm.key_norm.scale", d + "norm_added_k.weight")]


def _single(i: int) -> list[Fused]:
    d, o = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
    return [
        Fused(o + "linear1", (d + "attn.to_q", d + "attn.to_k", d + "attn.to_v", d + "proj_mlp")),
        Fused(o + "linear2", (d + "proj_out",)),
        Fused(o + "modulation.lin", (d + "norm.linear",)),
    ]


def _single_norms(i: int) -> list[tuple[str, str]]:
    d, o = f"single_transformer_blocks.{i}.attn.", f"single_blocks.{i}."
    return [(o + "norm.query_norm.scale", d + "norm_q.weight"), (o + "norm.key_norm.scale", d + "norm_k.weight")]


def layout(double: int, single: int, guidance: bool = True) -> tuple[list[Fused], list[tuple[str, str]]]:
    """Every linear module (fused groups) and every norm weight (pairs) of a transformer of this depth."""
    fused = _top_level(guidance) + [f for i in range(double) for f in _double(i)]
    fused += [f for i in range(single) for f in _single(i)]
    norms = [n for i in range(double) for n in _double_norms(i)] + [n for i in range(single) for n in _single_norms(i)]
    return fused, norms


def _depth(keys: list[str] | set[str], pattern: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def _swap(t: torch.Tensor) -> torch.Tensor:
    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers FluxTransformer2DModel state dict in the original (BFL/ComfyUI) layout."""
    double = _depth(state, r"transformer_blocks\.(\d+)\.")
    single = _depth(state, r"single_transformer_blocks\.(\d+)\.")
    fused, norms = layout(double, single, "time_text_embed.guidance_embedder.linear_1.weight" in state)
    out: dict[str, torch.Tensor] = {}
    for f in fused:
        for kind in ("weight", "bias"):
            value = torch.cat([state[f"{p}.{kind}"] for p in f.parts], dim=0)
            out[f"{f.original}.{kind}"] = _swap(value) if f.swap_halves else value
    for original, diffusers in norms:
        out[original] = state[diffusers]
    return out


def from_original(state: dict[str, torch.Tensor], config: dict[str, object]) -> dict[str, torch.Tensor]:
    """An original-layout Flux transformer checkpoint as a diffusers state dict for a model of `config`.

    ComfyUI files may carry the 'model.diffusion_model.' prefix of a whole-model checkpoint; it is dropped.
    """
    prefix = "model.diffusion_model."
    state = {k.removeprefix(prefix): v for k, v in state.items()}
    inner = int(config["num_attention_heads"]) * int(config["attention_head_dim"])  # type: ignore[call-overload]
    double = _depth(state, r"double_blocks\.(\d+)\.")
    single = _depth(state, r"single_blocks\.(\d+)\.")
    fused, norms = layout(double, single, "guidance_in.in_layer.weight" in state)
    out: dict[str, torch.Tensor] = {}
    for f in fused:
        for kind in ("weight", "bias"):
            value = state[f"{f.original}.{kind}"]
            if f.swap_halves:
                value = _swap(value)
            if len(f.parts) == 1:
                out[f"{f.parts[0]}.{kind}"] = value
                continue
            # q, k, v are `inner` rows each; a single block's MLP input takes the rest
            sizes = [inner] * (len(f.parts) - 1)
            sizes.append(value.shape[0] - sum(sizes))
            for name, piece in zip(f.parts, torch.split(value, sizes, dim=0), strict=True):
                out[f"{name}.{kind}"] = piece
    for original, diffusers in norms:
        out[diffusers] = state[original]
    return out


def kohya_flux_lora(pairs: list[LoraPair], dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    """LoRA pairs of a diffusers Flux transformer as a kohya file: lora_unet_<original name>.lora_down/up/alpha.

    Fused layers get one LoRA: stacked down weights and a block-diagonal up weight (rows of an un-adapted part stay
    zero), with alpha scaled so alpha / rank keeps every part's own scale.
    """
    by_module = {p.module: p for p in pairs}
    double = _depth(by_module, r"transformer_blocks\.(\d+)\.")
    single = _depth(by_module, r"single_transformer_blocks\.(\d+)\.")
    fused, _ = layout(double, single)
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for f in fused:
        present = [by_module[p] for p in f.parts if p in by_module]
        if not present:
            continue
        scales = {p.alpha / p.down.shape[0] for p in present}
        if len(scales) != 1:
            raise ValueError(f"{f.original}: its parts have different LoRA scales, which one fused LoRA cannot hold")
        scale = scales.pop()
        if len(f.parts) == 1:
            down, up = present[0].down, present[0].up
        else:
            down, up = _fused_pair(f, by_module)
        base = "lora_unet_" + f.original.replace(".", "_")
        out[f"{base}.lora_down.weight"] = down.to(dtype).cpu().contiguous()
        out[f"{base}.lora_up.weight"] = up.to(dtype).cpu().contiguous()
        out[f"{base}.alpha"] = torch.tensor(scale * down.shape[0], dtype=dtype)
        used.update(p.module for p in present)
    left = sorted(set(by_module) - used)
    if left:
        raise ValueError(f"LoRA layers with no place in the original Flux layout: {left[:3]}")
    return out


def _fused_pair(f: Fused, by_module: dict[str, LoraPair]) -> tuple[torch.Tensor, torch.Tensor]:
    present = [by_module[p] for p in f.parts if p in by_module]
    rank = present[0].down.shape[0]
    if any(p.down.shape[0] != rank for p in present):
        raise ValueError(f"{f.original}: its parts have different LoRA ranks")
    in_features = present[0].down.shape[1]
    ref = present[0].up
    missing = [p for p in f.parts if p not in by_module]
    if missing and len(f.parts) != 3:
        raise ValueError(f"{f.original}: adapt all of {', '.join(f.parts)} or none (the MLP rows' size is unknown)")
    # a q/k/v part without an adapter still owns its rows of the fused layer (zero), as many as the others
    rows = [by_module[p].up.shape[0] if p in by_module else ref.shape[0] for p in f.parts]
    down = torch.zeros(rank * len(f.parts), in_features, dtype=ref.dtype, device=ref.device)
    up = torch.zeros(sum(rows), rank * len(f.parts), dtype=ref.dtype, device=ref.device)
    row = 0
    for j, (name, n) in enumerate(zip(f.parts, rows, strict=True)):
        if name in by_module:
            down[j * rank:(j + 1) * rank] = by_module[name].down
            up[row:row + n, j * rank:(j + 1) * rank] = by_module[name].up
        row += n
    return down, up
