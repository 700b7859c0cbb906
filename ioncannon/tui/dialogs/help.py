"""The help dialog on `?` and F1: every key of the screen under it, the ones the footer leaves out too."""

from __future__ import annotations

import inspect
from dataclasses import replace
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

# Shared by every screen that has keys of its own; `?` is a key, not a letter, so it never types a
# word into a box's answer by habit (a box that takes `?` keeps it: the box gets the key first).
HELP_BINDING = Binding("f1,question_mark", "app.help", "Help", show=False)
HELP_ROWS = tuple[tuple[str, str], ...]
# Keys a widget of the screen handles on its own (lists, tables, boxes), which no binding names.
MOVE_IN_LISTS: HELP_ROWS = (("↑ ↓", "move through the list"), ("tab / shift+tab", "move between the boxes"))


def _own_bindings(owner: object) -> list[Binding]:
    """The bindings this product declares on `owner`'s classes (base first, a subclass's key overriding)."""
    by_key: dict[str, Binding] = {}
    for cls in reversed(type(owner).__mro__):
        if not cls.__module__.startswith("ioncannon."):
            continue  # Textual's own (focus moves, copy) are in HELP_EXTRA where a screen uses them
        for binding in cls.__dict__.get("BINDINGS", ()):
            if isinstance(binding, Binding):
                for key in binding.key.split(","):
                    by_key[key.strip()] = replace(binding, key=key.strip())
    return list(by_key.values())


def key_rows(screen: Screen[object]) -> list[tuple[str, str, bool]]:
    """(keys, what they do, available now) for every key of the screen, then the app's, one row per action."""
    rows: dict[str, tuple[str, str, bool]] = {}
    for owner in (screen, screen.app):
        for binding in _own_bindings(owner):
            target: object = owner
            action = binding.action
            if action.startswith("app."):
                target, action = screen.app, action[4:]
            label = binding.key_display or screen.app.get_key_display(binding)
            group = f"{action}:{binding.description}"
            if group in rows:
                keys, what, available = rows[group]
                if label not in keys.split(" / "):
                    rows[group] = (f"{keys} / {label}", what, available)
                continue
            name = action.split("(")[0]
            check = getattr(target, "check_action", None)
            available = check(name, ()) is not False if check is not None else True
            rows[group] = (label, _explain(target, name, binding.description), available)
    return list(rows.values())


def _explain(target: object, action: str, description: str) -> str:
    """The binding's word and the first line of its action's docstring (what it really does)."""
    method = getattr(target, f"action_{action}", None)
    doc = inspect.getdoc(method) if method is not None else None
    first = doc.splitlines()[0].rstrip(".") if doc else ""
    if first and description:
        return f"{description}: {first[0].lower()}{first[1:]}"
    return first or description


class HelpDialog(ModalScreen[None]):
    """Every key of one screen, with what it does; greyed where it does nothing right now."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,enter,f1,question_mark,q", "close", "Close")]

    def __init__(self, title: str, rows: list[tuple[str, str, bool]], extra: HELP_ROWS = ()) -> None:
        super().__init__()
        self.title_text, self.rows, self.extra = title, rows, extra

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for keys, what in self.extra:
            table.add_row(keys, what)
        for keys, what, available in self.rows:
            table.add_row(keys, Text(what + ("" if available else " (not now)"), style="" if available else "dim"))
        with Vertical(classes="dialog"):
            yield Static(f"Keys: {self.title_text}", classes="dialog-title")
            with VerticalScroll(id="help-keys"):
                yield Static(table, id="help-table")
            yield Static(Text.assemble((" esc ", "bold reverse"), " close"), classes="dialog-keys")

    def action_close(self) -> None:
        """Close the help."""
        self.dismiss(None)
