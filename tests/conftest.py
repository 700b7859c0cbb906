"""Shared fixtures: a tiny SD-shaped model saved once per test run, and isolated work dirs."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests never touch the hub or the user's real work dir.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# The suite runs as two pytest-xdist workers (README: `-n 2`). Each worker, and each runner a test starts (a new
# job pins OMP_NUM_THREADS), then computes on one thread: two processes of two threads each on a 2-core machine
# spend their time in OpenMP barriers. Set before torch is imported, so it takes effect; a value the caller set wins.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ioncannon.engine.models.load import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    wd = tmp_path / "work"
    wd.mkdir()
    monkeypatch.setenv("IONCANNON_WORKDIR", str(wd))
    return wd


# --------------------------------------------------------------------------- no runner outlives its test

RUNNER_MODULE = "ioncannon.engine.runner"
RUNNER_EXIT_GRACE_S = 30.0  # a runner asked to stop checkpoints first; a loaded machine makes that slow


def live_runners(under: Path) -> dict[int, str]:
    """Runner processes alive now whose job folder lies under `under`: pid -> job folder."""
    found: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = [a.decode(errors="replace") for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if RUNNER_MODULE in args[:6]:
            job = args[args.index(RUNNER_MODULE) + 1] if len(args) > args.index(RUNNER_MODULE) + 1 else ""
            if job and Path(job).resolve().is_relative_to(under.resolve()):
                found[int(proc.name)] = job
    return found


def reap_runners(under: Path, spare: set[int] = frozenset()) -> dict[int, str]:  # type: ignore[assignment]
    """Wait a grace period for runners under `under` to exit, then kill the rest; returns what had to be killed."""
    deadline = time.time() + RUNNER_EXIT_GRACE_S
    left = {p: j for p, j in live_runners(under).items() if p not in spare}
    while left and time.time() < deadline:
        time.sleep(0.5)
        left = {p: j for p, j in live_runners(under).items() if p not in spare}
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


@pytest.fixture(autouse=True)
def no_runner_outlives_its_test(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test's runners are gone once its own fixtures have cleaned up; a leak is killed and fails the test."""
    root = tmp_path_factory.getbasetemp()
    before = set(live_runners(root))
    yield
    if not set(live_runners(root)) - before:
        return
    leaked = reap_runners(root, spare=before)
    if leaked:
        pytest.fail(f"runner(s) outlived the test and were killed: {sorted(leaked.values())}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Last line of defence: no runner started by this run survives it, and one that tried fails the run."""
    try:
        root = session.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return
    leaked = reap_runners(root)
    if leaked:
        print(f"\nrunner(s) outlived the test run and were killed: {sorted(leaked.values())}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
