"""Load a base model (hub id, local diffusers folder, single .safetensors) or build a tiny one offline."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ioncannon.job.download import source_kind as classify_source  # noqa: F401  (the engine's name for it)
from ioncannon.job.families import DEFAULT_FAMILY

TINY_RESOLUTION = 64

# Words the tiny tokenizer knows whole; everything else falls back to single characters.
_TINY_WORDS = (
    "a an the of in on at with and by for to from photo portrait picture painting drawing sketch "
    "man woman person dog cat boy girl face close up closeup studio light lighting black white "
    "colour color oil watercolour watercolor comic book cyberpunk fantasy anime pencil charcoal "
    "cinematic dramatic soft golden hour sharp focus detailed high quality style art digital "
    "background city night neon forest castle armor knight astronaut space suit vintage film "
    "pop poster mosaic marble statue sculpture clay render pixel low poly blurry ugly deformed "
    "bad anatomy text watermark signature lowres cropped"
).split()


@dataclass
class Components:
    """The parts of a Stable Diffusion model that training and generation use (SDXL adds a second text tower)."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    noise_scheduler: Any
    source: str = ""
    family: str = DEFAULT_FAMILY
    text_encoder_2: Any = None
    tokenizer_2: Any = None

    def text_encoders(self) -> list[tuple[str, Any]]:
        """(name, module) of every text encoder the model has, in the pipeline's order."""
        named = [("text_encoder", self.text_encoder), ("text_encoder_2", self.text_encoder_2)]
        return [(n, m) for n, m in named if m is not None]

    def modules(self) -> list[Any]:
        """Every module with weights: the UNet, the VAE and the text encoders."""
        return [self.unet, self.vae, *(m for _, m in self.text_encoders())]


class ModelLoadError(Exception):
    """The base model could not be loaded; the message says what to do."""


