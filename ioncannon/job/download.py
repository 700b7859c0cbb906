"""The base model download in numbers: which hub files a family needs, their bytes, the time they take, the disk."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Variants each family loads: half-precision copies are half the bytes of the fp32 ones, and every plan computes in
# half precision anyway (FLUX.1 publishes bf16 weights without a variant name, so it just takes those).
PREFERRED_VARIANTS: Mapping[str, tuple[str, ...]] = {"sd15": ("fp16",), "sdxl": ("fp16",), "flux": ("bf16",)}
# Components no plan uses (SD 1.5's safety checker alone is 1.2 GB)
UNUSED_COMPONENTS: frozenset[str] = frozenset({"safety_checker", "image_encoder"})
# Weights in formats the loaders refuse (pickles can run code) or never read
_OTHER_WEIGHTS = re.compile(
    r"\.(bin|ckpt|pt|pth|msgpack|h5|onnx|onnx_data|pb|gguf|ot|tflite|mlmodel)$|\.bin\.index\.json$")
_SAFETENSORS = re.compile(r"^(?P<stem>[^.]+?)(?:\.(?P<variant>[a-z0-9_]+))?(?:-\d+-of-\d+)?\.safetensors$")
_SAFETENSORS_INDEX = re.compile(r"^(?P<stem>[^.]+)\.safetensors\.index(?:\.(?P<variant>[a-z0-9_]+))?\.json$")

# When nothing was measured yet: a rented box's download from the hub's CDN, conservatively (400 Mbit/s)
ASSUMED_BYTES_PER_S = 50e6


def source_kind(source: str) -> str:
    """'file' for a single checkpoint, 'folder' for a local diffusers folder, 'hub' for a hub id, 'missing' for a
    path that is not there."""
    p = Path(source).expanduser()
    if p.is_file():
        return "file"
    if p.is_dir():
        return "folder"
    if source.endswith((".safetensors", ".ckpt", ".pt", ".bin")) or source.startswith(("/", "./", "~")):
        return "missing"
    return "hub"


class FetchPlanError(ValueError):
    """The hub repository has no usable copy of a component; the message says what to do."""


@dataclass(frozen=True)
class HubFile:
    path: str
    size: int


@dataclass(frozen=True)
class FetchPlan:
    """The files of one hub model that a job downloads, at one commit."""

    repo: str
    revision: str                     # the commit the files are fetched at
    files: tuple[HubFile, ...]
    variant: str | None = None        # the weights' variant name ("fp16"), None for plain files
    components: tuple[str, ...] = ()
    cached: frozenset[str] = field(default_factory=frozenset)  # paths already complete in the local cache

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def cached_bytes(self) -> int:
        return sum(f.size for f in self.files if f.path in self.cached)

    @property
    def bytes_to_fetch(self) -> int:
        return self.total_bytes - self.cached_bytes

    @property
    def complete(self) -> bool:
        return all(f.path in self.cached for f in self.files)


def needed_components(model_index: Mapping[str, object]) -> list[str]:
    """The pipeline's components that a job loads (from model_index.json), in its order."""
    return [name for name, value in model_index.items()
            if not name.startswith("_") and isinstance(value, list) and len(value) == 2 and None not in value
            and name not in UNUSED_COMPONENTS]


def weights_of(names: Sequence[str], variants: Sequence[str]) -> tuple[list[str], str | None]:
    """The safetensors files (and shard index) of one component folder: the first preferred variant, else plain."""
    by_variant: dict[str | None, list[str]] = {}
    for name in names:
        match = _SAFETENSORS.match(name) or _SAFETENSORS_INDEX.match(name)
        if match:
            by_variant.setdefault(match["variant"], []).append(name)
    for variant in variants:
        if variant in by_variant:
            return by_variant[variant], variant
    return by_variant.get(None, []), None


