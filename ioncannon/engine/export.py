"""Export stage: single-file LDM .safetensors, fp16 diffusers folder, LoRA files and a model card."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ioncannon.engine.context import StageContext
from ioncannon.engine.families import family_for
from ioncannon.engine.models.load import Components
from ioncannon.engine.weights.adapters import has_adapters, merge_adapters
from ioncannon.engine.weights.files import save_tensors
from ioncannon.job.errors import StageError
from ioncannon.job.events import Message, Progress
from ioncannon.job.families import family_info
from ioncannon.job.fsio import atomic_write_text, free_bytes, fsync_dir
from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec

PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")


@dataclass(frozen=True)
class ExportTargets:
    """Where each exported artefact goes under trained_models/."""

    single_file: Path
    diffusers: Path
    lora_diffusers: Path
    lora_kohya: Path
    model_card: Path

    def wanted(self, lora: bool, full_model: bool = True) -> list[Path]:
        """What the export writes; `full_model` False (Flux): only the LoRA files and the card."""
        paths = [self.single_file, self.diffusers, self.model_card] if full_model else [self.model_card]
        return paths + [self.lora_diffusers, self.lora_kohya] if lora else paths


def export_targets(spec: JobSpec, paths: JobPaths) -> ExportTargets:
    root = paths.trained_models
    ident = spec.identifier
    return ExportTargets(
        single_file=root / f"{ident}_model.safetensors",
        diffusers=root / f"{ident}_diffusers",
        lora_diffusers=root / f"{ident}_lora_diffusers",
        lora_kohya=root / f"{ident}_lora.safetensors",
        model_card=root / "model_card.md",
    )


def pickle_files(folder: Path) -> list[Path]:
    """Every pickle-format weight file under `folder` (there must be none)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)


