"""The GPU path of every family in one command, on one card, at real shapes with random weights.

Run it whenever engine code changes (README: "The GPU smoke"). What it runs:

- SD 1.5: a whole job through `ioncannon run` (the real CLI and its detached runner), cold and then warm in one
  work dir. The recipe is trimmed for time (--sd15-steps, --sd15-class-images, --sd15-images) but runs every stage.
- SDXL and Flux.1: each through its 24 GB plan, in this process on a random model of the real shapes (a saved
  Flux would be 34 GB to write and read): the cache stage, --steps training steps, the export stage, the generate
  stage making --images pack images, then the exported LoRA files loaded back into diffusers' own pipeline.

It prints one table (stage times, steps/s, images/s, peak GiB, the attention kernel each stage chose) and, with
--results FILE, appends it to that file with the card, the torch version and the date. It exits non-zero when any
part failed, so a crash shows up here before it shows up on a person's box.

  python bench/gpu_smoke.py --results bench/RESULTS.md
  python bench/gpu_smoke.py --tiny          # a CPU run of this script on tiny models (checks the script itself)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TINY = False
DEVICE = "cuda"
ROWS: list[dict[str, Any]] = []


def say(text: str) -> None:
    print(text, flush=True)


def add(row: dict[str, Any]) -> None:
    ROWS.append(row)
    say("ROW " + json.dumps(row))


def attention_lines(log_text: str) -> list[str]:
    """The kernel each stage chose, from the engine's "attention kernel:" log lines."""
    return [m.strip() for m in re.findall(r"attention kernel: ([^\n]*)", log_text)]


def cost_lines(log_text: str) -> list[str]:
    """Where a part's start-up went, from the engine's log: the attention tests and the drawing stages."""
    return [m.strip() for m in re.findall(r"(the attention test's time[^\n]*|the (?:prompt pack|class images) took"
                                          r"[^\n]*)", log_text)]


def kernel_of(lines: list[str]) -> str:
    """'flash' / 'flash, then efficient' … from the runner.log lines (the first word of each, deduplicated)."""
    return ", ".join(dict.fromkeys(line.split(" ")[0] for line in lines)) or "?"


# --------------------------------------------------------------------------- SD 1.5: the whole job


def sd15_job_file(folder: Path, model: Path, photos: Path, args: argparse.Namespace, name: str) -> Path:
    per_style = max(1, round((args.sd15_images - 4) / 14))
    lines = [
        f'name = "{name}"', f'photos_dir = "{photos}"', 'identifier = "zwx"', 'class_name = "person"',
        'family = "sd15"', f'base_model = "{model}"', f'device = "{"cpu" if TINY else "cuda"}"',
        *(["resolution = 64"] if TINY else []),
        "[train]", f"steps = {args.sd15_steps}", f"num_class_images = {args.sd15_class_images}",
        "[generate]", f"images_per_prompt = {per_style}", *(["steps = 4"] if TINY else []),
    ]
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def sd15_whole_job(work: Path, args: argparse.Namespace) -> None:
    import e2e_speed

    e2e_speed.TINY = TINY
    model = e2e_speed.build_model(work / "sd15-random")
    photos = e2e_speed.random_photos(work / "photos")
    jobs = work / "jobs"
    for run in ("cold", "warm"):
        name = f"smoke-{run}"
        job_file = sd15_job_file(work, model, photos, args, name)
        t0 = time.time()
        with common.SmiPeak(None) as peak:   # the runner is another process
            # run from the work folder: from a source checkout, `-m` would import the bare tree (no ioncannon.assets)
            proc = subprocess.run([sys.executable, "-m", "ioncannon.cli.main", "run", str(job_file), "--yes",
                                   "--workdir", str(jobs)], capture_output=True, text=True, timeout=args.job_timeout,
                                  cwd=work)
        wall = time.time() - t0
        from ioncannon.job.paths import JobPaths

        paths = JobPaths(jobs / name)
        log_text = paths.log_file.read_text(errors="replace") if paths.log_file.exists() else ""
        if proc.returncode != 0:
            add({"part": f"sd15 job {run}", "ok": False, "wall_s": round(wall, 1),
                 "error": (proc.stdout + proc.stderr)[-1500:], "log_tail": log_text[-1500:]})
            return
        result = e2e_speed.summarise(paths, t0, f"sd15 {run}")
        stats = _json(paths.train_stats_file)
        walls = {r["stage"]: r["wall_s"] for r in result["stages"]}
        gen = _rate(paths, "generate")
        add({"part": f"sd15 job {run}", "ok": True, "wall_s": round(wall, 1), "stages": walls,
             "first_step_each_s": stats.get("first_step_each_s"),
             "steps_per_s": stats.get("steady_steps_per_s"), "mode": stats.get("mode"),
             "images_per_s": gen, "peak_gib": round(peak.peak_mib / 1024, 1),
             "attention": kernel_of(attention_lines(log_text)), "attention_lines": attention_lines(log_text),
             "costs": cost_lines(log_text)})


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _rate(paths: Any, stage: str) -> float | None:
    """Images per second of a stage after its first batch: its last progress event's rate (render's steady rate)."""
    from ioncannon.job.events import Progress, parse_event

    events = [parse_event(line) for line in paths.events_file.read_text().splitlines()]
    progress = [e for e in events if isinstance(e, Progress) and e.stage == stage and e.done > 0]
    return round(progress[-1].rate, 2) if progress and progress[-1].rate else None


