"""Hostile and careless input through the real CLI entry point: one sentence, no traceback, nothing written outside."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ioncannon.cli.main import main
from ioncannon.job import handle
from ioncannon.job.events import parse_event
from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec


def tree(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under root with its size, mtime and mode: a photo folder must come out exactly as it went in."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        # a folder's own mtime changes when the work dir is probed for writing; its contents are what count
        out[str(path.relative_to(root))] = (0, 0, st.st_mode) if path.is_dir() else (st.st_size, st.st_mtime_ns,
                                                                                       st.st_mode)
    return out


@pytest.fixture
def place(tmp_path: Path) -> dict[str, Path]:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.new("RGB", (96, 80), (40 * i, 90, 160)).save(photos / f"IMG_{i}.jpg")
    work = tmp_path / "nest" / "work"  # two levels down: a name like ../../x would land in tmp_path
    work.mkdir(parents=True)
    return {"root": tmp_path, "photos": photos, "work": work}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_sentence(err: str) -> None:
    assert "Traceback" not in err and "Error:" not in err.replace("SpecError", "")
    assert err.startswith("ioncannon: "), err


def valid_job(photos: Path) -> dict[str, Any]:
    return {"photos_dir": str(photos), "identifier": "zwx", "class_name": "dog", "device": "cpu"}


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(job: dict[str, Any]) -> dict[str, Any]:
        parts = path.split(".")
        target = job
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
        return job
    return change


# (case id, how to change a valid job, words the message must contain)
JOB_CASES: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("name-escapes", _set("name", "../../x"), "can't be a folder name"),
    ("name-absolute", _set("name", "/tmp/evil-job"), "can't be a folder name"),
    ("name-dotdot", _set("name", ".."), "can't be a folder name"),
    ("name-dot", _set("name", "."), "can't be a folder name"),
    ("name-slash", _set("name", "a/b"), "can't be a folder name"),
    ("name-number", _set("name", 42), "name is 42: write text"),
    ("name-long", _set("name", "n" * 500), "can't be a folder name"),
    ("name-hidden", _set("name", ".hidden"), "can't be a folder name"),
    ("class-dotdot", _set("class_name", ".."), "class starts with '.'"),
    ("identifier-dotdot", _set("identifier", ".."), "identifier starts with '.'"),
    ("class-newline", _set("class_name", "man\nwoman"), "control characters"),
    ("class-nul", _set("class_name", "do\u0000g"), "control characters"),
    ("identifier-zero-width", _set("identifier", "zw\u200bx"), "control characters"),
    ("identifier-number", _set("identifier", 42), "identifier is 42: write text"),
    ("identifier-long", _set("identifier", "z" * 500), "characters long"),
    ("identifier-wide-bytes", _set("identifier", "\U0001f600" * 30), "too long for a file name"),
    ("identifier-missing", lambda j: {k: v for k, v in j.items() if k != "identifier"}, "identifier is missing"),
    ("photos-number", _set("photos_dir", 123), "photos_dir is 123"),
    ("photos-missing-folder", _set("photos_dir", "/nonexistent/photos"), "does not exist"),
    ("train-text", _set("train", "abc"), "train is \"abc\""),
    ("train-list", _set("train", [1, 2]), "not a table"),
    ("learning-rate-word", _set("train.learning_rate", "fast"), "train.learning_rate is \"fast\": write a number"),
    ("learning-rate-zero", _set("train.learning_rate", 0), "train.learning_rate is 0"),
    ("steps-zero", _set("train.steps", 0), "train.steps is 0"),
    ("steps-negative", _set("train.steps", -5), "train.steps is -5"),
    ("steps-huge", _set("train.steps", 10**30), "train.steps is"),
    ("steps-bool", _set("train.steps", True), "train.steps is true"),
    ("steps-float", _set("train.steps", 1.5), "train.steps is 1.5"),
    ("batch-zero", _set("train.batch_size", 0), "train.batch_size is 0"),
    ("resolution-zero", _set("resolution", 0), "resolution is 0"),
    ("resolution-negative", _set("resolution", -512), "resolution is -512"),
    ("resolution-odd", _set("resolution", 500), "a multiple of 8"),
    ("class-images-negative", _set("train.num_class_images", -3), "train.num_class_images is -3"),
    ("class-images-zero-with-prior", _set("train.num_class_images", 0), "prior preservation is on"),
    ("images-per-prompt-text", _set("generate.images_per_prompt", "x"), "generate.images_per_prompt is \"x\""),
    ("guidance-infinite", _set("generate.guidance", float("inf")), "generate.guidance is"),
    ("seed-negative", _set("train.seed", -1), "train.seed is -1"),
    ("threads-zero", _set("threads", 0), "threads is 0"),
    ("typo-key", _set("train.learnig_rate", 1e-6), "did you mean train.learning_rate"),
    ("unknown-top-key", _set("idenitfier", "zwx"), "did you mean identifier"),
    ("crop-unknown", _set("crops", {"IMG_0.jpg": "sideways"}), "crops is"),
    ("excluded-text", _set("excluded", "IMG_0.jpg"), "excluded is"),
    ("device-unknown", _set("device", "tpu"), "device is \"tpu\""),
    ("price-negative", _set("hourly_price", -1), "hourly_price is -1"),
    ("optimizer-unknown", _set("train.optimizer", "sgd"), "train.optimizer is \"sgd\""),
    ("mode-unknown", _set("train.mode", "dreambooth"), "train.mode is"),
    ("preset-path", _set("train.preset", "../x"), "not a preset name"),
    ("prompt-pack-missing", _set("generate.prompt_pack", "/nonexistent/pack.toml"), "is not a file"),
    ("base-model-newline", _set("base_model", "a\nb"), "base_model contains control characters"),
    ("top-level-list", lambda j: [j], "not a table of fields"),
    ("top-level-number", lambda j: 7, "not a table of fields"),
]


@pytest.mark.parametrize("case, change, words", JOB_CASES, ids=[c[0] for c in JOB_CASES])
def test_hostile_job_file_is_refused_in_one_sentence_before_anything_is_written(
    capsys: pytest.CaptureFixture[str], place: dict[str, Path], case: str, change: Any, words: str
) -> None:
    jobfile = place["root"] / "job.json"
    jobfile.write_text(json.dumps(change(valid_job(place["photos"]))))
    before = tree(place["root"])
    code, out, err = cli(capsys, "run", str(jobfile), "--yes", "--workdir", str(place["work"]))
    assert code == 2, out + err
    one_sentence(err)
    assert words in err, err
    assert tree(place["root"]) == before  # no job folder, no photo copies, nothing outside the work dir


RAW_CASES: list[tuple[str, str, bytes, str]] = [
    ("non-utf8", "job.json", b'{"identifier": "zw\xff\xfe"}', "not UTF-8 text"),
    ("not-json", "job.json", b'{"identifier": ', "not valid JSON"),
    ("not-toml", "job.toml", b'identifier = "zwx\n', "not valid TOML"),
    ("nested-deep", "job.json", b"[" * 200_000 + b"]" * 200_000, "nests too deeply"),
    ("too-big", "job.json", b" " * (2 << 20) + b"{}", "too big for a job file"),
    ("nan", "job.json", b'{"photos_dir": ".", "identifier": "zwx", "class_name": "dog", "device": "cpu", '
                        b'"train": {"learning_rate": NaN}}', "train.learning_rate is NaN"),
]


@pytest.mark.parametrize("case, filename, body, words", RAW_CASES, ids=[c[0] for c in RAW_CASES])
def test_unreadable_job_files_are_one_sentence(
    capsys: pytest.CaptureFixture[str], place: dict[str, Path], case: str, filename: str, body: bytes, words: str
) -> None:
    jobfile = place["root"] / filename
    jobfile.write_bytes(body)
    code, _, err = cli(capsys, "run", str(jobfile), "--yes", "--workdir", str(place["work"]))
    assert code == 2
    one_sentence(err)
    assert words in err, err
    assert not list(place["work"].iterdir())


def test_a_fifo_or_a_folder_as_job_file_does_not_hang(capsys: pytest.CaptureFixture[str],
                                                        place: dict[str, Path]) -> None:
    fifo = place["root"] / "job.json"
    os.mkfifo(fifo)
    for target in (fifo, place["photos"]):
        code, _, err = cli(capsys, "run", str(target), "--yes", "--workdir", str(place["work"]))
        assert code == 2 and "not a regular file" in err
        one_sentence(err)


def test_a_taken_name_is_a_sentence_and_the_first_job_is_untouched(capsys: pytest.CaptureFixture[str],
                                                                   place: dict[str, Path]) -> None:
    first = handle.create(place["work"], JobSpec.from_json({**valid_job(place["photos"]), "name": "twice"}))
    before = first.job_file.read_bytes()
    jobfile = place["root"] / "job.json"
    jobfile.write_text(json.dumps({**valid_job(place["photos"]), "name": "twice"}))
    code, _, err = cli(capsys, "run", str(jobfile), "--yes", "--workdir", str(place["work"]))
    assert code == 2 and "already exists" in err and "ioncannon resume twice" in err
    one_sentence(err)
    assert first.job_file.read_bytes() == before


def planned_spec(request: Any) -> JobSpec:
    """The job the planner makes of a request on a roomy card."""
    from ioncannon.job.plan.box import GpuInfo, HardwareInfo
    from ioncannon.job.plan.planner import Plan, plan_job

    plan = plan_job(request, HardwareInfo([GpuInfo(0, "NVIDIA H100", 80.0, 79.0)], 500.0, 8, 64.0))
    assert isinstance(plan, Plan), plan
    return plan.spec


def test_a_job_file_without_a_name_gets_a_fresh_safe_one(place: dict[str, Path]) -> None:
    from ioncannon.job.jobfile import read_jobfile

    jobfile = place["root"] / "job.toml"
    jobfile.write_text(f'photos_dir = "{place["photos"]}"\nidentifier = "zwx"\nclass_name = "dog"\n')
    spec = planned_spec(read_jobfile(jobfile, place["work"]))
    assert spec.name.startswith("zwx-") and spec.identifier == "zwx"
    assert spec.train.steps == 800  # defaults fill what the file leaves out


# --------------------------------------------------------------------------- damaged files of an existing job


def make_job(place: dict[str, Path], name: str = "hurt") -> JobPaths:
    return handle.create(place["work"], JobSpec.from_json({**valid_job(place["photos"]), "name": name}))


def _write(relative: str, body: bytes) -> Callable[[JobPaths], None]:
    def damage(paths: JobPaths) -> None:
        target = paths.meta / relative
        target.unlink(missing_ok=True)
        target.write_bytes(body)
    return damage


def _fifo(relative: str) -> Callable[[JobPaths], None]:
    def damage(paths: JobPaths) -> None:
        (paths.meta / relative).unlink(missing_ok=True)
        os.mkfifo(paths.meta / relative)
    return damage


def _sparse(relative: str, size: int) -> Callable[[JobPaths], None]:
    def damage(paths: JobPaths) -> None:
        with open(paths.meta / relative, "wb") as fh:
            fh.truncate(size)
    return damage


def _state(**fields: Any) -> bytes:
    return json.dumps({"schema_version": 1, "status": "running", **fields}).encode()


def _spec_json(paths_change: dict[str, Any]) -> Callable[[JobPaths], None]:
    def damage(paths: JobPaths) -> None:
        data = json.loads(paths.job_file.read_text())
        data.update(paths_change)
        paths.job_file.write_text(json.dumps(data))
    return damage


STATE_CASES: list[tuple[str, Callable[[JobPaths], None], str]] = [
    ("state-non-utf8", _write("state.json", b'{"status": "runn\xff\xfe"}'), "unknown"),
    ("state-elapsed-text", _write("state.json", _state(elapsed_s="long")), "unknown"),
    ("state-stages-text", _write("state.json", _state(stages_done="abc")), "unknown"),
    ("state-stages-unknown", _write("state.json", _state(stages_done=["prepare", "../../x"])), "unknown"),
    ("state-list", _write("state.json", b"[1, 2, 3]"), "unknown"),
    ("state-empty", _write("state.json", b""), "unknown"),
    ("state-huge", _sparse("state.json", 40 << 20), "unknown"),
    ("state-fifo", _fifo("state.json"), "unknown"),
    ("state-nested", _write("state.json", b"[" * 100_000), "unknown"),
    ("job-non-utf8", _write("job.json", b'{"name": "hu\xffrt"}'), "damaged"),
    ("job-train-text", _spec_json({"train": "abc"}), "damaged"),
    ("job-empty", _write("job.json", b""), "damaged"),
    ("job-class-dotdot", _spec_json({"class_name": ".."}), "damaged"),
    ("job-fifo", _fifo("job.json"), "damaged"),
    ("job-steps-negative", _spec_json({"train": {"steps": -1}}), "damaged"),
]


@pytest.mark.parametrize("case, damage, shown", STATE_CASES, ids=[c[0] for c in STATE_CASES])
def test_damaged_job_files_become_a_status_with_a_way_out(
    capsys: pytest.CaptureFixture[str], place: dict[str, Path], case: str, damage: Any, shown: str
) -> None:
    paths = make_job(place)
    damage(paths)
    code, out, err = cli(capsys, "status", "--workdir", str(place["work"]))
    assert code == 0 and "Traceback" not in out + err, out + err
    assert f"state    {shown}" in out and "what now" in out, out
    code, out, _ = cli(capsys, "status", "hurt", "--json", "--workdir", str(place["work"]))
    info = json.loads(out)
    assert code == 0 and info["status"] == shown and info["message"]
    if shown == "damaged":  # the settings are gone: resume says so instead of starting a runner that dies
        code, _, err = cli(capsys, "resume", "hurt", "--workdir", str(place["work"]))
        assert code == 2 and "can't be resumed" in err and "ioncannon wipe" in err
        one_sentence(err)
        assert not handle.is_alive(paths)
    else:
        assert "ioncannon resume" in info["hint"]


def test_damaged_event_lines_are_skipped_not_shown() -> None:
    bad = [
        '{"type": "Progress", "stage": "train", "done": "x", "total": 5, "t": 1.0}',
        '{"type": "Progress", "stage": "train", "done": 1, "total": 5, "rate": "fast", "t": 1.0}',
        '{"type": "Failed", "stage": ["x"], "message": "m", "t": 1.0}',
        '{"type": "Message", "level": "info", "text": {"a": 1}, "t": 1.0}',
        '[1, 2]', '{"type": 5}', "\udcff\udcfe", "[" * 50_000,
    ]
    assert [parse_event(line) for line in bad] == [None] * len(bad)
    good = parse_event('{"type": "Progress", "stage": "train", "done": 1, "total": 5, "rate": 2, "t": 1.0}')
    assert good is not None and good.rate == 2.0  # type: ignore[attr-defined]


def test_status_into_a_closed_pipe_is_quiet(place: dict[str, Path]) -> None:
    import subprocess
    import sys

    make_job(place)
    shell = (f"{sys.executable} -m ioncannon status --workdir {place['work']} | head -1; "
             f"{sys.executable} -m ioncannon --help | head -1")
    out = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr
    assert out.stdout.startswith("job      hurt")


HOLDER = (
    "import sys, time\n"
    "from ioncannon.job.lock import try_lock\n"
    "from ioncannon.job.paths import JobPaths\n"
    "lock = try_lock(JobPaths(sys.argv[1]))\n"
    "lock.record(12345678)\n"
    "print('locked', flush=True)\n"
    "time.sleep(120)\n"
)


def test_resume_detach_on_a_running_job_returns_at_once(capsys: pytest.CaptureFixture[str],
                                                        place: dict[str, Path]) -> None:
    import subprocess
    import sys
    import time

    paths = make_job(place, "busy")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(paths.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        t = time.time()
        code, out, err = cli(capsys, "resume", "busy", "--detach", "--workdir", str(place["work"]))
        assert code == 0 and "already running" in out and "following" not in out, out + err
        assert time.time() - t < 30  # it did not follow the job until it ended
    finally:
        holder.kill()
        holder.wait()


def test_help_says_results_are_private(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "private to your user" in text and "0600" in text and "0700" in text


def test_a_work_dir_inside_the_photo_folder_is_refused(capsys: pytest.CaptureFixture[str],
                                                       place: dict[str, Path]) -> None:
    jobfile = place["root"] / "job.json"
    jobfile.write_text(json.dumps(valid_job(place["photos"])))
    before = tree(place["photos"])
    code, _, err = cli(capsys, "run", str(jobfile), "--yes", "--workdir", str(place["photos"] / "work"))
    assert code == 2 and "lies inside the photo folder" in err
    one_sentence(err)
    assert tree(place["photos"]) == before  # not even the work dir was made


def test_relative_paths_in_a_job_file_are_made_absolute_once(place: dict[str, Path],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from ioncannon.job.jobfile import read_jobfile
    from ioncannon.job.spec import load_spec

    monkeypatch.chdir(place["root"])  # the runner works from the job's own folder, not from here
    (place["root"] / "pack.toml").write_text('[[style]]\nkeyword = "oil"\nprompt = "oil of {token}"\nseed = 1\n')
    jobfile = place["root"] / "job.toml"
    jobfile.write_text('name = "rel"\nphotos_dir = "photos"\nidentifier = "zwx"\nclass_name = "dog"\n'
                       'base_model = "org/model"\n[generate]\nprompt_pack = "pack.toml"\n')
    paths = handle.create(place["work"], planned_spec(read_jobfile(jobfile, place["work"])))
    spec = load_spec(paths)
    assert spec.photos_dir == str(place["photos"].resolve())
    assert spec.generate.prompt_pack == str((place["root"] / "pack.toml").resolve())
    assert spec.base_model == "org/model"  # a hub id, not a local folder
