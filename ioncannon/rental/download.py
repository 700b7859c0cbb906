"""Ready-to-paste scp/rsync commands that copy a job's results from this box home, and DOWNLOAD.txt."""

from __future__ import annotations

import ipaddress
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ioncannon.job.fsio import atomic_write_text
from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec, load_spec
from ioncannon.rental.bundle import archive_path, bundle_is_current

# Bare words, not <HOST>: a pasted "<PORT>" is a shell redirection that creates stray files.
HOST_PLACEHOLDER = "HOST"
PORT_PLACEHOLDER = "PORT"


@dataclass(frozen=True)
class SshAddress:
    """How the user's own computer reaches this box over SSH, as far as the environment tells."""

    host: str | None
    port: int | None
    user: str
    source: str  # vast | runpod | ssh | unknown
    note: str = ""  # one line on what is missing and where to find it; empty when all is known

    @property
    def complete(self) -> bool:
        return self.host is not None and self.port is not None


@dataclass(frozen=True)
class DownloadCommands:
    scp: str
    rsync: str
    note: str
    targets: tuple[Path, ...]


def _port(value: str | None) -> int | None:
    try:
        port = int((value or "").strip())
    except ValueError:
        return None
    return port if 0 < port < 65536 else None


def _host(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _reachable_from_outside(addr: str) -> bool | None:
    try:
        return ipaddress.ip_address(addr).is_global
    except ValueError:
        return None


def _from_ssh_connection(value: str, user: str) -> SshAddress | None:
    """SSH_CONNECTION is "client_ip client_port server_ip server_port" of the SSH connection the user opened."""
    parts = value.split()
    if len(parts) != 4:
        return None
    client_ip, _client_port, server_ip, server_port = parts
    server_public = _reachable_from_outside(server_ip)
    client_public = _reachable_from_outside(client_ip)
    if server_public is None:
        return None
    if server_public or not client_public:
        # Either a public server, or both ends on one private network (LAN, VPN): the address works as seen.
        return SshAddress(server_ip, _port(server_port), user, "ssh")
    # A private server address seen from a public client means NAT or a container's port mapping:
    # neither the outside address nor the outside port is visible from in here.
    return None


def detect_address(env: Mapping[str, str] | None = None) -> SshAddress:
    """Read provider variables (REFERENCE §6) first, then SSH_CONNECTION; fill what is known."""
    env = os.environ if env is None else env
    user = _host(env.get("USER")) or _host(env.get("LOGNAME")) or "root"
    if env.get("CONTAINER_ID") or env.get("VAST_TCP_PORT_22") or env.get("PUBLIC_IPADDR"):
        host, port = _host(env.get("PUBLIC_IPADDR")), _port(env.get("VAST_TCP_PORT_22"))
        note = "" if host and port else (
            "Vast didn't tell this box its public address: use the IP and port under "
            "\"Direct ssh connect\" on the instance card (the proxy address can't copy files fast)."
        )
        return SshAddress(host, port, user, "vast", note)
    if env.get("RUNPOD_POD_ID"):
        host, port = _host(env.get("RUNPOD_PUBLIC_IP")), _port(env.get("RUNPOD_TCP_PORT_22"))
        note = "" if host and port else (
            "This pod has no public TCP port 22 (RunPod's basic SSH proxy can't copy files): "
            "expose TCP port 22 in the pod's settings and use the IP and port it shows under Connect."
        )
        return SshAddress(host, port, user, "runpod", note)
    seen = _from_ssh_connection(env.get("SSH_CONNECTION", ""), user)
    if seen is not None:
        return seen
    return SshAddress(
        None, None, user, "unknown",
        "This box can't see the address you reached it by: put the host and port from your own "
        "ssh command in place of HOST and PORT.",
    )


def download_targets(paths: JobPaths, spec: JobSpec) -> tuple[Path, ...]:
    """The bundle when it exists (one file, resumable); else the output and model folders themselves."""
    bundle = archive_path(paths, spec)
    if bundle_is_current(paths, spec):  # a zip made before the job's last results would leave them behind
        return (bundle,)
    folders = tuple(p for p in (paths.outputs, paths.trained_models) if p.is_dir())
    return folders or (bundle,)


def _remote(address: SshAddress, path: Path) -> str:
    host = address.host or HOST_PLACEHOLDER
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address would otherwise swallow the path separator
    return shlex.quote(f"{address.user}@{host}:{path}")


def build_download_commands(address: SshAddress, targets: Sequence[Path], local_dir: str = ".") -> DownloadCommands:
    """`scp -P PORT user@HOST:…` and `rsync -P -e 'ssh -p PORT' …`, placeholders where unknown."""
    port = str(address.port) if address.port is not None else PORT_PLACEHOLDER
    recursive = any(t.is_dir() for t in targets)
    sources = " ".join(_remote(address, t) for t in targets)
    dest = shlex.quote(local_dir)
    scp = f"scp {'-r ' if recursive else ''}-P {port} {sources} {dest}"
    rsync = f"rsync {'-rP' if recursive else '-P'} -e {shlex.quote(f'ssh -p {port}')} {sources} {dest}"
    return DownloadCommands(scp, rsync, address.note, tuple(targets))


def download_text(commands: DownloadCommands, address_source: str = "") -> str:
    """The body of DOWNLOAD.txt: the commands and what to do with them."""
    where = {
        "vast": "Address from Vast's PUBLIC_IPADDR and VAST_TCP_PORT_22.",
        "runpod": "Address from RunPod's RUNPOD_PUBLIC_IP and RUNPOD_TCP_PORT_22.",
        "ssh": "Address from this SSH connection.",
    }.get(address_source, "")
    lines = [
        "Copy the results to YOUR computer: run one of these there (not on this box).",
        "",
        f"  {commands.scp}",
        f"  {commands.rsync}",
        "",
        "rsync resumes an interrupted copy: just run it again.",
    ]
    if commands.note:
        lines.append(commands.note)
    if where:
        lines.append(where)
    return "\n".join(lines) + "\n"


def write_download_file(
    paths: JobPaths, spec: JobSpec | None = None, env: Mapping[str, str] | None = None,
) -> DownloadCommands:
    """Write DOWNLOAD.txt into the job folder; returns its commands (the spec is read from job.json if not given)."""
    spec = load_spec(paths) if spec is None else spec
    address = detect_address(env)
    commands = build_download_commands(address, download_targets(paths, spec))
    atomic_write_text(paths.download_file, download_text(commands, address.source))
    return commands
