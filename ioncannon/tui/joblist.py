"""The welcome card's job list as text: one row per job, and the panel for the highlighted one (no Textual)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from ioncannon.job.families import FAMILIES
from ioncannon.job.printable import printable
from ioncannon.job.stages import label as stage_label
from ioncannon.job.state import LIVE_STATUSES, resume_promise, shown_status
from ioncannon.job.units import duration
from ioncannon.tui.wizard import job_action

if TYPE_CHECKING:
    from ioncannon.job.workdir import JobSummary


def _wiped(job: JobSummary) -> bool:
    from ioncannon.rental.bundle import read_finish_record

    return isinstance(read_finish_record(job.paths).get("wipe"), dict)


def keys(text: Text, *pairs: tuple[str, str]) -> None:
    """Appends each (keys, what they do) pair: "enter / v open it   r try again"; keys split on "/"."""
    for n, (labels, what) in enumerate(pairs):
        for m, label in enumerate(labels.split("/")):
            if m:
                text.append(" / ")
            text.append_text(key(label))
        text.append(f" {what}" + ("   " if n < len(pairs) - 1 else ""))


def key(label: str) -> Text:
    """A key as the cards draw it: reversed, padded."""
    return Text(f" {label} ", style="bold reverse")


def job_row(job: JobSummary) -> Text:
    """One row of the job list: name, family (demo or not), state and where it got to."""
    text = Text(f"{printable(job.name):<28.28} ")
    if job.spec is None:
        text.append("can't be read", style="yellow")
        return text
    family = FAMILIES[job.spec.family].label if job.spec.family in FAMILIES else job.spec.family
    text.append(f"{('demo ' if job.spec.demo else '') + family:<13}", style="dim")
    status = shown_status(job.state.status, job.alive)
    style = {"finished": "green", "failed": "red", "running": "cyan", "interrupted": "yellow"}.get(status, "")
    text.append(f"{status:<12}", style=style)
    if job.state.status != "finished":
        where = stage_label(job.state.stage) or "not started"
        if job.state.total:
            where += f" {job.state.done}/{job.state.total}"
        text.append(where, style="dim")
    if _wiped(job):
        text.append(" wiped", style="dim")  # its copies of the subject are gone; s or d clears the row
    return text


def state_panel(job: JobSummary, now: float) -> Text:
    """What the highlighted job is, where it got to, and the keys that act on it (enter never re-runs a failure)."""
    state, action = job.state, job_action(job.state.status, job.alive)
    text = Text()
    text.append(f"{'Demo job' if job.spec is not None and job.spec.demo else 'Job'} ", style="bold")
    text.append(printable(job.name), style="bold cyan")
    where = stage_label(state.stage) or "not started"
    if state.total and state.status != "finished":
        where += f" {state.done}/{state.total}"
    text.append(f" · {shown_status(state.status, job.alive)}")
    if state.status != "finished":
        text.append(f" · stage: {where}")
    if state.elapsed_s:
        text.append(f" · ran {duration(state.elapsed_s)}")
    text.append("\n")
    ago = ""
    if state.updated_at:
        ago = f" (last heard from {duration(max(0.0, now - state.updated_at))} ago)"
    if action == "attach":
        text.append("Its runner is working right now. ", style="green")
        keys(text, ("enter/a", "attach and watch it"))
        return text
    if state.status == "finished":
        text.append("Finished. ", style="green")
        keys(text, ("enter/v", "open its results and images"))
    elif state.status == "failed":
        text.append(f"It failed{ago}: {state.message or 'no reason was recorded'}", style="red")
        text.append("\n")
        keys(text, ("enter/v", "open it (nothing runs)"), ("r", "try it again as it is"))
    else:
        if state.status in LIVE_STATUSES:
            text.append(f"Its runner stopped without finishing (killed, or the machine restarted){ago}.",
                        style="yellow")
        elif state.status == "unknown":
            text.append(f"Its progress file can't be read ({state.message}); resuming rebuilds it from "
                        "the work on disk.", style="yellow")
        else:
            text.append(f"Nothing is running it now{ago}.", style="yellow")
        text.append("\n")
        keys(text, ("enter/r", f"resume it: {resume_promise(job.paths, state)}"))
    text.append("\n")
    keys(text, ("s", "set it aside (archive)"), ("d", "delete it"), ("n", "a new job"))
    return text
