"""CheckpointStore: staged publish, hash verification, fallback to an older checkpoint, retention, disk checks, RNG."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from ioncannon.engine.train import checkpoint as ckpt_mod
from ioncannon.engine.train.checkpoint import CheckpointStore, capture_rng, restore_rng
from ioncannon.job.errors import StageError
from ioncannon.job.events import Event, Message


def _tensors(step: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(step)
    return {"w": torch.randn(64, 8, generator=g)}, {
        "opt.m": torch.randn(512, generator=g),
        "opt.step": torch.tensor(float(step)),
    }


def _save(store: CheckpointStore, step: int) -> Path:
    w, o = _tensors(step)
    return store.save(step, w, o, {"note": f"s{step}"})


def test_round_trip_and_manifest(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "ck", keep=2)
    path = _save(store, 7)
    assert path.name == "step_00000007"
    assert sorted(p.name for p in path.iterdir()) == [
        "manifest.json",
        "optimizer.safetensors",
        "state.json",
        "weights.safetensors",
    ]
    loaded = store.load_latest()
    assert loaded is not None and loaded.step == 7 and loaded.state["note"] == "s7"
    w, o = _tensors(7)
    assert torch.equal(loaded.weights["w"], w["w"]) and torch.equal(loaded.optimizer["opt.m"], o["opt.m"])


def test_keeps_only_the_newest_k(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "ck", keep=2)
    for step in (2, 4, 6, 8):
        _save(store, step)
    assert [s for s, _ in store.published()] == [8, 6]


def test_corrupted_newest_falls_back_and_says_why(tmp_path: Path) -> None:
    events: list[Event] = []
    store = CheckpointStore(tmp_path / "ck", keep=3, emit=events.append)
    _save(store, 4)
    newest = _save(store, 8)
    data = bytearray((newest / "weights.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (newest / "weights.safetensors").write_bytes(bytes(data))
    loaded = store.load_latest()
    assert loaded is not None and loaded.step == 4
    warnings = [e.text for e in events if isinstance(e, Message) and e.level == "warning"]
    assert len(warnings) == 1 and "step 8" in warnings[0] and "checksum" in warnings[0]


def test_truncated_and_manifestless_checkpoints_are_skipped(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "ck", keep=5)
    _save(store, 1)
    p2, p3 = _save(store, 2), _save(store, 3)
    (p3 / "manifest.json").unlink()
    with open(p2 / "optimizer.safetensors", "r+b") as fh:
        fh.truncate(100)
    assert store.load_latest().step == 1


def test_a_save_killed_midway_leaves_the_previous_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = CheckpointStore(tmp_path / "ck", keep=2)
    _save(store, 5)

    def killed(*_args: object) -> None:
        raise KeyboardInterrupt("killed while hashing")

    monkeypatch.setattr(ckpt_mod, "_write_manifest", killed)
    with pytest.raises(KeyboardInterrupt):
        _save(store, 10)
    assert any(p.name.startswith(".staging-") for p in store.folder.iterdir())
    assert store.load_latest().step == 5
    store.clean_staging()
    assert not any(p.name.startswith(".staging-") for p in store.folder.iterdir())


def test_full_disk_gives_a_clear_message_and_keeps_the_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = CheckpointStore(tmp_path / "ck", keep=1)
    _save(store, 3)
    monkeypatch.setattr(ckpt_mod, "free_bytes", lambda _p: 10 * 2**20)
    with pytest.raises(StageError) as info:
        _save(store, 6)
    assert "Disk full" in info.value.message and "step 3 is kept" in info.value.message
    assert info.value.hint
    assert [s for s, _ in store.published()] == [3]
    assert store.load_latest().step == 3


def test_accept_can_reject_a_checkpoint(tmp_path: Path) -> None:
    events: list[Event] = []
    store = CheckpointStore(tmp_path / "ck", keep=3, emit=events.append)
    _save(store, 1)
    _save(store, 2)
    loaded = store.load_latest(accept=lambda c: "wrong mode" if c.step == 2 else "")
    assert loaded.step == 1
    assert any("wrong mode" in e.text for e in events if isinstance(e, Message))


def test_rng_states_round_trip() -> None:
    tensors, plain = capture_rng()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(5), random.random()
    restore_rng(tensors, plain)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_background_writer_snapshots_at_submit_and_keeps_one_write_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    store = CheckpointStore(tmp_path / "ck", keep=3)
    writer = ckpt_mod.CheckpointWriter(store)
    release = threading.Event()
    real_write = store.write

    def slow_write(*args: object, **kwargs: object) -> Path:
        assert release.wait(60), "the test never released the write"
        return real_write(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "write", slow_write)
    weights = {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4), "h": torch.ones(5, dtype=torch.bfloat16)}
    optimizer = {"opt.step": torch.tensor(3.0), "flag": torch.tensor([True, False])}
    writer.submit(1, weights, optimizer, {"note": "one"})
    assert writer.busy, "submit returns while the bytes are still being written"
    weights["w"].add_(100)  # training goes on mutating its tensors in place
    second = threading.Thread(target=writer.submit, args=(2, weights, optimizer, {"note": "two"}))
    second.start()
    second.join(0.5)
    assert second.is_alive(), "the next save waits for the write in flight"
    assert store.published() == []
    release.set()
    second.join(60)
    writer.wait()
    assert [s for s, _ in writer.published()] == [1, 2]
    first = store.load(store.folder / "step_00000001")
    assert torch.equal(first.weights["w"], torch.arange(12, dtype=torch.float32).reshape(3, 4))
    assert first.weights["h"].dtype == torch.bfloat16 and first.optimizer["opt.step"].shape == ()
    assert torch.equal(first.optimizer["flag"], torch.tensor([True, False]))
    assert torch.equal(store.load(store.folder / "step_00000002").weights["w"], weights["w"])


def test_a_failed_background_write_surfaces_at_the_next_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    import errno

    store = CheckpointStore(tmp_path / "ck", keep=2)
    _save(store, 3)
    writer = ckpt_mod.CheckpointWriter(store)

    def no_space(*_args: object) -> tuple[int, str]:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt_mod, "write_safetensors", no_space)
    w, o = _tensors(6)
    writer.submit(6, w, o, {})
    with pytest.raises(StageError) as info:
        writer.submit(9, w, o, {})
    assert "Disk full" in info.value.message and "step 3 is kept" in info.value.message
    assert store.load_latest().step == 3
