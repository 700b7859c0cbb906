"""Entry points: `ioncannon` (the wizard), `--demo`, `run` (headless), `status`, `resume`, `stop`, and tools."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ioncannon.cli.common import UserError, find_job, given_workdir
from ioncannon.cli.common import workdir as chosen_workdir
from ioncannon.job.families import DEFAULT_FAMILY, FAMILY_NAMES
from ioncannon.job.handle import DAMAGED_JOB_HINT
from ioncannon.job.printable import printable, printable_lines
from ioncannon.job.units import duration

if TYPE_CHECKING:
    from ioncannon.job.plan.planner import Plan

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 3
STOP_WAIT_S = float(os.environ.get("IONCANNON_STOP_WAIT_S", "120"))  # how long `stop` waits for the checkpoint

# sub-commands implemented elsewhere, forwarded with their own argument parsers
FORWARDED = {
    "doctor": "ioncannon.cli.doctor:main",
    "bundle": "ioncannon.cli.finish:bundle_main",
    "wipe": "ioncannon.cli.finish:wipe_main",
    "destroy": "ioncannon.cli.finish:stop_main",
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.umask(0o077)  # photos, models, images, zips and job files are the subject's: private to this user
    try:
        if argv and argv[0] in FORWARDED:
            import importlib

            module, _, func = FORWARDED[argv[0]].partition(":")
            return int(getattr(importlib.import_module(module), func)(argv[1:]) or 0)
        args = _parser().parse_args(argv)
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except UserError as exc:
        print(printable_lines(f"ioncannon: {exc}"), file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # `ioncannon status | head -2` closed the pipe: the reader has what it wanted; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--workdir", metavar="DIR", help="where jobs live (default: /workspace/ioncannon or your data dir)"
    )
    parser = argparse.ArgumentParser(
        prog="ioncannon", parents=[common],
        description="DreamBooth-train Stable Diffusion on this GPU box. With no command: the keyboard wizard.",
        epilog="tools: ioncannon doctor PHOTO_DIR ... | bundle [JOB] | wipe [JOB] | destroy  (each has --help). "
               "Everything a job writes (photo copies, models, images, zips, job files) is private to your user: "
               "files 0600, folders 0700.",
    )
    parser.add_argument(
        "--demo", action="store_true", help="walk the wizard on built-in sample photos and a tiny model"
    )
    from ioncannon import __version__

    parser.add_argument("--version", "-V", action="version", version=f"ioncannon {__version__}")
    parser.set_defaults(handler=_cmd_wizard)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="run a job headless, one line per event")
    run.add_argument("jobfile", nargs="?",
                     help="a job file (TOML or JSON); `ioncannon run --example > job.toml` writes a commented one")
    run.add_argument("--example", action="store_true", help="print a commented example job file and exit")
    run.add_argument("--demo", action="store_true", help="the built-in demo job")
    run.add_argument(
        "--family", choices=FAMILY_NAMES, help=f"the demo's model family (default {DEFAULT_FAMILY})"
    )
    run.add_argument("--yes", "-y", action="store_true", help="start without asking to confirm the plan")
    run.add_argument("--detach", action="store_true", help="start the job and return at once")
    run.set_defaults(handler=_cmd_run)

    status = sub.add_parser("status", parents=[common], help="the job's stage, step, state and paths")
    status.add_argument("job", nargs="?", help="job name (default: the newest)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_cmd_status)

    resume = sub.add_parser(
        "resume", parents=[common], help="restart a stopped or interrupted job from its last checkpoint"
    )
    resume.add_argument("job", nargs="?")
    resume.add_argument("--detach", action="store_true")
    resume.add_argument("--base-model", metavar="ID_OR_PATH",
                        help="continue with another base model (hub id, diffusers folder or .safetensors file); "
                             "the stages after the photos run again")
    resume.set_defaults(handler=_cmd_resume)

    stop = sub.add_parser("stop", parents=[common], help="checkpoint and stop the running job (resume it later)")
    stop.add_argument("job", nargs="?")
    stop.set_defaults(handler=_cmd_stop)
    return parser


# --------------------------------------------------------------------------- wizard


def _cmd_wizard(args: argparse.Namespace) -> int:
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        raise UserError("the wizard needs a terminal. For scripts use `ioncannon run JOBFILE --yes`.")
    workdir = chosen_workdir(args)
    from ioncannon.tui.app import IonCannonApp

    come_back = "ioncannon" + (" --demo" if args.demo else "")
    if args.workdir:
        come_back += f" --workdir {shlex.quote(args.workdir)}"
    IonCannonApp(workdir, demo=args.demo, come_back=come_back).run()
    return EXIT_OK


# --------------------------------------------------------------------------- headless run


def _cmd_run(args: argparse.Namespace) -> int:
    from ioncannon.job import handle
    from ioncannon.job.errors import JobError

    if args.example:
        from ioncannon.job.jobfile import EXAMPLE_JOBFILE

        print(EXAMPLE_JOBFILE, end="")
        return EXIT_OK
    # The libraries' own chatter (an optional-dependency notice, a save progress bar) would come before the
    # plan and look like a problem; the person's own settings win.
    for name, value in (("TRANSFORMERS_VERBOSITY", "error"), ("DIFFUSERS_VERBOSITY", "error"),
                        ("HF_HUB_DISABLE_PROGRESS_BARS", "1")):
        os.environ.setdefault(name, value)
    if args.demo or args.jobfile:
        # the first look loads torch and probes the GPU: seconds in which nothing else would be printed
        print("checking the job and this machine (GPU, disk; loading torch takes a few seconds)…", flush=True)
    try:
        plan = _planned(args)
        workdir = chosen_workdir(args)
    except JobError as exc:
        raise UserError(str(exc)) from exc
    spec = plan.spec
    print(printable_lines(plan.summary()), flush=True)
    found, rate = _model_door(spec, workdir)
    print(f"download   {printable(found.line(rate))}")
    if not args.yes:
        if not sys.stdin.isatty():
            raise UserError("not starting without confirmation: add --yes.")
        if input("Start this job? [y/N] ").strip().lower() not in ("y", "yes"):
            print("Not started.")
            return EXIT_OK
    try:
        # the download the door measured joins the planner's estimate as its own stage
        paths = handle.create(workdir, spec, estimate=plan.with_stage("fetch", found.seconds(rate)).stage_seconds())
    except JobError as exc:
        raise UserError(str(exc)) from exc
    pid = handle.start(paths, workdir)
    print(f"job {spec.name} started (runner pid {pid}) in {printable(paths.root)}")
    return EXIT_OK if args.detach else _follow(paths)


def _model_door(spec: Any, workdir: Path) -> tuple[Any, float | None]:
    """Refuse a base model that can't be had (offline and not cached, gated, not found, no room on the disk) before
    any job exists; otherwise what it takes to download and this box's measured download rate."""
    from ioncannon.engine.hub_files import door_check
    from ioncannon.job.download import recorded_rate
    from ioncannon.job.workdir import name_taken

    taken = name_taken(workdir, spec.name)  # the cheaper refusal first: it needs no network
    if taken:
        raise UserError(taken)
    if sys.stdout.isatty():
        print("checking the base model…", end="\r", flush=True)
    found = door_check(spec, workdir)
    if sys.stdout.isatty():
        print(" " * 30, end="\r", flush=True)
    if found.problem:
        raise UserError(found.problem)
    return found, recorded_rate(Path(workdir) / ".cache")


