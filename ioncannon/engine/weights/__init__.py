"""Trained weights on disk: the working copy, exports (single file, diffusers, LoRA) and key maps."""