# --------------------------------------------------------------------------- SDXL and Flux: the 24 GB plan


def _build(family: str, dtype: Any) -> Any:
    import torch

    from ioncannon.engine.families import family_for

    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(DEVICE):   # a CPU init of billions of parameters takes minutes
            parts = family_for(family).build("tiny" if TINY else "real", seed=0)
    finally:
        torch.set_default_dtype(before)
    parts.family = family
    return parts


def _in_host_memory(parts: Any) -> Any:
    """The stand-in model moved to host memory, where a real load leaves it; the peak counts from here, so the GPU
    it took to build it quickly is not the stage's."""
    for module in parts.modules():
        module.to("cpu")
    _free()
    common.reset_peak()
    return parts


LEVER_VARIABLES = ("IONCANNON_TRAIN_COMPILE", "IONCANNON_CHECKPOINT_KEEPS", "IONCANNON_FP8_GEMM", "IONCANNON_COMPILE")
CONTEXT_GIB = 0.6   # what the CUDA context takes of a card before the process allocates anything


class CardLimit:
    """The process's GPU memory capped to what a smaller card leaves free (`torch.cuda.set_per_process_memory_fraction`:
    the caching allocator frees its cache and then raises out-of-memory at the cap, as it would on that card).
    `lifted()` suspends the cap for the script's own stand-ins (a random model built on the GPU for speed)."""

    def __init__(self, card_gib: float) -> None:
        import torch

        self.fraction = 1.0
        if card_gib > 0 and DEVICE == "cuda":
            total = torch.cuda.get_device_properties(0).total_memory / 2**30
            self.fraction = min(1.0, (card_gib - CONTEXT_GIB) / total)
        self._set(self.fraction)

    @staticmethod
    def _set(fraction: float) -> None:
        import torch

        if DEVICE == "cuda":
            torch.cuda.set_per_process_memory_fraction(fraction)

    def lifted(self, build: Callable[[], Any]) -> Any:
        self._set(1.0)
        try:
            return build()
        finally:
            _free()
            self._set(self.fraction)