def _planned(args: argparse.Namespace) -> Plan:
    """The job the planner makes of the demo or the job file on this box; SpecError lists every problem."""
    from ioncannon.engine.hardware import probe
    from ioncannon.job.plan.planner import Problems, plan_job

    # a job file's work dir is made only once the file passed: a refused job leaves no trace anywhere
    workdir = chosen_workdir(args) if args.demo else given_workdir(args)
    if args.demo:
        from ioncannon.engine.demo import ensure_demo_model
        from ioncannon.job.plan.demo import DEMO_IDENTIFIER, demo_request
        from ioncannon.job.workdir import new_job_name

        family = args.family or DEFAULT_FAMILY  # the demo's tiny models run anywhere: no card to fit
        # a slow or busy machine gets fewer steps (the probe times a step), so the demo stays a couple of minutes
        print("loading torch, then timing this machine for a second to size the demo…", flush=True)
        box = probe(workdir, demo=True, family=family)
        model = str(ensure_demo_model(workdir, family))
        request = demo_request(workdir, family, model, name=new_job_name(workdir, DEMO_IDENTIFIER))
    elif args.jobfile:
        from ioncannon.job.jobfile import read_jobfile

        request = read_jobfile(args.jobfile, workdir)
        box = probe(workdir)
    else:
        raise UserError("give a job file (`ioncannon run job.toml`) or `--demo`.")
    result = plan_job(request, box)
    if isinstance(result, Problems):
        raise result.error(request.source)
    return result


