"""Entry points: `ioncannon` (the wizard), `--demo`, `run` (headless), `status`, `resume`, `stop`, and tools."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 3

# sub-commands implemented elsewhere, forwarded with their own argument parsers
FORWARDED = {
    "doctor": "ioncannon.cli.doctor:main",
    "bundle": "ioncannon.cli.finish:bundle_main",
    "wipe": "ioncannon.cli.finish:wipe_main",
    "destroy": "ioncannon.cli.finish:stop_main",
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in FORWARDED:
        import importlib

        module, _, func = FORWARDED[argv[0]].partition(":")
        return int(getattr(importlib.import_module(module), func)(argv[1:]) or 0)
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130
    except _UserError as exc:
        print(f"ioncannon: {exc}", file=sys.stderr)
        return EXIT_USAGE


class _UserError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workdir", metavar="DIR", help="where jobs live (default: /workspace/ioncannon or your data dir)")
    parser = argparse.ArgumentParser(
        prog="ioncannon", parents=[common],
        description="DreamBooth-train Stable Diffusion on this GPU box. With no command: the keyboard wizard.",
        epilog="tools: ioncannon doctor PHOTO_DIR ... | bundle [JOB] | wipe [JOB] | destroy  (each has --help)",
    )
    parser.add_argument("--demo", action="store_true", help="walk the wizard on built-in sample photos and a tiny model")
    parser.set_defaults(handler=_cmd_wizard)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="run a job headless, one line per event")
    run.add_argument("jobfile", nargs="?", help="a job file (JSON or TOML with JobSpec fields)")
    run.add_argument("--demo", action="store_true", help="the built-in demo job")
    run.add_argument("--family", choices=("sd15", "sdxl"), default="sd15", help="the demo's model family (default sd15)")
    run.add_argument("--yes", "-y", action="store_true", help="start without asking to confirm the plan")
    run.add_argument("--detach", action="store_true", help="start the job and return at once")
    run.set_defaults(handler=_cmd_run)

    status = sub.add_parser("status", parents=[common], help="the job's stage, step, state and paths")
    status.add_argument("job", nargs="?", help="job name (default: the newest)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_cmd_status)

    resume = sub.add_parser("resume", parents=[common], help="restart a stopped or interrupted job from its last checkpoint")
    resume.add_argument("job", nargs="?")
    resume.add_argument("--detach", action="store_true")
    resume.set_defaults(handler=_cmd_resume)

    stop = sub.add_parser("stop", parents=[common], help="checkpoint and stop the running job (resume it later)")
    stop.add_argument("job", nargs="?")
    stop.set_defaults(handler=_cmd_stop)
    return parser


def _workdir(args: argparse.Namespace) -> Path:
    from ioncannon.job.workdir import WorkdirError, default_workdir, ensure_workdir

    try:
        return ensure_workdir(Path(args.workdir) if args.workdir else default_workdir())
    except WorkdirError as exc:
        raise _UserError(str(exc)) from exc


# --------------------------------------------------------------------------- wizard


def _cmd_wizard(args: argparse.Namespace) -> int:
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        raise _UserError("the wizard needs a terminal. For scripts use `ioncannon run JOBFILE --yes`.")
    workdir = _workdir(args)
    from ioncannon.tui.app import IonCannonApp

    IonCannonApp(workdir, demo=args.demo).run()
    return EXIT_OK


# --------------------------------------------------------------------------- headless run


def _cmd_run(args: argparse.Namespace) -> int:
    workdir = _workdir(args)
    from ioncannon.job.workdir import create_job
    from ioncannon.engine.runner import start_runner

    if args.demo:
        from ioncannon.engine.demo import demo_spec

        spec = demo_spec(workdir, family=args.family)
    elif args.jobfile:
        spec = _spec_from_file(Path(args.jobfile), workdir)
    else:
        raise _UserError("give a job file (`ioncannon run job.toml`) or `--demo`.")
    _check_spec(spec)
    print(_plan_text(spec))
    if not args.yes:
        if not sys.stdin.isatty():
            raise _UserError("not starting without confirmation: add --yes.")
        if input("Start this job? [y/N] ").strip().lower() not in ("y", "yes"):
            print("Not started.")
            return EXIT_OK
    paths = create_job(workdir, spec)
    pid = start_runner(paths, workdir)
    print(f"job {spec.name} started (runner pid {pid}) in {paths.root}")
    return EXIT_OK if args.detach else _follow(paths)


def _spec_from_file(path: Path, workdir: Path) -> Any:
    from ioncannon.job.spec import JobSpec
    from ioncannon.job.workdir import new_job_name

    if not path.is_file():
        raise _UserError(f"job file {path} does not exist.")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as exc:
        raise _UserError(f"job file {path} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {exc}") from exc
    missing = [k for k in ("photos_dir", "identifier", "class_name") if not data.get(k)]
    if missing:
        raise _UserError(f"job file {path} lacks {', '.join(missing)}.")
    data.setdefault("name", new_job_name(workdir, str(data["identifier"])))
    if data.get("family"):  # the family's own base model and resolution unless the file names others
        from ioncannon.job.families import FAMILIES

        info = FAMILIES.get(str(data["family"]))
        if info is not None:
            data.setdefault("base_model", info.default_model)
            data.setdefault("resolution", info.default_resolution)
            data.setdefault("generate", dataclasses.asdict(info.generate))
    try:
        return JobSpec.from_json(data)
    except (TypeError, ValueError) as exc:
        raise _UserError(f"job file {path}: {exc}") from exc


def _check_spec(spec: Any) -> None:
    if not spec.identifier.strip() or "/" in spec.identifier:
        raise _UserError(f"identifier {spec.identifier!r} is not usable: use a short rare word without '/', e.g. zwx.")
    photos = Path(spec.photos_dir).expanduser()
    if not photos.is_dir():
        raise _UserError(f"photo folder {photos} does not exist. Give the folder with the subject's photos.")
    if spec.device != "cpu":
        import torch

        if not torch.cuda.is_available():
            raise _UserError(
                "no CUDA GPU is visible (check `nvidia-smi`). To run on the CPU anyway (only sensible for tiny "
                'test models), set device = "cpu" in the job file; to see the product, try `ioncannon --demo`.'
            )


def _plan_text(spec: Any) -> str:
    t, g = spec.train, spec.generate
    lines = [
        f"job        {spec.name}{'  (demo: tiny random-weight model)' if spec.demo else ''}",
        f"photos     {spec.photos_dir}",
        f"subject    {spec.identifier} {spec.class_name}  -> prompt: \"{spec.instance_prompt}\"",
        f"base model {spec.base_model} ({spec.family}, {spec.resolution} px)",
        f"training   {t.mode}, {t.steps} steps, lr {t.learning_rate:g}, {t.precision}, "
        f"prior preservation {'on' if t.prior_preservation else 'off'} ({t.num_class_images} class images)",
        f"generation {g.sampler} {g.steps} steps, guidance {g.guidance:g}, {g.images_per_prompt} per prompt",
    ]
    return "\n".join(lines)


def format_event(event: Any) -> str:
    """One human line per event, for the headless run."""
    from ioncannon.job import events as ev
    stamp = time.strftime("%H:%M:%S", time.localtime(event.t))
    if isinstance(event, ev.Progress):
        parts = [f"{event.stage}", f"{event.done}/{event.total}"]
        if event.label:
            parts.append(event.label)
        if event.rate:
            parts.append(f"{event.rate:.2f}/s")
        if event.loss is not None:
            parts.append(f"loss {event.loss:.4f}")
        if event.eta_s is not None:
            parts.append(f"eta {_duration(event.eta_s)}")
        text = "  ".join(parts)
    elif isinstance(event, ev.StageStarted):
        text = f"stage {event.stage} started {event.detail}".rstrip()
    elif isinstance(event, ev.StageFinished):
        text = f"stage {event.stage} {'skipped' if event.skipped else 'done'} in {_duration(event.seconds)}"
    elif isinstance(event, ev.Failed):
        text = f"FAILED in {event.stage}: {event.message}" + (f"\n  what to do: {event.hint}" if event.hint else "")
    elif isinstance(event, ev.JobFinished):
        text = f"job finished in {_duration(event.seconds)}; outputs in {event.outputs}"
    elif isinstance(event, ev.Message):
        text = f"{event.level}: {event.text}"
    elif isinstance(event, (ev.SampleReady, ev.CollageReady, ev.CheckpointSaved)):
        what = {"SampleReady": "image", "CollageReady": "collage", "CheckpointSaved": "checkpoint"}[type(event).__name__]
        text = f"{what} {event.path}"
    elif isinstance(event, ev.Stopped):
        text = f"stopped: {event.reason}"
    elif isinstance(event, ev.RunnerStarted):
        text = f"runner {event.pid} {'resumed' if event.resumed else 'started'}"
    else:
        text = type(event).__name__
    return f"{stamp} {text}"


def _follow(paths: Any) -> int:
    from ioncannon.job import events as ev
    from ioncannon.engine.runner import runner_pid
    from ioncannon.job.state import EventTail, read_state

    tail = EventTail(paths.events_file, from_start=False)
    try:
        while True:
            for event in tail.read_new():
                print(format_event(event), flush=True)
                if isinstance(event, (ev.JobFinished, ev.Failed, ev.Stopped)):
                    return {ev.JobFinished: EXIT_OK, ev.Failed: EXIT_FAILED, ev.Stopped: EXIT_STOPPED}[type(event)]
            if runner_pid(paths) is None:
                time.sleep(0.3)
                for event in tail.read_new():
                    print(format_event(event), flush=True)
                state = read_state(paths)
                if state.status == "finished":
                    return EXIT_OK
                print(f"the runner exited ({state.status}). Details: {paths.log_file}", file=sys.stderr)
                return EXIT_FAILED
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("\nDetached. The job keeps running: `ioncannon status` shows it, `ioncannon stop` stops it.")
        return EXIT_OK


# --------------------------------------------------------------------------- status / resume / stop


def _job(args: argparse.Namespace) -> Any:
    from ioncannon.job.workdir import find_job

    workdir = _workdir(args)
    job = find_job(workdir, args.job)
    if job is None:
        raise _UserError(f"no job {args.job!r} in {workdir}." if args.job else f"no jobs in {workdir} yet.")
    return job


def job_status(job: Any) -> dict[str, Any]:
    from ioncannon.job.state import LIVE_STATUSES

    st = job.state
    status = st.status
    if status in LIVE_STATUSES and not job.alive:
        status = "interrupted"
    spec = job.spec
    return {
        "job": job.name,
        "status": status,
        "alive": job.alive,
        "stage": st.stage,
        "stages_done": st.stages_done,
        "step": st.done,
        "total": st.total,
        "loss": st.loss,
        "rate": st.rate,
        "eta_s": st.eta_s,
        "elapsed_s": round(st.elapsed_s, 1),
        "message": st.message or job.problem,
        "hint": st.hint,
        "paths": {
            "job": str(job.paths.root),
            "photos": spec.photos_dir if spec else None,
            "training_samples": str(job.paths.training_samples(spec.class_name)) if spec else None,
            "trained_models": str(job.paths.trained_models),
            "outputs": str(job.paths.outputs),
            "log": str(job.paths.log_file),
        },
    }


def _cmd_status(args: argparse.Namespace) -> int:
    info = job_status(_job(args))
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    line = f"{info['status']}"
    if info["stage"]:
        line += f"   stage {info['stage']}   {info['step']}/{info['total']}"
    if info["loss"] is not None:
        line += f"   loss {info['loss']:.4f}"
    if info["rate"]:
        line += f"   {info['rate']:.2f}/s"
    if info["eta_s"]:
        line += f"   eta {_duration(info['eta_s'])}"
    print(f"job      {info['job']}")
    print(f"state    {line}")
    print(f"done     {', '.join(info['stages_done']) or '-'}")
    print(f"elapsed  {_duration(info['elapsed_s'])}")
    if info["message"]:
        print(f"note     {info['message']}")
    if info["status"] == "interrupted":
        print("what now the runner is not running; `ioncannon resume` continues from the last checkpoint")
    elif info["hint"]:
        print(f"what now {info['hint']}")
    for key, value in info["paths"].items():
        print(f"{key:<17}{value}")
    return EXIT_OK


def _cmd_resume(args: argparse.Namespace) -> int:
    from ioncannon.engine.runner import start_runner

    job = _job(args)
    if job.alive:
        print(f"job {job.name} is already running; following it (Ctrl+C detaches).")
        return _follow(job.paths)
    if job.state.finished:
        print(f"job {job.name} already finished; outputs in {job.paths.outputs}")
        return EXIT_OK
    pid = start_runner(job.paths, _workdir(args))
    print(f"job {job.name} resumed (runner pid {pid})")
    return EXIT_OK if args.detach else _follow(job.paths)


def _cmd_stop(args: argparse.Namespace) -> int:
    from ioncannon.engine.runner import request_stop, wait_for_exit

    job = _job(args)
    if not request_stop(job.paths):
        print(f"job {job.name} is not running.")
        return EXIT_OK
    print(f"asked job {job.name} to checkpoint and stop ...")
    wait_for_exit(job.paths, 120)
    print("stopped. Resume with `ioncannon resume`.")
    return EXIT_OK


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


if __name__ == "__main__":
    sys.exit(main())