def _publish_folder(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def _staging(final: Path) -> Path:
    tmp = final.with_name(f".{final.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)  # left by a killed run
    return tmp


def _metadata(spec: JobSpec) -> dict[str, str]:
    return {
        "format": "pt", "modelspec.architecture": family_for(spec.family).metadata_architecture,
        "ioncannon.identifier": spec.identifier, "ioncannon.family": spec.family,
        "ioncannon.class": spec.class_name, "ioncannon.base_model": spec.base_model, "ioncannon.mode": spec.train.mode,
        "ioncannon.steps": str(spec.train.steps), "ioncannon.prompt": spec.instance_prompt,
    }


def write_lora_files(parts: Components, targets: ExportTargets, spec: JobSpec) -> None:
    """diffusers/peft LoRA folder and the kohya single file, from the live adapters."""
    if not any(has_adapters(m) for m in (parts.unet, *(m for _, m in parts.text_encoders()))):
        raise StageError(
            "The job trained in LoRA mode, but the trained model has no LoRA adapters.",
            "Resume the job so training finishes, or retrain; the checkpoint may be from a full fine-tune.",
        )
    family = family_for(spec.family)
    if not targets.lora_diffusers.exists():
        tmp = _staging(targets.lora_diffusers)
        family.save_lora(parts, tmp)
        _publish_folder(tmp, targets.lora_diffusers)
    if not targets.lora_kohya.exists():
        meta = {**_metadata(spec), "ss_network_module": "networks.lora",
                "modelspec.architecture": f"{family.metadata_architecture}/lora"}
        save_tensors(targets.lora_kohya, family.kohya_lora(parts), meta)


def write_single_file(parts: Components, target: Path, spec: JobSpec) -> None:
    save_tensors(target, family_for(spec.family).single_file(parts, torch.float16), _metadata(spec))


def write_diffusers_folder(parts: Components, target: Path) -> None:
    """An fp16 `from_pretrained` folder; casts `parts` to fp16 in place, so it runs last."""
    pipe = family_for(parts.family).pipeline(parts)
    pipe.to(torch.float16)
    tmp = _staging(target)
    pipe.save_pretrained(str(tmp), safe_serialization=True)
    _publish_folder(tmp, target)


def model_card(spec: JobSpec, targets: ExportTargets, lora: bool) -> str:
    prompt = spec.instance_prompt
    family = family_for(spec.family)
    info, pipeline = family_info(spec.family), family.pipeline_class
    lines = [
        f"# {spec.identifier} {spec.class_name}: DreamBooth model",
        "",
        "| | |",
        "|---|---|",
        f"| base model | `{spec.base_model}` ({info.label}) |",
        f"| token | `{spec.identifier}` |",
        f"| class | `{spec.class_name}` |",
        (
            f"| training | {spec.train.mode}, {spec.train.steps} steps, learning rate {spec.train.learning_rate:g}, "
            f"prior preservation {'on' if spec.train.prior_preservation else 'off'} |"
        ),
        f"| resolution | {spec.resolution} px |",
        "",
        "## The prompt to use",
        "",
        (
            f"Put `{spec.identifier} {spec.class_name}` in your prompt, e.g. `{prompt}` or "
            f"`an oil painting of {spec.identifier} {spec.class_name}`."
        ),
        "",
        "## Files",
        "",
    ]
    if family.exports_full_model:
        lines += [
            (
                f"- `{targets.single_file.name}`: the whole model, fp16, for AUTOMATIC1111 (models/Stable-diffusion) "
                "and ComfyUI (models/checkpoints)."
            ),
            f"- `{targets.diffusers.name}/`: fp16 diffusers folder: "
            f'`{pipeline}.from_pretrained("{targets.diffusers.name}")`.',
        ]
    if lora and not family.exports_full_model:
        lines += family.lora_file_notes(spec, targets.lora_kohya.name, targets.lora_diffusers.name)
    elif lora:
        lines += [
            (
                f"- `{targets.lora_kohya.name}`: the LoRA alone (kohya layout) for AUTOMATIC1111 (models/Lora, prompt "
                f"`<lora:{targets.lora_kohya.stem}:1>`) and ComfyUI (models/loras); use it with `{spec.base_model}`."
            ),
            f"- `{targets.lora_diffusers.name}/`: the LoRA for diffusers: "
            f'`pipe.load_lora_weights("{targets.lora_diffusers.name}")`.',
        ]
    lines += [line for note in family_for(spec.family).card_notes(spec) for line in ("", note)]
    lines += ["", f"Licence of the base model: {info.licence}.",
              "", "All weights are safetensors; nothing here is a pickle.", ""]
    return "\n".join(lines)


def _check_space(parts: Components, folder: Path, full_model: bool) -> None:
    if not full_model:
        return  # LoRA files are megabytes
    params = sum(p.numel() for m in parts.modules() for p in m.parameters())
    need = int(params * 2 * 2 * 1.1)  # fp16, twice (single file + folder), some slack
    if free_bytes(folder) < need:
        raise StageError(
            f"Not enough disk space to export the model: need about {need / 2**30:.1f} GiB in {folder}.",
            "Free some space (old checkpoints, other jobs) and resume.",
        )


def export_model(ctx: StageContext, load: Callable[[], Components]) -> ExportTargets:
    """Write every missing export; `load()` returns the trained Components (fp32 preferred)."""
    spec = ctx.spec
    targets = export_targets(spec, ctx.paths)
    lora = spec.train.mode == "lora"
    full_model = family_for(spec.family).exports_full_model
    wanted = targets.wanted(lora, full_model)
    if all(p.exists() for p in wanted):
        ctx.emit(Message(level="info", text="The exported model files already exist."))
        return targets
    ctx.paths.trained_models.mkdir(parents=True, exist_ok=True)
    parts: Any = load()
    _check_space(parts, ctx.paths.trained_models, full_model)

    def step(label: str) -> None:
        ctx.emit(Progress(stage="export", done=sum(1 for p in wanted if p.exists()), total=len(wanted), label=label))
        ctx.check_stop()

    if lora:
        write_lora_files(parts, targets, spec)
        step("LoRA files")
    if not full_model:
        _finish(ctx, targets, lora, step)
        return targets
    # full-model exports carry the LoRA folded into the weights
    parts.unet = merge_adapters(parts.unet)
    parts.text_encoder = merge_adapters(parts.text_encoder)
    if parts.text_encoder_2 is not None:
        parts.text_encoder_2 = merge_adapters(parts.text_encoder_2)
    if full_model and not targets.single_file.exists():
        write_single_file(parts, targets.single_file, spec)
        step(targets.single_file.name)
    if full_model and not targets.diffusers.exists():
        write_diffusers_folder(parts, targets.diffusers)
        step(targets.diffusers.name)
    _finish(ctx, targets, lora, step)
    return targets


def _finish(ctx: StageContext, targets: ExportTargets, lora: bool, step: Callable[[str], None]) -> None:
    atomic_write_text(targets.model_card, model_card(ctx.spec, targets, lora))
    step(targets.model_card.name)
    found = pickle_files(ctx.paths.trained_models)
    if found:
        raise StageError(f"Export wrote pickle files: {', '.join(p.name for p in found)}", "Report this as a bug.")


def run_export(ctx: StageContext) -> None:
    """Export the trained model (stage 'export')."""
    from ioncannon.engine.families import load_trained, trained_adapters

    if family_for(ctx.spec.family).exports_full_model:
        export_model(ctx, lambda: load_trained(ctx, dtype=torch.float32))
        return
    # LoRA-only exports (Flux) read the adapters alone, onto a skeleton of the model: FLUX.1's base weights would be
    # 24 GB to read and hold in host memory for files of a few hundred MB. The adapters are written in fp32, as trained.
    export_model(ctx, lambda: trained_adapters(ctx, torch.float32))
