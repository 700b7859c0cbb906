"""`ioncannon doctor`: check a photo folder and write a clean, correctly named training set."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import textwrap
from pathlib import Path
from typing import TextIO

from ioncannon.engine.identifier import CLASSES, lint_identifier
from ioncannon.engine.photos.folder import PhotoFinding, PhotoFolderError, normalise, scan_folder, usable
from ioncannon.job.printable import printable, printable_lines
from ioncannon.job.workdir import overlaps

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ioncannon doctor",
        description="Check a folder of photos (read-only) and write normalised copies named "
                    "'{identifier} {class}_NNN.png' into OUT.",
    )
    p.add_argument("photo_dir", metavar="PHOTO_DIR", help="folder with the subject's photos (never changed)")
    p.add_argument("--identifier", required=True, metavar="ID", help="rare word for the subject, e.g. zwx")
    p.add_argument("--class", dest="class_name", required=True, metavar="CLASS",
                   help=f"what the subject is: {', '.join(CLASSES)}, or your own word")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write the normalised copies")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of the table")
    p.add_argument("--resolution", type=int, default=512, metavar="N", help="training resolution (default 512)")
    return p


def _table(findings: list[PhotoFinding], out: Path, width: int | None = None) -> str:
    """Plain text: file, status, what was done / why, output; long reasons wrap under their column."""
    width = width or max(80, shutil.get_terminal_size((100, 24)).columns)
    # file names and the reasons that quote them come from outside: shown with control characters escaped
    rows = [(printable(f.file), f.status,
             printable("; ".join(f.reasons + ([f"suggested: {f.suggestion}"] if f.suggestion else []))) or "-",
             printable(f.output or "-")) for f in findings]
    fw = min(max([len("file")] + [len(r[0]) for r in rows]), 32)
    ow = max([len("output")] + [len(r[3]) for r in rows])
    rw = max(30, width - fw - ow - 10 - 6)
    lines = [f"{'file':<{fw}}  {'status':<8}  {'what was done / why':<{rw}}  output",
             f"{'-' * fw}  {'-' * 8}  {'-' * rw}  {'-' * ow}"]
    for file, status, why, output in rows:
        wrapped = textwrap.wrap(why, rw) or ["-"]
        name = file if len(file) <= fw else file[: fw - 1] + "…"
        lines.append(f"{name:<{fw}}  {status:<8}  {wrapped[0]:<{rw}}  {output}")
        lines.extend(f"{'':<{fw}}  {'':<8}  {more}" for more in wrapped[1:])
    n = len(usable(findings))
    lines.append("")
    lines.append(f"{n} photo{'s' if n != 1 else ''} written to {printable(out)}")
    return "\n".join(lines)


def _fail(message: str, err: TextIO) -> int:
    print(printable_lines(f"ioncannon doctor: {message}"), file=err)
    return EXIT_BAD_INPUT


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the doctor; 0 when at least one usable photo was written, 2 for bad input."""
    out, err = out or sys.stdout, err or sys.stderr
    args = _parser().parse_args(argv)
    if args.resolution < 64 or args.resolution > 4096:
        return _fail(f"--resolution {args.resolution} is out of range: use 64–4096 (512 for SD 1.x)", err)
    lint = lint_identifier(args.identifier, args.class_name)
    if not lint.ok:
        return _fail("; ".join(lint.errors), err)
    for warning in lint.warnings:
        print(f"warning: {warning}", file=err)
    if lint.warnings and lint.suggestions:
        print(f"rare alternatives: {', '.join(lint.suggestions)}", file=err)
    try:
        findings = scan_folder(args.photo_dir, args.resolution)
    except PhotoFolderError as exc:
        return _fail(str(exc), err)
    if not usable(findings):
        shown = "\n".join(f"  {printable(f.file)}: {f.status}: {printable('; '.join(f.reasons))}" for f in findings)
        return _fail(f"no usable photos in {args.photo_dir}: add JPEG/PNG/HEIC photos of the subject"
                     + (f"\n{shown}" if shown else " (the folder is empty)"), err)
    if not args.out.strip():
        return _fail("--out is empty: give the folder to write the copies to", err)
    target = Path(args.out).expanduser()
    if overlaps(target, args.photo_dir):
        return _fail("--out must be outside the photo folder, and the photo folder outside --out (the photo "
                     "folder is never changed): pick another folder", err)
    try:
        findings = normalise(args.photo_dir, findings, args.identifier.strip(), args.class_name.strip(),
                             target, args.resolution)
    except PhotoFolderError as exc:
        return _fail(str(exc), err)
    except OSError as exc:
        return _fail(f"cannot write to {target}: {exc.strerror or exc}; pick a folder you can write to", err)
    try:
        _print_result(findings, target, args.json, lint.prompt, out)
    except BrokenPipeError:
        # `ioncannon doctor … | head` closed the pipe early: the copies are written, stay quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if not usable(findings):
        return _fail("every photo vanished or changed while it was being copied: run the doctor again", err)
    return EXIT_OK


def _print_result(findings: list[PhotoFinding], target: Path, as_json: bool, prompt: str, out: TextIO) -> None:
    if as_json:
        payload = []
        for f in findings:
            item = f.to_json()
            item["output"] = str(target / f.output) if f.output else None
            payload.append(item)
        print(json.dumps(payload, indent=2), file=out)  # ASCII escapes: exact names, nothing a terminal acts on
    else:
        print(_table(findings, target), file=out)
        print(f"prompt to use after training: {printable(prompt)}", file=out)
    out.flush()


if __name__ == "__main__":
    sys.exit(main())
