"""Weights on disk: safetensors files, the trained working copy, LoRA adapters and the key maps of export layouts."""
