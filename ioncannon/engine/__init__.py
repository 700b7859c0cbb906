"""The engine, run inside the detached runner: stages, photos, training, generation, weights; no TUI."""

import logging

# diffusers imports torchao wherever it is installed (the flux extra). torchao then logs, once per process, each
# optional CUDA kernel library that does not match this torch, and torch logs a deprecation about one of its enums:
# neither concerns the fp8 weight-only path the engine uses, and both would land on the person's terminal.
for _name in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_name).setLevel(logging.ERROR)