def select_files(repo: str, revision: str, files: Sequence[HubFile], model_index: Mapping[str, object],
                 family: str, weights_elsewhere: Sequence[str] = ()) -> FetchPlan:
    """What to download of a diffusers repository: model_index.json, and per component its configs, tokenizer
    files and safetensors weights in the family's preferred variant; no other weight formats, no root checkpoints.

    `weights_elsewhere`: components whose weights come from a local file (their config still comes from here).
    """
    components = needed_components(model_index)
    by_folder: dict[str, list[HubFile]] = {}
    for f in files:
        folder, _, name = f.path.rpartition("/")
        if folder:
            by_folder.setdefault(folder, []).append(f)
    names_of = {c: [f.path.rpartition("/")[2] for f in by_folder.get(c, [])] for c in components}
    weighted = [c for c in components if c not in weights_elsewhere
                and any(_SAFETENSORS.match(n) or _OTHER_WEIGHTS.search(n) for n in names_of[c])]
    # one variant for every component or none: the pipeline loads all of them with one variant name
    variant = next((v for v in PREFERRED_VARIANTS.get(family, ())
                    if all(weights_of(names_of[c], (v,))[1] == v for c in weighted)), None)
    chosen: list[HubFile] = [f for f in files if f.path == "model_index.json"]
    for component in components:
        keep: set[str] = set()
        if component in weighted:
            weights, _ = weights_of(names_of[component], (variant,) if variant else ())
            if not any(_SAFETENSORS.match(n) for n in weights):
                raise FetchPlanError(
                    f"{repo} has no .safetensors weights for its {component} (only .safetensors are loaded: "
                    "pickled weights can run code); pick another model or a local folder.")
            keep = set(weights)
        for f, name in zip(by_folder.get(component, []), names_of[component], strict=True):
            weight_like = _SAFETENSORS.match(name) or _SAFETENSORS_INDEX.match(name) or _OTHER_WEIGHTS.search(name)
            if name in keep or not weight_like:
                chosen.append(f)
    return FetchPlan(repo=repo, revision=revision, files=tuple(chosen), variant=variant,
                     components=tuple(components))


# --------------------------------------------------------------------------- numbers a person reads


def size_text(n: float) -> str:
    """Bytes as `2.1 GB`, `340 MB`, `12 kB` (decimal units, as the hub and download tools show them)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}" if n < 100 * scale else f"{n / scale:.0f} {unit}"
    return f"{int(n)} B"


def download_seconds(nbytes: int, bytes_per_s: float | None) -> float:
    """How long `nbytes` take at the measured rate, else at the stated assumption."""
    rate = bytes_per_s if bytes_per_s and bytes_per_s > 0 else ASSUMED_BYTES_PER_S
    return nbytes / rate if nbytes > 0 else 0.0


def download_line(plan: FetchPlan, bytes_per_s: float | None) -> str:
    """One line for the plan: what will be downloaded and roughly how long it takes at this box's speed."""
    from ioncannon.job.units import duration

    if plan.complete:
        return f"none: complete in the model cache ({size_text(plan.total_bytes)})"
    rate = (f"{size_text(bytes_per_s)}/s measured" if bytes_per_s
            else f"an assumed {size_text(ASSUMED_BYTES_PER_S)}/s")
    cached = f", {size_text(plan.cached_bytes)} already cached" if plan.cached_bytes >= 1e6 else ""
    return (f"{size_text(plan.bytes_to_fetch)} from the hub{cached}, "
            f"{duration(download_seconds(plan.bytes_to_fetch, bytes_per_s), 'rough')} at {rate}")


# --------------------------------------------------------------------------- where it goes, and whether it fits