def format_event(event: Any) -> str:
    """One human line per event, for the headless run."""
    from ioncannon.job import events as ev
    stamp = time.strftime("%H:%M:%S", time.localtime(event.t))
    if isinstance(event, ev.Progress) and event.label == "bytes":  # the download: sizes people read
        from ioncannon.job.download import size_text

        parts = [printable(event.stage), f"{size_text(event.done)}/{size_text(event.total)}"]
        if event.rate:
            parts.append(f"{size_text(event.rate)}/s")
        if event.eta_s is not None:
            parts.append(f"eta {duration(event.eta_s, 'short')}")
        text = "  ".join(parts)
    elif isinstance(event, ev.Progress):
        parts = [printable(event.stage), f"{event.done}/{event.total}"]
        if event.label:
            parts.append(printable(event.label))
        if event.rate:
            parts.append(f"{event.rate:.2f}/s")
        if event.loss is not None:
            parts.append(f"loss {event.loss:.4f}")
        if event.eta_s is not None:
            parts.append(f"eta {duration(event.eta_s, 'short')}")
        text = "  ".join(parts)
    elif isinstance(event, ev.StageStarted):
        text = f"stage {printable(event.stage)} started {printable(event.detail)}".rstrip()
    elif isinstance(event, ev.StageFinished):
        done = "skipped" if event.skipped else "done"
        text = f"stage {printable(event.stage)} {done} in {duration(event.seconds, 'short')}"
    elif isinstance(event, ev.Failed):
        text = f"FAILED in {printable(event.stage)}: {printable(event.message)}" + (
            f"\n  what to do: {printable(event.hint)}" if event.hint else "")
    elif isinstance(event, ev.JobFinished):
        text = f"job finished in {duration(event.seconds, 'short')}; outputs in {printable(event.outputs)}"
    elif isinstance(event, ev.Message):
        text = f"{printable(event.level)}: {printable(event.text)}"
    elif isinstance(event, (ev.SampleReady, ev.CollageReady, ev.CheckpointSaved)):
        what = {"SampleReady": "image", "CollageReady": "collage", "CheckpointSaved": "checkpoint"}[
            type(event).__name__
        ]
        text = f"{what} {printable(event.path)}"
    elif isinstance(event, ev.Stopped):
        text = f"stopped: {printable(event.reason)}"
    elif isinstance(event, ev.RunnerStarted):
        text = f"runner {event.pid} {'resumed' if event.resumed else 'started'}"
    else:
        text = type(event).__name__
    return f"{stamp} {text}"


def _follow(paths: Any) -> int:
    from ioncannon.job import events as ev
    from ioncannon.job import handle

    ends = {ev.JobFinished: EXIT_OK, ev.Failed: EXIT_FAILED, ev.Stopped: EXIT_STOPPED}
    was_alive = True
    try:
        for news in handle.follow(paths):
            for event in news.events:
                print(format_event(event), flush=True)
                if type(event) in ends:
                    handle.wait_until_exited(paths, 30)  # so the next command finds the job free
                    return ends[type(event)]
            if not news.alive:
                if was_alive:  # one more look: the runner's last events may land just after it lets go of the lock
                    was_alive = False
                    continue
                if news.state.status == "finished":
                    return EXIT_OK
                print(f"the runner exited ({news.state.status}). Details: {printable(paths.log_file)}", file=sys.stderr)
                return EXIT_FAILED
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("\nDetached. The job keeps running: `ioncannon status` shows it, `ioncannon stop` stops it.")
        return EXIT_OK


# --------------------------------------------------------------------------- status / resume / stop


