"""Photos: pick the folder with a keyboard directory browser or by typing its path."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.suggester import Suggester
from textual.widgets import DirectoryTree, Input, Static

from ioncannon.tui.screens.base import WizardScreen
from ioncannon.tui.wizard import Step

HELP = (
    "Pick the folder that holds 8–20 photos of your subject (any format a phone makes). "
    "[b]tab[/b] switches between the browser and the path; [b]→[/b] completes a typed path. "
    "The folder is only read, never changed."
)


class PathSuggester(Suggester):
    """Completes a typed folder path from what is on disk (accepted with →)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        path = Path(value).expanduser()
        parent, stem = (path, "") if value.endswith(os.sep) else (path.parent, path.name)
        try:
            with os.scandir(parent) as entries:
                names = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
        except OSError:
            return None
        match = next((n for n in names if n.startswith(stem) and n != stem), None)
        if match is None:
            return None
        head = value if value.endswith(os.sep) else value[: len(value) - len(stem)]
        return head + match + os.sep


class PhotoFolderTree(DirectoryTree):
    """The folder browser, without dot-files (a rented box's home is full of them)."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".")]


def folder_problem(text: str) -> str | None:
    """Why this path can't be the photo folder, said so the person knows what to do; None when fine."""
    if not text.strip():
        return "Type the folder's path, or pick it in the browser above (enter opens a folder)."
    folder = Path(text.strip()).expanduser()
    if not folder.exists():
        return f"{folder} does not exist. Check the spelling (→ completes a path), or copy your photos there first."
    if not folder.is_dir():
        return f"{folder} is a file. Pick the folder that holds the photos instead."
    try:
        entries = [e for e in os.scandir(folder) if not e.name.startswith(".")]
    except PermissionError:
        return f"{folder} can't be read (permission denied). Try `chmod u+rx '{folder}'`."
    except OSError as exc:
        return f"{folder} can't be read ({exc.strerror})."
    if not entries:
        return (
            f"{folder} is empty. Copy your photos into it, e.g. from your computer: "
            f"scp -r my_photos/* <this box>:{folder}/"
        )
    return None


class PhotosScreen(WizardScreen):
    """Step 1: the photo folder."""

    STEP = Step.PHOTOS
    HELP_EXTRA = (("type", "a folder path into the box (→ completes it)"),
                  ("tab / shift+tab", "between the path box and the folder tree"),
                  ("↑ ↓ enter", "in the tree: move, and open a folder (its path goes into the box)"))
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("backspace", "parent_folder", "Up a folder"),
        Binding("ctrl+n", "next", "Next"),
    ]

    def compose_body(self) -> ComposeResult:
        start = self._browser_root()
        with Vertical(id="photos-body"):
            yield Static(HELP, id="photos-help")
            yield PhotoFolderTree(str(start), id="photos-tree")
            yield Input(
                value=self.session.photos_dir, placeholder="/path/to/photos", id="photos-path",
                select_on_focus=False,
                suggester=PathSuggester(),
            )
            yield Static("", id="photos-message")

    def _browser_root(self) -> Path:
        chosen = Path(self.session.photos_dir).expanduser() if self.session.photos_dir else None
        if chosen is not None and chosen.is_dir():
            return chosen.resolve().parent
        workspace = Path("/workspace")
        return workspace if workspace.is_dir() else Path.home()

    def on_mount(self) -> None:
        # the path box, even when empty: a path typed first thing must land somewhere (tab reaches the browser)
        self.query_one("#photos-path").focus()

    @on(DirectoryTree.DirectorySelected)
    def folder_picked(self, event: DirectoryTree.DirectorySelected) -> None:
        """A folder chosen in the browser becomes the answer."""
        self._set_path(str(event.path))

    @on(DirectoryTree.FileSelected)
    def file_picked(self, event: DirectoryTree.FileSelected) -> None:
        """Picking a photo means its folder."""
        self._set_path(str(event.path.parent))

    def _set_path(self, path: str) -> None:
        self.query_one("#photos-path", Input).value = path
        self._show_problem(folder_problem(path), ok_text=f"✓ {path}: press ctrl+n to check its photos")

    @on(Input.Changed, "#photos-path")
    def path_typed(self, event: Input.Changed) -> None:
        """Remember the path as it is typed."""
        self.wizard.store.update(photos_dir=event.value.strip())

    @on(Input.Submitted, "#photos-path")
    def path_submitted(self) -> None:
        """enter in the path box means next."""
        self.action_next()

    def action_parent_folder(self) -> None:
        """Show the folder above the browser's top."""
        tree = self.query_one(DirectoryTree)
        parent = Path(tree.path).resolve().parent
        tree.path = parent
        tree.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """'Up a folder' only makes sense while the browser has the focus."""
        if action == "parent_folder":
            return isinstance(self.focused, DirectoryTree)
        return True

    def ready_for_next(self) -> bool:
        path = self.query_one("#photos-path", Input).value.strip()
        problem = folder_problem(path)
        self._show_problem(problem)
        if problem is None:
            self.wizard.store.update(photos_dir=str(Path(path).expanduser()))
        return problem is None

    def _show_problem(self, problem: str | None, ok_text: str = "") -> None:
        message = self.query_one("#photos-message", Static)
        message.set_class(problem is not None, "error")
        message.update(problem or ok_text)
