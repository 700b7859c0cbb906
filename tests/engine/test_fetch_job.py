"""A whole demo-size job whose base model comes from the local hub: fetched first, killed mid-download, resumed."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from ioncannon.job import handle
from ioncannon.job.events import Progress, StageFinished, StageStarted
from ioncannon.job.lock import runner_pid, wait_for_exit
from ioncannon.job.state import EventTail, read_state
from ioncannon.job.workdir import create_job
from tests.engine.hub_repos import PADDED, pad_weights, point_at, sd15_repo
from tests.engine.test_train_support import small_demo_job
from tests.hanging_hub import local_hub
from tests.waiting import wait_until

pytestmark = pytest.mark.slow
REPO = "tiny-org/tiny-sd15"


def test_a_job_fetches_its_model_survives_a_kill_mid_download_and_resumes_from_the_bytes_on_disk(
        tiny_model: Path, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = pad_weights(sd15_repo(tiny_model, tmp_path / "repo"), 24_000_000)
    size = (served / PADDED).stat().st_size
    spec = small_demo_job(workdir, "fetched", steps=4, checkpoint_every=0, sample_every=1000,
                          num_class_images=2).replace(base_model=REPO)
    with local_hub() as hub:
        hub.add(REPO, served)
        point_at(hub, tmp_path / "hf", monkeypatch)
        hub.bytes_per_s = 3_000_000  # slow enough to be caught mid-file
        paths = create_job(workdir, spec)
        first = handle.start(paths, workdir)
        wait_until(lambda: hub.sent.get(PADDED, 0) >= 13_000_000, 120, "the UNet download to pass 13 MB")
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: runner_pid(paths) is None, 30, "the lock to be released")
        before = hub.sent[PADDED]
        partial = sum(p.stat().st_size for p in (tmp_path / "hf" / "hub").rglob("*.incomplete"))
        assert partial >= 10_000_000  # huggingface_hub wrote its first 10 MB before the kill

        hub.bytes_per_s = 0
        hub.sent.clear()
        tail = EventTail(paths.events_file, from_start=False)
        handle.start(paths, workdir)
        assert wait_for_exit(paths, 600), "the resumed job did not finish"
        state = read_state(paths)
        assert state.status == "finished", (state.message, state.hint)
        after = hub.sent[PADDED]
        assert any(r.startswith(f"GET /{REPO}/resolve/main/{PADDED} bytes={partial}-") for r in hub.requests)
    assert after == size - partial  # the second run fetched only what was not on disk
    events = tail.read_new()
    assert [e.stage for e in events if isinstance(e, StageStarted)][0] == "fetch"
    fetch_progress = [e for e in events if isinstance(e, Progress) and e.stage == "fetch"]
    assert fetch_progress and fetch_progress[-1].done == fetch_progress[-1].total
    times = {e.stage: e.seconds for e in events if isinstance(e, StageFinished)}
    print(f"\nUNet file {size} bytes: {before} sent before the kill, {partial} on disk after it, {after} fetched "
          f"after the resume; stage seconds after the resume: "
          + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