def job_status(job: Any) -> dict[str, Any]:
    from ioncannon.job.state import is_live, shown_done, shown_status

    st = job.state
    status = "damaged" if job.spec is None and not job.alive else shown_status(st.status, job.alive)
    spec = job.spec
    running = is_live(st.status, job.alive) and st.status == "running"  # a rate and ETA only while it runs
    return {
        "job": job.name,
        "status": status,
        "alive": job.alive,
        "stage": st.stage,
        "stages_done": st.stages_done,
        "step": shown_done(job.paths, st),
        "total": st.total,
        "loss": st.loss,
        "rate": st.rate if running else None,
        "eta_s": st.eta_s if running else None,
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
    if args.job is None and not _any_job(args):
        # No jobs is an answer, not a mistake: say so and how to make one, exit 0 (and make no folder: a look
        # at a mistyped --workdir must not leave it behind).
        where = _looked_at_workdir(args)
        if args.json:
            print(json.dumps({"jobs": [], "workdir": str(where)}, indent=2))
        else:
            if not where.is_dir():
                print(f"no jobs in {where}: that folder does not exist (check --workdir).")
            else:
                print(f"no jobs in {where} yet. Start one with `ioncannon` (the wizard) or `ioncannon run JOBFILE`.")
        return EXIT_OK
    job = find_job(args, create=False)
    info = job_status(job)
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    from ioncannon.job.download import size_text

    line = f"{info['status']}"
    download = info["stage"] == "fetch"  # its counts are bytes: shown as sizes
    if info["stage"]:
        count = f"{size_text(info['step'])}/{size_text(info['total'])}" if download else \
            f"{info['step']}/{info['total']}"
        line += f"   stage {info['stage']}   {count}"
    if info["loss"] is not None:
        line += f"   loss {info['loss']:.4f}"
    if info["rate"]:
        line += f"   {size_text(info['rate'])}/s" if download else f"   {info['rate']:.2f}/s"
    if info["eta_s"]:
        line += f"   eta {duration(info['eta_s'], 'short')}"
    print(f"job      {printable(info['job'])}")
    print(f"state    {printable(line)}")
    print(f"done     {printable(', '.join(info['stages_done']) or '-')}")
    print(f"elapsed  {duration(info['elapsed_s'], 'short')}")
    if info["message"]:
        print(f"note     {printable(info['message'])}")
    if info["status"] == "damaged":
        print(f"what now {DAMAGED_JOB_HINT}")
    elif info["status"] == "interrupted":
        from ioncannon.job.state import resume_promise

        promise = resume_promise(job.paths, job.state)
        print(f"what now the runner stopped without finishing; `ioncannon resume`: {promise}")
    elif info["hint"]:
        print(f"what now {printable(info['hint'])}")
    for key, value in info["paths"].items():
        print(f"{key:<17}{printable(value)}")
    return EXIT_OK


def _looked_at_workdir(args: argparse.Namespace) -> Path:
    return given_workdir(args)


def _any_job(args: argparse.Namespace) -> bool:
    from ioncannon.job.workdir import list_jobs

    return bool(list_jobs(_looked_at_workdir(args)))


def _cmd_resume(args: argparse.Namespace) -> int:
    from ioncannon.job import handle
    from ioncannon.job.errors import JobError
    from ioncannon.job.lock import RunnerBusy

    job = find_job(args)
    if job.alive:
        if args.detach:
            print(f"job {printable(job.name)} is already running; nothing to resume.")
            return EXIT_OK
        print(f"job {printable(job.name)} is already running; following it (Ctrl+C detaches).")
        return _follow(job.paths)
    if job.spec is None:
        raise UserError(f"job {printable(job.name)} can't be resumed: {job.problem}. {DAMAGED_JOB_HINT}")
    if job.state.finished:
        print(f"job {printable(job.name)} already finished; outputs in {printable(job.paths.outputs)}")
        return EXIT_OK
    if args.base_model:
        job = _with_base_model(job, args.base_model, chosen_workdir(args))
    try:
        pid = handle.resume(job, chosen_workdir(args))
    except RunnerBusy as exc:  # another `resume` (or the wizard) started it a moment before: follow that one
        print(f"job {printable(job.name)} was resumed by another command a moment ago (runner pid {exc.pid}); "
              + ("nothing more to do." if args.detach else "following it (Ctrl+C detaches)."))
        return EXIT_OK if args.detach else _follow(job.paths)
    except JobError as exc:
        raise UserError(str(exc)) from exc
    print(f"job {printable(job.name)} resumed (runner pid {pid})")
    return EXIT_OK if args.detach else _follow(job.paths)


def _with_base_model(job: Any, base_model: str, workdir: Path) -> Any:
    """The job with its base model changed, after the same door check a new job gets."""
    from ioncannon.engine.hub_files import door_check
    from ioncannon.job import handle
    from ioncannon.job.errors import JobError
    from ioncannon.job.families import detect_family, mismatch_message
    from ioncannon.job.workdir import find_job as find_named

    found = detect_family(base_model)
    if found is not None and found != job.spec.family:
        raise UserError(mismatch_message(base_model, found, job.spec.family))
    check = door_check(job.spec.replace(base_model=base_model.strip()), workdir)
    if check.problem:
        raise UserError(check.problem)
    try:
        spec = handle.change_base_model(job, base_model)
    except JobError as exc:
        raise UserError(str(exc)) from exc
    print(f"job {printable(job.name)}: base model now {printable(spec.base_model)}; the stages after the photos "
          "run again.")
    return find_named(workdir, job.name) or job


def _cmd_stop(args: argparse.Namespace) -> int:
    from ioncannon.job import handle
    from ioncannon.job.errors import JobError

    job = find_job(args)
    try:
        asked = handle.stop(job.paths)
    except JobError as exc:  # locked, but not provably by its runner: nothing was signalled
        raise UserError(str(exc)) from exc
    if not asked:
        print(f"job {printable(job.name)} is not running.")
        return EXIT_OK
    print(f"asked job {printable(job.name)} to checkpoint and stop ...")
    if not handle.wait_until_exited(job.paths, STOP_WAIT_S):
        from ioncannon.job.lock import runner_pid

        pid = runner_pid(job.paths)
        print(f"ioncannon: job {printable(job.name)} has not stopped after {STOP_WAIT_S:.0f} s: its runner (pid {pid}) "
              "still holds the job, perhaps stuck. Wait and `ioncannon status`, or end it with `kill -9 "
              f"{pid}`; `ioncannon resume` later continues from the last checkpoint.", file=sys.stderr)
        return EXIT_FAILED
    print("stopped. Resume with `ioncannon resume`.")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
