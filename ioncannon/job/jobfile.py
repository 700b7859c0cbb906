"""A job file someone wrote (JSON or TOML) read into a checked JobSpec; every mistake is one sentence."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path
from typing import Any

from ioncannon.job.errors import JobError
from ioncannon.job.families import FAMILIES
from ioncannon.job.fsio import too_deep
from ioncannon.job.limits import MAX_JOBFILE_BYTES
from ioncannon.job.spec import JobSpec
from ioncannon.job.validate import SpecError
from ioncannon.job.workdir import new_job_name

# A job file is a few dozen lines; anything bigger is the wrong file, and reading it would cost memory for nothing.

# What `ioncannon run --example` prints: every field a person is likely to set, each said in a comment.
EXAMPLE_JOBFILE = """\
# An ioncannon job file (TOML). Run it with:  ioncannon run job.toml
# Only photos_dir, identifier and class_name are needed; every other line may go.

photos_dir = "~/photos/rex"        # a folder of 8-20 photos of one subject; only read, never changed
identifier = "zwx"                 # a rare made-up word that will mean your subject
class_name = "dog"                 # what kind of thing it is: man, woman, person, dog, cat, or your own word
# name = "rex-first-try"           # the job's folder in the work dir (default: identifier and date)

family = "sd15"                    # sd15, sdxl or flux; sets the base model, resolution and prompt settings below
                                   # (flux: FLUX.1-dev, LoRA only, non-commercial licence, needs a hub login)
# base_model = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # a hub id, a diffusers folder or a .safetensors file
# resolution = 512                 # training size in pixels (SD 1.5: 512; SDXL: 1024 or 768; Flux: 1024 or 512)
# device = "auto"                  # auto, cuda, or cpu (cpu only makes sense with a tiny test model)

# hourly_price = 0.89              # what the box costs per hour, for the cost lines
# budget_minutes = 90              # stop (with a checkpoint) after this long ...
# budget_money = 20.0              # ... or once this many dollars are spent (needs hourly_price)

# excluded = ["IMG_0004.jpg"]      # photos to leave out
# crops = { "IMG_0007.jpg" = "top" }  # face, centre or top: how a photo's square is cut

# Leave [train] out and the plan that fits this machine's GPU is picked, as the wizard does
# (on device = "cpu", the tiny CPU plan). Give it to fix the recipe yourself:
# [train]
# mode = "lora"                    # full or lora
# steps = 800
# learning_rate = 1e-4
# prior_preservation = true        # train on class images too, so the class keeps its look (off for flux)
# num_class_images = 200           # prior-preservation images of the class, made by the base model

# [generate]
# images_per_prompt = 16           # per style of the prompt pack
# steps = 25                       # sampler steps per image
# guidance = 7.0
# prompt_pack = "my_pack.toml"     # your own styles (default: the built-in pack)
"""


def _read_text(path: Path) -> str:
    try:
        # O_NONBLOCK: a FIFO given as the job file must not hang the command
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as exc:
        raise JobError(f"job file {path} does not exist: check the path.") from exc
    except OSError as exc:
        raise JobError(f"job file {path} can't be opened ({exc.strerror}): check the path and its permissions.") \
            from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise JobError(f"job file {path} is not a regular file: give the path of a .json or .toml file.")
        if info.st_size > MAX_JOBFILE_BYTES:
            raise JobError(f"job file {path} is {info.st_size:,} bytes, too big for a job file: "
                           "give the job's .json or .toml file (a few hundred bytes).")
        raw = os.read(fd, MAX_JOBFILE_BYTES + 1)
    except OSError as exc:
        raise JobError(f"job file {path} can't be read ({exc.strerror}): check the file.") from exc
    finally:
        os.close(fd)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JobError(f"job file {path} is not UTF-8 text (a bad byte at offset {exc.start}): "
                       "save it as UTF-8 in a text editor.") from exc


def parse_jobfile(path: Path, text: str) -> Any:
    """The file's data (any JSON/TOML value); JobError when it is not valid JSON or TOML."""
    kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
    try:
        if kind == "TOML":
            from ioncannon.job import toml

            data = toml.loads(text)
        else:
            data = json.loads(text)
        if too_deep(data):
            raise RecursionError
        return data
    except RecursionError as exc:
        raise JobError(f"job file {path} nests too deeply to be a job file: write flat fields.") from exc
    except ValueError as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        where = str(exc).splitlines()[0][:160]
        raise JobError(f"job file {path} is not valid {kind} ({where}): fix that spot.") from exc


def gives_train_plan(path: str | Path) -> bool:
    """Whether the job file sets its own [train] table (read after read_jobfile has checked it)."""
    path = Path(path).expanduser()
    data = parse_jobfile(path, _read_text(path))
    return isinstance(data, dict) and "train" in data


def read_jobfile(path: str | Path, workdir: str | Path) -> JobSpec:
    """The checked spec of a job file; a file without a name gets a fresh one (identifier and date).

    Raises JobError (SpecError lists every problem, one sentence each) before anything is written.
    """
    path = Path(path).expanduser()
    data = parse_jobfile(path, _read_text(path))
    if isinstance(data, dict) and "name" not in data:
        ident = data.get("identifier")
        data = {**data, "name": new_job_name(workdir, ident if isinstance(ident, str) else "job")}
    if isinstance(data, dict) and isinstance(data.get("family"), str) and data["family"] in FAMILIES:
        # the family's own base model, resolution and generation plan unless the file names others
        info = FAMILIES[data["family"]]
        data = {"base_model": info.default_model, "resolution": info.default_resolution,
                "generate": dataclasses.asdict(info.generate), **data}
        if info.lora_only and isinstance(data.get("train", {}), dict):
            # a LoRA-only family (Flux) starts from its own LoRA recipe, not the full fine-tune defaults
            from ioncannon.job.presets import preset_plan

            data["train"] = {**dataclasses.asdict(preset_plan("recommended", "lora", info.name)),
                             **data.get("train", {})}
    try:
        return JobSpec.from_json(data, strict_keys=True)
    except SpecError as exc:
        raise SpecError(exc.problems, where=f"job file {path}") from None
