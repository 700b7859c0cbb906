"""An image in the terminal: real graphics (Sixel/Kitty) where the terminal has them, half-blocks elsewhere."""

from __future__ import annotations

from pathlib import Path

from PIL import Image as PILImage
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static
from textual_image.renderable import Image as AutoRenderable
from textual_image.renderable.sixel import Image as SixelRenderable
from textual_image.renderable.tgp import Image as TGPRenderable
from textual_image.widget import HalfcellImage
from textual_image.widget import Image as GraphicsImage


def graphics_terminal() -> bool:
    """Whether the terminal answered for Sixel or the Kitty graphics protocol (checked once, at import)."""
    return AutoRenderable in (SixelRenderable, TGPRenderable)


class ImagePreview(Vertical):
    """A captioned image; `show()` swaps it. Without terminal graphics, colour half-blocks stand in."""

    DEFAULT_CSS = """
    ImagePreview { height: 1fr; width: 1fr; }
    ImagePreview > .preview-image { width: auto; height: 1fr; }
    ImagePreview > .preview-caption { height: 1; width: 1fr; color: $text-muted; text-style: italic; }
    ImagePreview > .preview-empty { height: 1fr; width: 1fr; content-align: center middle; color: $text-muted; }
    """

    def __init__(self, empty_text: str = "no image yet", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.empty_text = empty_text
        self._image: PILImage.Image | None = None
        self._caption = ""

    def compose(self) -> ComposeResult:
        widget_cls = GraphicsImage if graphics_terminal() else HalfcellImage
        image = widget_cls(classes="preview-image")
        image.display = False
        yield image
        yield Static(self.empty_text, classes="preview-empty")
        yield Static("", classes="preview-caption")

    def show(self, image: PILImage.Image | str | Path | None, caption: str = "") -> None:
        """Display `image` (a PIL image or a file); an unreadable file shows as a caption, not a crash."""
        picture: PILImage.Image | None
        if isinstance(image, (str, Path)):
            try:
                with PILImage.open(image) as opened:
                    picture = opened.convert("RGB")
            except (OSError, ValueError, PILImage.DecompressionBombError):
                picture, caption = None, f"could not read {Path(image).name}"
        else:
            picture = image
        self._image, self._caption = picture, caption
        if self.is_mounted:
            self._refresh_children()

    def on_mount(self) -> None:
        self._refresh_children()

    def _refresh_children(self) -> None:
        image_widget = self.query_one(".preview-image")
        empty = self.query_one(".preview-empty", Static)
        image_widget.image = self._image  # type: ignore[attr-defined]
        image_widget.display = self._image is not None
        empty.display = self._image is None
        self.query_one(".preview-caption", Static).update(self._caption)
