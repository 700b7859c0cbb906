"""Commands keep their word: stop signals only the job's own runner and never claims a stop that did not happen,
a lost resume race names the live runner, an empty --workdir is refused, bundle waits for the job and packs no
symlink, DOWNLOAD.txt never points at a stale zip, wipe removes a bundle cut short, and no job file is opened
through a symlink (the runner's event log and state included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ioncannon.cli import main as cli_main
from ioncannon.cli.finish import bundle_main, wipe_main
from ioncannon.job import handle
from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec
from ioncannon.rental.bundle import archive_path, partial_path
from ioncannon.rental.download import write_download_file
from tests.job import test_hostile_inputs as hostile
from tests.job.test_hostile_inputs import cli, make_job, one_sentence
from tests.waiting import wait_until

place = hostile.place

# A stand-in runner: its command line is the runner's for this job, and it holds the job's lock, as the real one does.
FAKE_RUNNER = (
    "import signal, sys, time\n"
    "from ioncannon.job.lock import try_lock\n"
    "from ioncannon.job.paths import JobPaths\n"
    "root, mode, note = sys.argv[3], sys.argv[4], int(sys.argv[5])\n"
    "if mode == 'frozen':\n"
    "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "lock = try_lock(JobPaths(root))\n"
    "import os\n"
    "lock.record(note or os.getpid())\n"
    "print('locked', flush=True)\n"
    "time.sleep(300)\n"
)


def _holder(paths: JobPaths, mode: str = "obedient", note: int = 0, module: str = "ioncannon.engine.runner"
            ) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", FAKE_RUNNER, "-m", module, str(paths.root.resolve()), mode,
                             str(note)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def test_stop_never_signals_a_process_that_is_not_the_runner(capsys: pytest.CaptureFixture[str],
                                                             place: dict[str, Path],
                                                             procs: list[subprocess.Popen[str]]) -> None:
    paths = make_job(place, "busy")
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], text=True)
    procs.append(bystander)  # type: ignore[arg-type]
    procs.append(_holder(paths, note=bystander.pid, module="not.the.runner"))
    code, out, err = cli(capsys, "stop", "busy", "--workdir", str(place["work"]))
    assert code == 2 and "nothing was signalled" in err and "stopped." not in out
    one_sentence(err)
    time.sleep(0.5)
    assert bystander.poll() is None and procs[1].poll() is None  # neither was touched


def test_stop_on_a_frozen_runner_says_so_and_fails(capsys: pytest.CaptureFixture[str], place: dict[str, Path],
                                                   procs: list[subprocess.Popen[str]],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    paths = make_job(place, "frozen")
    procs.append(_holder(paths, "frozen"))
    monkeypatch.setattr(cli_main, "STOP_WAIT_S", 2.0)
    code, out, err = cli(capsys, "stop", "frozen", "--workdir", str(place["work"]))
    assert code == 1 and "has not stopped" in err and f"kill -9 {procs[0].pid}" in err
    assert "stopped." not in out and procs[0].poll() is None


def test_stop_signals_the_provable_runner(capsys: pytest.CaptureFixture[str], place: dict[str, Path],
                                          procs: list[subprocess.Popen[str]]) -> None:
    paths = make_job(place, "obeys")
    procs.append(_holder(paths))
    code, out, _ = cli(capsys, "stop", "obeys", "--workdir", str(place["work"]))
    assert code == 0 and "stopped." in out and procs[0].wait(30) is not None


def test_a_lost_resume_race_names_the_live_runner(capsys: pytest.CaptureFixture[str], place: dict[str, Path],
                                                  procs: list[subprocess.Popen[str]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    paths = make_job(place, "race")
    procs.append(_holder(paths))
    from ioncannon.job import workdir

    real, looks = handle.runner_pid, []

    def blind_at_first(p: JobPaths) -> int | None:  # as when two resumes look at the same moment
        looks.append(p)
        return None if len(looks) == 1 else real(p)

    monkeypatch.setattr(workdir, "runner_pid", lambda p: None)
    monkeypatch.setattr(handle, "runner_pid", blind_at_first)
    code, out, err = cli(capsys, "resume", "race", "--detach", "--workdir", str(place["work"]))
    assert code == 0 and f"runner pid {procs[0].pid}" in out and "another command" in out, out + err


@pytest.mark.parametrize("command", [["status"], ["resume"], ["stop"], ["bundle", "--yes"], ["wipe"],
                                     ["run", "--demo", "--yes"]])
def test_an_empty_workdir_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    default = tmp_path / "default-work"
    monkeypatch.setenv("IONCANNON_WORKDIR", str(default))
    code, out, err = cli(capsys, *command, "--workdir", "")
    assert code == 2 and "--workdir is empty" in out + err, out + err
    assert not default.exists()


def _results(paths: JobPaths) -> Path:
    samples = paths.outputs / "zwx_oil" / "samples"
    samples.mkdir(parents=True)
    (samples / "0000.png").write_bytes(b"\x89PNG fake image")
    return samples


def test_bundle_waits_for_a_running_job(capsys: pytest.CaptureFixture[str], place: dict[str, Path],
                                        procs: list[subprocess.Popen[str]]) -> None:
    paths = make_job(place, "gen")
    _results(paths)
    procs.append(_holder(paths))
    code = bundle_main(["gen", "--yes", "--workdir", str(place["work"])])
    assert code == 1 and "still running" in capsys.readouterr().err
    assert not archive_path(paths, JobSpec.from_json(json.loads(paths.job_file.read_text()))).exists()


def test_bundle_packs_no_symlink(capsys: pytest.CaptureFixture[str], place: dict[str, Path]) -> None:
    paths = make_job(place, "links")
    samples = _results(paths)
    secret = place["root"] / "secret.txt"
    secret.write_text("not the job's")
    (samples / "0001.png").symlink_to(secret)
    (paths.outputs / "elsewhere").symlink_to(place["root"], target_is_directory=True)
    assert bundle_main(["links", "--yes", "--workdir", str(place["work"])]) == 0
    spec = JobSpec.from_json(json.loads(paths.job_file.read_text()))
    with zipfile.ZipFile(archive_path(paths, spec)) as zf:
        names = zf.namelist()
        assert not any(b"not the job's" in zf.read(n) for n in names)
    assert "outputs/zwx_oil/samples/0000.png" in names and not any("0001" in n or "elsewhere" in n for n in names)


def test_download_file_never_points_at_a_stale_zip(place: dict[str, Path]) -> None:
    paths = make_job(place, "stale")
    samples = _results(paths)
    spec = JobSpec.from_json(json.loads(paths.job_file.read_text()))
    assert bundle_main(["stale", "--yes", "--workdir", str(place["work"])]) == 0
    assert archive_path(paths, spec).name in " ".join(write_download_file(paths, spec).scp.split())
    later = samples / "0002.png"
    later.write_bytes(b"\x89PNG made after the zip")
    os.utime(later, (time.time() + 5, time.time() + 5))
    commands = write_download_file(paths, spec)
    assert archive_path(paths, spec).name not in commands.scp and "outputs" in commands.scp


def test_wipe_removes_a_bundle_cut_short(capsys: pytest.CaptureFixture[str], place: dict[str, Path]) -> None:
    paths = make_job(place, "cut")
    spec = JobSpec.from_json(json.loads(paths.job_file.read_text()))
    partial_path(paths, spec).write_bytes(b"PK half a zip of the subject's images")
    assert wipe_main(["cut", "--yes-i-downloaded", "--workdir", str(place["work"])]) == 0
    assert not partial_path(paths, spec).exists()
    assert "unfinished results bundle" in capsys.readouterr().out


def test_job_files_are_never_opened_through_a_symlink(capsys: pytest.CaptureFixture[str],
                                                      place: dict[str, Path]) -> None:
    for photo in place["photos"].iterdir():
        photo.unlink()  # no usable photo: the runner fails fast in prepare, after writing its events
    paths = make_job(place, "planted")
    outside = {name: place["root"] / f"outside-{name}" for name in ("state.json", "events.jsonl", "lock")}
    for name, target in outside.items():
        target.write_text('{"schema_version": 1, "status": "finished"}\n' if name == "state.json" else "12345\n")
        (paths.meta / name).unlink(missing_ok=True)
        (paths.meta / name).symlink_to(target)
    before = {name: target.read_text() for name, target in outside.items()}
    code, out, err = cli(capsys, "status", "planted", "--workdir", str(place["work"]))
    assert code == 0 and "state    unknown" in out  # the outside state.json was not read as the job's
    code, out, err = cli(capsys, "resume", "planted", "--detach", "--workdir", str(place["work"]))
    assert code == 0, out + err
    wait_until(lambda: not handle.is_alive(paths) and "Failed" in (
        paths.events_file.read_text() if not paths.events_file.is_symlink() else ""), 300, "the runner's failure")
    assert {name: target.read_text() for name, target in outside.items()} == before
    assert not paths.events_file.is_symlink() and not paths.state_file.is_symlink()


def test_a_fifo_in_place_of_a_job_file_never_hangs_a_command(capsys: pytest.CaptureFixture[str],
                                                             place: dict[str, Path]) -> None:
    for photo in place["photos"].iterdir():
        photo.unlink()  # the runner fails fast in prepare
    paths = make_job(place, "fifo")
    paths.log_file.unlink(missing_ok=True)
    os.mkfifo(paths.log_file)
    code, _, err = cli(capsys, "resume", "fifo", "--detach", "--workdir", str(place["work"]))
    assert code == 2 and "runner.log" in err  # refused at once: a FIFO would block the runner's first line
    one_sentence(err)
    paths.log_file.unlink()
    os.mkfifo(paths.events_file)  # the runner replaces it with its own file instead of waiting for a reader
    code, out, err = cli(capsys, "resume", "fifo", "--detach", "--workdir", str(place["work"]))
    assert code == 0, out + err
    wait_until(lambda: not handle.is_alive(paths) and paths.events_file.is_file()
               and "Failed" in paths.events_file.read_text(), 300, "the runner's failure in its own event log")


def test_wipe_on_a_full_disk_still_removes_and_says_so(capsys: pytest.CaptureFixture[str], place: dict[str, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from ioncannon.rental import bundle, wipe

    paths = make_job(place, "full")
    samples = paths.training_samples("dog")
    samples.mkdir(parents=True)
    (samples / "zwx dog_001.png").write_bytes(b"\x89PNG the subject")

    def full(*_args: object, **_kw: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(wipe, "update_finish_record", full)
    monkeypatch.setattr(bundle, "update_finish_record", full)
    assert wipe_main(["full", "--yes-i-downloaded", "--workdir", str(place["work"])]) == 0
    assert not samples.exists() and "normalised photos" in capsys.readouterr().out


def test_bundle_survives_hostile_notes_in_the_outputs(capsys: pytest.CaptureFixture[str],
                                                      place: dict[str, Path]) -> None:
    paths = make_job(place, "notes")
    samples = _results(paths)
    folder = samples.parent
    (folder / "deep.json").write_text("[" * 5000 + "]" * 5000)
    (folder / "deeper.json").write_text('{"a": ' + "[" * 900 + "]" * 900 + "}")
    os.mkfifo(folder / "pipe.json")
    (folder / "link.json").symlink_to(place["root"] / "secret.json")
    (place["root"] / "secret.json").write_text('{"secret": "not the job\'s"}')
    assert bundle_main(["notes", "--yes", "--workdir", str(place["work"])]) == 0, capsys.readouterr().err
    spec = JobSpec.from_json(json.loads(paths.job_file.read_text()))
    with zipfile.ZipFile(archive_path(paths, spec)) as zf:
        manifest = zf.read("manifest.json").decode()
    assert "not the job's" not in manifest
