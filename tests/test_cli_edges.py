"""The command line at its edges: --version, the example job file, and a status that looks without touching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ioncannon import __version__
from ioncannon.cli.main import main
from ioncannon.engine.demo import demo_photos_dir
from ioncannon.job import handle
from ioncannon.job.fsio import write_json
from ioncannon.job.jobfile import EXAMPLE_JOBFILE
from ioncannon.job.lock import try_lock
from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec
from ioncannon.job.state import JobState


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own --version and --help
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(capsys: pytest.CaptureFixture[str], flag: str) -> None:
    code, out, _ = cli(capsys, flag)
    assert code == 0 and out.strip() == f"ioncannon {__version__}"


def test_the_example_job_file_names_flux_and_prior_preservation(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "run", "--example")
    assert code == 0 and out == EXAMPLE_JOBFILE
    assert "sd15, sdxl or flux" in out and "prior_preservation = true" in out
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "`flux`" in readme and "prior_preservation" in readme


@pytest.mark.parametrize("name", [None, "somejob"])
def test_status_of_a_missing_work_dir_does_not_make_it(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                      name: str | None) -> None:
    missing = tmp_path / "typo"
    code, out, err = cli(capsys, "status", *([name] if name else []), "--workdir", str(missing))
    assert not missing.exists()
    if name is None:
        assert code == 0 and "no jobs in" in out and "does not exist" in out
    else:
        assert code == 2 and "no job called" in err


def job_with_state(workdir: Path, status: str) -> JobPaths:
    spec = JobSpec(name="j", photos_dir=str(demo_photos_dir()), identifier="zwx", class_name="dog", device="cpu")
    paths = handle.create(workdir, spec)
    write_json(paths.state_file, JobState(status=status, stage="train", stages_done=["prepare", "class_images",
               "cache"], done=169, total=400, rate=26.6, eta_s=9.0, loss=0.12, elapsed_s=98).to_json())
    folder = paths.checkpoints / "step_00000172"  # the checkpoint written on stop: newer than the last progress line
    folder.mkdir(parents=True)
    write_json(folder / "manifest.json", {"format": 1, "step": 172, "files": {}})
    return paths


@pytest.mark.parametrize("status", ["stopped", "running", "finished", "failed"])
def test_status_shows_a_rate_and_eta_only_while_running(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                        status: str) -> None:
    paths = job_with_state(tmp_path, status)
    lock = try_lock(paths) if status == "running" else None  # a live runner holds the lock
    try:
        if lock is not None:
            lock.record(4242)
        code, out, _ = cli(capsys, "status", "--workdir", str(tmp_path))
        _, as_json, _ = cli(capsys, "status", "--json", "--workdir", str(tmp_path))
    finally:
        if lock is not None:
            lock.release()
    info = json.loads(as_json)
    running = status == "running"
    assert code == 0 and ("26.60/s" in out) is running and ("eta" in out) is running
    assert (info["rate"] is None, info["eta_s"] is None) == (not running, not running)
    if status == "stopped":  # the same count the training screen shows: the checkpoint written on stop
        assert "172/400" in out and info["step"] == 172


def test_counts_agree_with_their_number() -> None:
    from ioncannon.rental.bundle import bundle_counts
    from ioncannon.rental.wipe import WipeItem, WipeReceipt

    receipt = WipeReceipt(removed=[WipeItem("checkpoints", "/j/ckpt", 2048, 1)])
    lines = receipt.lines()
    assert "in 1 place:" in lines[0] and "(1 file," in lines[1] and "(s)" not in " ".join(lines)
    assert bundle_counts({"collage": 15, "image": 60, "contact_sheet": 1}) == "15 collages, 60 images, 1 contact sheet"
