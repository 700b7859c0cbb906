"""Picks the attention kernels a job runs on, after proving each one on the card at the job's real shapes."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ioncannon.job.fsio import StateFileError, atomic_write_text, read_json

log = logging.getLogger("ioncannon")

# torch's SDPA backends by the names runner.log shows; math is the always-available reference
BACKENDS: dict[str, SDPBackend] = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}
# Candidates per device, in the order ties are broken. On the CPU only math and torch's CPU flash kernel exist.
CANDIDATES: dict[str, tuple[str, ...]] = {"cuda": ("flash", "cudnn", "efficient", "math"), "cpu": ("flash", "math")}
PROBE_TIMEOUT_S = 180.0   # a child that takes longer than this on one backend has hung: that backend failed
_REPEATS = 3
_CACHE_FILE = "attention.json"
_SCHEMA = 1
LEFT_OUT = "left out for this model: "
_TRIAL_VERSION = 3   # 2: the fused layout and the strided gradient; 3: gradients checked against the math kernel;
                     # choices from an older trial are tested again

_active: AttentionChoice | None = None   # this process's choice, for a later kernel error to name


@dataclass(frozen=True)
class AttentionShape:
    """One attention call of the job: (batch, heads, query length, key length, head size)."""

    batch: int
    heads: int
    q_len: int
    kv_len: int
    head_dim: int

    def text(self) -> str:
        return f"{self.heads}x{self.q_len}x{self.kv_len}x{self.head_dim}"


@dataclass
class Trial:
    """How one backend did: ok with its time on the job's largest shape, unsupported, or failed with an error."""

    backend: str
    ok: bool
    ms: float | None = None          # fwd (+bwd) on the largest shape; None where the backend cannot run it
    unsupported: list[str] = field(default_factory=list)   # shapes the backend does not take (not a failure)
    error: str = ""
    seconds: float | None = None     # how long the whole trial took (every shape and layout, checks included)


@dataclass
class AttentionChoice:
    """The backends the job runs on, fastest first, and why."""

    order: list[str]
    trials: list[Trial]
    key: str
    cached: bool = False
    startup_s: float | None = None   # starting the child processes that ran the trials (torch, the GPU context)

    @property
    def backend(self) -> str:
        return self.order[0] if self.order else "math"

    def sentence(self) -> str:
        """One runner.log line: the kernel, its time, and every backend left out with its reason."""
        best = next((t for t in self.trials if t.backend == self.backend), None)
        timing = f" ({best.ms:.2f} ms on the largest shape)" if best and best.ms is not None else ""
        out = [f"{t.backend} {'' if t.error.startswith(LEFT_OUT) else 'failed: '}{t.error}"
               for t in self.trials if not t.ok]
        tail = f"; left out: {'; '.join(out)}" if out else ""
        others = f", then {', '.join(self.order[1:])}" if len(self.order) > 1 else ""
        source = " (tested earlier on this card)" if self.cached else ""
        return f"attention kernel: {self.backend}{timing}{others}{source}{tail}"

    def cost(self) -> str:
        """Where the kernel test's time went, for runner.log: the child processes' start-up, then each trial."""
        parts = [f"process start {self.startup_s:.1f} s"] if self.startup_s is not None else []
        parts += [f"{t.backend} {t.seconds:.1f} s" for t in self.trials if t.seconds is not None]
        return ", ".join(parts)


class AttentionUnavailable(RuntimeError):
    """No attention backend ran correctly on this card."""


# --------------------------------------------------------------------------- one trial


