"""`ioncannon bundle`, `ioncannon wipe` and `ioncannon destroy`: the finish line from a plain shell."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ioncannon.cli import common
from ioncannon.job.fsio import free_bytes
from ioncannon.job.paths import JobPaths
from ioncannon.job.printable import printable_lines
from ioncannon.job.spec import JobSpec
from ioncannon.rental.bundle import (
    DEFAULT_MODEL_FORMATS,
    MODEL_FORMATS,
    BundleError,
    bundle_counts,
    download_decided,
    human_bytes,
    plan_bundle,
    record_download,
    update_finish_record,
    write_bundle,
)
from ioncannon.rental.download import write_download_file
from ioncannon.rental.provider import (
    WHY_DESTROY,
    Action,
    ProviderError,
    build_command,
    console_steps,
    detect_provider,
    run_provider_command,
)
from ioncannon.rental.wipe import NOT_A_SECURE_ERASE, WipeError, plan_wipe, wipe


class JobNotFound(Exception):
    """No job matches; the message says where it looked."""


def find_job(args: argparse.Namespace, damaged_ok: bool = False) -> tuple[JobPaths, JobSpec]:
    """The named job in the work dir (or a job folder given as a path), else the newest one.

    `damaged_ok` (wipe): a job whose job.json is damaged still gets its subject's copies removed; only its
    folder name is needed for that, so a stand-in spec carries it.
    """
    try:
        summary = common.find_job(args)
    except common.UserError as exc:
        raise JobNotFound(str(exc)) from exc
    if summary.spec is None:
        if damaged_ok:
            return summary.paths, JobSpec(name=summary.name, photos_dir="(unknown: job.json is damaged)",
                                          identifier="", class_name="")
        raise JobNotFound(f"{summary.paths.root}: {summary.problem}")
    return summary.paths, summary.spec


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("job", nargs="?", help="job name or folder (default: the most recent job)")
    parser.add_argument("--workdir", default=None, help="where the jobs live")
    return parser


def _ask(prompt: str) -> str | None:
    """One typed line, or None when there is nobody to type (end of input)."""
    try:
        return input(prompt).strip()
    except EOFError:
        print()
        return None


def _load(args: argparse.Namespace, damaged_ok: bool = False) -> tuple[JobPaths, JobSpec] | None:
    try:
        return find_job(args, damaged_ok)
    except JobNotFound as exc:
        print(f"ioncannon: {exc}", file=sys.stderr)
        return None


def _model_formats(value: str) -> tuple[str, ...]:
    if value == "all":
        return MODEL_FORMATS
    if value == "none":
        return ()
    return tuple(v.strip() for v in value.split(",") if v.strip())


def bundle_main(argv: Sequence[str]) -> int:
    """Write one zip of the job's results, after showing its size; print the download commands."""
    parser = _parser("ioncannon bundle", "Write one archive of a job's results to copy home.")
    parser.add_argument("--images", choices=("all", "starred"), default="all", help="all images, or the starred ones")
    parser.add_argument(
        "--model", default=",".join(DEFAULT_MODEL_FORMATS),
        help="model formats: single, diffusers, lora (comma-separated), all, or none",
    )
    parser.add_argument("--yes", action="store_true", help="write without asking")
    args = parser.parse_args(list(argv))
    found = _load(args)
    if found is None:
        return 2
    paths, spec = found
    try:
        plan = plan_bundle(paths, spec, images=args.images, model_formats=_model_formats(args.model))
    except BundleError as exc:
        print(f"ioncannon: {exc}", file=sys.stderr)
        return 1
    print(f"Bundle of {spec.name}: {bundle_counts(plan.counts)}")
    print(
        f"  {human_bytes(plan.archive_bytes)} → {plan.archive}"
        f"  ({human_bytes(free_bytes(plan.archive.parent))} free here)"
    )
    if not args.yes:
        answer = _ask("Write it? [Y/n] ")
        if answer is None or answer.lower() not in ("", "y", "yes"):
            print("Not written.")
            return 1
    last = [-1]

    def show(done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if percent != last[0]:
            last[0] = percent
            print(f"\r  writing… {percent:3d}%", end="", file=sys.stderr, flush=True)

    try:
        archive = write_bundle(plan, progress=show)
    except BundleError as exc:
        print(f"\nioncannon: {exc}", file=sys.stderr)
        return 1
    print(file=sys.stderr)
    try:
        update_finish_record(paths, bundle={"path": str(archive), "bytes": archive.stat().st_size})
        commands = write_download_file(paths, spec)
    except OSError as exc:
        print(f"ioncannon: the bundle is written ({archive}), but DOWNLOAD.txt could not be ({exc.strerror}): "
              "free some space and run `ioncannon bundle` again for the download commands.", file=sys.stderr)
        return 1
    print(f"Written: {archive} ({human_bytes(archive.stat().st_size)})")
    print("\nOn YOUR computer, run one of:")
    print(f"  {commands.scp}\n  {commands.rsync}")
    if commands.note:
        print(commands.note)
    print(f"(also in {paths.root / 'DOWNLOAD.txt'})")
    print(f"\nOnce it is home: `ioncannon wipe {spec.name}` removes the subject's data, then destroy the instance.")
    return 0


def wipe_main(argv: Sequence[str]) -> int:
    """Remove every copy of the subject the job made, after the user types the job name."""
    parser = _parser("ioncannon wipe", "Remove the subject's photos, caches, checkpoints and previews from this box.")
    parser.add_argument("--results", action="store_true", help="also remove the generated images, models and bundle")
    parser.add_argument("--yes-i-downloaded", action="store_true", help="skip the typed confirmation (for scripts)")
    args = parser.parse_args(list(argv))
    found = _load(args, damaged_ok=True)
    if found is None:
        return 2
    paths, spec = found
    items = plan_wipe(paths, spec, include_results=args.results)
    if not items:
        print("Nothing of the subject is left in this job to remove.")
        print(NOT_A_SECURE_ERASE)
        return 0
    print(f"This removes from {paths.root}:")
    for item in items:
        print(f"  {item.label}: {item.path} ({item.files} files, {human_bytes(item.bytes)})")
    if not args.results:
        print("  (the generated images and models stay; add --results to remove them too)")
    if not args.yes_i_downloaded:
        typed = _ask(f"Your results are home and you want these gone? Type the job name ({spec.name}) to remove them: ")
        if typed != spec.name:
            print("Nothing removed." if typed is not None else "No confirmation typed; nothing removed.")
            return 1
    try:
        receipt = wipe(paths, spec, include_results=args.results)
    except WipeError as exc:
        print(f"ioncannon: {exc}", file=sys.stderr)
        return 1
    try:
        record_download(paths, "confirmed")
    except OSError:  # a full disk: the subject's files are gone all the same; the note is a nicety
        pass
    print(printable_lines("\n".join(receipt.lines())))
    return 0 if not receipt.failed else 1


def _last_words(steps: list[str]) -> None:
    print(f"\nDESTROY this instance, don't just stop it. {WHY_DESTROY}")
    for step in steps:
        print(f"  • {step}")


def stop_main(argv: Sequence[str]) -> int:
    """Stop or destroy this rented instance with the provider's own CLI, after typed confirmation."""
    parser = _parser("ioncannon destroy", "Destroy (or stop) this rented instance from inside, via the provider's CLI.")
    parser.add_argument("--stop", action="store_true", help="only stop it (its disk keeps billing)")
    parser.add_argument(
        "--yes-i-downloaded", action="store_true", help="results are home (or not wanted): skip that question"
    )
    parser.add_argument("--yes", action="store_true", help="skip the typed confirmation (for scripts)")
    args = parser.parse_args(list(argv))
    info = detect_provider()
    action: Action = "stop" if args.stop else "destroy"
    try:
        command = build_command(info, action)
    except ProviderError as exc:
        print(f"ioncannon: {exc}.")
        _last_words(console_steps(info))
        return 1
    job = None
    try:
        job = find_job(args)
    except JobNotFound:
        pass  # no job on this box: nothing to download first
    if args.yes_i_downloaded:
        if job is not None:
            record_download(job[0], "confirmed")
    elif job is not None and download_decided(job[0]) is None:
        answer = _ask("Are your results copied home? Type yes, or skip to go without them: ")
        if answer not in ("yes", "skip"):
            print("Not run: download the results first (`ioncannon bundle`), or answer skip.")
            return 1
        record_download(job[0], "confirmed" if answer == "yes" else "declined")
    print(f"This will run:  {command.shown}")
    if action == "stop":
        print("Note: a stopped instance still bills for its storage; destroy it when you are done.")
    if not args.yes:
        typed = _ask(f"Type {action} to {action} {info.display_name} instance {info.instance_id}: ")
        if typed != action:
            print("Not run.")
            return 1
    result = run_provider_command(command, confirmed=True)
    if result.output:
        print(result.output)
    if result.returncode != 0:
        print(f"ioncannon: {info.display_name} said no (exit {result.returncode}); do it in the console instead:")
        _last_words(console_steps(info))
        return 1
    print(f"Asked {info.display_name} to {action} instance {info.instance_id}.")
    if action == "stop":
        _last_words(console_steps(info))
    return 0
