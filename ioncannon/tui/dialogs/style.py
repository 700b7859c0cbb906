"""The dialog that adds or edits one style of the prompt pack, with the pack's own validation shown inline."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from ioncannon.job.prompts import TOKEN, PromptStyle

StyleCheck = Callable[[PromptStyle], "str | None"]


class StyleDialog(ModalScreen["PromptStyle | None"]):
    """Keyword, prompt with {token}, negative prompt and seed; enter saves once the pack accepts it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]

    def __init__(self, style: PromptStyle, check: StyleCheck, subject: str, *, new: bool = False) -> None:
        super().__init__()
        self.original, self.check, self.subject, self.new = style, check, subject, new

    def compose(self) -> ComposeResult:
        style = self.original
        with Vertical(classes="dialog", id="style-dialog"):
            title = "Add a style" if self.new else f"Edit style: {style.keyword}"
            yield Static(title, classes="dialog-title")
            yield Static(
                Text.assemble("Put ", (TOKEN, "bold"), f" where the subject goes (it becomes '{self.subject}')."),
                classes="dialog-body",
            )
            for label, name, value, placeholder in (
                ("Keyword", "keyword", style.keyword, "e.g. pirate (names the folder)"),
                ("Prompt", "prompt", style.prompt, "a portrait of {token} as a pirate"),
                ("Negative", "negative", style.negative, "what to keep out"),
                ("Seed", "seed", str(style.seed), "a whole number"),
            ):
                with Horizontal(classes="field compact"):
                    yield Label(label, classes="field-label")
                    yield Input(value=value, placeholder=placeholder, id=f"style-{name}", compact=True,
                                select_on_focus=False,  # the first key must add to the prompt, not replace it
                                max_length=400 if name in ("prompt", "negative") else 40,
                                restrict=r"[0-9]*" if name == "seed" else None)
            yield Static("", id="style-error")
            keys = Text.assemble((" enter ", "bold reverse"), " save   ", (" tab ", "bold reverse"), " next field   ",
                                 (" esc ", "bold reverse"), " cancel")
            yield Static(keys, classes="dialog-keys")

    def on_mount(self) -> None:
        self.query_one("#style-keyword" if self.new else "#style-prompt", Input).focus()

    def _value(self, name: str) -> str:
        return self.query_one(f"#style-{name}", Input).value.strip()

    def edited(self) -> PromptStyle | str:
        """The style as typed, or why it can't be saved."""
        try:
            seed = int(self._value("seed"))
        except ValueError:
            return "the seed must be a whole number, e.g. 1013"
        style = PromptStyle(keyword=self._value("keyword"), prompt=self._value("prompt"),
                            negative=self._value("negative"), seed=seed, enabled=self.original.enabled)
        problem = self.check(style)
        return problem if problem is not None else style

    @on(Input.Submitted)
    def submitted(self) -> None:
        """enter in any field saves."""
        self.action_save()

    def action_save(self) -> None:
        """Save the style, or say inline what the pack refuses."""
        result = self.edited()
        if isinstance(result, str):
            self.query_one("#style-error", Static).update(Text(result, style="bold red"))
            return
        self.dismiss(result)

    def action_cancel(self) -> None:
        """Close without changing the pack."""
        self.dismiss(None)
