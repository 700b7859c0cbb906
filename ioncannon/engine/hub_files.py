"""The base model on the hub and in its cache: the file list and sizes, what is complete here, and the door check."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ioncannon.job.download import (
    FetchPlan,
    FetchPlanError,
    HubFile,
    disk_problem,
    download_line,
    download_seconds,
    hub_cache_dir,
    job_output_bytes,
    needed_components,
    published_params,
    select_files,
    size_text,
    source_kind,
    weights_of,
)
from ioncannon.job.families import family_info
from ioncannon.job.fsio import free_bytes
from ioncannon.job.hub import login_problem
from ioncannon.job.printable import printable
from ioncannon.job.spec import JobSpec

# A hub that answers nothing within this many seconds is treated as unreachable (the wizard must never hang on it)
HUB_TIMEOUT_S = 10.0


class HubProblem(Exception):
    """The base model can't be had from the hub; the message is one sentence saying what to do."""


@dataclass(frozen=True)
class ModelSource:
    """Where a job's base model comes from: the hub repository to fetch (if any) and what of it a local file covers."""

    kind: str                            # hub | folder | file | missing
    repo: str = ""                       # the hub repository to fetch from ("" when nothing comes from the hub)
    weights_elsewhere: tuple[str, ...] = ()


def model_source(source: str, family: str) -> ModelSource:
    """What of `source` comes from the hub: all of a hub id, nothing of a local folder, a Flux file's companions."""
    kind = source_kind(source)
    if kind == "hub":
        return ModelSource("hub", source.strip())
    info = family_info(family)
    if kind == "file" and info.file_holds_only:  # Flux: the file is the transformer; the rest comes from FLUX.1-dev
        return ModelSource("file", info.default_model, info.file_holds_only)
    return ModelSource(kind)


def _hub() -> Any:
    import huggingface_hub

    return huggingface_hub


def storage_folder(repo: str) -> Path:
    """The repository's folder in huggingface_hub's cache (HF_HUB_CACHE or HF_HOME/hub)."""
    hub = _hub()
    from huggingface_hub.file_download import repo_folder_name

    return Path(hub.constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type="model")


def explain(repo: str, exc: BaseException) -> str:
    """One sentence for a hub error: offline, timed out, a login or licence, not found, or the hub's own words."""
    from huggingface_hub import errors

    repo = printable(repo, 200)

    name = type(exc).__name__
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, errors.GatedRepoError) or status == 403:
        return (f"{repo} is gated on the Hugging Face Hub and this login may not use it: accept its licence at "
                f"https://huggingface.co/{repo} with the account whose token is here (`hf auth login` or "
                "HF_TOKEN), then resume.")
    if status == 401:
        return (f"The Hugging Face Hub refused {repo} without a valid login: run `hf auth login` (or export "
                "HF_TOKEN=...), check the id's spelling, then resume.")
    if isinstance(exc, errors.RepositoryNotFoundError) or status == 404:
        return f"{repo} was not found on the Hugging Face Hub: check the spelling of the model id, then resume."
    if isinstance(exc, errors.OfflineModeIsEnabled) or "Offline" in name:
        return (f"{repo} is not complete in the model cache and HF_HUB_OFFLINE is set: unset it, or point the job "
                "at a local diffusers folder or .safetensors file.")
    if "Timeout" in name or isinstance(exc, TimeoutError):
        return (f"The Hugging Face Hub did not answer within {HUB_TIMEOUT_S:.0f} s while getting {repo}: check this "
                "box's internet (or HF_ENDPOINT), then resume; finished files are kept.")
    if "Connect" in name or "Network" in name or isinstance(exc, OSError):
        return (f"No connection to the Hugging Face Hub for {repo}: check this box's internet (or HF_ENDPOINT), "
                "or point the job at a local diffusers folder or .safetensors file; finished files are kept.")
    text = printable(" ".join(str(exc).split()), 200)
    return f"The Hugging Face Hub answered an error for {repo} ({name}: {text}): try again later, then resume."


def is_hub_error(exc: BaseException) -> bool:
    """Whether `exc` came from the hub or the network (said in one sentence), not from a bug (a traceback)."""
    import httpx2
    from huggingface_hub import errors

    return isinstance(exc, (errors.HfHubHTTPError, errors.OfflineModeIsEnabled, errors.LocalEntryNotFoundError,
                            httpx2.HTTPError, OSError, TimeoutError))