def family_plan(family: str, work: Path, args: argparse.Namespace) -> None:
    """Cache, train, export, generate and load back, for one family's 24 GB plan, inside --card-gib of GPU memory
    (the stages' own work; the script's stand-ins for a loaded model are built outside the cap)."""
    import torch

    from ioncannon.engine.export import run_export
    from ioncannon.engine.families import family_for
    from ioncannon.engine.generate.stage import run_generate
    from ioncannon.job.plans import GeneratePlan

    fam = family_for(family)
    res = 64 if TINY else {"sdxl": 1024, "flux": 1024}[family]
    key = {"sdxl": "lora", "flux": "lora-24gb"}[family]
    dtype = torch.float32 if TINY else fam.working_dtype(torch.bfloat16)
    row: dict[str, Any] = {"part": f"{family} 24 GB plan", "ok": False}
    if args.card_gib:
        row["part"] += f" in {args.card_gib:g} GB"
    t = time.perf_counter()
    parts = _in_host_memory(_build(family, dtype))   # where a real load leaves it
    row["build_s"] = round(time.perf_counter() - t, 1)
    limit = CardLimit(args.card_gib)
    # the export and generate stages load "the base model": here, a fresh random one of the same shapes, handed
    # over in host memory as a real load leaves it (built on the GPU for speed), so the stages' peaks are their own
    real_load, real_skeleton = fam.load, fam.denoiser_skeleton
    fam.load = lambda source, dtype=torch.float32, single_file_config=None: limit.lifted(  # type: ignore
        lambda: _in_host_memory(_build(family, dtype)))
    # a LoRA-only export reads the model's config alone: the stand-in's, saved as a model folder would hold it
    (work / "base" / "transformer").mkdir(parents=True, exist_ok=True)
    parts.unet.save_config(str(work / "base" / "transformer"))
    fam.denoiser_skeleton = lambda source: real_skeleton(str(work / "base"))  # type: ignore[method-assign]
    try:
        _, train_row, ctx = common.train_plan(parts, work, family, key, args.steps, res, photos=4,
                                                class_images=4, keep_ctx=True)
        row.update(steps_per_s=train_row["steps_per_s"], train_peak_gib=train_row["peak_gib"],
                   train_reserved_gib=train_row["reserved_gib"],
                   cache_s=train_row["cache_s"], train_s=train_row["train_s"],
                   first_step_each_s=train_row["first_step_each_s"])
        del parts
        _free()
        ctx.spec = ctx.spec.replace(generate=dataclasses.replace(
            GeneratePlan() if TINY else fam.info.generate, images_per_prompt=0, bare_token_images=args.images,
            batch_size=min(args.images, 4), **({"steps": 4} if TINY else {})))
        from ioncannon.job.spec import save_spec

        save_spec(ctx.paths, ctx.spec)
        t = time.perf_counter()
        run_export(ctx)
        row["export_s"] = round(time.perf_counter() - t, 1)
        _free()
        common.reset_peak()
        t = time.perf_counter()
        run_generate(ctx)
        gen_s = time.perf_counter() - t
        made = list(ctx.paths.outputs.rglob("samples/*.png"))
        row.update(generate_s=round(gen_s, 1), images=len(made), images_per_s=round(len(made) / gen_s, 3),
                   generate_peak_gib=round(common.mem("max_allocated") / 2**30, 1),
                   generate_reserved_gib=round(common.mem("max_reserved") / 2**30, 1))
        _free()
        log_text = "\n".join(r.getMessage() for r in CAPTURE.records)
        row["attention"] = kernel_of(attention_lines(log_text))
        row["attention_lines"] = attention_lines(log_text)
        row["costs"] = cost_lines(log_text)
        t = time.perf_counter()
        row["loaded_back"] = limit.lifted(lambda: load_back(family, ctx))   # diffusers' pipeline, not ours
        row["load_back_s"] = round(time.perf_counter() - t, 1)
        row["ok"] = len(made) == args.images and all(n > 0 for n in row["loaded_back"].values())
    except Exception as exc:  # noqa: BLE001 - the table reports it and the run goes on to the next family
        row["error"] = f"{type(exc).__name__}: {exc}"[:600]
        row["traceback"] = traceback.format_exc()[-2500:]
        from ioncannon.engine.attention import first_line, is_kernel_error, mark_broken

        if is_kernel_error(exc):   # as the runner does: the kernel is left out and the part runs again, afresh
            row["kernel_broken"] = mark_broken(work / ".cache", torch.device(DEVICE), first_line(exc))
    finally:
        fam.load, fam.denoiser_skeleton = real_load, real_skeleton  # type: ignore[method-assign]
        CAPTURE.records.clear()
        try:
            _free()
        except Exception as exc:  # noqa: BLE001 - a GPU context broken by the failure above
            row.setdefault("error", f"{type(exc).__name__}: {exc}"[:600])
    add(row)


