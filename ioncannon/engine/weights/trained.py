"""The hand-off of trained weights from training to export and generation (`.ioncannon/trained/`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ioncannon.engine.weights.files import save_tensors
from ioncannon.job.fsio import StateFileError, fsync_dir, read_json, write_json
from ioncannon.job.paths import JobPaths

if TYPE_CHECKING:
    from ioncannon.engine.models.load import Components

INFO_FILE = "trained.json"
UNET_FULL = "unet.safetensors"
TEXT_FULL = "text_encoder.safetensors"
UNET_LORA = "unet_lora.safetensors"
TEXT_LORA = "text_encoder_lora.safetensors"
UNET_LORA_TARGETS: tuple[str, ...] = ("to_k", "to_q", "to_v", "to_out.0")
TEXT_LORA_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")


def lora_info(rank: int, alpha: float | None = None, with_text: bool = False,
              unet_targets: str | tuple[str, ...] = UNET_LORA_TARGETS) -> dict[str, Any]:
    return {
        "rank": int(rank),
        "alpha": float(alpha if alpha is not None else rank),
        # a string is a peft regex over module names (Flux's), a list of name suffixes otherwise
        "target_modules_unet": unet_targets if isinstance(unet_targets, str) else list(unet_targets),
        "target_modules_text": list(TEXT_LORA_TARGETS) if with_text else [],
    }


def publish_trained(
    paths: JobPaths,
    *,
    mode: str,
    steps: int,
    base_model: str,
    unet_state: dict[str, torch.Tensor],
    text_states: dict[str, dict[str, torch.Tensor]] | None = None,
    lora: dict[str, Any] | None = None,
) -> Path:
    """Stage the final weights in a hidden folder, then swap it into place (readers see old or new).

    `text_states` maps each trained text encoder's name ("text_encoder", SDXL's "text_encoder_2") to its weights.
    """
    final = paths.trained
    staging = paths.meta / f".trained-staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    full = mode == "full"
    save_tensors(staging / (UNET_FULL if full else UNET_LORA), unet_state)
    trained_text = [name for name, state in (text_states or {}).items() if state]
    for name in trained_text:
        save_tensors(staging / _text_file(name, full), (text_states or {})[name])
    write_json(staging / INFO_FILE, {
        "mode": mode,
        "steps": int(steps),
        "base_model": base_model,
        "text_encoder_trained": bool(trained_text),
        "text_encoders": trained_text,
        "lora": None if full else lora,
    })
    fsync_dir(staging)
    old = paths.meta / f".trained-old-{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    fsync_dir(paths.meta)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _text_file(name: str, full: bool) -> str:
    # the first encoder keeps the file names jobs from before SDXL wrote
    if name == "text_encoder":
        return TEXT_FULL if full else TEXT_LORA
    return f"{name}.safetensors" if full else f"{name}_lora.safetensors"


def _trained_text(info: dict[str, Any]) -> list[str]:
    if "text_encoders" in info:
        return list(info["text_encoders"])
    return ["text_encoder"] if info.get("text_encoder_trained") else []


def trained_info(paths: JobPaths) -> dict[str, Any] | None:
    """The published trained.json, or None when training has not finished (or the file is damaged)."""
    try:
        info = read_json(paths.trained / INFO_FILE)
    except StateFileError:
        return None
    # a hand-edited file with the wrong types reads as "not finished": training runs again rather than crashing
    usable = info.get("mode") in ("full", "lora") and isinstance(info.get("steps"), int) \
        and isinstance(info.get("base_model"), str)
    return info if usable else None


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def lora_state(paths: JobPaths) -> dict[str, dict[str, torch.Tensor]] | None:
    """peft-format adapter state dicts {"unet": ..., "text_encoder": ...} of a LoRA run; None for full runs."""
    info = trained_info(paths)
    if info is None or info["mode"] != "lora":
        return None
    folder = paths.trained
    out = {"unet": _load_tensors(folder / UNET_LORA)}
    for name in _trained_text(info):
        if (folder / _text_file(name, False)).exists():
            out[name] = _load_tensors(folder / _text_file(name, False))
    return out


def attach_lora(module: Any, rank: int, alpha: float, targets: str | list[str] | tuple[str, ...]) -> None:
    """Add a peft LoRA adapter (same config training uses) to a diffusers UNet or a transformers text encoder.

    `targets` is a list of module-name suffixes, or one string: a regex the whole module name must match.
    """
    from peft import LoraConfig

    config = LoraConfig(
        r=int(rank), lora_alpha=float(alpha), init_lora_weights="gaussian",
        target_modules=targets if isinstance(targets, str) else list(targets),
    )
    if hasattr(module, "set_adapters"):  # diffusers models
        module.add_adapter(config)
    else:
        # transformers' own add_adapter pins a newer peft than diffusers needs; plain peft works for any module
        from peft import inject_adapter_in_model

        inject_adapter_in_model(config, module)


def apply_trained(components: Components, paths: JobPaths, adapters_dtype: torch.dtype | None = None) -> Components:
    """Put the published trained weights into `components` (in place) and return them; a LoRA run's adapters are
    held in `adapters_dtype` when given, else in their layers' dtype."""
    from peft import set_peft_model_state_dict

    from ioncannon.job.errors import StageError

    def load_adapters(module: Any, state: dict[str, torch.Tensor], what: str) -> None:
        if adapters_dtype is not None:
            for name, param in module.named_parameters():
                if "lora_" in name:
                    param.data = param.data.to(adapters_dtype)
            state = {k: v.to(adapters_dtype) for k, v in state.items()}
        # a skeleton's adapters are made on the meta device, beside its weightless layers: they get memory of their own
        for name, sub in module.named_modules():
            if ".lora_" in name and any(p.is_meta for p in sub.parameters(recurse=False)):
                sub.to_empty(device="cpu", recurse=False)
        _check_loaded(set_peft_model_state_dict(module, state), what)

    info = trained_info(paths)
    if info is None:
        raise StageError("No trained weights were found for this job.", "Run (or resume) the training stage first.")
    folder = paths.trained
    encoders = dict(components.text_encoders())
    if info["mode"] == "full":
        components.unet.load_state_dict(_load_tensors(folder / UNET_FULL), strict=True)
        for name in _trained_text(info):
            encoders[name].load_state_dict(_load_tensors(folder / _text_file(name, True)), strict=False)
        return components
    lora = info["lora"]
    states = lora_state(paths) or {}
    attach_lora(components.unet, lora["rank"], lora["alpha"], lora["target_modules_unet"])
    load_adapters(components.unet, states["unet"], "UNet")
    for name, module in encoders.items():
        if name in states:
            attach_lora(module, lora["rank"], lora["alpha"], lora["target_modules_text"])
            load_adapters(module, states[name], name.replace("_", " "))
    return components


def _check_loaded(result: Any, what: str) -> None:
    """Every key of the file has its adapter in the model, and every adapter of the model its key in the file (the
    base weights are not in the file)."""
    unexpected = list(getattr(result, "unexpected_keys", None) or [])
    if unexpected:
        raise ValueError(f"LoRA weights for the {what} do not match the model: {unexpected[:3]}")
    missing = [k for k in getattr(result, "missing_keys", None) or [] if "lora_" in k]
    if missing:
        raise ValueError(f"The trained LoRA file of the {what} lacks some of its adapters: {missing[:3]}")