def _model_index(repo: str) -> dict[str, Any]:
    """model_index.json of `repo`, fetched into the cache (this also records which commit `main` is)."""
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(repo, "model_index.json", etag_timeout=HUB_TIMEOUT_S)
    index = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(index, dict):
        raise HubProblem(f"{repo}'s model_index.json is not a diffusers index: pick a diffusers model.")
    return index


def plan_from_hub(source: ModelSource, family: str) -> FetchPlan:
    """Ask the hub for the repository's files and sizes and pick what the family needs (HubProblem otherwise)."""
    repo = source.repo
    problem = login_problem(repo)
    if problem:
        raise HubProblem(problem)
    hub = _hub()
    try:
        info = hub.HfApi().model_info(repo, files_metadata=True, timeout=HUB_TIMEOUT_S)
        files = [HubFile(s.rfilename, int(s.size or 0)) for s in info.siblings or []]
        if not any(f.path == "model_index.json" for f in files):
            raise HubProblem(f"{repo} is not a diffusers model (it has no model_index.json): pick a diffusers "
                             "model id, a local diffusers folder or a .safetensors file.")
        index = _model_index(repo)
    except HubProblem:
        raise
    except Exception as exc:  # the hub's errors come as many types; each gets its sentence
        if not is_hub_error(exc):
            raise
        raise HubProblem(explain(repo, exc)) from exc
    try:
        plan = select_files(repo, str(info.sha), files, index, family, source.weights_elsewhere)
    except FetchPlanError as exc:
        raise HubProblem(str(exc)) from exc
    snapshot = storage_folder(repo) / "snapshots" / plan.revision
    cached = frozenset(f.path for f in plan.files if (snapshot / f.path).exists())
    return FetchPlan(plan.repo, plan.revision, plan.files, plan.variant, plan.components, cached)


# --------------------------------------------------------------------------- the cache, without the network


def cached_snapshot(repo: str) -> Path | None:
    """The cached snapshot folder of `repo` at `main`, when its model_index.json is there."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, "model_index.json")
    return Path(found).parent if isinstance(found, str) else None


def _shards_present(folder: Path, index_file: Path) -> bool:
    try:
        weight_map = json.loads(index_file.read_text(encoding="utf-8")).get("weight_map", {})
    except (OSError, ValueError, AttributeError):
        return False
    return bool(weight_map) and all((folder / name).is_file() for name in set(weight_map.values()))


def snapshot_complete(folder: Path, weights_elsewhere: tuple[str, ...] = ()) -> bool:
    """Whether a cached snapshot holds every component a job loads: its config, and for a model its safetensors
    weights (every shard of a sharded one). Files appear in a snapshot only once completely downloaded."""
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(index, dict):
        return False
    for component in needed_components(index):
        sub = folder / component
        if not sub.is_dir() or not any(sub.iterdir()):
            return False
        if not (sub / "config.json").is_file() or component in weights_elsewhere:
            continue  # tokenizers, schedulers and feature extractors carry no weights
        indexes = list(sub.glob("*.safetensors.index*.json"))
        if indexes:
            if not any(_shards_present(sub, i) for i in indexes):
                return False
        elif not any(sub.glob("*.safetensors")):
            return False
    return True


def variant_of(folder: str | Path) -> str | None:
    """The weights variant a diffusers folder holds ("fp16") when its denoiser has only variant files, else None."""
    root = Path(folder)
    for denoiser in ("unet", "transformer"):
        sub = root / denoiser
        if sub.is_dir():
            names = [p.name for p in sub.iterdir()]
            weights, variant = weights_of(names, ("fp16", "bf16"))
            plain, _ = weights_of(names, ())
            return variant if weights and not plain else None
    return None


def local_model(source: str, family: str) -> str | None:
    """The cached snapshot folder a hub model loads from, when it is complete here; None otherwise."""
    where = model_source(source, family)
    if not where.repo:
        return None
    folder = cached_snapshot(where.repo)
    return str(folder) if folder is not None and snapshot_complete(folder, where.weights_elsewhere) else None


# --------------------------------------------------------------------------- the door check


@dataclass(frozen=True)
class Availability:
    """Can the base model be had, and what it costs to get: the plan's download line and the disk check use it."""

    kind: str                       # hub | folder | file
    plan: FetchPlan | None = None   # the files to fetch, when the hub answered
    cached: bool = False            # complete in the cache (whether or not the hub answered)
    problem: str | None = None      # one sentence when it can't be had

    @property
    def bytes_to_fetch(self) -> int:
        return 0 if self.cached or self.plan is None else self.plan.bytes_to_fetch

    def line(self, bytes_per_s: float | None) -> str:
        """What will be downloaded and roughly how long it takes at this box's speed (the plan's download line)."""
        if self.problem:
            return self.problem
        if self.cached:
            size = f" ({size_text(self.plan.total_bytes)})" if self.plan is not None else ""
            return f"none: the base model is complete in the model cache{size}"
        if self.plan is None:
            return f"none: the base model is a local {self.kind}"
        return download_line(self.plan, bytes_per_s)

    def seconds(self, bytes_per_s: float | None) -> float:
        return download_seconds(self.bytes_to_fetch, bytes_per_s)


