"""The detached process that runs a job's stages and keeps state.json and events.jsonl current."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from ioncannon.job.events import (
    Event,
    Failed,
    JobFinished,
    Message,
    Progress,
    RunnerStarted,
    StageFinished,
    StageStarted,
    Stopped,
)
from ioncannon.job.fsio import append_line
from ioncannon.job.lock import try_lock
from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec, load_spec
from ioncannon.job.stages import STAGE_NAMES
from ioncannon.job.state import JobState, read_state, write_state
from ioncannon.rental.costs import BUDGET_HINT, budget_exceeded

# --------------------------------------------------------------------------- the runner itself


class Runner:
    """Runs the stages of one job in order, skipping those already done; owns state.json and the event log."""

    STATE_WRITE_INTERVAL = 0.5

    def __init__(self, paths: JobPaths, workdir: Path, spec: JobSpec, log: logging.Logger) -> None:
        self.paths, self.workdir, self.spec, self.log = paths, workdir, spec, log
        self.state = read_state(paths)
        if self.state.status == "unknown":
            log.warning("state.json was unreadable (%s); starting from the stages on disk", self.state.message)
            self.state = JobState()
        self.stop_reason = ""
        self._t0 = time.time()
        self._elapsed0 = self.state.elapsed_s
        self._last_write = 0.0

    # events and state
    def emit(self, event: Event) -> None:
        append_line(self.paths.events_file, event.dumps())
        force = not isinstance(event, Progress)
        if isinstance(event, Progress):
            self.state.done, self.state.total = event.done, event.total
            self.state.rate, self.state.eta_s = event.rate, event.eta_s
            if event.loss is not None:
                self.state.loss = event.loss
        elif isinstance(event, Message) and event.level != "info":
            self.state.message = event.text
        self._write_state(force)

    def _write_state(self, force: bool = True) -> None:
        now = time.time()
        if not force and now - self._last_write < self.STATE_WRITE_INTERVAL:
            return
        self._last_write = now
        self.state.elapsed_s = self._elapsed0 + (now - self._t0)
        write_state(self.paths, self.state)

    def should_stop(self) -> bool:
        if not self.stop_reason:
            # the cap counts run time summed over runner lifetimes, as the user saw it on screen
            self.stop_reason = budget_exceeded(
                self.spec, self.state.started_at, elapsed_s=self._elapsed0 + time.time() - self._t0,
            ) or ""
        return bool(self.stop_reason)

    # the loop
    def run(self) -> int:
        from ioncannon.engine.context import StageContext
        from ioncannon.engine.stages import stage_function
        from ioncannon.job.errors import StageError, StopRequested

        self._t0 = time.time()  # run time counts from here, as started_at does (not from the library imports)
        resumed = bool(self.state.stages_done) or self.state.status in ("running", "stopped", "failed", "stopping")
        self.state.status, self.state.pid = "running", os.getpid()
        self.state.message = self.state.hint = ""
        self.state.started_at = self.state.started_at or time.time()
        self.emit(RunnerStarted(pid=os.getpid(), resumed=resumed))
        try:
            from ioncannon.engine.models.load import resolve_device

            device = resolve_device(self.spec.device)
        except Exception as exc:  # ModelLoadError: no GPU with a real model
            return self._fail("prepare", str(exc), "")
        ctx = StageContext(self.spec, self.paths, self.workdir, self.emit, self.should_stop, device, self.log)
        for stage in STAGE_NAMES:
            if stage in self.state.stages_done:
                continue
            if self.should_stop():
                return self._stopped()
            self.state.stage, self.state.done, self.state.total = stage, 0, 0
            self.state.loss, self.state.eta_s = None, None
            self.emit(StageStarted(stage=stage))
            t = time.time()
            try:
                stage_function(stage)(ctx)
            except StopRequested:
                return self._stopped()
            except StageError as exc:
                self.log.error("stage %s failed: %s\n%s", stage, exc.message, traceback.format_exc())
                return self._fail(stage, exc.message, exc.hint)
            except Exception as exc:  # an unexpected bug: the traceback goes to the log, a sentence to the user
                self.log.error("stage %s crashed:\n%s", stage, traceback.format_exc())
                return self._fail(stage, f"{stage} stopped on an unexpected error: {type(exc).__name__}: {exc}"[:400],
                                  f"The details are in {self.paths.log_file}. Fix the cause, then resume: `ioncannon`.")
            self.state.stages_done.append(stage)
            self.emit(StageFinished(stage=stage, seconds=time.time() - t))
        self.state.status, self.state.stage = "finished", None
        self.emit(JobFinished(seconds=self._elapsed0 + time.time() - self._t0, outputs=str(self.paths.outputs)))
        return 0

    def _stopped(self) -> int:
        self.state.status = "stopped"
        self.state.message = self.stop_reason or "stopped"
        self.state.hint = (
            BUDGET_HINT if self.stop_reason.startswith("budget")
            else "Run `ioncannon` (or `ioncannon resume`) to continue from the last checkpoint."
        )
        self.emit(Stopped(reason=self.state.message))
        return 0

    def _fail(self, stage: str, message: str, hint: str) -> int:
        self.state.status, self.state.message, self.state.hint = "failed", message, hint
        self.emit(Failed(stage=stage, message=message, hint=hint))
        return 1


def _setup_logging(paths: JobPaths) -> logging.Logger:
    log = logging.getLogger("ioncannon")
    log.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stdout)  # stdout is runner.log (handle.start points it there)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ioncannon.engine.runner")
    parser.add_argument("job_root")
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args(argv)
    paths = JobPaths(args.job_root)
    lock = None
    for _ in range(20):  # a client may be probing the lock for a moment
        lock = try_lock(paths)
        if lock is not None:
            break
        time.sleep(0.05)
    if lock is None:
        print("another runner holds this job's lock; exiting", file=sys.stderr)
        return 3
    lock.seek(0)
    lock.truncate(0)
    lock.write(f"{os.getpid()} {time.time():.0f}\n")
    lock.flush()
    log = _setup_logging(paths)
    runner = Runner(paths, Path(args.workdir), load_spec(paths), log)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a dropped SSH link must not stop the work

    def on_term(signum: int, _frame: object) -> None:
        runner.stop_reason = runner.stop_reason or f"stopped on request ({signal.Signals(signum).name})"
        if runner.state.status == "running":
            runner.state.status = "stopping"

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    _quiet_libraries()
    log.info("runner %d started for %s", os.getpid(), paths.root)
    return runner.run()


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        from diffusers.utils import logging as dlog

        dlog.disable_progress_bar()
        dlog.set_verbosity_error()
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except Exception:
        pass


if __name__ == "__main__":
    sys.exit(main())
