"""A planted Hugging Face token must not reach any file a whole job (and its bundle) writes."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from ioncannon.cli.finish import bundle_main
from ioncannon.job import handle
from ioncannon.job.lock import wait_for_exit
from ioncannon.job.state import read_state
from ioncannon.job.workdir import create_job
from tests.engine.test_train_support import small_demo_job

pytestmark = pytest.mark.slow


def files_containing(root: Path, needle: bytes) -> list[Path]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
            hits.append(path)
    return hits


def test_a_planted_token_is_in_no_file_the_job_wrote(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = f"hf_canary{secrets.token_hex(12)}"
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.setenv(name, token)
    homes = {
        name: tmp_path / name.lower() for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "HF_HOME")
    }
    for name, folder in homes.items():
        folder.mkdir()
        monkeypatch.setenv(name, str(folder))

    spec = small_demo_job(workdir, "canary", steps=4, checkpoint_every=2, sample_every=2,
                          num_class_images=2).replace(hourly_price=0.5)
    paths = create_job(workdir, spec)
    handle.start(paths, workdir)
    assert wait_for_exit(paths, 240), "the runner did not finish in time"
    state = read_state(paths)
    assert state.status == "finished", (state.message, state.hint)
    assert bundle_main(["canary", "--workdir", str(workdir), "--yes", "--model", "all"]) == 0

    written = [p for p in workdir.rglob("*") if p.is_file()]
    assert len(written) > 20 and any(p.suffix == ".zip" for p in written)  # the grep covers a real job
    assert (paths.root / "DOWNLOAD.txt").is_file() and paths.log_file.is_file() and paths.events_file.is_file()
    leaks = files_containing(workdir, token.encode()) + [
        p for f in homes.values() for p in files_containing(f, token.encode())
    ]
    assert leaks == []