def check_available(source: str, family: str) -> Availability:
    """Before a job exists: is the base model a local folder or file, complete in the cache, or on a hub that
    answers? Never raises and never waits longer than the hub timeout."""
    where = model_source(source, family)
    if where.kind == "missing":
        return Availability("missing", problem=f"Base model {source!r} does not exist: check the path, or give a "
                                               "Hugging Face id.")
    if not where.repo:
        return Availability(where.kind)
    complete = local_model(source, family) is not None
    try:
        plan = plan_from_hub(where, family)
    except HubProblem as exc:
        if complete:  # offline, or the hub is down: the cached copy serves
            return Availability(where.kind, cached=True)
        return Availability(where.kind, problem=str(exc))
    return Availability(where.kind, plan=plan, cached=plan.complete)


# --------------------------------------------------------------------------- the disk


def _free(path: Path) -> tuple[int, int]:
    """Free bytes where `path` is (or would be created) and that disk's device id."""
    probe = path.expanduser()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return free_bytes(probe), probe.stat().st_dev


def job_bytes(spec: JobSpec) -> int:
    """What the job itself will write (checkpoints, exports, images), from its plan."""
    from ioncannon.job.prompts import PromptPackError, load_pack

    plan, gen = spec.train, spec.generate
    try:
        styles = sum(1 for s in load_pack(gen.prompt_pack or None) if s.enabled)
    except (PromptPackError, OSError):
        styles = 12  # an unreadable pack fails later with its own message
    images = styles * gen.images_per_prompt + gen.bare_token_images
    images += plan.num_class_images if plan.prior_preservation else 0
    saves = plan.steps // plan.checkpoint_every if plan.checkpoint_every > 0 else 0
    local = local_params(spec.base_model)
    scale = min(1.0, local / published_params(spec.family)) if local else 1.0
    return job_output_bytes(spec.family, plan.mode, plan.optimizer, plan.train_text_encoder, images,
                            spec.resolution, exports_full_model=not family_info(spec.family).lora_only,
                            checkpoints=saves, weight_bytes=4 if plan.precision == "fp32" else 2, scale=scale)


def local_params(source: str) -> int:
    """Parameters in a local model folder's or file's .safetensors weights, read from their headers (no weights are
    loaded); 0 for a hub id or when nothing can be read."""
    from safetensors import safe_open

    path = Path(source).expanduser()
    files = [path] if path.is_file() else sorted(path.rglob("*.safetensors")) if path.is_dir() else []
    total = 0
    for f in files:
        if f.suffix != ".safetensors" or f.is_symlink():
            continue
        try:
            with safe_open(str(f), framework="numpy") as weights:
                for key in weights.keys():  # noqa: SIM118 - a safetensors handle is no dict
                    n = 1
                    for d in weights.get_slice(key).get_shape():
                        n *= d
                    total += n
        except Exception:  # noqa: BLE001 - an unreadable file: the estimate keeps the family's published size
            return 0
    return total


def disk_check(spec: JobSpec, job_root: Path, download: int) -> str | None:
    """One sentence when the model download (into the hub cache) and the job's files don't fit; None when they do."""
    cache = hub_cache_dir()
    cache_free, cache_dev = _free(cache)
    job_free, job_dev = _free(job_root)
    return disk_problem(download=download, download_dir=cache, download_free=cache_free, job=job_bytes(spec),
                        job_dir=job_root.parent, job_free=job_free, same_disk=cache_dev == job_dev)


def door_check(spec: JobSpec, workdir: Path) -> Availability:
    """Both doors ask this before a job exists: can the base model be had, and do it and the job fit the disk?"""
    found = check_available(spec.base_model, spec.family)
    if found.problem:
        return found
    try:
        problem = disk_check(spec, Path(workdir).expanduser() / spec.name, found.bytes_to_fetch)
    except OSError:
        problem = None  # a disk that can't be measured is checked again by the fetch stage
    return dataclasses.replace(found, problem=problem) if problem else found
