"""The cache stage: VAE latents of every photo (and its mirror image) and class image, and the prompt embeddings."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ioncannon.engine.context import StageContext
from ioncannon.engine.families.base import scale_latents
from ioncannon.engine.weights.files import save_tensors
from ioncannon.job.errors import StageError
from ioncannon.job.events import Message, Progress
from ioncannon.job.fsio import StateFileError, read_json, write_json

CACHE_FORMAT = 2
TENSORS_FILE = "train_cache.safetensors"
KEY_FILE = "train_cache.json"
_ENCODE_BATCH = 8


@dataclass
class TrainCache:
    """What the training loop needs, already encoded: scaled-latent mean/std and the prompts' conditioning.

    The conditioning is whatever the model family conditions its denoiser on (SD 1.5: the text encoder's hidden
    states; SDXL: both towers' hidden states, the pooled embedding and the size/crop ids), kept per prompt
    with the token ids a run that trains the text encoders re-encodes every step.
    """

    instance_mean: torch.Tensor   # (2N, C, h, w): every photo, then its mirror image (scaled, and shifted for Flux)
    instance_std: torch.Tensor    # kept so a trainer can sample the posterior; ours trains on the mean
    class_mean: torch.Tensor      # (M, 4, h, w); M may be 0 without prior preservation
    class_std: torch.Tensor
    instance_cond: dict[str, torch.Tensor]   # name -> (1, ...)
    class_cond: dict[str, torch.Tensor]
    empty_cond: dict[str, torch.Tensor]      # unconditional, for previews with guidance
    instance_tokens: dict[str, torch.Tensor]  # tokenizer name -> (1, 77) ids
    class_tokens: dict[str, torch.Tensor]
    scaling_factor: float

    @property
    def instance_embeds(self) -> torch.Tensor:
        return self.instance_cond["hidden"]

    @property
    def class_embeds(self) -> torch.Tensor:
        return self.class_cond["hidden"]

    @property
    def empty_embeds(self) -> torch.Tensor:
        return self.empty_cond["hidden"]

    @property
    def instance_ids(self) -> torch.Tensor:
        return self.instance_tokens["ids"]

    @property
    def class_ids(self) -> torch.Tensor:
        return self.class_tokens["ids"]


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith("."))


def _file_key(p: Path) -> list[Any]:
    st = p.stat()
    return [p.name, st.st_size, st.st_mtime_ns]


def cache_key(ctx: StageContext, instance: list[Path], klass: list[Path]) -> str:
    """Changes whenever anything that shapes the cached tensors changes: model, resolution, photos, prompts."""
    spec = ctx.spec
    body = {
        "format": CACHE_FORMAT, "family": spec.family, "base_model": spec.base_model, "resolution": spec.resolution,
        "instance_prompt": spec.instance_prompt, "class_prompt": spec.class_prompt,
        "instance": [_file_key(p) for p in instance], "class": [_file_key(p) for p in klass],
        "prior": spec.train.prior_preservation,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _inputs(ctx: StageContext) -> tuple[list[Path], list[Path]]:
    spec = ctx.spec
    instance = _images(ctx.paths.training_samples(spec.class_name))
    if not instance:
        raise StageError(
            f"No training photos in {ctx.paths.training_samples(spec.class_name)}.",
            "Run the photo check step again; it writes the normalised copies there.",
        )
    klass: list[Path] = []
    if spec.train.prior_preservation:
        klass = _images(ctx.paths.class_images(spec.class_name))[: spec.train.num_class_images]
        if not klass:
            raise StageError(
                f"No class images in {ctx.paths.class_images(spec.class_name)} for prior preservation.",
                "Resume the job so the class-image stage runs first, or turn prior preservation off.",
            )
    return instance, klass


def _load_pixels(path: Path, resolution: int) -> torch.Tensor:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.fit(im.convert("RGB"), (resolution, resolution), Image.Resampling.LANCZOS)
        arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1)


@torch.no_grad()
def _encode(vae: Any, paths: list[Path], resolution: int, flip: bool, device: torch.device, dtype: torch.dtype,
            tick: Callable[[int], None]) -> tuple[torch.Tensor, torch.Tensor]:
    means, stds = [], []
    for i in range(0, len(paths), _ENCODE_BATCH):
        chunk = paths[i:i + _ENCODE_BATCH]
        pixels = torch.stack([_load_pixels(p, resolution) for p in chunk])
        if flip:
            pixels = torch.flip(pixels, dims=[3])
        dist = vae.encode(pixels.to(device=device, dtype=dtype)).latent_dist
        means.append(dist.mean.float().cpu())
        stds.append(dist.std.float().cpu())
        tick(len(chunk))
    return torch.cat(means), torch.cat(stds)


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_cache(ctx: StageContext) -> TrainCache | None:
    """The cached tensors if they are current for this job, else None."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = ctx.paths.cache
    try:
        meta = read_json(folder / KEY_FILE)
        instance, klass = _inputs(ctx)
        if meta.get("key") != cache_key(ctx, instance, klass):
            return None
        t = load_file(str(folder / TENSORS_FILE))
        empty = torch.zeros((0, *t["instance_mean"].shape[1:]))
        return TrainCache(
            t["instance_mean"], t["instance_std"], t.get("class_mean", empty), t.get("class_std", empty),
            _prefixed(t, "instance.cond."), _prefixed(t, "class.cond."), _prefixed(t, "empty.cond."),
            _prefixed(t, "instance.tokens."), _prefixed(t, "class.tokens."), float(meta["scaling_factor"]),
        )
    except (StateFileError, OSError, SafetensorError, StageError, KeyError, TypeError, ValueError):
        return None  # missing, stale or damaged: the cache stage makes it again


def run_cache(ctx: StageContext, components: Any = None) -> None:
    """Encode photos (+ mirrored copies), class images and prompts once; skip when the cache is current."""
    instance, klass = _inputs(ctx)
    if load_cache(ctx) is not None:
        ctx.emit(Message("info", "Latent cache is up to date."))
        return
    from ioncannon.engine.families import family_for

    family = family_for(ctx.spec.family)
    loaded_here = components is None
    if components is None:
        components = family.load(ctx.spec.base_model, dtype=family.working_dtype(ctx.dtype))
    device, dtype = ctx.device, family.vae_dtype(ctx.dtype)
    vae = components.vae
    vae.to(device=device, dtype=dtype).eval()
    for _, text_encoder in components.text_encoders():
        text_encoder.to(device=device).eval()
    total = 2 * len(instance) + len(klass)
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        ctx.emit(Progress(stage="cache", done=done, total=total, label="encoding images"))

    res = ctx.spec.resolution
    m0, s0 = _encode(vae, instance, res, False, device, dtype, tick)
    ctx.check_stop()
    m1, s1 = _encode(vae, instance, res, True, device, dtype, tick)
    scale = float(vae.config.scaling_factor)
    tensors = {"instance_mean": scale_latents(vae, torch.cat([m0, m1])), "instance_std": torch.cat([s0, s1]) * scale}
    if klass:
        ctx.check_stop()
        cm, cs = _encode(vae, klass, res, False, device, dtype, tick)
        tensors.update(class_mean=scale_latents(vae, cm), class_std=cs * scale)
    spec = ctx.spec
    for which, prompt in (("instance", spec.instance_prompt), ("class", spec.class_prompt), ("empty", "")):
        cond = family.encode_prompts(components, [prompt], spec.resolution, device)
        tensors.update({f"{which}.cond.{k}": v.float().cpu() for k, v in cond.items()})
        if which != "empty":
            tensors.update({f"{which}.tokens.{k}": v for k, v in family.tokenize(components, [prompt]).items()})
    folder = ctx.paths.cache
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(folder / TENSORS_FILE, tensors)
    # the key goes last: a kill before this line leaves a cache that load_cache treats as stale
    write_json(folder / KEY_FILE, {"key": cache_key(ctx, instance, klass), "scaling_factor": scale,
                                   "instance_images": len(instance), "class_images": len(klass)})
    vae.to("cpu")
    for _, text_encoder in components.text_encoders():
        text_encoder.to("cpu")
    if loaded_here and ctx.spec.train.num_processes <= 1:
        ctx.hold(base_model_key(ctx), components)  # training in this process starts from these, not a second load


def base_model_key(ctx: StageContext) -> str:
    """Under which name the cache stage leaves the loaded base model for training."""
    return f"base-model:{ctx.spec.family}:{ctx.spec.base_model}:{ctx.dtype}"
