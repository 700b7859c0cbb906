"""Check: the photo doctor's findings, one row per file, with a crop preview and keep/drop per photo."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from ioncannon.job.printable import printable
from ioncannon.tui import format as fmt
from ioncannon.tui.screens.base import WizardScreen
from ioncannon.tui.widgets.preview import ImagePreview
from ioncannon.tui.wizard import Step

if TYPE_CHECKING:
    from PIL import Image

    from ioncannon.doctor.folder import PhotoFinding
    from ioncannon.doctor.quality import CropMode

CROPS: tuple[str, ...] = ("face", "centre", "top")
FOLDER_ROW = "."  # the doctor's photo-count row; its advice is redone here for the photos the person keeps
STATUS_STYLES = {
    "ok": "green", "fixed": "cyan", "flagged": "yellow", "rejected": "red", "ignored": "dim", "dropped": "magenta",
}
USABLE_STATUSES = ("ok", "fixed", "flagged")
STATUS_WIDTH = 8
COLUMNS = (("status", "status"), ("file", "file"), ("what happens", "what"), ("becomes", "output"))


class CheckScreen(WizardScreen):
    """Step 2: what the doctor found and what it will do with each file."""

    STEP = Step.CHECK
    HELP_EXTRA = (("↑ ↓", "pick a photo: its preview, crop and reasons show below"),)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "cycle_crop", "Crop"),
        Binding("d", "toggle_drop", "Drop/keep"),
        Binding("r", "rescan", "Rescan"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.findings: list[PhotoFinding] = []
        self.scanned = False
        self.resolution = 512  # the family's training size, from the planner once the scan's worker asked it
        self._widths: tuple[int, ...] = ()

    def compose_body(self) -> ComposeResult:
        with Vertical(id="check-body"):
            table: DataTable[Text | str] = DataTable(id="check-table", cursor_type="row", zebra_stripes=True)
            yield table
            with Horizontal(id="check-detail"):
                yield ImagePreview("select a photo", id="check-preview")
                yield Static("", id="check-reasons")
            yield Static("Scanning the folder…", id="check-summary")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        self._fit_columns()
        table.focus()
        self.scan()

    def on_resize(self) -> None:
        """Columns follow the terminal's width."""
        if self._fit_columns():
            self._fill_table()

    def _fit_columns(self) -> bool:
        """Size the columns to the table: file and output names as long as they are, the rest for what happens."""
        table = self.query_one(DataTable)
        outputs = self._outputs()
        total = table.size.width or self.size.width or 80
        file_w = min(max([len(f.file) for f in self.findings] + [12]), max(12, total // 5))
        output_w = min(max([len(o) for o in outputs.values()] + [12]), 26)
        what_w = fmt.flexible_width(total, STATUS_WIDTH + file_w + output_w, 4, minimum=20)
        widths = (STATUS_WIDTH, file_w, what_w, output_w)
        if widths == self._widths:
            return False
        self._widths = widths
        table.clear(columns=True)
        for (label, key), width in zip(COLUMNS, widths, strict=True):
            table.add_column(label, key=key, width=width)
        return True

    # ------------------------------------------------------------------ scanning

    @work(thread=True, exclusive=True, group="scan", exit_on_error=False)
    def scan(self) -> None:
        """Run the doctor on the folder (read-only) without freezing the screen."""
        from ioncannon.doctor import folder as photos
        try:
            self.resolution = self.wizard.training_resolution()
            findings = photos.scan_folder(self.session.photos_dir, self.resolution)
        except photos.PhotoFolderError as exc:
            self.app.call_from_thread(self._scan_failed, str(exc))
            return
        self.app.call_from_thread(self._scan_done, findings)

    def _scan_failed(self, message: str) -> None:
        self.scanned = True
        self._summary(Text(message + "  Press escape to pick another folder.", style="bold red"))

    def _scan_done(self, findings: list[PhotoFinding]) -> None:
        self.scanned = True
        rows = [f for f in findings if f.file != FOLDER_ROW]
        self.findings = sorted(rows, key=lambda f: (0 if f.status in USABLE_STATUSES else 1, f.file.casefold()))
        self._fit_columns()
        self._fill_table()
        if self.findings:
            self.query_one(DataTable).move_cursor(row=0)
            self._show_selected()

    def action_rescan(self) -> None:
        """Scan the folder again (after adding or fixing photos)."""
        self.scanned = False
        self._summary("Scanning the folder…")
        self.scan()

    # ------------------------------------------------------------------ what the person decided

    def dropped(self, finding: PhotoFinding) -> bool:
        from ioncannon.doctor.folder import is_dropped

        return is_dropped(finding, self.session.excluded, self.session.kept)

    def crop_of(self, finding: PhotoFinding) -> str:
        return self.session.crops.get(finding.file) or finding.crop or "centre"

    def used(self) -> list[PhotoFinding]:
        """The photos that will be trained on, in the order their copies are numbered."""
        from ioncannon.doctor.folder import apply_choices, usable

        return usable(apply_choices(self.findings, self.session.excluded, self.session.kept))

    def _status(self, finding: PhotoFinding) -> str:
        if finding.status in USABLE_STATUSES and self.dropped(finding):
            return "dropped"
        return finding.status

    def _what(self, finding: PhotoFinding, short: bool = False) -> str:
        """What happens to the photo; `short` (the table) leaves a reason's bracketed detail to the panel below."""
        status = self._status(finding)
        if status == "dropped":
            return finding.suggestion or "dropped by you (d keeps it)"
        if status in ("rejected", "ignored"):
            return finding.reasons[0] if finding.reasons else status
        crop = self.crop_of(finding)
        if status == "ok" or not finding.reasons:
            return f"{crop} crop, saved as PNG"
        reason = finding.reasons[0]
        if short and " (" in reason:
            reason = reason.split(" (", 1)[0]
        return f"{reason} · {crop} crop"

    def _outputs(self) -> dict[str, str]:
        from ioncannon.doctor.folder import output_name

        identifier = self.session.identifier or "‹id›"
        class_name = self.session.class_name or "‹class›"
        return {f.file: output_name(identifier, class_name, i + 1) for i, f in enumerate(self.used())}

    def _fill_table(self) -> None:
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        outputs = self._outputs()
        _status_w, file_w, what_w, output_w = self._widths
        for finding in self.findings:
            status = self._status(finding)
            table.add_row(
                Text(status, style=STATUS_STYLES.get(status, "")),
                fmt.fit(finding.file, file_w),
                fmt.fit(self._what(finding, short=True), what_w),
                fmt.fit(outputs.get(finding.file, "–"), output_w),
                key=finding.file,
            )
        if self.findings:
            table.move_cursor(row=min(max(row, 0), len(self.findings) - 1))
        self._update_summary()

    def _update_summary(self) -> None:
        used = self.used()
        counts: dict[str, int] = {}
        for finding in self.findings:
            status = self._status(finding)
            counts[status] = counts.get(status, 0) + 1
        text = Text()
        text.append(f"{len(used)} photos will be used", style="bold green" if len(used) >= 5 else "bold yellow")
        others = ", ".join(f"{n} {s}" for s, n in counts.items() if s not in ("ok", "fixed"))
        if others:
            text.append(f" · {others}")
        note = self._count_note(len(used))
        if note:
            text.append(f" · {note}", style="yellow")
        if not used:
            text = Text("No usable photos: add JPG/PNG/HEIC photos to the folder, then press r to rescan.",
                        style="bold red")
        self._summary(text)

    @staticmethod
    def _count_note(n: int) -> str:
        """The doctor's photo-count advice, for the photos the person actually kept."""
        from ioncannon.doctor.folder import MAX_PHOTOS, MIN_PHOTOS

        if 0 < n < MIN_PHOTOS:
            return f"DreamBooth needs at least {MIN_PHOTOS}: add photos (8–20 varied ones work best)"
        if n > MAX_PHOTOS:
            return f"more than {MAX_PHOTOS} slows training without helping: drop the weakest"
        return ""

    def _summary(self, text: Text | str) -> None:
        self.query_one("#check-summary", Static).update(text)

    def selected(self) -> PhotoFinding | None:
        table = self.query_one(DataTable)
        if not self.findings or table.cursor_row < 0 or table.cursor_row >= len(self.findings):
            return None
        return self.findings[table.cursor_row]

    @on(DataTable.RowSelected)
    def row_selected(self) -> None:
        """enter on the table means next, as everywhere."""
        self.action_next()

    @on(DataTable.RowHighlighted)
    def row_highlighted(self) -> None:
        """Show the highlighted photo's crop and reasons."""
        self._show_selected()

    def _show_selected(self) -> None:
        finding = self.selected()
        reasons = self.query_one("#check-reasons", Static)
        preview = self.query_one(ImagePreview)
        if finding is None:
            reasons.update("")
            preview.show(None)
            return
        text = Text()
        text.append(printable(finding.file), style="bold")
        # the row in full, where the table had to cut it
        text.append(f"\n→ {printable(self._what(finding))}", style="bold")
        output = self._outputs().get(finding.file)
        if output:
            text.append(f"\n  becomes {output}", style="dim")
        if finding.format and finding.size:
            text.append(f"\n{finding.format} {finding.size[0]}×{finding.size[1]}", style="dim")
        what = self._what(finding)
        chosen_crop = self.crop_of(finding) == finding.crop
        for reason in finding.reasons:
            # the doctor's note on its own crop stops being true once the person picks another one
            if reason not in what and (chosen_crop or " crop" not in reason):
                text.append(f"\n• {printable(reason)}")
        if finding.suggestion:
            text.append(f"\nsuggested: {printable(finding.suggestion)}", style="yellow")
        if finding.status in USABLE_STATUSES:
            text.append(f"\ncrop: {self.crop_of(finding)}", style="bold")
            if finding.face_box is None:
                text.append(" (no face found)", style="dim")
            text.append("  c: change · d: " + ("keep" if self.dropped(finding) else "drop"), style="dim")
            preview.show(None, "rendering the crop…")
            self.render_preview(finding, self.crop_of(finding))
        else:
            preview.show(None, "nothing to preview")
        reasons.update(text)

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def render_preview(self, finding: PhotoFinding, crop: str) -> None:
        """Decode and crop the photo exactly as the training copy will be made."""
        from ioncannon.doctor import folder as photos
        try:
            folder, resolution = self.session.photos_dir, self.resolution
            image: Image.Image | None = photos.render_crop(folder, finding, cast("CropMode", crop), resolution)
            caption = f"{crop} crop"
            twin = next((f for f in self.findings if f.file == finding.similar_to), None)
            if image is not None and twin is not None:
                # A near shot is judged by eye: this photo and the one it looks like, side by side.
                other = photos.render_crop(folder, twin, cast("CropMode", self.crop_of(twin)), resolution)
                from PIL import Image as PILImage

                pair = PILImage.new("RGB", (image.width + other.width + resolution // 16, image.height), "black")
                pair.paste(image, (0, 0))
                pair.paste(other, (image.width + resolution // 16, 0))
                image, caption = pair, f"left: this · right: {printable(twin.file)}"
        except Exception as exc:  # the file changed since the scan: say so under the preview
            image, caption = None, f"can't preview: {exc}"
        self.app.call_from_thread(self._preview_ready, finding.file, image, caption)

    def _preview_ready(self, file: str, image: Image.Image | None, caption: str) -> None:
        selected = self.selected()
        if selected is not None and selected.file == file:
            self.query_one(ImagePreview).show(image, caption)

    def action_cycle_crop(self) -> None:
        """Try the next crop for this photo: face, centre, top."""
        finding = self.selected()
        if finding is None or finding.status not in USABLE_STATUSES:
            return
        current = self.crop_of(finding)
        crop = CROPS[(CROPS.index(current) + 1) % len(CROPS)] if current in CROPS else CROPS[0]
        crops = dict(self.session.crops)
        crops[finding.file] = crop
        self.wizard.store.update(crops=crops)
        self._refresh_row()

    def action_toggle_drop(self) -> None:
        """Drop this photo from training, or keep one the doctor would drop."""
        finding = self.selected()
        if finding is None or finding.status not in USABLE_STATUSES:
            return
        excluded = [f for f in self.session.excluded if f != finding.file]
        kept = [f for f in self.session.kept if f != finding.file]
        if self.dropped(finding):
            if finding.drop:
                kept.append(finding.file)
        else:
            excluded.append(finding.file)
        self.wizard.store.update(excluded=excluded, kept=kept)
        self._refresh_row()

    def _refresh_row(self) -> None:
        self._fill_table()
        self._show_selected()

    def ready_for_next(self) -> bool:
        if not self.scanned:
            self._summary(Text("Still scanning; next works once the table is filled.", style="yellow"))
            return False
        if not self.used():
            self._summary(Text("No usable photos: add JPG/PNG/HEIC photos to the folder, press r to rescan, "
                               "or escape to pick another folder.", style="bold red"))
            return False
        return True