def hub_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where huggingface_hub keeps downloaded models: HF_HUB_CACHE, else HF_HOME/hub, else the user cache."""
    env = os.environ if env is None else env
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    cache = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return cache / "huggingface" / "hub"


# Parameters by family, for the sizes a job writes (checkpoints kept two deep plus one being written, the
# exports, the images): the denoiser, the text encoders, the VAE, and a rank-16 LoRA on the denoiser
_PARAMS: Mapping[str, tuple[float, float, float, float]] = {
    "sd15": (0.86e9, 0.123e9, 0.084e9, 0.006e9),
    "sdxl": (2.57e9, 0.818e9, 0.084e9, 0.023e9),
    "flux": (11.9e9, 4.88e9, 0.084e9, 0.056e9),
}


def job_output_bytes(family: str, mode: str, optimizer: str, train_text_encoder: bool, images: int,
                     resolution: int, exports_full_model: bool = True, checkpoints: int = 3,
                     weight_bytes: int = 4, scale: float = 1.0) -> int:
    """Roughly what a job writes: its checkpoints (trained weights and Adam moments; at most three on disk, two
    kept and one being written), its fp16 exports and its images. `scale` is the base model's size against the
    family's published one (a local model can be smaller)."""
    denoiser, text, vae, lora = (scale * n for n in _PARAMS.get(family, _PARAMS["sd15"]))
    moments = 4 if optimizer == "adamw_bf16" else 8
    trained = lora if mode == "lora" else denoiser + (text if train_text_encoder else 0.0)
    saved = min(max(checkpoints, 0), 3) * trained * (weight_bytes + moments)
    exports = 2 * 2 * trained if mode == "lora" or not exports_full_model else 2 * 2 * (denoiser + text + vae)
    image_bytes = images * (resolution / 512) ** 2 * 0.5e6
    return int(saved + exports + image_bytes)


def published_params(family: str) -> float:
    """Parameters of the family's published model, all components together."""
    return sum(_PARAMS.get(family, _PARAMS["sd15"])[:3])


def disk_problem(*, download: int, download_dir: Path, download_free: int, job: int, job_dir: Path, job_free: int,
                 same_disk: bool) -> str | None:
    """One sentence when the download and the job's own files do not fit the free space, with the numbers."""
    margin = 1e9  # logs, state, temporary files: never run a disk to its last byte
    how = (f"free some space, or point the model cache at a larger disk (export HF_HOME=/workspace/huggingface, "
           f"it is {download_dir} now) and start again.")
    if same_disk:
        need = download + job + margin
        if need > download_free:
            return (f"Not enough disk: {size_text(download_free)} free where {download_dir} and {job_dir} live, but "
                    f"the job needs about {size_text(need)} ({size_text(download)} base model download + "
                    f"{size_text(job)} of checkpoints, exports and images + 1 GB spare): {how}")
        return None
    if download and download + margin > download_free:
        return (f"Not enough disk for the base model: {size_text(download_free)} free in {download_dir}, "
                f"{size_text(download + margin)} needed ({size_text(download)} + 1 GB spare): {how}")
    if job + margin > job_free:
        return (f"Not enough disk for the job: {size_text(job_free)} free in {job_dir}, about "
                f"{size_text(job + margin)} needed for checkpoints, exports and images: free some space or use "
                "--workdir on a larger disk.")
    return None


def rate_of(samples: Sequence[tuple[float, int]]) -> float | None:
    """Bytes per second over (time, bytes so far) samples, from the first to the last; None before two samples."""
    if len(samples) < 2:
        return None
    (t0, b0), (t1, b1) = samples[0], samples[-1]
    if t1 <= t0 or b1 <= b0:
        return None
    rate = (b1 - b0) / (t1 - t0)
    return rate if math.isfinite(rate) else None


_RATE_FILE = "download_rate.json"


def record_rate(cache: Path, bytes_per_s: float) -> None:
    """Keep the download rate a fetch measured on this box, for the next estimate."""
    from ioncannon.job.fsio import write_json

    try:
        cache.mkdir(parents=True, exist_ok=True)
        write_json(cache / _RATE_FILE, {"bytes_per_s": float(bytes_per_s)})
    except OSError:
        pass  # an estimate's input, never worth failing a download over


def recorded_rate(cache: Path) -> float | None:
    """The download rate measured by this box's last fetch; None before any."""
    from ioncannon.job.fsio import StateFileError, read_json

    try:
        value = read_json(cache / _RATE_FILE).get("bytes_per_s")
    except StateFileError:
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None
