"""Gallery: page the finished collages and their images, star what goes in the bundle, see the contact sheet."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Static

from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec
from ioncannon.tui import gallery
from ioncannon.tui.widgets.preview import ImagePreview


def star_key_says(stars: str, one_image: bool) -> str:
    """What `s` does to what is shown: star it, or take its star off (a collage: all its images)."""
    if one_image:
        return "unstars this image" if stars else "stars this image"
    all_starred = bool(stars) and stars.split()[-1].split("/")[0] == stars.split()[-1].split("/")[-1]
    return "unstars all its images" if all_starred else "stars all its images"


class GalleryScreen(Screen[None]):
    """The job's images, one at a time: collages, the images each was made of, and the contact sheet."""

    DEFAULT_CSS = """
    GalleryScreen { layout: vertical; }
    GalleryScreen > .titlebar { height: 1; background: $primary; color: $text; padding: 0 1; }
    GalleryScreen > #gallery-preview { height: 1fr; border: round $primary; }
    GalleryScreen > #gallery-info { height: auto; max-height: 3; padding: 0 1; }
    """
    HELP_TITLE = "Images"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back"),
        Binding("left,p", "page(-1)", "Prev"),
        Binding("right,n", "page(1)", "Next"),
        Binding("down,j", "step(1)", "Images"),
        Binding("up,k", "step(-1)", "Images", show=False),
        Binding("s", "star", "Star"),
        Binding("o", "sheet", "Sheet"),
    ]

    def __init__(self, paths: JobPaths, spec: JobSpec) -> None:
        super().__init__()
        self.paths, self.spec = paths, spec
        self.collages = gallery.collages_on_disk(paths, spec.identifier)
        self.index = 0  # which collage
        self.image = -1  # -1: the collage itself; 0..: one of its images
        self.on_sheet = False  # showing the contact sheet instead
        self.sheet_page = 0  # which part of a tall contact sheet (a page of it fills the preview)

    def compose(self) -> ComposeResult:
        title = Text.assemble((" ioncannon ", "bold"), ("· images · ", "dim"), (self.spec.name, "bold"))
        yield Static(title, classes="titlebar")
        yield ImagePreview("no images yet: they appear once the generate stage has made a collage",
                           id="gallery-preview")
        yield Static("", id="gallery-info")
        yield Footer()

    def on_mount(self) -> None:
        self._show()

    def shown(self) -> gallery.Shown | None:
        """The collage, or one of its images, on show (None on the contact sheet or with nothing made)."""
        if self.on_sheet or not self.collages:
            return None
        collage = self.collages[self.index]
        images = gallery.images_of(collage.path)
        image_index = min(self.image, len(images) - 1)
        image = images[image_index] if image_index >= 0 else None
        return gallery.Shown(collage.keyword, collage.path, image, self.index, len(self.collages), image_index,
                             len(images))

    def _show(self) -> None:
        preview = self.query_one(ImagePreview)
        info = self.query_one("#gallery-info", Static)
        starred = len(gallery.starred_set(self.paths))
        bundle_note = Text(f"{starred} starred for the bundle" if starred else "nothing starred yet", style="dim")
        if self.on_sheet:
            pages = gallery.sheet_pages(self.paths.contact_sheet, preview.size.width, preview.size.height - 1)
            self.sheet_page = min(self.sheet_page, max(0, len(pages) - 1))
            part = f"part {self.sheet_page + 1}/{len(pages)} (↓ ↑ turn) · " if len(pages) > 1 else ""
            preview.show(pages[self.sheet_page] if pages else None,
                         f"{part}{self.paths.contact_sheet.relative_to(self.paths.root)}")
            info.update(Text.assemble(("contact sheet", "bold"), " · every prompt, a row each · o: back to the "
                                      "collages\n", bundle_note))
            return
        shown = self.shown()
        if shown is None:
            preview.show(None, "")
            info.update(Text("No collages in this job yet.", style="yellow"))
            return
        where = f"prompt {shown.index + 1}/{shown.count}: {shown.keyword}"
        if shown.image is not None:
            where += f" · image {shown.image_index + 1}/{shown.image_count}"
        else:
            where += f" · collage of {shown.image_count} images (↓ steps through them)"
        stars = gallery.star_caption(self.paths, shown)
        preview.show(shown.path, str(shown.path.relative_to(self.paths.root)) if shown.path.is_relative_to(
            self.paths.root) else str(shown.path))
        line = Text()
        line.append(where, style="bold")
        if stars:
            line.append(f"  {stars}", style="bold yellow")
        line.append("\n")
        line.append_text(bundle_note)
        line.append(" · s " + star_key_says(stars, shown.image is not None), style="dim")
        info.update(line)

    def action_page(self, delta: int) -> None:
        """Show the previous or next prompt's collage."""
        if not self.collages:
            return
        self.on_sheet = False
        self.index = max(0, min(len(self.collages) - 1, self.index + delta))
        self.image = -1
        self._show()

    def action_step(self, delta: int) -> None:
        """Step from the collage through the images it was made of, and back (on the sheet: turn its parts)."""
        if self.on_sheet:
            self.sheet_page = max(0, self.sheet_page + delta)
            self._show()
            return
        shown = self.shown()
        if shown is None:
            return
        self.image = max(-1, min(shown.image_count - 1, shown.image_index + delta))
        self._show()

    def action_star(self) -> None:
        """Star (or unstar) the image on show, or every image of the collage on show."""
        shown = self.shown()
        if shown is None or gallery.toggle(self.paths, shown) is None:
            self.notify("The contact sheet has no images of its own: star a prompt's collage or its images.")
            return
        self._show()

    def action_sheet(self) -> None:
        """Switch between the contact sheet (every prompt on one page) and the collages."""
        if not self.paths.contact_sheet.is_file():
            self.notify("There is no contact sheet yet: it is made once every prompt has its collage.")
            return
        self.on_sheet, self.sheet_page = not self.on_sheet, 0
        self._show()

    def action_close(self) -> None:
        """Back to the finish screen."""
        self.dismiss(None)
