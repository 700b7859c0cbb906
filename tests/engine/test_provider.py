"""Provider detection, the exact stop/destroy command, and the self-stop path with a fake CLI on PATH."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from ioncannon.cli.finish import stop_main
from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec, save_spec
from ioncannon.rental.bundle import download_decided, record_download
from ioncannon.rental.provider import (
    ProviderError,
    build_command,
    console_steps,
    detect_provider,
    run_provider_command,
)


def fake_cli(folder: Path, name: str, exit_code: int = 0) -> Path:
    """A provider CLI that writes its arguments (one a line) to NAME.args and says something."""
    folder.mkdir(parents=True, exist_ok=True)
    record = folder / f"{name}.args"
    script = folder / name
    script.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > "{record}"\necho "{name}: request accepted"\nexit {exit_code}\n'
    )
    script.chmod(0o755)
    return record


@pytest.fixture
def box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment: no provider variables, an empty HOME, PATH = a bin folder first."""
    for name in ("CONTAINER_ID", "VAST_CONTAINERLABEL", "CONTAINER_API_KEY", "VAST_API_KEY", "RUNPOD_POD_ID",
                 "RUNPOD_API_KEY", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setenv("IONCANNON_WORKDIR", str(tmp_path / "work"))
    return tmp_path / "bin"


def test_detects_vast_runpod_and_plain(box: Path) -> None:
    fake_cli(box, "vastai")
    fake_cli(box, "runpodctl")
    path = os.environ["PATH"]
    vast = detect_provider({"CONTAINER_ID": "4242", "CONTAINER_API_KEY": "k", "PATH": path, "HOME": "/nonexistent"})
    assert (vast.name, vast.instance_id, vast.cli, vast.credentials) == (
        "vast",
        "4242",
        str(box / "vastai"),
        "CONTAINER_API_KEY",
    )
    assert vast.can_act_from_inside
    label_only = detect_provider({"VAST_CONTAINERLABEL": "C.777", "VAST_API_KEY": "k", "PATH": path})
    assert label_only.instance_id == "777" and label_only.credentials == "VAST_API_KEY"
    runpod = detect_provider({"RUNPOD_POD_ID": "abc", "RUNPOD_API_KEY": "k", "PATH": path})
    assert (runpod.name, runpod.instance_id, runpod.cli) == ("runpod", "abc", str(box / "runpodctl"))
    plain = detect_provider({"PATH": path})
    assert plain.name == "plain" and not plain.can_act_from_inside


def test_credentials_from_the_cli_key_file(box: Path, tmp_path: Path) -> None:
    fake_cli(box, "vastai")
    home = tmp_path / "h"
    (home / ".config" / "vastai").mkdir(parents=True)
    env = {"CONTAINER_ID": "1", "PATH": os.environ["PATH"], "HOME": str(home)}
    assert detect_provider(env).credentials is None
    (home / ".config" / "vastai" / "vast_api_key").write_text("secret")
    info = detect_provider(env)
    assert info.credentials == str(home / ".config" / "vastai" / "vast_api_key")
    assert build_command(info, "destroy", env).argv == (str(box / "vastai"), "destroy", "instance", "1")


def test_exact_commands_and_no_secret_on_screen(box: Path) -> None:
    fake_cli(box, "vastai")
    fake_cli(box, "runpodctl")
    env = {"CONTAINER_ID": "4242", "CONTAINER_API_KEY": "sk-live-123", "PATH": os.environ["PATH"]}
    vast = detect_provider(env)
    destroy = build_command(vast, "destroy", env)
    assert destroy.argv == (str(box / "vastai"), "destroy", "instance", "4242", "--api-key", "sk-live-123")
    assert destroy.shown == 'vastai destroy instance 4242 --api-key "$CONTAINER_API_KEY"'
    assert "sk-live" not in destroy.shown
    assert build_command(vast, "stop", env).argv[1:4] == ("stop", "instance", "4242")
    renv = {"RUNPOD_POD_ID": "abc", "RUNPOD_API_KEY": "k", "PATH": os.environ["PATH"]}
    runpod = detect_provider(renv)
    assert build_command(runpod, "destroy", renv).shown == "runpodctl remove pod abc"
    assert build_command(runpod, "stop", renv).shown == "runpodctl stop pod abc"


def test_no_command_without_cli_or_key(box: Path) -> None:
    no_cli = detect_provider({"CONTAINER_ID": "1", "CONTAINER_API_KEY": "k", "PATH": str(box)})
    with pytest.raises(ProviderError, match="missing its CLI"):
        build_command(no_cli, "destroy")
    fake_cli(box, "runpodctl")
    no_key = detect_provider({"RUNPOD_POD_ID": "abc", "PATH": str(box), "HOME": str(box)})
    with pytest.raises(ProviderError, match="missing an API key"):
        build_command(no_key, "destroy")
    assert any("Terminate" in step for step in console_steps(no_key))
    assert any("not Stop" in step for step in console_steps(detect_provider({"PATH": str(box)})))


def test_nothing_runs_without_confirmation(box: Path) -> None:
    record = fake_cli(box, "vastai")
    env = {"CONTAINER_ID": "9", "CONTAINER_API_KEY": "k", "PATH": os.environ["PATH"]}
    command = build_command(detect_provider(env), "destroy", env)
    with pytest.raises(ProviderError):
        run_provider_command(command, confirmed=False)
    assert not record.exists()
    result = run_provider_command(command, confirmed=True)
    assert result.returncode == 0 and "request accepted" in result.output
    assert record.read_text().split() == ["destroy", "instance", "9", "--api-key", "k"]


def test_destroy_command_runs_the_cli_after_typed_confirmation(
    box: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    record = fake_cli(box, "vastai")
    monkeypatch.setenv("CONTAINER_ID", "4242")
    monkeypatch.setenv("CONTAINER_API_KEY", "key-1")
    monkeypatch.setattr("sys.stdin", io.StringIO("destroi\n"))  # a typo
    assert stop_main([]) == 1 and not record.exists()
    monkeypatch.setattr("sys.stdin", io.StringIO("destroy\n"))
    assert stop_main([]) == 0
    assert record.read_text().split() == ["destroy", "instance", "4242", "--api-key", "key-1"]
    out = capsys.readouterr().out
    assert 'This will run:  vastai destroy instance 4242 --api-key "$CONTAINER_API_KEY"' in out and "key-1" not in out


def test_stop_is_offered_but_warned_about(
    box: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    record = fake_cli(box, "runpodctl")
    monkeypatch.setenv("RUNPOD_POD_ID", "pod7")
    monkeypatch.setenv("RUNPOD_API_KEY", "k")
    assert stop_main(["--stop", "--yes"]) == 0
    assert record.read_text().split() == ["stop", "pod", "pod7"]
    out = capsys.readouterr().out
    assert "still bills for its storage" in out and "Terminate" in out


def test_a_job_on_the_box_must_be_downloaded_or_declined_first(
    box: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    record = fake_cli(box, "vastai")
    monkeypatch.setenv("CONTAINER_ID", "4242")
    monkeypatch.setenv("VAST_API_KEY", "k")
    paths = JobPaths(tmp_path / "work" / "alice")
    save_spec(paths, JobSpec(name="alice", photos_dir="/p", identifier="zwx", class_name="woman"))
    monkeypatch.setattr("sys.stdin", io.StringIO("no\ndestroy\n"))
    assert stop_main([]) == 1 and not record.exists() and download_decided(paths) is None
    monkeypatch.setattr("sys.stdin", io.StringIO("skip\ndestroy\n"))
    assert stop_main([]) == 0 and download_decided(paths) == "declined"
    assert record.read_text().split() == ["destroy", "instance", "4242"]
    record.unlink()
    record_download(paths, "confirmed")
    monkeypatch.setattr("sys.stdin", io.StringIO("destroy\n"))  # asked once is enough
    assert stop_main([]) == 0 and record.exists()


def test_a_failing_cli_points_to_the_console(
    box: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    fake_cli(box, "vastai", exit_code=3)
    monkeypatch.setenv("CONTAINER_ID", "4242")
    monkeypatch.setenv("VAST_API_KEY", "k")
    assert stop_main(["--yes", "--yes-i-downloaded"]) == 1
    out = capsys.readouterr().out
    assert "said no (exit 3)" in out and "cloud.vast.ai" in out


def test_without_a_cli_the_steps_are_shown(
    box: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RUNPOD_POD_ID", "pod7")
    assert stop_main(["--yes"]) == 1
    out = capsys.readouterr().out
    assert "DESTROY this instance" in out and "Terminate" in out