# --------------------------------------------------------------------------- tiny tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    # CLIP's byte-level alphabet: printable bytes map to themselves, the rest above 255.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def write_tiny_tokenizer(folder: str | Path, words: tuple[str, ...] | list[str] = _TINY_WORDS) -> Path:
    """Write a small CLIP BPE vocabulary (bytes + whole common words) that CLIPTokenizer loads."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for ch in alphabet:
        vocab.setdefault(ch, len(vocab))
    for ch in alphabet:
        vocab.setdefault(ch + "</w>", len(vocab))
    merges: list[str] = []
    for word in dict.fromkeys(words):
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        current = pieces[0]
        for nxt in pieces[1:]:
            merged = current + nxt
            rule = f"{current} {nxt}"
            if rule not in merges:
                merges.append(rule)
            vocab.setdefault(merged, len(vocab))
            current = merged
    vocab.setdefault("<|startoftext|>", len(vocab))
    vocab.setdefault("<|endoftext|>", len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": 77, "tokenizer_class": "CLIPTokenizer", "do_lower_case": True}),
        encoding="utf-8",
    )
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                    "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}),
        encoding="utf-8",
    )
    return folder


# --------------------------------------------------------------------------- configs


def unet_config(size: str) -> dict[str, Any]:
    if size == "sd15":
        return dict(
            sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        )
    return dict(
        sample_size=TINY_RESOLUTION // 8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    )


def vae_config(size: str) -> dict[str, Any]:
    if size == "sd15":
        return dict(
            in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
            block_out_channels=(128, 256, 512, 512), scaling_factor=0.18215,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        )
    # four blocks keep the real 8x latent downsampling; tiny channels keep it fast on a CPU
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, sample_size=TINY_RESOLUTION,
        block_out_channels=(8, 16, 16, 16), norm_num_groups=4, scaling_factor=0.18215,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )


def text_config(size: str, vocab_size: int) -> dict[str, Any]:
    if size == "sd15":
        return dict(
            vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
            num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
        )
    return dict(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=32,
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
    )


def scheduler_config() -> dict[str, Any]:
    return dict(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, steps_offset=1, prediction_type="epsilon",
    )


def _make_encoder_image_preserving(vae: Any) -> None:
    """Turn the tiny VAE's random encoder into a fixed colour map of 8x8 average-pooled pixels.

    A random encoder's latents barely differ between pictures (its last GroupNorm and shrinking random layers
    wash them out), so a tiny-model DreamBooth run would have no subject to learn. With this encoder, latents
    keep the picture's colours and layout, scaled latents are of order one as SD's are, and the shapes and the
    file format stay those of a real AutoencoderKL; the decoder stays random.
    """
    enc = vae.encoder
    with torch.no_grad():
        # zero residual branches make every resnet and the attention an identity (shortcuts copy channels)
        for block in [*enc.down_blocks, enc.mid_block]:
            for resnet in block.resnets:
                resnet.conv2.weight.zero_()
                resnet.conv2.bias.zero_()
                if resnet.conv_shortcut is not None:
                    _copy_channels(resnet.conv_shortcut, [(o, o % resnet.conv_shortcut.in_channels)
                                                          for o in range(resnet.conv_shortcut.out_channels)])
        for attention in enc.mid_block.attentions:
            attention.to_out[0].weight.zero_()
            attention.to_out[0].bias.zero_()
        for block in enc.down_blocks:
            for down in block.downsamplers or []:
                # the stride-2 taps at (0..1, 0..1) never reach the right/bottom padding: an exact 2x2 mean
                down.conv.weight.zero_()
                down.conv.bias.zero_()
                for c in range(down.conv.out_channels):
                    down.conv.weight[c, c, 0:2, 0:2] = 0.25
        # channels in groups of four, (R, G, B, 1): the constant keeps the last GroupNorm from erasing
        # each picture's overall colour
        _copy_channels(enc.conv_in, [(o, o % 4) for o in range(enc.conv_in.out_channels) if o % 4 < 3])
        enc.conv_in.bias[3::4] = 1.0
        # GroupNorm output z lands in SiLU's near-linear range: silu(0.5 z + 2) ~ 1.762 + 0.545 z
        enc.conv_norm_out.weight.fill_(0.5)
        enc.conv_norm_out.bias.fill_(2.0)
        gain = 1.0 / (vae.config.scaling_factor * 0.545)
        out = enc.conv_out
        out.weight.zero_()
        latent = vae.config.latent_channels
        for c in range(3):
            out.weight[c, c, 1, 1] = gain
        out.weight[3, 0:3, 1, 1] = gain / 3  # the fourth channel: brightness
        # a VAE with a shift (Flux's) adds it back here, so scaled latents stay centred on zero
        shift = vae.config.get("shift_factor") or 0.0
        out.bias[:latent] = shift
        out.bias[:4] = -1.762 * gain + shift
        out.bias[latent:] = -4.0  # log-variance: a narrow posterior, as in SD's VAE
        if vae.quant_conv is not None:
            _copy_channels(vae.quant_conv, [(c, c) for c in range(vae.quant_conv.out_channels)])


def _copy_channels(conv: torch.nn.Conv2d, pairs: list[tuple[int, int]]) -> None:
    """Set conv to output[o] = input[i] for each (o, i) pair, through the kernel's centre tap; others zero."""
    conv.weight.zero_()
    if conv.bias is not None:
        conv.bias.zero_()
    kh, kw = conv.kernel_size
    for o, i in pairs:
        conv.weight[o, i, kh // 2, kw // 2] = 1.0


def build_components(size: str = "tiny", seed: int = 0, tokenizer_dir: str | Path | None = None) -> Components:
    """Random-weight components of the real SD1.5 shapes ("sd15") or a tiny CPU-friendly model ("tiny")."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    if tokenizer_dir is None:
        import tempfile

        # the tokenizer is read into memory: its files need not outlive this call (nothing left in the temp dir)
        with tempfile.TemporaryDirectory(prefix="ioncannon-tok-") as tmp:
            tokenizer = CLIPTokenizer.from_pretrained(str(write_tiny_tokenizer(Path(tmp))))
    else:
        tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_config(size))
    vae = AutoencoderKL(**vae_config(size))
    if size == "tiny":
        _make_encoder_image_preserving(vae)
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_config(size, len(tokenizer))))
    return Components(unet, vae, text_encoder, tokenizer, DDPMScheduler(**scheduler_config()), source=f"random-{size}")


def save_tiny_model(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny, randomly initialised SD-shaped diffusers folder (the demo's base model)."""
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    if (folder / "model_index.json").exists():
        return folder
    tmp = folder.with_name(folder.name + ".partial")
    tok_dir = write_tiny_tokenizer(tmp / "tokenizer")
    parts = build_components("tiny", seed=seed, tokenizer_dir=tok_dir)
    pipe = StableDiffusionPipeline(
        unet=parts.unet, vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer,
        scheduler=parts.noise_scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(str(tmp), safe_serialization=True)
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


# --------------------------------------------------------------------------- loading


def _load_pretrained(source: str, dtype: torch.dtype) -> Any:
    from diffusers import StableDiffusionPipeline

    try:
        return StableDiffusionPipeline.from_pretrained(
            source, torch_dtype=dtype, safety_checker=None, requires_safety_checker=False, use_safetensors=True,
            variant=folder_variant(source),
        )
    except Exception as exc:  # hub/network errors come in many types
        raise ModelLoadError(_explain_load_failure(source, exc)) from exc


def _load_single_file(path: str, dtype: torch.dtype, config: str | None) -> Any:
    from diffusers import StableDiffusionPipeline

    kwargs: dict[str, Any] = {"torch_dtype": dtype}
    if config:
        kwargs["config"] = config
        kwargs["local_files_only"] = True
    try:
        return StableDiffusionPipeline.from_single_file(
            path, safety_checker=None, requires_safety_checker=False, **kwargs
        )
    except Exception as exc:
        raise ModelLoadError(_explain_load_failure(path, exc)) from exc


def _explain_load_failure(source: str, exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if Path(source).expanduser().exists():
        # a folder or file on this disk: whatever its error says, the network was never asked
        return (f"Could not load base model {source!r} (a local {'folder' if Path(source).is_dir() else 'file'}): "
                f"{text.splitlines()[0][:300] if text.strip() else type(exc).__name__}. Check that it is a complete "
                "diffusers folder or a .safetensors checkpoint.")
    offline = any(
        s in text for s in (
            "offline", "ConnectionError", "Connection refused", "Connection reset", "Failed to resolve",
            "Temporary failure in name resolution", "Max retries", "LocalEntryNotFound", "NameResolution",
            "not fully cached locally", "outgoing traffic has been disabled", "Cannot reach",
        )
    )
    if offline:
        return (
            f"Could not download base model {source!r}: no connection to the Hugging Face Hub and no copy "
            "in the local cache. Check the box's internet, or point to a local diffusers folder or a "
            ".safetensors file."
        )
    if "401" in text or "403" in text or "gated" in text.lower():
        return (
            f"Base model {source!r} needs a Hugging Face login: export HF_TOKEN=... (it is read from the "
            "environment only) and accept the model's licence on its page."
        )
    if "404" in text or "not found" in text.lower() or "does not appear" in text.lower():
        return f"Base model {source!r} was not found. Check the spelling of the id or path."
    return f"Could not load base model {source!r}: {text.splitlines()[0][:300]}"


def folder_variant(source: str) -> str | None:
    """The weights variant ("fp16") of a local diffusers folder that holds only that variant (as fetched)."""
    from ioncannon.engine.hub_files import variant_of

    return variant_of(source) if Path(source).is_dir() else None


def release(device: torch.device) -> None:
    """Give freed model memory back, so the next stage (or a leaner plan) can use it."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def resolve_device(preference: str = "auto") -> torch.device:
    if preference == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if preference == "cuda":
        raise ModelLoadError("No CUDA GPU is visible. Check `nvidia-smi`, or run the demo (`ioncannon --demo`).")
    return torch.device("cpu")
