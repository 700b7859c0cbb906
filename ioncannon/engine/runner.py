"""The detached process that runs a job's stages and keeps state.json and events.jsonl current."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

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
from ioncannon.job.fsio import StateFileError, append_line, free_bytes, open_job_file
from ioncannon.job.handle import DAMAGED_JOB_HINT, runner_command
from ioncannon.job.lock import adopt_lock, try_lock
from ioncannon.job.paths import JobPaths
from ioncannon.job.printable import printable, printable_lines
from ioncannon.job.spec import JobSpec, load_spec
from ioncannon.job.stages import STAGE_NAMES, load
from ioncannon.job.stages import stage as stage_info
from ioncannon.job.state import JobState, read_state, write_state
from ioncannon.rental.costs import BUDGET_HINT, budget_exceeded

RESERVE_NAME = "reserve"
# A GPU kernel that crashes (an illegal memory access) leaves the process's CUDA context unusable: the runner marks
# the attention kernel in use as broken and starts itself again, in place, which tests and picks the next kernel.
RESTART_EXIT = 75
KERNEL_RESTARTS_ENV = "IONCANNON_KERNEL_RESTARTS"
MAX_KERNEL_RESTARTS = 2


def _free_text(paths: JobPaths) -> str:
    try:
        return f"{free_bytes(paths.root) / 1e6:.0f} MB free in {paths.root}"
    except OSError:
        return f"no space left in {paths.root}"


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
        if isinstance(event, Message):  # stages quote file names and library text: the log shows them printable
            event = dataclasses.replace(event, text=printable(event.text, 2000))
        try:
            append_line(self.paths.events_file, event.dumps())
        except OSError as exc:  # the event log is a convenience; the state below is what status reads
            if not self._disk_full(exc):
                raise
            self.log.error("could not append to the event log: %s", exc)
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
        try:
            write_state(self.paths, self.state)
        except OSError as exc:
            if not self._disk_full(exc):
                raise
            if self.state.status == "running":  # a progress update: the work goes on, the next write may land
                self.log.warning("could not update state.json: %s", exc)
                return
            # the job ends on a full disk: give back the space set aside at start so status can read why
            self._release_reserve()
            try:
                write_state(self.paths, self.state)
            except OSError:
                self.log.error("could not write state.json on a full disk:\n%s", traceback.format_exc())

    # a full disk must still be recorded: a little space is set aside at start and given back to write the failure
    RESERVE_BYTES = 1 << 20

    def make_reserve(self) -> None:
        reserve = self.paths.meta / RESERVE_NAME
        try:
            if not reserve.exists() or reserve.stat().st_size < self.RESERVE_BYTES:
                with os.fdopen(open_job_file(reserve, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as fh:
                    fh.write(b"\0" * self.RESERVE_BYTES)  # real blocks, not a sparse hole
                    fh.flush()
                    os.fsync(fh.fileno())
        except OSError as exc:
            self.log.warning("could not set aside disk space for recording failures: %s", exc)

    def _release_reserve(self) -> None:
        try:
            (self.paths.meta / RESERVE_NAME).unlink()
        except OSError:
            pass

    @staticmethod
    def _disk_full(exc: BaseException | None) -> bool:
        while exc is not None:
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return True
            exc = exc.__cause__ or exc.__context__
        return False

    def should_stop(self) -> bool:
        if not self.stop_reason:
            # the cap counts run time summed over runner lifetimes, as the user saw it on screen
            self.stop_reason = budget_exceeded(
                self.spec, self.state.started_at, elapsed_s=self._elapsed0 + time.time() - self._t0,
            ) or ""
        return bool(self.stop_reason)

    # the loop
    def run(self) -> int:
        from ioncannon.engine.attention import is_kernel_error as kernel_error
        from ioncannon.engine.context import StageContext
        from ioncannon.engine.models.load import ModelLoadError
        from ioncannon.engine.stages import stage_function
        from ioncannon.job.errors import StageError, StopRequested

        self._t0 = time.time()  # run time counts from here, as started_at does (not from the library imports)
        resumed = bool(self.state.stages_done) or self.state.status in ("running", "stopped", "failed", "stopping")
        self.state.status, self.state.pid = "running", os.getpid()
        self.state.message = self.state.hint = ""
        self.state.started_at = self.state.started_at or time.time()
        self.emit(RunnerStarted(pid=os.getpid(), resumed=resumed))
        if self.spec.budget_money is not None and not self.spec.hourly_price:
            # the door asks for a price with a money cap; a job file edited since must not run past a cap
            # that nothing can measure
            return self._fail("prepare", f"the job has a money cap of {self.spec.budget_money:g} but no hourly "
                              "price, so the cap could not be kept; nothing was run.",
                              "Set hourly_price (or budget_minutes instead) in the job's .ioncannon/job.json, "
                              "then `ioncannon resume`.")
        try:
            from ioncannon.engine.models.load import resolve_device

            device = resolve_device(self.spec.device)
        except Exception as exc:  # ModelLoadError: no GPU with a real model
            return self._fail("prepare", str(exc), "")
        if self.spec.threads:
            import torch

            torch.set_num_threads(self.spec.threads)
            self.log.info("using %d CPU threads (pinned when the job was created)", self.spec.threads)
        ctx = StageContext(self.spec, self.paths, self.workdir, self.emit, self.should_stop, device, self.log)
        if device.type == "cuda":  # before any stage compiles, so every stage and worker process shares one cache
            from ioncannon.engine.compile_cache import compile_root, use_compile_cache

            use_compile_cache(compile_root(ctx.shared_cache))
        self._recheck_done(ctx)
        for stage in STAGE_NAMES:
            if stage in self.state.stages_done:
                continue
            if self.should_stop():
                return self._stopped()
            self.state.stage, self.state.done, self.state.total = stage, 0, 0
            self.state.loss, self.state.eta_s = None, None
            t = time.time()
            skip = self._skip_reason(stage, ctx)
            if skip:  # nothing to do this time (a local base model): said once, shown as skipped, costs no time
                self.log.info("stage %s skipped: %s", stage, skip)
                self.emit(Message(level="info", text=skip))
                self.state.stages_done.append(stage)
                self.emit(StageFinished(stage=stage, seconds=time.time() - t, skipped=True))
                continue
            self.emit(StageStarted(stage=stage))
            self.log.info("stage %s started", stage)
            try:
                stage_function(stage)(ctx)
            except StopRequested:
                return self._stopped()
            except StageError as exc:
                self.log.error("stage %s failed: %s\n%s", stage, exc.message, traceback.format_exc())
                return self._fail(stage, exc.message, exc.hint)
            except ModelLoadError as exc:  # its message already says what to do (a path, a login, the network)
                self.log.error("stage %s could not load the model:\n%s", stage, traceback.format_exc())
                return self._fail(stage, str(exc), "Then resume: `ioncannon`.")
            except Exception as exc:  # an unexpected bug: the traceback goes to the log, a sentence to the user
                self.log.error("stage %s crashed:\n%s", stage, traceback.format_exc())
                if kernel_error(exc):
                    return self._kernel_failure(ctx, stage, exc)
                if self._disk_full(exc):
                    return self._fail(stage, f"{stage} stopped: the disk is full ({_free_text(self.paths)}).",
                                      "Free some space (`ioncannon wipe` an old job, or delete files you no longer "
                                      "need), then `ioncannon resume`: finished work is kept.")
                return self._fail(stage, f"{stage} stopped on an unexpected error: {type(exc).__name__}: {exc}"[:400],
                                  f"The details are in {self.paths.log_file}. Fix the cause, then resume: `ioncannon`.")
            self.state.stages_done.append(stage)
            self.log.info("stage %s done in %.1f s", stage, time.time() - t)
            self.emit(StageFinished(stage=stage, seconds=time.time() - t))
        self.state.status, self.state.stage = "finished", None
        self.emit(JobFinished(seconds=self._elapsed0 + time.time() - self._t0, outputs=str(self.paths.outputs)))
        return 0

    def _skip_reason(self, stage: str, ctx: Any) -> str:
        check = stage_info(stage).skip
        if not check:
            return ""
        try:
            return str(load(check)(ctx) or "")
        except Exception:  # a failed look means: run the stage, which says what is wrong in its own words
            self.log.warning("could not tell whether stage %s has work:\n%s", stage, traceback.format_exc())
            return ""

    def _recheck_done(self, ctx: Any) -> None:
        """Finished stages whose files were deleted since are run again, so a resume never repeats a failure.

        Only what training still needs is checked: the latent cache, and the photos and class images behind it.
        """
        done = self.state.stages_done
        if "fetch" not in done and any(s in done for s in STAGE_NAMES[STAGE_NAMES.index("prepare") + 1:]):
            # a job begun before the download was a stage of its own: its model came with its first load
            self.state.stages_done = done = ["fetch", *done]
        if "train" in done:
            return
        from ioncannon.engine.generate.stage import class_images_missing
        from ioncannon.engine.train.cache import load_cache

        gone = []
        if "cache" in done and load_cache(ctx) is None:
            gone.append("cache")
        samples = self.paths.training_samples(self.spec.class_name)
        if "prepare" in done and not any(samples.glob("*.png")):
            gone += ["prepare", "cache"]
        if "class_images" in done and class_images_missing(ctx) > 0:
            gone += ["class_images", "cache"]
        if gone:
            self.log.warning("files of finished stages are missing; running again: %s", sorted(set(gone)))
            self.state.stages_done = [s for s in done if s not in gone]

    def _kernel_failure(self, ctx: Any, stage: str, exc: BaseException) -> int:
        """A GPU kernel broke (CUDA, cuDNN, cuBLAS). Where an attention kernel was in use it is marked broken on this
        card and, unless that happened too often already, the runner asks to be started again without it
        (RESTART_EXIT): finished stages and checkpoints are kept. Otherwise the job fails with a hint."""
        from ioncannon.engine.attention import first_line, mark_broken

        detail = first_line(exc)
        try:
            backend = mark_broken(ctx.shared_cache, ctx.device, detail)
        except OSError:
            backend = None
        if backend:
            self.log.error("the %s attention kernel is marked broken on this card", backend)
            restarts = kernel_restarts()
            if restarts < MAX_KERNEL_RESTARTS:
                self.log.warning("starting the runner again without the %s kernel (restart %d of at most %d)",
                                 backend, restarts + 1, MAX_KERNEL_RESTARTS)
                self.emit(Message(level="warning", text=(
                    f"The {backend} attention kernel crashed on this card during {stage} ({detail}). Starting again "
                    "without it; finished work is kept.")))
                return RESTART_EXIT
            return self._fail(
                stage, f"{stage} stopped: a GPU kernel failed while the {backend} attention kernel was in use "
                f"({detail}).",
                "Resume (`ioncannon resume`): the job keeps its finished work and leaves that kernel out. If it "
                "fails again, this box's PyTorch or driver is broken: rent another box.")
        return self._fail(
            stage, f"{stage} stopped: a GPU kernel failed ({detail}).",
            "Resume (`ioncannon resume`): the job keeps its finished work. If it fails the same way again, this "
            "box's PyTorch or driver is broken: rent another box (or another PyTorch image).")

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
        # exception text and model metadata come from outside: state.json and the event log carry them printable
        message, hint = printable(message, 2000), printable(hint, 2000)
        self.state.status, self.state.message, self.state.hint = "failed", message, hint
        self.emit(Failed(stage=stage, message=message, hint=hint))
        return 1


class PrintableFormatter(logging.Formatter):
    """runner.log is read in a terminal (`less`, `tail -f`): outside text in it (exception messages, file names,
    model metadata) is escaped line by line; the lines of a traceback stay lines."""

    def format(self, record: logging.LogRecord) -> str:
        return printable_lines(super().format(record))


def _setup_logging(paths: JobPaths) -> logging.Logger:
    log = logging.getLogger("ioncannon")
    log.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stdout)  # stdout is runner.log (handle.start points it there)
    handler.setFormatter(PrintableFormatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return log


def _pin_threads(spec: JobSpec) -> None:
    """Use the thread count the job pinned at creation, whatever the resuming shell's OMP_NUM_THREADS says:
    another count sums in another order, and the resumed run would no longer be bit-exact."""
    if spec.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(spec.threads)


def _refuse_damaged_job(paths: JobPaths, problem: str, log: logging.Logger) -> int:
    """job.json can't be used: say so where `status` and the wizard read, instead of dying with a traceback."""
    log.error("job.json can't be used: %s", problem)
    state = read_state(paths)
    state.status, state.pid = "failed", None
    state.message = problem = printable(problem, 2000)
    state.hint = DAMAGED_JOB_HINT
    try:
        append_line(paths.events_file, Failed(stage=state.stage or "prepare", message=problem,
                                              hint=state.hint).dumps())
        write_state(paths, state)
    except OSError:
        log.error("could not record the failure:\n%s", traceback.format_exc())
    return 1




