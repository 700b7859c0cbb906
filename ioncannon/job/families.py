"""Model families (SD 1.5, SDXL, Flux.1): what the wizard and the plans need to know, and recognising one on disk."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from ioncannon.job.plans import BaseWeights, GeneratePlan, Mode, Optimizer

FAMILY_NAMES: tuple[str, ...] = ("sd15", "sdxl", "flux")
DEFAULT_FAMILY = "sd15"  # runs on any card the product supports; job.json files from before families read as it
PREFERRED_FAMILY = "sdxl"  # taken instead wherever a plan of it fits the card


@dataclass(frozen=True)
class PlanProfile:
    """One memory plan of a family: the levers it pulls and what it was measured (or estimated) to need."""

    key: str
    label: str
    mode: Mode
    optimizer: Optimizer    # adamw = fp32 moments; adamw_bf16 = bf16 moments
    checkpointing: bool
    peak_gib: float         # training peak at the family's default resolution, batch 1 + 1 class image
    text_extra_gib: float   # added when the text encoder(s) are trained too
    h100_steps_per_s: float
    measured: bool = True   # False: an estimate until the GPU bench has run this plan
    base_weights: BaseWeights = "plain"  # LoRA plans: the frozen denoiser as `precision` (plain) or stored in fp8


@dataclass(frozen=True)
class CompileOption:
    """One way to compile a family's sampler, as measured on an H100 at the family's default batch and resolution."""

    scope: str                    # "blocks" (the denoiser's repeated blocks one by one) or "model" (the whole denoiser)
    images_per_s: float           # once compiled
    cold_s: float                 # compiling on an empty kernel cache
    warm_s: float | None = None   # with the kernels cached by an earlier job (None: not measured, the cold time holds)


@dataclass(frozen=True)
class SamplerSpeeds:
    """How fast a family's sampler draws eagerly and compiled: the drawing stages compile only what makes a run
    quicker, start-up included. A compile not measured on the card is not listed, so it is never chosen."""

    eager_images_per_s: float
    compiled: tuple[CompileOption, ...] = ()

    def quickest(self, images: int, cache_warm: bool) -> str:
        """"" (eager), "blocks" or "model": whichever draws `images` soonest, compile included."""
        best, best_s = "", images / self.eager_images_per_s
        for option in self.compiled:
            start = option.warm_s if cache_warm and option.warm_s is not None else option.cold_s
            total = start + images / option.images_per_s
            if total < best_s:
                best, best_s = option.scope, total
        return best


@dataclass(frozen=True)
class FamilyInfo:
    """What a family is, in the terms the wizard shows and the plans use."""

    name: str
    label: str
    summary: str                 # one line for the family choice
    default_model: str           # hub id
    default_resolution: int
    resolutions: tuple[int, ...]
    lora_only: bool
    prior_preservation: bool
    prior_why: str
    licence: str
    min_vram_gib: float          # the smallest card any plan fits
    profiles: tuple[PlanProfile, ...]  # fastest first within a mode; step-down walks them
    generate: GeneratePlan
    full_lr: float = 2e-6
    lora_lr: float = 1e-4
    h100_images_per_s: float = 6.0  # the prompt pack with its default sampler, for time estimates
    sampler_speeds: SamplerSpeeds = SamplerSpeeds(6.0)   # what compiling the sampler buys (the generate stage)
    text_encoders_trainable: bool = True  # False: the text towers are only ever run once, to cache the prompts
    notice: str = ""             # what the wizard must say before a job of this family starts (licence, login)
    own_sampler: str = ""        # a sampler the family always uses, whatever the plan names ("" = the plan's)
    file_holds_only: tuple[str, ...] = ()  # a single .safetensors file is only these parts (the rest: default_model)
    names_its_caches: bool = True  # the family's name goes into shared cache keys (SD 1.5's caches predate families)
    # disk sizes, for the planner's disk check: the denoiser's parameters (billions), the merged model's fp16 files
    # (single file or diffusers folder; 0: no merged model is exported) and a rank-16 LoRA's parameters (millions)
    denoiser_params_b: float = 0.86
    merged_model_gib: float = 2.0
    lora16_params_m: float = 3.2


_SD15_PROFILES: tuple[PlanProfile, ...] = (
    # measured on the H100 bench: SD1.5, 512 px, batch 1 + 1 class image
    PlanProfile("full-roomy", "Full fine-tune (fp32 optimizer states)", "full", "adamw", False, 11.7, 1.5, 23.5),
    PlanProfile("full-12gb", "Full fine-tune (12 GB plan: bf16 optimizer states)", "full", "adamw_bf16", False, 8.5,
                1.0, 24.6),
    PlanProfile("full-10gb", "Full fine-tune (10 GB plan: + gradient checkpointing)", "full", "adamw_bf16", True, 7.2,
                1.0, 20.6),
    PlanProfile("lora", "LoRA", "lora", "adamw", False, 4.0, 0.4, 27.9),
    PlanProfile("lora-8gb", "LoRA (8 GB plan: + gradient checkpointing)", "lora", "adamw", True, 2.4, 0.4, 20.9),
)

# SDXL at 1024 px: a 2.57 B-parameter UNet. Full fine-tunes hold bf16 weights and grads plus two moments
# (2.57 B x (2 + 2 + 4 + 4) bytes = 31 GB with fp32 moments, 21 GB with bf16) before activations, so they need
# a 40-80 GB card (estimated, not yet measured); LoRA keeps only the frozen bf16 UNet (5.1 GB) and activations.
# LoRA rows: bench/sdxl_speed.py on an H200 (6.58 and 4.80 steps/s, peak allocated 20.2 and 6.5 GiB), / 1.05.
_SDXL_PROFILES: tuple[PlanProfile, ...] = (
    PlanProfile("full-roomy", "Full UNet fine-tune (fp32 optimizer states)", "full", "adamw", False, 52.0, 3.0, 3.0,
                measured=False),
    PlanProfile("full-40gb", "Full UNet fine-tune (40 GB plan: bf16 states + gradient checkpointing)", "full",
                "adamw_bf16", True, 30.0, 3.0, 2.2, measured=False),
    PlanProfile("lora", "LoRA (24 GB plan)", "lora", "adamw", False, 20.2, 1.5, 6.3),
    PlanProfile("lora-12gb", "LoRA (12 GB plan: + gradient checkpointing)", "lora", "adamw", True, 6.5, 1.0, 4.6),
)

# FLUX.1-dev at 1024 px, LoRA rank 16 on a 11.9 B-parameter transformer: its bf16 weights alone are 22.2 GiB, so
# 24 GB cards store the frozen weights in fp8 (11.1 GiB) and recompute activations (gradient checkpointing).
# Measured on an H100 80GB (bench/flux_speed.py and bench/gpu_smoke.py, torch 2.11, random weights of the real
# shapes, batch 1, peak allocated): roomy 1.344 steps/s at 68.0 GiB and 40 GB plan 1.116 at 29.9 (2026-12-07,
# cuDNN attention off); 24 GB plan 0.898 at 15.04 (2026-12-08; 0.968 on an H200). Its reserved peak on the 80 GB
# card was 22.1 GiB: the allocator keeps what it may, so a 24 GB card is not yet proven (bench/gpu_smoke.py
# --card-gib 24 runs the plan inside that much).
_FLUX_PROFILES: tuple[PlanProfile, ...] = (
    PlanProfile("lora", "LoRA (bf16 base weights)", "lora", "adamw", False, 68.0, 0.0, 1.34),
    PlanProfile("lora-40gb", "LoRA (40 GB plan: bf16 base + gradient checkpointing)", "lora", "adamw", True, 29.9,
                0.0, 1.12),
    PlanProfile("lora-24gb", "LoRA (24 GB plan: fp8 base weights + gradient checkpointing)", "lora", "adamw", True,
                15.1, 0.0, 0.9, base_weights="fp8"),
)

FAMILIES: dict[str, FamilyInfo] = {
    "sd15": FamilyInfo(
        name="sd15", label="SD 1.5",
        summary="Stable Diffusion 1.5: fastest, 512 px, trains on 8 GB cards",
        default_model="stable-diffusion-v1-5/stable-diffusion-v1-5",
        default_resolution=512, resolutions=(512,), lora_only=False, prior_preservation=True,
        prior_why="a full fine-tune at lr 2e-6 drifts the whole class towards the subject without class images",
        licence="CreativeML Open RAIL-M: commercial use allowed under its use restrictions",
        min_vram_gib=8.0, profiles=_SD15_PROFILES, generate=GeneratePlan(), names_its_caches=False,
        # bench/generate_speed.py on an H100, 512 px, batch 16, torch 2.11 (the warm whole-UNet compile on an H200)
        sampler_speeds=SamplerSpeeds(5.2, (CompileOption("blocks", 7.3, 32.0),
                                           CompileOption("model", 8.5, 68.0, warm_s=14.0))),
    ),
    "sdxl": FamilyInfo(
        name="sdxl", label="SDXL",
        summary="Stable Diffusion XL: better likeness and detail, 1024 px, LoRA on 12-24 GB cards",
        default_model="stabilityai/stable-diffusion-xl-base-1.0",
        default_resolution=1024, resolutions=(1024, 768), lora_only=False, prior_preservation=True,
        prior_why="keeps '<class>' meaning any member of the class, so other faces do not turn into the subject",
        licence="CreativeML Open RAIL++-M: commercial use allowed under its use restrictions",
        min_vram_gib=12.0, profiles=_SDXL_PROFILES,
        # SDXL is trained for lower guidance than SD 1.5; 8 images a batch fit in ~20 GB at 1024 px
        generate=GeneratePlan(sampler="dpm", steps=30, guidance=6.0, batch_size=8),
        full_lr=1e-6, lora_lr=1e-4, h100_images_per_s=1.0,
        # bench/sdxl_speed.py on an H100, 1024 px, batch 8: eager 1.129 images/s; the whole UNet compiled 1.588
        # after 98 s on a cold cache (warm and regional compiles not measured yet)
        sampler_speeds=SamplerSpeeds(1.129, (CompileOption("model", 1.588, 98.0),)),
        denoiser_params_b=2.57, merged_model_gib=6.5, lora16_params_m=23.0,
    ),
    "flux": FamilyInfo(
        name="flux", label="Flux.1",
        summary="FLUX.1-dev: the best likeness, 1024 px, LoRA only, 24 GB and up",
        default_model="black-forest-labs/FLUX.1-dev",
        default_resolution=1024, resolutions=(1024, 512), lora_only=True, prior_preservation=False,
        prior_why="a LoRA on a guidance-distilled model barely drifts the class, and class images cost minutes",
        licence="FLUX.1 [dev] Non-Commercial License: outputs may be used commercially, the weights may not",
        min_vram_gib=24.0, profiles=_FLUX_PROFILES,
        # the family module brings its own flow-matching sampler (FlowMatch Euler, guidance as an input, no
        # negative prompt); these are its step count and guidance
        generate=GeneratePlan(steps=28, guidance=3.5, batch_size=4),
        lora_lr=1e-4, h100_images_per_s=0.19, text_encoders_trainable=False, own_sampler="FlowMatch Euler",
        # bench/flux_speed.py on an H100, 1024 px, batch 4: eager 0.172 images/s; its compiled sampler not measured
        sampler_speeds=SamplerSpeeds(0.172),
        file_holds_only=("transformer",),
        denoiser_params_b=11.9, merged_model_gib=0.0, lora16_params_m=18.0,
        notice=("FLUX.1-dev weights are under a non-commercial licence and gated on the Hugging Face Hub: accept it "
                "at huggingface.co/black-forest-labs/FLUX.1-dev and log in (`hf auth login`) before starting."),
    ),
}


class UnknownFamily(ValueError):
    """A family name this version does not know."""


def family_info(name: str) -> FamilyInfo:
    """The family called `name`; an unknown name raises UnknownFamily with the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownFamily(f"unknown model family {name!r}; choose one of {', '.join(FAMILY_NAMES)}") from None


