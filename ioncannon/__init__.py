"""ioncannon: DreamBooth-train Stable Diffusion on a rented GPU from a terminal wizard."""

__version__ = "0.1.0"
