"""Training: cached latents and embeddings, the compiled step, checkpoints with exact resume, previews."""