def offered_families() -> list[FamilyInfo]:
    """Families the wizard offers: those with at least one training plan."""
    return [f for f in FAMILIES.values() if f.profiles]


# --------------------------------------------------------------------------- recognising a model on disk

# A key only that family's single-file checkpoints carry (with or without the LDM 'model.diffusion_model.' prefix).
_FILE_MARKERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("flux", ("double_blocks.0.img_attn.qkv.weight", "model.diffusion_model.double_blocks.0.img_attn.qkv.weight")),
    ("sdxl", ("conditioner.embedders.1.model.positional_embedding",
              "model.diffusion_model.label_emb.0.0.weight")),
    ("sd15", ("cond_stage_model.transformer.text_model.embeddings.position_embedding.weight",
              "cond_stage_model.transformer.embeddings.position_embedding.weight")),
)
_PIPELINE_CLASSES = {"StableDiffusionPipeline": "sd15", "StableDiffusionXLPipeline": "sdxl", "FluxPipeline": "flux"}
_MAX_HEADER = 100 * 2**20


def safetensors_keys(path: str | Path) -> list[str]:
    """The tensor names in a .safetensors file, read from its JSON header alone (no tensors are loaded)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{Path(path).name} is too short to be a safetensors file")
        (size,) = struct.unpack("<Q", head)
        if size > _MAX_HEADER:
            raise ValueError(f"{Path(path).name} does not look like a safetensors file")
        header = json.loads(f.read(size))
    return [k for k in header if k != "__metadata__"]


def family_of_keys(keys: list[str] | set[str]) -> str | None:
    present = set(keys)
    for name, markers in _FILE_MARKERS:
        if any(m in present for m in markers):
            return name
    return None


def detect_family(source: str) -> str | None:
    """The family of a local model (single .safetensors file or diffusers folder) or of a family's own hub model;
    None for another hub id or an unknown file."""
    named = next((f.name for f in FAMILIES.values() if source.strip().lower() == f.default_model.lower()), None)
    if named is not None:
        return named
    path = Path(source).expanduser()
    try:
        if path.is_file() and path.suffix == ".safetensors":
            return family_of_keys(safetensors_keys(path))
        if path.is_dir() and (path / "model_index.json").is_file():
            index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
            return _PIPELINE_CLASSES.get(str(index.get("_class_name", "")))
    except (OSError, ValueError, RecursionError):  # a hostile model_index.json is "unknown", never a crash
        return None
    return None


def mismatch_message(source: str, found: str, wanted: str) -> str:
    """One sentence for a base model of another family than the job's."""
    have, want = family_info(found).label, family_info(wanted).label
    return (f"{Path(source).name} is {_a(have)} {have} model but the job is set to {want}: pick {have} as the "
            f"model family or choose {_a(want)} {want} base model.")


def _a(label: str) -> str:
    return "an" if label[0] in "AEIOS" else "a"