# How a model hands attention its inputs and takes its output back, each tried per shape (kernels can break on
# strides that a plain contiguous test never shows):
# - "separate": q, k and v from their own projections, (batch, tokens, heads, head size) seen through a transpose;
#   the output's gradient comes back through the heads' merge alone (an SD or SDXL block, Flux's double blocks);
# - "fused": q, k and v slices of one fused projection (a sampler with fused q/k/v; k and v alone for
#   cross-attention), and the output's gradient a slice of a wider tensor's, as in Flux's single blocks, whose
#   attention output is concatenated beside the MLP's. tests/engine/test_attention_layouts.py checks that these
#   cover every family's real layouts.
# A trial is evidence, not proof: on an H100 (torch 2.11, cuDNN 9.19) cuDNN passed both layouts at FLUX.1's real
# shape and still crashed inside FLUX.1's training. A suspected cause: its backward caches a plan per shape whose
# key leaves out the output gradient's strides (PyTorch later added them), so FLUX.1's double blocks would replay the
# plan its single blocks built for a 5x wider row. The layouts of a trial therefore run one after the other in one
# process and their gradients are checked against the math kernel's; on an H200 (same stack) cuDNN passed that too
# and FLUX.1 crashed again, so the cause is still unknown. What a trial misses, a family leaves out by rule
# (`Family.attention_left_out`), and the runner's restart (`mark_broken`) catches whatever is left.
LAYOUTS = ("separate", "fused")
_BESIDE = 4   # the MLP beside the attention output is this many times wider (Flux's mlp_ratio)
_GRAD_TOL = 5  # a gradient may be this many times the output's tolerance off, as a fraction of its size
               # (bf16: 10%; a wrong read is off by about 100%)


def _inputs(shape: AttentionShape, dtype: torch.dtype, device: torch.device, grad: bool, layout: str = "separate",
            seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """q, k, v laid out as diffusers' attention passes them (see LAYOUTS), and the leaf tensors behind them.

    Drawn on the device itself: a job's largest shapes are hundreds of millions of numbers, seconds of work for a
    CPU generator and a copy per backend tried."""
    g = torch.Generator(device=device).manual_seed(seed)
    b, h, d = shape.batch, shape.heads, shape.head_dim

    def draw(*size: int) -> torch.Tensor:
        return torch.randn(size, generator=g, device=device, dtype=dtype).requires_grad_(grad)

    if layout == "fused" and shape.q_len == shape.kv_len:   # self-attention: q, k and v from one projection
        leaf = draw(b, shape.q_len, 3, h, d)
        return [leaf[:, :, i].transpose(1, 2) for i in range(3)], [leaf]
    if layout == "fused":   # cross-attention: k and v from one projection of the prompt
        q, kv = draw(b, shape.q_len, h, d), draw(b, shape.kv_len, 2, h, d)
        return [q.transpose(1, 2), kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)], [q, kv]
    leaves = [draw(b, n, h, d) for n in (shape.q_len, shape.kv_len, shape.kv_len)]
    return [leaf.transpose(1, 2) for leaf in leaves], leaves


def _backward(out: torch.Tensor, layout: str) -> None:
    """The output's gradient arrives as diffusers' blocks send it: back through the heads' merge, and for "fused"
    as a slice of the gradient of the merge concatenated beside a wider MLP output. The loss is half the sum of
    squares, so the output's gradient is the output itself (values of order one, as a check needs)."""
    merged = out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1)
    if layout == "fused":
        beside = torch.ones(*merged.shape[:2], _BESIDE * merged.shape[2], device=out.device, dtype=out.dtype)
        merged = torch.cat([merged, beside], dim=2)
    (merged.float().square().sum() / 2).backward()


def _reference_grads(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grad_out: torch.Tensor,
                     heads_at_once: int = 4) -> list[torch.Tensor]:
    """The math kernel's gradients of q, k and v in fp32 for the output gradient `grad_out`, a few heads at a time."""
    parts: list[list[torch.Tensor]] = [[], [], []]
    with sdpa_kernel([BACKENDS["math"]]):
        for h in range(0, q.shape[1], heads_at_once):
            sl = slice(h, h + heads_at_once)
            qkv = [t[:, sl].detach().float().requires_grad_(True) for t in (q, k, v)]
            out = torch.nn.functional.scaled_dot_product_attention(*qkv)
            for part, grad in zip(parts, torch.autograd.grad(out, qkv, grad_out[:, sl].float()), strict=True):
                part.append(grad)
    return [torch.cat(p, dim=1) for p in parts]


def _unsupported(exc: BaseException) -> bool:
    """torch's own 'this backend does not take these inputs' refusal, as opposed to a kernel that broke."""
    text = str(exc)
    return "No available kernel" in text or "not supported" in text.lower()


