"""The fetch stage against a local hub on 127.0.0.1: the file list, progress, the disk check, refusals and resume."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from ioncannon.engine.hub_files import check_available, local_model, model_source, plan_from_hub
from ioncannon.job.errors import StageError
from ioncannon.job.events import Event, Message, Progress
from tests.engine.hub_repos import UNNEEDED, cached_files, point_at, sd15_repo
from tests.hanging_hub import LocalHub, hanging_hub, local_hub

REPO = "tiny-org/tiny-sd15"


@pytest.fixture(scope="session")
def sd15_hub_folder(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sd15_repo(tiny_model, tmp_path_factory.mktemp("hub") / "tiny-sd15")


@pytest.fixture
def hub(sd15_hub_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    with local_hub() as served:
        served.add(REPO, sd15_hub_folder)
        point_at(served, tmp_path / "hf", monkeypatch)
        yield served


def _ctx(tmp_path: Path, base_model: str, events: list[Event]):  # type: ignore[no-untyped-def]
    from ioncannon.engine.context import StageContext
    from ioncannon.job.paths import JobPaths
    from ioncannon.job.plans import TrainPlan
    from ioncannon.job.spec import JobSpec

    spec = JobSpec(name="j", photos_dir=str(tmp_path), identifier="zwx", class_name="dog", base_model=base_model,
                   device="cpu", train=TrainPlan(mode="lora", steps=4, num_class_images=0, prior_preservation=False))
    paths = JobPaths(tmp_path / "work" / "j")
    paths.meta.mkdir(parents=True)
    return StageContext(spec, paths, tmp_path / "work", events.append, lambda: False,
                        log=logging.getLogger("test-fetch"))


def test_the_plan_takes_the_fp16_safetensors_of_the_used_components_only(hub: LocalHub) -> None:
    plan = plan_from_hub(model_source(REPO, "sd15"), "sd15")
    paths = {f.path for f in plan.files}
    assert plan.variant == "fp16"
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in paths
    assert "unet/diffusion_pytorch_model.safetensors" not in paths  # the fp32 copy is twice the bytes
    assert not paths & set(UNNEEDED)
    assert {"model_index.json", "tokenizer/vocab.json", "scheduler/scheduler_config.json"} <= paths
    served = hub.repos[REPO].files
    assert plan.total_bytes == sum(len(served[p]) for p in paths)
    assert plan.cached == frozenset({"model_index.json"})  # read to pick the components


def test_fetch_downloads_with_progress_and_the_model_loads_from_the_cache(hub: LocalHub, tmp_path: Path) -> None:
    from ioncannon.engine.families import family_for
    from ioncannon.engine.fetch import run_fetch, skip_fetch

    events: list[Event] = []
    ctx = _ctx(tmp_path, REPO, events)
    assert skip_fetch(ctx) == ""
    run_fetch(ctx)
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress and progress[-1].done == progress[-1].total > 1_000_000
    assert all(p.stage == "fetch" for p in progress)
    wanted = {f.path for f in plan_from_hub(model_source(REPO, "sd15"), "sd15").files}
    assert set(cached_files(tmp_path / "hf", REPO)) == wanted
    assert not set(hub.sent) & set(UNNEEDED)
    assert "complete in the model cache" in skip_fetch(ctx)
    before = len(hub.requests)
    parts = family_for("sd15").load(REPO)
    assert len(hub.requests) == before  # loading reads the cache, never the hub
    assert parts.source == REPO and parts.unet is not None


def test_a_disk_too_small_is_refused_before_any_byte(hub: LocalHub, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from ioncannon.engine import fetch, hub_files

    monkeypatch.setattr(hub_files, "free_bytes", lambda path: 1_000_000_000)
    events: list[Event] = []
    with pytest.raises(StageError) as caught:
        fetch.run_fetch(_ctx(tmp_path, REPO, events))
    assert caught.value.message.startswith("Not enough disk")
    assert "GB free" in caught.value.message and "HF_HOME" in caught.value.message
    assert not hub.sent.get("unet/diffusion_pytorch_model.fp16.safetensors")
    assert list(cached_files(tmp_path / "hf", REPO)) == ["model_index.json"]


@pytest.mark.parametrize("status", [401, 403])
def test_a_gated_answer_is_one_sentence(status: int, sd15_hub_folder: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with local_hub() as served:
        served.add(REPO, sd15_hub_folder, deny=status)
        point_at(served, tmp_path / "hf", monkeypatch)
        events: list[Event] = []
        from ioncannon.engine.fetch import run_fetch

        with pytest.raises(StageError) as caught:
            run_fetch(_ctx(tmp_path, REPO, events))
        found = check_available(REPO, "sd15")
    text = caught.value.message
    assert "\n" not in text and "Traceback" not in text
    assert ("licence" in text) if status == 403 else ("hf auth login" in text)
    assert found.problem == text


def test_a_hanging_hub_times_out_in_one_sentence(sd15_hub_folder: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from ioncannon.engine import hub_files

    monkeypatch.setattr(hub_files, "HUB_TIMEOUT_S", 1.0)
    with hanging_hub() as hanging:
        point_at(LocalHub(hanging.url), tmp_path / "hf", monkeypatch)
        found = check_available(REPO, "sd15")
    assert found.problem is not None and "did not answer" in found.problem
    assert local_model(REPO, "sd15") is None


def test_an_unreachable_hub_still_serves_a_complete_cached_copy(hub: LocalHub, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from ioncannon.engine.fetch import run_fetch

    run_fetch(_ctx(tmp_path, REPO, []))
    hub.repos.clear()  # the hub now says "not found" to everything
    found = check_available(REPO, "sd15")
    assert found.problem is None and found.cached and found.bytes_to_fetch == 0
    events: list[Event] = []
    run_fetch(_ctx(tmp_path / "again", REPO, events))
    assert any(isinstance(e, Message) and "complete" in e.text for e in events)
