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
from ioncannon.engine.weights.files import save_tensors
from ioncannon.job.errors import StageError
from ioncannon.job.events import Message, Progress
from ioncannon.job.fsio import StateFileError, read_json, write_json

CACHE_FORMAT = 1
TENSORS_FILE = "train_cache.safetensors"
KEY_FILE = "train_cache.json"
_ENCODE_BATCH = 8


@dataclass
class TrainCache:
    """What the training loop needs, already encoded: scaled-latent mean/std and prompt embeddings."""

    instance_mean: torch.Tensor   # (2N, 4, h, w): every photo, then its mirror image
    instance_std: torch.Tensor    # kept so a trainer can sample the posterior; ours trains on the mean
    class_mean: torch.Tensor      # (M, 4, h, w); M may be 0 without prior preservation
    class_std: torch.Tensor
    instance_embeds: torch.Tensor  # (1, 77, d)
    class_embeds: torch.Tensor
    empty_embeds: torch.Tensor     # unconditional, for previews with guidance
    instance_ids: torch.Tensor     # (1, 77) token ids, for runs that train the text encoder
    class_ids: torch.Tensor
    scaling_factor: float


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
        "format": CACHE_FORMAT, "base_model": spec.base_model, "resolution": spec.resolution,
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


@torch.no_grad()
def _embed(components: Any, prompt: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    tok = components.tokenizer
    ids = tok(prompt, padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids
    embeds = components.text_encoder(ids.to(device))[0]
    return embeds.float().cpu(), ids


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
            t["instance_embeds"], t["class_embeds"], t["empty_embeds"], t["instance_ids"], t["class_ids"],
            float(meta["scaling_factor"]),
        )
    except (StateFileError, OSError, SafetensorError, StageError, KeyError, TypeError, ValueError):
        return None  # missing, stale or damaged: the cache stage makes it again


def run_cache(ctx: StageContext, components: Any = None) -> None:
    """Encode photos (+ mirrored copies), class images and prompts once; skip when the cache is current."""
    instance, klass = _inputs(ctx)
    if load_cache(ctx) is not None:
        ctx.emit(Message("info", "Latent cache is up to date."))
        return
    if components is None:
        from ioncannon.engine.models.load import load_components

        components = load_components(ctx.spec.base_model)
    device, dtype = ctx.device, ctx.dtype
    vae, text_encoder = components.vae, components.text_encoder
    vae.to(device=device, dtype=dtype).eval()
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
    tensors = {"instance_mean": torch.cat([m0, m1]) * scale, "instance_std": torch.cat([s0, s1]) * scale}
    if klass:
        ctx.check_stop()
        cm, cs = _encode(vae, klass, res, False, device, dtype, tick)
        tensors.update(class_mean=cm * scale, class_std=cs * scale)
    spec = ctx.spec
    tensors["instance_embeds"], tensors["instance_ids"] = _embed(components, spec.instance_prompt, device)
    tensors["class_embeds"], tensors["class_ids"] = _embed(components, spec.class_prompt, device)
    tensors["empty_embeds"], _ = _embed(components, "", device)
    folder = ctx.paths.cache
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(folder / TENSORS_FILE, tensors)
    # the key goes last: a kill before this line leaves a cache that load_cache treats as stale
    write_json(folder / KEY_FILE, {"key": cache_key(ctx, instance, klass), "scaling_factor": scale,
                                   "instance_images": len(instance), "class_images": len(klass)})
    vae.to("cpu")
    text_encoder.to("cpu")