def sdpa_trial(backend: str, shapes: Sequence[AttentionShape], dtype: torch.dtype, device: torch.device,
               backward: bool) -> Trial:
    """Runs `backend` on every shape (forward, and backward when training) and checks it against the math kernel.

    A backend that raises, returns non-finite values or disagrees with the reference fails (in training, its
    gradients of q, k and v too); one that torch says cannot take a shape skips that shape. The time is the mean of a
    few runs on the largest shape it takes. Every layout runs in this one process, one after the other, as a model's
    blocks call attention: a kernel that caches a plan per shape and replays it on a gradient laid out differently
    gives wrong gradients, or crashes, here (a suspect in FLUX.1's crash under cuDNN, not the proven cause).
    """
    trial = Trial(backend, ok=True)
    tol = 2e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-4
    largest = max(shapes, key=lambda s: s.batch * s.heads * s.q_len * s.kv_len * s.head_dim)
    for shape in shapes:
        for layout in LAYOUTS:
            (q, k, v), leaves = _inputs(shape, dtype, device, backward, layout)
            ref = _reference(q, k, v)
            for t in (q, k, v) if backward else ():
                t.retain_grad()
            arrived: list[torch.Tensor] = []   # the output's gradient, as the kernel's backward received it
            try:
                def once(q: torch.Tensor = q, k: torch.Tensor = k, v: torch.Tensor = v, layout: str = layout,
                         arrived: list[torch.Tensor] = arrived) -> torch.Tensor:
                    with sdpa_kernel([BACKENDS[backend]]):
                        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
                        if backward:
                            if not arrived:
                                out.register_hook(arrived.append)
                            _backward(out, layout)
                    return out

                out = once()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
            except RuntimeError as exc:   # torch.OutOfMemoryError too: a card busy with the model is no verdict
                if _unsupported(exc) or isinstance(exc, torch.OutOfMemoryError):
                    if shape.text() not in trial.unsupported:
                        trial.unsupported.append(shape.text())
                    break
                return Trial(backend, ok=False, error=f"{first_line(exc)} ({layout} layout at {shape.text()})"[:240])
            grads = [leaf.grad for leaf in leaves] if backward else []
            if not torch.isfinite(out).all() or any(g is None or not torch.isfinite(g).all() for g in grads):
                return Trial(backend, ok=False, error=f"non-finite values at {shape.text()} ({layout} layout)")
            err = (out.detach().float() - ref).abs().max().item()
            if err > tol * max(1.0, ref.abs().max().item()):
                return Trial(backend, ok=False,
                             error=f"wrong results at {shape.text()} ({layout} layout, off by {err:.3g})")
            if backward and arrived:
                grads = _reference_grads(q, k, v, arrived[0])
                for name, got, want in zip("qkv", (q.grad, k.grad, v.grad), grads, strict=True):
                    # relative to the whole gradient's size: long low-precision sums stray here and there, while a
                    # kernel that read the wrong numbers is off by about the gradient itself
                    err = ((got.float() - want).norm() / want.norm().clamp_min(1e-12)).item() \
                        if got is not None else float("inf")
                    if err > _GRAD_TOL * tol:
                        return Trial(backend, ok=False, error=f"wrong gradient of {name} at {shape.text()} "
                                                              f"({layout} layout, {err:.0%} off)")
            if shape == largest and layout == LAYOUTS[0]:
                trial.ms = _time(once, device)
    if len(trial.unsupported) == len(shapes):
        return Trial(backend, ok=False, error="takes none of the job's shapes", unsupported=trial.unsupported)
    return trial


def _reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads_at_once: int = 4) -> torch.Tensor:
    """The math kernel's answer in fp32, a few heads at a time (Flux's 24 heads at once would take 2 GB)."""
    parts = []
    with torch.no_grad(), sdpa_kernel([BACKENDS["math"]]):
        for h in range(0, q.shape[1], heads_at_once):
            sl = slice(h, h + heads_at_once)
            parts.append(torch.nn.functional.scaled_dot_product_attention(
                q[:, sl].float(), k[:, sl].float(), v[:, sl].float()))
    return torch.cat(parts, dim=1)


def _time(fn: Callable[[], Any], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    for _ in range(_REPEATS):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t) * 1000 / _REPEATS


