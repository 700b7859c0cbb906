"""What every command shares: the one user-error type, the work dir from --workdir, and finding a job."""

from __future__ import annotations

import argparse
from pathlib import Path

from ioncannon.job import handle
from ioncannon.job.errors import JobError
from ioncannon.job.workdir import JobSummary, WorkdirError, default_workdir, ensure_workdir


class UserError(Exception):
    """Something the person can fix; printed as one line, exit status 2."""


def given_workdir(args: argparse.Namespace) -> Path:
    """The work dir --workdir names (not made yet), else the default; an empty --workdir is a mistake, not a
    wish for the default (a script's unset variable would otherwise put jobs somewhere unexpected)."""
    value = getattr(args, "workdir", None)
    if value is None:
        return default_workdir()
    if not str(value).strip():
        raise UserError(f"--workdir is empty: give the folder where jobs live, or leave --workdir out for "
                        f"the default ({default_workdir()}).")
    return Path(value).expanduser()


def workdir(args: argparse.Namespace) -> Path:
    """The work dir from --workdir (or the default), created and checked to be writable."""
    try:
        return ensure_workdir(given_workdir(args))
    except WorkdirError as exc:
        raise UserError(str(exc)) from exc


def find_job(args: argparse.Namespace, create: bool = True) -> JobSummary:
    """The job named by args.job (a name in the work dir, or a job folder), else the newest one.

    `create=False` (a command that only looks) leaves a missing work dir missing.
    """
    where = workdir(args) if create else given_workdir(args)
    try:
        return handle.find(where, args.job)
    except JobError as exc:
        raise UserError(str(exc)) from exc