def load_back(family: str, ctx: Any) -> dict[str, int]:
    """Each exported LoRA file loaded into diffusers' pipeline of a fresh base: how many adapter layers took."""
    import torch

    from ioncannon.engine.families import family_for

    fam = family_for(family)
    pipe = fam.pipeline(_build(family, torch.float32 if TINY else fam.working_dtype(torch.bfloat16)))
    found: dict[str, int] = {}
    for path in sorted(ctx.paths.trained_models.iterdir()):
        if "lora" not in path.name:
            continue
        if TINY and family == "flux" and path.is_file():
            continue   # diffusers reads a kohya Flux file with FLUX.1's real widths built in: only the real model
        name = f"a{len(found)}"
        pipe.load_lora_weights(str(path), adapter_name=name)
        denoiser = getattr(pipe, "transformer", None) or pipe.unet
        found[path.name] = sum(1 for n, _ in denoiser.named_modules() if n.endswith(f"lora_A.{name}"))
    del pipe
    return found


def _free() -> None:
    import gc

    gc.collect()
    if DEVICE == "cuda":
        import torch

        torch.cuda.empty_cache()


class _Capture:
    """Keeps the engine's log records (the attention line) for the table."""

    def __init__(self) -> None:
        import logging

        self.records: list[Any] = []
        capture = self

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                capture.records.append(record)
                if "attention" in record.getMessage():   # shown at once: a crash later must not hide it
                    say("LOG " + record.getMessage())

        logging.getLogger("ioncannon").addHandler(Handler())
        logging.getLogger("ioncannon").setLevel(logging.INFO)


CAPTURE: _Capture


# --------------------------------------------------------------------------- the table


def table(started: float) -> str:
    import torch

    card = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "CPU"
    head = (f"GPU smoke, {time.strftime('%Y-%m-%d')}: {card}, torch {torch.__version__}"
            f" (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}), "
            f"total {time.perf_counter() - started:.0f} s")
    # levers turned on for this run through the environment (the jobs and runners inherit it)
    levers = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k in LEVER_VARIABLES]
    if levers:
        head += f"; levers set: {', '.join(levers)}"
    lines = [head, "", "| part | ok | stages (s) | steps/s | images/s | peak GiB | attention |",
             "|---|---|---|---|---|---|---|"]
    for r in ROWS:
        if "stages" in r:
            stages = ", ".join(f"{k} {v:.0f}" for k, v in r["stages"].items()) + f"; job {r['wall_s']:.0f}"
            peak = r.get("peak_gib")
        elif r.get("ok") or "cache_s" in r:
            stages = ", ".join(f"{k[:-2]} {r[k]:.0f}" for k in ("build_s", "cache_s", "train_s", "export_s",
                                                                 "generate_s", "load_back_s") if k in r)
            peak = f"train {r.get('train_peak_gib')}, generate {r.get('generate_peak_gib')}"
            if r.get("train_reserved_gib") is not None:
                peak += f" (reserved {r.get('train_reserved_gib')}, {r.get('generate_reserved_gib')})"
        else:
            stages, peak = "", ""
        error = " ".join(str(r.get("error", "")).split())[:160]   # one table row, whatever the error printed
        if r.get("ok"):
            ok = "yes"
        elif r.get("restarted"):
            ok = f"crashed, ran again without {r['kernel_broken']}: {error}"
        else:
            ok = f"**no**: {error}"
        lines.append(f"| {r['part']} | {ok} | {stages} | {r.get('steps_per_s', '')} | {r.get('images_per_s', '')} "
                     f"| {peak} | {r.get('attention', '')} |")
    notes = sorted({line for r in ROWS for line in r.get("attention_lines", [])})
    if notes:
        lines += ["", "Attention lines from the logs:", *(f"- {n}" for n in notes)]
    costs = [f"- {r['part']}: {c}" for r in ROWS for c in r.get("costs", [])]
    costs += [f"- {r['part']}: training's first steps one by one {r['first_step_each_s']} s" for r in ROWS
              if r.get("first_step_each_s")]
    if costs:
        lines += ["", "Where the time went:", *costs]
    return "\n".join(lines)