def first_line(exc: BaseException) -> str:
    """The first line of an error, short enough for one log line (CUDA errors run to dozens of lines)."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {line}"[:240]


# --------------------------------------------------------------------------- trials in a child process


TrialFn = Callable[[str, Sequence[AttentionShape], torch.dtype, torch.device, bool], Trial]
_REAL_TRIAL = "ioncannon.engine.attention:sdpa_trial"


def _load_trial(path: str) -> TrialFn:
    module, _, name = path.partition(":")
    fn: TrialFn = getattr(importlib.import_module(module), name)
    return fn


@dataclass
class IsolatedTrials:
    """What the child processes reported: each backend's trial, and the seconds they spent starting up."""

    trials: list[Trial]
    startup_s: float


def run_trials_isolated(candidates: Sequence[str], shapes: Sequence[AttentionShape], dtype: torch.dtype,
                        device: torch.device, backward: bool, trial_fn: str = _REAL_TRIAL,
                        timeout: float = PROBE_TIMEOUT_S) -> IsolatedTrials:
    """Each candidate tried in a child process, so a kernel that corrupts the GPU context (an illegal memory
    access cannot be caught and poisons the process) costs only that child: the next child tries the rest."""
    left, trials, startup = list(candidates), [], 0.0
    while left:
        args = [sys.executable, "-m", "ioncannon.engine.attention", "--device", str(device), "--dtype",
                str(dtype).removeprefix("torch."), "--shapes", json.dumps([dataclasses.astuple(s) for s in shapes]),
                "--candidates", ",".join(left), "--trial", trial_fn, "--started", repr(time.time())]
        args += ["--backward"] if backward else []
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err = f"hung for more than {timeout:.0f} s\n{err}"
        trying = None
        for line in out.splitlines():
            if line.startswith("READY "):
                startup += float(line[6:])
            elif line.startswith("TRYING "):
                trying = line[7:].strip()
            elif line.startswith("RESULT "):
                done = Trial(**json.loads(line[7:]))
                trials.append(done)
                left.remove(done.backend)
                trying = None
        if trying is not None:   # the child died (or hung) inside this backend
            trials.append(Trial(trying, ok=False, error=_child_error(err, proc.returncode)))
            left.remove(trying)
        elif proc.returncode != 0 and left:   # died before trying anything: nothing on this card will run
            raise AttentionUnavailable(f"the attention test could not start: {_child_error(err, proc.returncode)}")
    return IsolatedTrials(trials, round(startup, 2))


def _child_error(stderr: str, code: int | None) -> str:
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    # the exception's own line, not the traceback frames above it
    errors = [ln for ln in lines if "Error" in ln or "error" in ln]
    detail = errors[-1] if errors else (lines[-1] if lines else "")
    return (f"the process died (exit {code}): {detail}" if detail else f"the process died (exit {code})")[:240]


