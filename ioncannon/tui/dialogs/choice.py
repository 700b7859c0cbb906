"""Modal dialogs: a choice between keyed answers, and an error that says what to do."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from ioncannon.job.printable import printable_lines


@dataclass(frozen=True)
class Choice:
    key: str  # the key that picks it, as Textual names keys ("enter", "s", "escape")
    label: str
    value: str


class ChoiceDialog(ModalScreen[str]):
    """A question with a few answers, each on its own key; dismisses with the chosen value."""

    def __init__(self, title: str, body: str, choices: list[Choice], *, classes: str = "") -> None:
        super().__init__(classes=classes)
        self.title_text, self.body_text, self.choices = title, body, choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.title_text, classes="dialog-title")
            yield Static(self.body_text, classes="dialog-body")
            keys = Text()
            for i, choice in enumerate(self.choices):
                if i:
                    keys.append("   ")
                keys.append(f" {_key_label(choice.key)} ", style="bold reverse")
                keys.append(f" {choice.label}")
            yield Static(keys, classes="dialog-keys")

    def on_key(self, event: events.Key) -> None:
        """Pick the answer whose key was pressed; other keys do nothing while the question is open."""
        event.stop()  # an unanswered question must not let ctrl+q open a second one behind it
        for choice in self.choices:
            if event.key == choice.key:
                self.dismiss(choice.value)
                return


class ErrorDialog(ModalScreen[None]):
    """Something went wrong that the person can act on: what happened, and what to do."""

    BINDINGS = [Binding("escape,enter", "close", "Close")]

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(classes="error")
        self.message, self.hint = message, hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("Something went wrong", classes="dialog-title")
            # exception text comes from outside: shown as plain, printable text (no markup, no escape sequences)
            yield Static(Text(printable_lines(self.message)), classes="dialog-body")
            if self.hint:
                yield Static(Text(printable_lines(self.hint)), classes="dialog-hint")
            yield Static(Text.assemble((" enter ", "bold reverse"), " close"), classes="dialog-keys")

    def action_close(self) -> None:
        """Close the dialog."""
        self.dismiss(None)


def _key_label(key: str) -> str:
    return {"escape": "esc"}.get(key, key)