def kernel_restarts() -> int:
    """How many times this job's runner has started itself again after a kernel crash (0 on a fresh start)."""
    try:
        return max(0, int(os.environ.get(KERNEL_RESTARTS_ENV, "0")))
    except ValueError:
        return 0


def restart_in_place(paths: JobPaths, workdir: Path) -> None:
    """Replace this process with a fresh runner for the same job (same pid, so clients keep following it): a new
    CUDA context, in which the attention test leaves the broken kernel out. The command is the one the job was
    started with."""
    os.environ[KERNEL_RESTARTS_ENV] = str(kernel_restarts() + 1)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    command = runner_command(paths, workdir)
    os.execv(command[0], command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ioncannon.engine.runner")
    parser.add_argument("job_root")
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args(argv)
    os.umask(0o077)  # everything the job writes shows the subject or describes them: private to the user
    paths = JobPaths(args.job_root)
    if paths.root.is_symlink() or paths.meta.is_symlink():
        # every state write would land wherever the link leads
        print(f"{paths.meta} is reached through a symlink, not the job's own folder; exiting", file=sys.stderr)
        return 3
    lock = adopt_lock(paths)   # handed over when this runner started itself again in place
    for _ in range(0 if lock else 20):  # a client may be probing the lock for a moment
        lock = try_lock(paths)
        if lock is not None:
            break
        time.sleep(0.05)
    if lock is None:
        print("another runner holds this job's lock; exiting", file=sys.stderr)
        return 3
    lock.record(os.getpid())
    for own in (paths.events_file, paths.state_file):
        # planted (a symlink, a FIFO, a folder): the job's own files are written here, as files, and nothing waits
        if own.is_symlink() or (own.exists() and not own.is_file()):
            shutil.rmtree(own) if own.is_dir() and not own.is_symlink() else own.unlink()
    try:
        os.chmod(paths.root, 0o700)  # a job created by an older version may still be readable by others
    except OSError:
        pass
    log = _setup_logging(paths)
    try:
        spec = load_spec(paths)
    except StateFileError as exc:
        return _refuse_damaged_job(paths, str(exc), log)
    _pin_threads(spec)
    runner = Runner(paths, Path(args.workdir), spec, log)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a dropped SSH link must not stop the work

    def on_term(signum: int, _frame: object) -> None:
        runner.stop_reason = runner.stop_reason or f"stopped on request ({signal.Signals(signum).name})"
        if runner.state.status == "running":
            runner.state.status = "stopping"

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    _quiet_libraries()
    runner.make_reserve()
    log.info("runner %d started for %s", os.getpid(), paths.root)
    code = runner.run()
    if code == RESTART_EXIT:
        lock.hand_over_on_exec()   # held throughout: to its clients the job never stops running
        restart_in_place(paths, Path(args.workdir))
    # let go now, not when the interpreter has torn torch down: `run … && ioncannon wipe` must find the job free
    lock.release()
    return code


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