def _child(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m ioncannon.engine.attention")
    ap.add_argument("--device", required=True)
    ap.add_argument("--dtype", required=True)
    ap.add_argument("--shapes", required=True)
    ap.add_argument("--candidates", required=True)
    ap.add_argument("--trial", default=_REAL_TRIAL)
    ap.add_argument("--backward", action="store_true")
    ap.add_argument("--started", type=float, default=None, help="the parent's clock when it started this process")
    args = ap.parse_args(argv)
    shapes = [AttentionShape(*s) for s in json.loads(args.shapes)]
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    fn = _load_trial(args.trial)
    torch.zeros(1, device=device)   # the device's context, so a trial's seconds are its own
    if args.started is not None:
        print(f"READY {time.time() - args.started:.3f}", flush=True)
    for name in args.candidates.split(","):
        print(f"TRYING {name}", flush=True)
        result = _timed(fn, name, shapes, dtype, device, args.backward)
        print("RESULT " + json.dumps(dataclasses.asdict(result)), flush=True)
        if not result.ok and device.type == "cuda":
            try:   # an asynchronous kernel error may have left the context unusable: later backends get a new child
                torch.cuda.synchronize(device)
            except Exception:
                return 3
    return 0


# --------------------------------------------------------------------------- the choice, cached per card


def card_key(device: torch.device) -> str:
    """Everything that decides which kernels run: torch, CUDA and cuDNN versions and the card."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        cap = ".".join(map(str, torch.cuda.get_device_capability(device)))
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        return f"torch {torch.__version__} cuda {torch.version.cuda} cudnn {cudnn} {name} sm{cap}"
    return f"torch {torch.__version__} cpu"


def _choice_key(device: torch.device, dtype: torch.dtype, shapes: Sequence[AttentionShape], backward: bool) -> str:
    kind = "train" if backward else "sample"
    return (f"{card_key(device)} | {str(dtype).removeprefix('torch.')} {kind} | trial {_TRIAL_VERSION} | "
            + " ".join(s.text() for s in shapes))


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path)
    except (StateFileError, OSError):
        return {}
    if not isinstance(data, dict) or data.get("schema_version") != _SCHEMA:
        return {}
    return data


def _write_cache(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({**data, "schema_version": _SCHEMA}, indent=1) + "\n")


def order_of(trials: Sequence[Trial], preference: Sequence[str], by_speed: bool = True) -> list[str]:
    """Working backends, fastest on the largest shape first (those that cannot take it after), else by preference.

    On the CPU the order is the preference alone: timings on a shared machine are noise, and a choice that flipped
    between a job and its resume would change the numbers a resume must reproduce.
    """
    ok = [t for t in trials if t.ok]
    rank = {name: i for i, name in enumerate(preference)}
    if by_speed:
        ok.sort(key=lambda t: (t.ms is None, t.ms if t.ms is not None else 0.0, rank.get(t.backend, len(rank))))
    else:
        ok.sort(key=lambda t: rank.get(t.backend, len(rank)))
    return [t.backend for t in ok]


def choose(device: torch.device, dtype: torch.dtype, shapes: Sequence[AttentionShape], backward: bool,
           cache_dir: Path | None = None, preference: Sequence[str] | None = None,
           trial_fn: str = _REAL_TRIAL, isolate: bool | None = None,
           left_out: Mapping[str, str] | None = None) -> AttentionChoice:
    """The backends for these shapes on this card: from the cache when tested before, else tested now.

    Backends that failed on this card at run time (`mark_broken`) are never tried again, nor those `left_out`
    names (backend: why; the model's own rule, see `Family.attention_left_out`). On CUDA each trial runs in a
    child process (`isolate`); on the CPU in this one, where a kernel error is an ordinary exception.
    """
    preference = tuple(preference or CANDIDATES.get(device.type, ("math",)))
    cache_file = cache_dir / _CACHE_FILE if cache_dir is not None else None
    data = _read_cache(cache_file) if cache_file else {}
    key = _choice_key(device, dtype, shapes, backward)
    broken = {b["backend"]: f"failed earlier in a job on this card: {b['error']}"
              for b in data.get("broken", {}).get(card_key(device), [])}
    broken.update({b: f"{LEFT_OUT}{why}" for b, why in (left_out or {}).items()})
    saved = data.get("choices", {}).get(key)
    if saved:
        try:
            trials = [Trial(**t) if t["backend"] not in broken else _broken_trial(t["backend"], broken)
                      for t in saved["trials"]]
            order = [b for b in saved["order"] if b not in broken]
            if order:
                return AttentionChoice(order, trials, key, cached=True)
        except (TypeError, KeyError):
            pass   # an older or edited entry: test again
    candidates = [b for b in preference if b not in broken]
    isolate = device.type == "cuda" if isolate is None else isolate
    startup = None
    if isolate:
        ran = run_trials_isolated(candidates, shapes, dtype, device, backward, trial_fn)
        trials, startup = ran.trials, ran.startup_s
    else:
        fn = _load_trial(trial_fn)
        trials = [_catching(fn, b, shapes, dtype, device, backward) for b in candidates]
    trials += [_broken_trial(b, broken) for b in broken if b in preference]
    order = order_of(trials, preference, by_speed=device.type == "cuda")
    if not order:
        reasons = "; ".join(f"{t.backend}: {t.error}" for t in trials)
        raise AttentionUnavailable(f"no attention kernel ran correctly on this card ({reasons})")
    choice = AttentionChoice(order, trials, key, startup_s=startup)
    if cache_file is not None:
        data.setdefault("choices", {})[key] = {"order": order, "trials": [dataclasses.asdict(t) for t in trials],
                                               "tested_at": time.strftime("%Y-%m-%d %H:%M:%S")}
        _write_cache(cache_file, data)
    return choice


def _broken_trial(backend: str, broken: dict[str, str]) -> Trial:
    return Trial(backend, ok=False, error=broken[backend])


def _timed(fn: TrialFn, backend: str, shapes: Sequence[AttentionShape], dtype: torch.dtype,
           device: torch.device, backward: bool) -> Trial:
    t = time.perf_counter()
    trial = fn(backend, shapes, dtype, device, backward)
    return dataclasses.replace(trial, seconds=round(time.perf_counter() - t, 2))


def _catching(fn: TrialFn, backend: str, shapes: Sequence[AttentionShape], dtype: torch.dtype,
              device: torch.device, backward: bool) -> Trial:
    try:
        return _timed(fn, backend, shapes, dtype, device, backward)
    except Exception as exc:   # a trial function that raised instead of reporting: that backend failed
        return Trial(backend, ok=False, error=first_line(exc))


def apply(choice: AttentionChoice, device: torch.device) -> None:
    """Makes `choice` this process's SDPA setting: its backends on, in its order, every other one off.

    Math stays on behind them, so a shape no chosen kernel takes still runs (slowly) rather than failing.
    """
    global _active
    order = [BACKENDS[b] for b in choice.order]
    if BACKENDS["math"] not in order:
        order.append(BACKENDS["math"])
    from torch.nn.attention import _sdpa_kernel

    _sdpa_kernel(order, True)   # the same switch sdpa_kernel(..., set_priority=True) flips, kept for the process
    _active = choice


@contextlib.contextmanager
def restored() -> Iterator[None]:
    """Puts torch's SDPA switches back as they were (tests run many jobs in one process)."""
    from torch.nn.attention import _cur_sdpa_kernel_backends, _sdpa_kernel

    global _active
    before, active = _cur_sdpa_kernel_backends(with_priority=True), _active
    try:
        yield
    finally:
        _sdpa_kernel(before, True)
        _active = active


def active() -> AttentionChoice | None:
    return _active


def mark_broken(cache_dir: Path, device: torch.device, error: str) -> str | None:
    """Records that the active backend failed during a job on this card, so the next run leaves it out.

    Returns the backend's name, or None when no choice was active (math is never marked: nothing is left behind it).
    """
    choice = _active
    if choice is None or choice.backend == "math":
        return None
    cache_file = cache_dir / _CACHE_FILE
    data = _read_cache(cache_file)
    entries = data.setdefault("broken", {}).setdefault(card_key(device), [])
    if not any(e["backend"] == choice.backend for e in entries):
        entries.append({"backend": choice.backend, "error": error[:240], "at": time.strftime("%Y-%m-%d %H:%M:%S")})
    _write_cache(cache_file, data)
    return choice.backend


def is_kernel_error(exc: BaseException) -> bool:
    """A failure inside a GPU kernel or library (CUDA, cuDNN, cuBLAS), as opposed to a bug in our Python."""
    accel = getattr(torch, "AcceleratorError", None)
    if accel is not None and isinstance(exc, accel):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(marker in text for marker in (
        "CUDA error", "illegal memory access", "CUBLAS_STATUS", "CUDNN_STATUS", "cuDNN error", "mha_graph",
        "device-side assert", "unspecified launch failure"))


def use_for_stage(ctx: Any, shapes: Sequence[AttentionShape], dtype: torch.dtype,
                  backward: bool, left_out: Mapping[str, str] | None = None) -> AttentionChoice:
    """Tests (or recalls) and applies the attention kernels for a stage's model at the job's shapes, less those
    the model leaves out (`left_out`); logs the choice.

    Raises StageError with a sentence when no kernel works (a broken driver or card).
    """
    from ioncannon.job.errors import StageError

    t = time.perf_counter()
    if ctx.device.type == "cuda":
        torch.cuda.empty_cache()   # the trials run in a child process: leave it the memory this one is not using
    try:
        choice = choose(ctx.device, dtype, shapes, backward, cache_dir=ctx.shared_cache, left_out=left_out)
    except AttentionUnavailable as exc:
        raise StageError(f"The GPU could not run attention: {exc}.",
                         "This box's PyTorch, driver or card is broken for this model: rent another box "
                         "(or another PyTorch image), then resume.") from exc
    apply(choice, ctx.device)
    kind = "training" if backward else "sampling"
    ctx.log.info("%s [%s, %.1f s]", choice.sentence(), kind, time.perf_counter() - t)
    if not choice.cached:
        ctx.log.info("the attention test's time [%s]: %s", kind, choice.cost())
    return choice


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
