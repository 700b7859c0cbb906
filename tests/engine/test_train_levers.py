"""Training's levers (engine/train/levers.py) on FLUX.1's 24 GB plan (LoRA adapters on fp8-stored weights, activation
checkpointing): the repeated blocks compiled, and checkpoints that keep the attention outputs, each train exactly as
the plain run does; and the switches that pick them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from ioncannon.engine.compile_cache import compile_blocks, repeated_blocks, uncompile_blocks
from ioncannon.engine.families import family_for
from ioncannon.engine.train.levers import attention_ops, checkpoint_keeps, training_compile

FLUX = family_for("flux")
CPU = torch.device("cpu")


def _trainer(folder: Path, compiled: bool) -> object:
    pytest.importorskip("torchao")
    from ioncannon.engine.train.cache import TrainCache
    from ioncannon.engine.train.step import Trainer
    from ioncannon.job.plans import TrainPlan

    parts = FLUX.load(str(folder))
    prompt = "a photo of sks person"
    cond = FLUX.encode_prompts(parts, [prompt, "a photo of person", ""], 64, CPU)
    pick = lambda i: {k: v[i:i + 1] for k, v in cond.items()}  # noqa: E731
    latents = torch.randn(4, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    cache = TrainCache(latents, torch.zeros_like(latents), torch.zeros(0, 16, 8, 8), torch.zeros(0, 16, 8, 8),
                       pick(0), pick(1), pick(2), FLUX.tokenize(parts, [prompt]), FLUX.tokenize(parts, ["x"]), 0.3611)
    plan = TrainPlan(mode="lora", steps=3, learning_rate=5e-3, lora_rank=4, precision="fp32", optimizer="adamw",
                     prior_preservation=False, compile=False, checkpoint_every=0, sample_every=0, base_weights="fp8",
                     gradient_checkpointing=True)
    torch.manual_seed(1)   # the adapters' initial weights
    trainer = Trainer(parts, plan, cache, CPU)
    if compiled:   # what the trainer does on CUDA when its family says "blocks"
        assert compile_blocks(trainer.unet, backend="aot_eager") == len(blocks_of(trainer.unet))
    return trainer


def blocks_of(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if type(m).__name__ in repeated_blocks(model)]


def test_compiled_blocks_train_exactly_as_eager_on_fp8_weights_with_checkpointing(tiny_flux: Path) -> None:
    """The blocks are captured whole (the fp8 matmul's own autograd, the adapters, the recompute of checkpointed
    blocks in the backward) and the captured graphs give the eager run's losses and weights."""
    from torch._dynamo.utils import counters

    runs = []
    for compiled in (False, True):
        counters.clear()
        trainer = _trainer(tiny_flux, compiled)
        start = trainer.flat.data.clone()   # type: ignore[attr-defined]
        losses = [float(trainer.run_step(s)) for s in range(3)]   # type: ignore[attr-defined]
        runs.append((losses, trainer.flat.data.clone()))   # type: ignore[attr-defined]
        if compiled:
            graphs = counters["stats"]["unique_graphs"]
            assert graphs >= 2, "both block types (double and single) ran as captured graphs"
            assert not counters["graph_break"], f"a block fell out of its graph: {dict(counters['graph_break'])}"
    (eager_losses, eager_weights), (losses, weights) = runs
    assert losses == pytest.approx(eager_losses, rel=1e-6)
    assert torch.allclose(weights, eager_weights, rtol=1e-5, atol=1e-6)
    assert not torch.equal(weights, start), "the adapters moved"


def test_uncompiling_puts_every_block_back_to_eager(tiny_flux: Path) -> None:
    unet = FLUX.load(str(tiny_flux)).unet
    blocks = blocks_of(unet)
    assert {type(b).__name__ for b in blocks} == {"FluxTransformerBlock", "FluxSingleTransformerBlock"}
    compile_blocks(unet)
    assert all(getattr(b, "_compiled_call_impl", None) is not None for b in blocks)
    uncompile_blocks(unet)
    assert not any(getattr(m, "_compiled_call_impl", None) is not None for m in unet.modules())


class _AttentionCalls:
    """Counts the attention kernels run while it is active (in the backward: those the recompute runs again)."""

    def __enter__(self) -> _AttentionCalls:
        from torch.utils._python_dispatch import TorchDispatchMode

        ops, counter = attention_ops(), self
        self.count = 0

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
                counter.count += func in ops
                return func(*args, **(kwargs or {}))

        self.mode = Mode()
        self.mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.mode.__exit__(*exc)


def test_checkpoints_that_keep_attention_skip_its_recompute_and_train_the_same(tiny_flux: Path,
                                                                               monkeypatch) -> None:
    """The backward of a checkpointed block normally runs its forward again, attention kernel included; keeping the
    attention outputs skips that kernel and changes no number."""
    runs = []
    for keeps in ("none", "attention"):
        monkeypatch.setenv("IONCANNON_CHECKPOINT_KEEPS", keeps)
        trainer = _trainer(tiny_flux, compiled=False)
        assert trainer.checkpoint_keeps == ("" if keeps == "none" else keeps)   # type: ignore[attr-defined]
        trainer._fill_inputs(0)   # type: ignore[attr-defined]
        loss = trainer.loss()   # type: ignore[attr-defined]
        with _AttentionCalls() as calls:
            loss.backward()
        trainer.flat.grad.zero_()   # type: ignore[attr-defined]
        losses = [float(trainer.run_step(s)) for s in range(3)]   # type: ignore[attr-defined]
        runs.append((calls.count, losses, trainer.flat.data.clone()))   # type: ignore[attr-defined]
    (recomputed, eager_losses, eager_weights), (kept, losses, weights) = runs
    blocks = len(blocks_of(FLUX.load(str(tiny_flux)).unet))
    assert recomputed == blocks, "without the policy every checkpointed block runs its attention again"
    assert kept == 0, "with it, none does"
    assert losses == eager_losses and torch.equal(weights, eager_weights)


@pytest.mark.parametrize(("choose", "variable", "field", "lever", "refused"), [
    (training_compile, "IONCANNON_TRAIN_COMPILE", "train_compile", "blocks", "unknown training compile scope"),
    (checkpoint_keeps, "IONCANNON_CHECKPOINT_KEEPS", "checkpoint_keeps", "attention", "unknown checkpoint policy"),
])
def test_a_lever_is_the_familys_choice_unless_the_environment_says(monkeypatch, choose, variable, field, lever,
                                                                   refused) -> None:
    monkeypatch.delenv(variable, raising=False)
    fam = dataclasses.make_dataclass("Fam", [(field, str)])
    assert choose(fam("")) == "" and choose(fam(lever)) == lever
    with pytest.raises(ValueError, match=refused):
        choose(fam("everything"))
    monkeypatch.setenv(variable, lever)
    assert choose(fam("")) == lever
    monkeypatch.setenv(variable, "none")
    assert choose(fam(lever)) == ""
    monkeypatch.delenv(variable)
    for name in ("sd15", "sdxl", "flux"):
        assert choose(family_for(name)) in ("", lever), "every family's own choice is one the engine knows"


def test_training_compiles_the_whole_denoiser_only_when_asked(monkeypatch) -> None:
    monkeypatch.setenv("IONCANNON_TRAIN_COMPILE", "model")
    assert training_compile(family_for("flux")) == "model"