def run_one(part: str, work: Path, args: argparse.Namespace) -> int:
    """One part in this process (the parent runs each part in a child of its own)."""
    if part == "sd15":
        try:
            sd15_whole_job(work, args)
        except Exception as exc:  # noqa: BLE001
            add({"part": "sd15 job", "ok": False, "error": f"{type(exc).__name__}: {exc}"[:600]})
    else:
        (work / part).mkdir(exist_ok=True)
        family_plan(part, work / part, args)
    return 0


MAX_KERNEL_RESTARTS = 2   # as the runner: a part whose attention kernel crashed runs again without it


def in_child(part: str, work: Path, save: Callable[[], None], restarts: int = 0) -> None:
    """Runs one part in a child process: a kernel that breaks the GPU context fails that part, not the others.

    Where the part's attention kernel crashed, it is run again in a new process, as the runner restarts itself:
    the first row stays in the table (marked restarted) and the exit status follows the last try. `save` runs after
    every row, so a run stopped from outside keeps the rows it finished."""
    argv = [a for a in sys.argv[1:]]
    proc = subprocess.Popen([sys.executable, __file__, *argv, "--one", part, "--work", str(work)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    rows = 0
    for line in proc.stdout:
        if line.startswith("ROW "):
            ROWS.append(json.loads(line[4:]))
            rows += 1
            save()
        if line.startswith(("ROW ", "LOG ", "RESULT ")):
            print(line, end="", flush=True)
        tail = (tail + [line])[-40:]
    code = proc.wait()
    if code != 0 or rows == 0:
        add({"part": part, "ok": False, "error": f"the process exited with {code}: " + "".join(tail)[-1200:]})
        return
    last = ROWS[-1]
    if last.get("kernel_broken") and restarts < MAX_KERNEL_RESTARTS:
        last["restarted"] = True
        say(f"{part}: the {last['kernel_broken']} attention kernel crashed; running the part again without it")
        in_child(part, work, save, restarts + 1)


def main() -> int:
    global TINY, DEVICE, CAPTURE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=None, help="work folder (default: a new temporary one)")
    ap.add_argument("--parts", default="sd15,sdxl,flux")
    ap.add_argument("--steps", type=int, default=20, help="SDXL and Flux training steps")
    ap.add_argument("--images", type=int, default=4, help="SDXL and Flux pack images")
    ap.add_argument("--sd15-steps", type=int, default=200)
    ap.add_argument("--sd15-class-images", type=int, default=32)
    ap.add_argument("--sd15-images", type=int, default=60, help="pack images (14 styles x N + 4 bare)")
    ap.add_argument("--job-timeout", type=float, default=300)
    ap.add_argument("--card-gib", type=float, default=24.0,
                    help="the SDXL and Flux 24 GB plans run inside this much GPU memory, as on a card of this size "
                         "(0: the whole card)")
    ap.add_argument("--results", type=Path, default=None, help="add the table to this file (rewritten after each row)")
    ap.add_argument("--tiny", action="store_true", help="tiny models on the CPU: checks this script, not the GPU")
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)   # a child running one part
    args = ap.parse_args()
    started = time.perf_counter()
    if args.tiny:
        TINY, DEVICE = True, "cpu"
        common.DEVICE = "cpu"
        args.sd15_steps, args.sd15_class_images, args.sd15_images = 4, 2, 18
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    CAPTURE = _Capture()
    work = args.work or Path(tempfile.mkdtemp(prefix="ioncannon-smoke-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.one:
        return run_one(args.one, work, args)
    before = args.results.read_text() if args.results and args.results.exists() else ""

    def save() -> None:
        if args.results:
            args.results.write_text(before + "\n" + table(started) + "\n")

    for part in [p for p in args.parts.split(",") if p]:
        in_child(part, work, save)
        save()
    say("\n" + table(started))
    return 0 if ROWS and all(r.get("ok") for r in ROWS if not r.get("restarted")) else 1


if __name__ == "__main__":
    sys.exit(main())
