"""Collages and contact sheets: a grid of images with small margins, optional title and labels, as JPEG."""

from __future__ import annotations

import io
import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ioncannon.job.fsio import atomic_write_bytes

MARGIN = 8
MAX_WIDTH = 4096          # keeps a 100-image collage openable on a laptop
MIN_TILE = 128            # tiny demo images are enlarged so a sheet stays readable
BACKGROUND = (24, 24, 28)
TEXT = (235, 235, 235)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def grid_columns(count: int) -> int:
    """Near-square grid, wider than tall: 4 -> 2, 16 -> 4, 64 -> 8, 100 -> 10."""
    return max(1, math.ceil(math.sqrt(count)))


def _fit_text(
    draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int
) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def make_collage(
    images: list[Path],
    out: Path,
    columns: int | None = None,
    title: str | None = None,
    labels: list[str] | None = None,
) -> Path:
    """Tile `images` into a JPEG grid at `out` (written atomically); `labels` go under each tile."""
    if not images:
        raise ValueError("make_collage needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise ValueError("labels must have one entry per image")
    columns = max(1, min(columns or grid_columns(len(images)), len(images)))
    rows = math.ceil(len(images) / columns)
    with Image.open(images[0]) as first:
        tile_w, tile_h = first.size
    # shrink tiles so a wide grid stays within MAX_WIDTH; enlarge only tiny ones
    scale = min(max(1.0, MIN_TILE / tile_w), (MAX_WIDTH - MARGIN * (columns + 1)) / (columns * tile_w))
    tile_w, tile_h = max(1, int(tile_w * scale)), max(1, int(tile_h * scale))

    label_font = _font(max(10, min(18, tile_w // 12)))
    label_h = (label_font.size + 6) if labels is not None and hasattr(label_font, "size") else (14 if labels else 0)
    title_font = _font(max(12, min(28, (tile_w * columns) // 40)))
    title_h = ((getattr(title_font, "size", 12) + 2 * MARGIN) if title else 0)

    width = columns * tile_w + (columns + 1) * MARGIN
    height = title_h + rows * (tile_h + label_h) + (rows + 1) * MARGIN
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((MARGIN, MARGIN), _fit_text(draw, title, title_font, width - 2 * MARGIN), fill=TEXT, font=title_font)

    for n, path in enumerate(images):
        row, col = divmod(n, columns)
        x = MARGIN + col * (tile_w + MARGIN)
        y = title_h + MARGIN + row * (tile_h + label_h + MARGIN)
        with Image.open(path) as img:
            tile = img.convert("RGB")
            if tile.size != (tile_w, tile_h):
                tile = tile.resize((tile_w, tile_h), Image.Resampling.LANCZOS)
            sheet.paste(tile, (x, y))
        if labels is not None:
            draw.text(
                (x + 2, y + tile_h + 3), _fit_text(draw, labels[n], label_font, tile_w - 4), fill=TEXT, font=label_font
            )

    buf = io.BytesIO()
    sheet.save(buf, format="JPEG", quality=90, optimize=True)
    atomic_write_bytes(out, buf.getvalue())
    return out
