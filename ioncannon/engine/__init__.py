"""The engine, run inside the detached runner: stages, photos, training, generation, weights; no TUI."""
