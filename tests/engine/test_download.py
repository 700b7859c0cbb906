"""Download commands built from what the environment tells, over a table of boxes."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec, save_spec
from ioncannon.rental.bundle import archive_path
from ioncannon.rental.download import (
    build_download_commands,
    detect_address,
    download_targets,
    write_download_file,
)

ZIP = Path("/workspace/ioncannon/alice/alice-results.zip")

# env, scp, rsync, whether a one-line explanation is due
BOXES: dict[str, tuple[dict[str, str], str, str, bool]] = {
    "vast": (
        {"CONTAINER_ID": "4242", "PUBLIC_IPADDR": "203.0.113.7", "VAST_TCP_PORT_22": "41022",
         "SSH_CONNECTION": "93.184.216.34 50000 172.17.0.2 22"},
        f"scp -P 41022 root@203.0.113.7:{ZIP} .",
        f"rsync -P -e 'ssh -p 41022' root@203.0.113.7:{ZIP} .",
        False,
    ),
    "vast without its variables": (
        {"CONTAINER_ID": "4242", "SSH_CONNECTION": "93.184.216.34 50000 172.17.0.2 22"},
        f"scp -P PORT root@HOST:{ZIP} .",
        f"rsync -P -e 'ssh -p PORT' root@HOST:{ZIP} .",
        True,
    ),
    "runpod": (
        {"RUNPOD_POD_ID": "x1y2", "RUNPOD_PUBLIC_IP": "198.51.100.20", "RUNPOD_TCP_PORT_22": "10222", "USER": "root"},
        f"scp -P 10222 root@198.51.100.20:{ZIP} .",
        f"rsync -P -e 'ssh -p 10222' root@198.51.100.20:{ZIP} .",
        False,
    ),
    "runpod without a public port": (
        {"RUNPOD_POD_ID": "x1y2", "RUNPOD_PUBLIC_IP": "198.51.100.20"},
        f"scp -P PORT root@198.51.100.20:{ZIP} .",
        f"rsync -P -e 'ssh -p PORT' root@198.51.100.20:{ZIP} .",
        True,
    ),
    "plain ssh to a public address": (
        {"SSH_CONNECTION": "93.184.216.34 50000 8.8.4.4 2222", "USER": "ubuntu"},
        f"scp -P 2222 ubuntu@8.8.4.4:{ZIP} .",
        f"rsync -P -e 'ssh -p 2222' ubuntu@8.8.4.4:{ZIP} .",
        False,
    ),
    "a box on the same private network": (
        {"SSH_CONNECTION": "192.168.1.10 50000 192.168.1.50 22"},
        f"scp -P 22 root@192.168.1.50:{ZIP} .",
        f"rsync -P -e 'ssh -p 22' root@192.168.1.50:{ZIP} .",
        False,
    ),
    "ssh through NAT": (
        {"SSH_CONNECTION": "93.184.216.34 50000 10.0.0.5 22"},
        f"scp -P PORT root@HOST:{ZIP} .",
        f"rsync -P -e 'ssh -p PORT' root@HOST:{ZIP} .",
        True,
    ),
    "ipv6": (
        {"SSH_CONNECTION": "2001:4860:4860::8888 50000 2606:4700:4700::1111 22"},
        # quoted: zsh would read the brackets as a glob
        f"scp -P 22 'root@[2606:4700:4700::1111]:{ZIP}' .",
        f"rsync -P -e 'ssh -p 22' 'root@[2606:4700:4700::1111]:{ZIP}' .",
        False,
    ),
    "nothing known": (
        {},
        f"scp -P PORT root@HOST:{ZIP} .",
        f"rsync -P -e 'ssh -p PORT' root@HOST:{ZIP} .",
        True,
    ),
}


@pytest.mark.parametrize("box", list(BOXES))
def test_commands_for_each_kind_of_box(box: str) -> None:
    env, scp, rsync, explained = BOXES[box]
    commands = build_download_commands(detect_address(env), [ZIP])
    assert commands.scp == scp
    assert commands.rsync == rsync
    assert bool(commands.note) is explained
    # Pasted unfilled, a placeholder must not become a shell redirection.
    assert "<" not in commands.scp + commands.rsync and ">" not in commands.scp + commands.rsync


def test_rsync_command_splits_into_the_intended_arguments() -> None:
    env = BOXES["vast"][0]
    commands = build_download_commands(detect_address(env), [Path("/w/my job/alice-results.zip")])
    assert shlex.split(commands.rsync) == [
        "rsync", "-P", "-e", "ssh -p 41022", "root@203.0.113.7:/w/my job/alice-results.zip", ".",
    ]


def test_garbage_in_the_environment_becomes_placeholders() -> None:
    address = detect_address({"CONTAINER_ID": "1", "PUBLIC_IPADDR": "203.0.113.7", "VAST_TCP_PORT_22": "not-a-port"})
    assert address.host == "203.0.113.7" and address.port is None and address.note
    assert detect_address({"SSH_CONNECTION": "only three fields"}).source == "unknown"


def test_download_file_points_at_the_folders_then_at_the_bundle(tmp_path: Path) -> None:
    paths = JobPaths(tmp_path / "alice")
    spec = JobSpec(name="alice", photos_dir="/p", identifier="zwx", class_name="woman")
    save_spec(paths, spec)
    (paths.outputs / "zwx_oil").mkdir(parents=True)
    paths.trained_models.mkdir()
    env = BOXES["vast"][0]
    commands = write_download_file(paths, spec, env)
    assert download_targets(paths, spec) == (paths.outputs, paths.trained_models)
    assert commands.scp == f"scp -r -P 41022 root@203.0.113.7:{paths.outputs} root@203.0.113.7:{paths.trained_models} ."
    assert commands.rsync.startswith("rsync -rP -e 'ssh -p 41022' ")
    archive_path(paths, spec).write_bytes(b"zip")
    commands = write_download_file(paths, None, env)  # the spec is read from job.json
    text = paths.download_file.read_text()
    assert commands.scp in text and commands.rsync in text and "YOUR computer" in text
    assert f"root@203.0.113.7:{archive_path(paths, spec)} ." in text and commands.scp.startswith("scp -P ")
    assert "PUBLIC_IPADDR" in text  # says where the address came from
