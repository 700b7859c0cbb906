"""The checks before anything starts, the same at both doors: each problem is one sentence saying what to do."""

from __future__ import annotations

from pathlib import Path

from ioncannon.job.families import detect_family, family_info, mismatch_message
from ioncannon.job.hub import login_problem
from ioncannon.job.paths import JobPaths
from ioncannon.job.plan.box import HardwareInfo
from ioncannon.job.prompts import PromptPackError, PromptStyle, load_pack, validate_styles
from ioncannon.job.spec import JobSpec
from ioncannon.job.validate import NAME_PATTERN
from ioncannon.job.workdir import overlap_problem

_TYPICAL_STYLES = 12  # the built-in pack's; an estimate of a pack not written yet


def looks_like_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or source.endswith(".safetensors")


def folder_problems(spec: JobSpec, workdir: str | Path | None) -> list[str]:
    """The photo folder exists, and the job's folders would not land inside it (it is never changed)."""
    photos = Path(spec.photos_dir).expanduser()
    if spec.photos_dir and not photos.is_dir():
        return [f"photos_dir {spec.photos_dir} does not exist or is not a folder: "
                "give the folder with the subject's photos."]
    if workdir is not None and photos.is_dir() and \
            Path(workdir).expanduser().resolve().is_relative_to(photos.resolve()):
        return [f"the work dir {workdir} lies inside the photo folder {spec.photos_dir}: "
                "pick a work dir outside it (--workdir DIR)."]
    if workdir is not None and photos.is_dir() and NAME_PATTERN.fullmatch(spec.name):
        overlap = overlap_problem(Path(workdir).expanduser() / spec.name, photos)
        if overlap:
            return [overlap]
    return []


def own_pack(spec: JobSpec, workdir: str | Path | None) -> bool:
    """Whether the spec's pack is the job's own copy, which the wizard writes just after the job is created."""
    pack = spec.generate.prompt_pack
    return bool(pack) and workdir is not None and \
        Path(pack) == JobPaths(Path(workdir).expanduser().resolve() / spec.name).prompt_pack_file


def pack_problems(spec: JobSpec, pack_follows: bool,
                  styles: tuple[PromptStyle, ...] | None = None) -> tuple[list[str], int]:
    """Problems of the prompt pack (its bounds: bytes, styles, prompt length; keywords, tokens, seeds), and how many
    styles it turns on. `styles`: the pack the wizard will write once the job exists (else the file is read)."""
    pack = spec.generate.prompt_pack
    try:
        if styles is not None:
            validate_styles(list(styles), "the prompt pack")
            return [], sum(1 for s in styles if s.enabled)
        if pack_follows:
            return [], _TYPICAL_STYLES
        if pack and not Path(pack).expanduser().is_file():
            return [f"generate.prompt_pack {pack} is not a file: give a prompt pack .toml, or leave it empty."], \
                _TYPICAL_STYLES
        return [], sum(1 for s in load_pack(pack or None) if s.enabled)
    except PromptPackError as exc:
        return [f"generate.prompt_pack: {exc}"], _TYPICAL_STYLES


def model_problems(spec: JobSpec) -> list[str]:
    """The base model exists where it is a path, is of the job's family, and can be downloaded (gated: a login)."""
    model = spec.base_model.strip()
    if spec.demo:
        return []
    if looks_like_path(model) and not Path(model).expanduser().exists():
        return [f"base_model {model} does not exist: give a Hugging Face id, a diffusers folder or a "
                ".safetensors file."]
    found = detect_family(model)
    if found is not None and found != spec.family:
        return [mismatch_message(model, found, spec.family)]
    login = login_problem(model)
    return [login] if login else []


def choice_problems(spec: JobSpec) -> list[str]:
    """Answers that are valid alone but not together."""
    problems = []
    info = family_info(spec.family)
    # a CPU job runs a tiny test model, whose size is its own
    if not spec.demo and spec.device != "cpu" and spec.resolution not in info.resolutions:
        sizes = " or ".join(str(r) for r in info.resolutions)
        problems.append(f"resolution {spec.resolution} is not a size {info.label} trains at: write {sizes}.")
    if spec.budget_money is not None and spec.hourly_price is None:
        problems.append("a budget in dollars (budget_money) needs the price per hour (hourly_price): give the price, "
                        "or cap the time instead (budget_minutes).")
    return problems


def gpu_problems(spec: JobSpec, box: HardwareInfo) -> list[str]:
    if spec.device != "cpu" and box.best_gpu is None:
        return ["no CUDA GPU is visible (check `nvidia-smi`). To run on the CPU anyway (only sensible for tiny test "
                'models), set device = "cpu" in the job file; to see the product, try `ioncannon --demo`.']
    return []


def door_problems(spec: JobSpec, workdir: str | Path | None, pack_follows: bool = False,
                  styles: tuple[PromptStyle, ...] | None = None) -> tuple[list[str], int]:
    """Every check of a built spec beyond its fields' own, and the pack's enabled styles (for the estimate)."""
    pack, enabled = pack_problems(spec, pack_follows or own_pack(spec, workdir), styles)
    return [*folder_problems(spec, workdir), *pack, *choice_problems(spec), *model_problems(spec)], enabled
