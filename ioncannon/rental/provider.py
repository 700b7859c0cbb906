"""Which rental provider runs this box, and the exact command that stops or destroys it from inside."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ProviderName = Literal["vast", "runpod", "plain"]
Action = Literal["stop", "destroy"]

STILL_BILLS = "A stopped instance still bills for its storage."
WHY_DESTROY = f"{STILL_BILLS} Only destroying it stops the meter."


@dataclass(frozen=True)
class ProviderInfo:
    """The provider as the environment tells it, and whether its CLI can act on this instance."""

    name: ProviderName
    display_name: str
    instance_id: str | None
    cli: str | None  # the provider CLI found on PATH
    credentials: str | None  # where the CLI's API key comes from, in words; None when there is none

    @property
    def can_act_from_inside(self) -> bool:
        return self.cli is not None and self.instance_id is not None and self.credentials is not None


@dataclass(frozen=True)
class ProviderCommand:
    """The argv to run and the same command as shown to the user (secrets as variable names)."""

    argv: tuple[str, ...]
    shown: str
    action: Action


@dataclass(frozen=True)
class ProviderResult:
    returncode: int
    output: str


class ProviderError(Exception):
    """The stop/destroy command can't be run from here; the message says what to do instead."""


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or Path.home())


def _vast_credentials(env: Mapping[str, str]) -> str | None:
    if env.get("VAST_API_KEY"):
        return "VAST_API_KEY"
    config = Path(env.get("XDG_CONFIG_HOME") or _home(env) / ".config")
    for key_file in (config / "vastai" / "vast_api_key", _home(env) / ".vast_api_key"):
        if key_file.is_file():
            return str(key_file)
    if env.get("CONTAINER_API_KEY"):
        return "CONTAINER_API_KEY"
    return None


def _runpod_credentials(env: Mapping[str, str]) -> str | None:
    if env.get("RUNPOD_API_KEY"):
        return "RUNPOD_API_KEY"
    config = _home(env) / ".runpod" / "config.toml"
    return str(config) if config.is_file() else None


def detect_provider(env: Mapping[str, str] | None = None) -> ProviderInfo:
    """Vast (CONTAINER_ID / VAST_* variables), RunPod (RUNPOD_POD_ID) or a plain box."""
    env = os.environ if env is None else env
    path = env.get("PATH", os.defpath)
    if env.get("CONTAINER_ID") or env.get("VAST_CONTAINERLABEL"):
        raw = (env.get("CONTAINER_ID") or env.get("VAST_CONTAINERLABEL", "")).strip()
        instance = raw.removeprefix("C.") or None
        return ProviderInfo("vast", "Vast.ai", instance, shutil.which("vastai", path=path), _vast_credentials(env))
    if env.get("RUNPOD_POD_ID"):
        return ProviderInfo(
            "runpod", "RunPod", env["RUNPOD_POD_ID"].strip() or None,
            shutil.which("runpodctl", path=path), _runpod_credentials(env),
        )
    return ProviderInfo("plain", "your provider", None, None, None)


def build_command(info: ProviderInfo, action: Action, env: Mapping[str, str] | None = None) -> ProviderCommand:
    """The exact stop/destroy command for this instance; ProviderError where it can't be built."""
    env = os.environ if env is None else env
    if not info.can_act_from_inside:
        missing = "its CLI" if info.cli is None else "an API key" if info.credentials is None else "this instance's id"
        raise ProviderError(
            f"{info.display_name} can't be asked from inside this box (missing {missing}); use the console"
        )
    assert info.cli is not None and info.instance_id is not None
    cli_name = Path(info.cli).name
    if info.name == "vast":
        words = ("stop" if action == "stop" else "destroy", "instance", info.instance_id)
        if info.credentials == "CONTAINER_API_KEY":
            # The instance's own key: passed on the command line, shown only by its variable name.
            argv = (info.cli, *words, "--api-key", env.get("CONTAINER_API_KEY", ""))
            shown = shlex.join((cli_name, *words)) + ' --api-key "$CONTAINER_API_KEY"'
            return ProviderCommand(argv, shown, action)
        return ProviderCommand((info.cli, *words), shlex.join((cli_name, *words)), action)
    words = ("stop" if action == "stop" else "remove", "pod", info.instance_id)
    return ProviderCommand((info.cli, *words), shlex.join((cli_name, *words)), action)


def run_provider_command(command: ProviderCommand, confirmed: bool, timeout_s: float = 120) -> ProviderResult:
    """Run the command, only with the caller's confirmation; the output says what the provider answered."""
    if not confirmed:
        raise ProviderError("not confirmed: type the confirmation first")
    try:
        done = subprocess.run(
            command.argv, capture_output=True, text=True, timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return ProviderResult(124, f"{command.shown} gave no answer in {timeout_s:.0f} s; check the console")
    except OSError as exc:
        return ProviderResult(127, f"{command.shown} could not start: {exc.strerror or exc}")
    return ProviderResult(done.returncode, (done.stdout + done.stderr).strip())


def console_steps(info: ProviderInfo) -> list[str]:
    """Where, in the provider's web console, to destroy this instance by hand."""
    ident = f" (id {info.instance_id})" if info.instance_id else ""
    if info.name == "vast":
        return [
            "Open cloud.vast.ai → Instances.",
            f"On this instance's card{ident} press the trash-can icon: Destroy.",
            "The stop button is not enough: a stopped instance keeps billing its disk.",
        ]
    if info.name == "runpod":
        return [
            "Open the RunPod console → Pods.",
            f"On this pod{ident}: Stop, then the trash-can icon: Terminate.",
            "A stopped pod keeps billing its disk; only Terminate ends it.",
        ]
    return [
        "In your provider's web console, find this machine's instance.",
        "Choose Terminate / Destroy / Delete, not Stop or Shut down.",
        "Delete any volume or disk it leaves behind: those bill on their own.",
    ]


def console_where(info: ProviderInfo) -> str:
    """One line: where in the provider's console the destroy button is."""
    if info.name == "vast":
        return "cloud.vast.ai → Instances → trash-can icon (Destroy) on its card."
    if info.name == "runpod":
        return "RunPod console → Pods → Stop, then trash-can icon (Terminate)."
    return "your provider's console → Terminate / Destroy it, delete its disks."
