"""Subject: the identifier and the class, linted live, and the exact prompt to use later."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, RadioButton, RadioSet, Static

from ioncannon.tui.screens.base import DEMO_NOTE, WizardScreen
from ioncannon.tui.session import CLASS_CHOICES
from ioncannon.tui.wizard import Step

if TYPE_CHECKING:
    from ioncannon.doctor.identifier import IdentifierLint
    from ioncannon.tui.tokenizer import TokenizerCheck

HELP = (
    "The [b]identifier[/b] is a rare made-up word that will mean your subject (like [i]zwx[/i] or [i]ohwx[/i]); "
    "the [b]class[/b] says what kind of thing it is."
)


class SubjectScreen(WizardScreen):
    """Step 3: who or what is in the photos."""

    STEP = Step.SUBJECT
    HELP_EXTRA = (("type", "the identifier (a rare word that will mean the subject)"),
                  ("tab / shift+tab", "between the identifier, the class list and the custom class"),
                  ("↑ ↓ enter / space", "in the class list: move, and pick a class"))
    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+n", "next", "Next")]

    def __init__(self) -> None:
        super().__init__()
        self.lint: IdentifierLint | None = None
        self.tokenizer: Any | None = None  # the base model's, once found; until then syntax checks only
        self.checking = True  # until the app says whether the tokenizer can be had
        self.why_no_tokenizer = ""

    def compose_body(self) -> ComposeResult:
        session = self.session
        with Vertical(id="subject-body"):
            yield Static(HELP, id="subject-help")
            with Horizontal(classes="field"):
                yield Label("Identifier", classes="field-label")
                yield Input(value=session.identifier, placeholder="e.g. zwx", id="subject-identifier",
                            select_on_focus=False, max_length=40)
            with Horizontal(classes="field"):
                yield Label("Class", classes="field-label")
                with RadioSet(id="subject-class"):
                    for choice in CLASS_CHOICES:
                        yield RadioButton(choice, value=choice == session.class_choice, name=choice)
            with Horizontal(classes="field", id="subject-custom-row"):
                yield Label("Custom class", classes="field-label")
                yield Input(value=session.custom_class, placeholder="e.g. teddy bear", id="subject-custom",
                            select_on_focus=False, max_length=40)
            yield Static("", id="subject-lint")
            yield Static("", id="subject-prompt")

    def on_mount(self) -> None:
        radio = self.query_one(RadioSet)
        # RadioSet highlights its first button on mount; start the highlight on the saved choice instead.
        radio._selected = CLASS_CHOICES.index(self.session.class_choice)
        self._show_custom()
        self.query_one("#subject-identifier", Input).focus()
        self._answers_changed()
        self._check_started = time.monotonic()
        self.set_interval(1.0, self._still_checking)
        self.wizard.check_tokenizer()

    def _still_checking(self) -> None:
        """While the tokenizer loads (seconds, the first time), the verdict counts the wait."""
        if self.checking:
            self._answers_changed()

    def tokenizer_checked(self, key: str, check: TokenizerCheck) -> None:
        """The tokenizer arrived (or can't be had): give the one verdict now."""
        wanted = "demo" if self.wizard.demo else self.session.base_model.strip()
        if key != wanted:
            return
        self.tokenizer, self.why_no_tokenizer, self.checking = check.tokenizer, check.why_not, False
        self._answers_changed()

    def _show_custom(self) -> None:
        self.query_one("#subject-custom-row").display = self.session.class_choice == "custom"

    @on(Input.Changed, "#subject-identifier")
    def identifier_changed(self, event: Input.Changed) -> None:
        """Save and lint the identifier as it is typed."""
        self.wizard.store.update(identifier=event.value.strip())
        self._answers_changed()

    @on(Input.Changed, "#subject-custom")
    def custom_changed(self, event: Input.Changed) -> None:
        """Save and lint a custom class as it is typed."""
        self.wizard.store.update(custom_class=event.value)
        self._answers_changed()

    @on(RadioSet.Changed, "#subject-class")
    def class_changed(self, event: RadioSet.Changed) -> None:
        """A class picked from the list."""
        choice = event.pressed.name or "person"
        self.wizard.store.update(class_choice=choice)
        self._show_custom()
        if choice == "custom":
            self.query_one("#subject-custom", Input).focus()
        self._answers_changed()

    @on(Input.Submitted)
    def submitted(self) -> None:
        """enter in a box means next."""
        self.action_next()

    def _answers_changed(self) -> None:
        self._lint()
        self._redraw()

    def _lint(self) -> None:
        """Syntax, common-word and class-collision checks, and token counts once the tokenizer is here."""
        from ioncannon.doctor.identifier import lint_identifier

        self.lint = lint_identifier(self.session.identifier, self.session.class_name, tokenizer=self.tokenizer)

    def _redraw(self) -> None:
        lint_box = self.query_one("#subject-lint", Static)
        prompt_box = self.query_one("#subject-prompt", Static)
        lint = self.lint
        text = Text()
        if lint is not None:
            if lint.ok and not lint.warnings and self.session.identifier:
                text.append_text(self._verdict(lint))
            for error in lint.errors:
                text.append(f"✗ {error}\n", style="bold red")
            for warning in lint.warnings:
                text.append(f"⚠ {warning}\n", style="yellow")
            if lint.suggestions and (lint.errors or lint.warnings):
                text.append("try: " + ", ".join(lint.suggestions), style="dim")
            elif self.wizard.demo and lint.token_count is not None and lint.token_count > 1:
                text.append(f"({DEMO_NOTE}: its tokenizer knows few words, so most identifiers split)", style="dim")
        text.rstrip()
        lint_box.update(text)
        prompt = (lint.prompt if lint is not None else "") or self._fallback_prompt()
        prompt_text = Text()
        prompt_text.append("After training, put this in your prompts:\n", style="dim")
        prompt_text.append(f"  {prompt}", style="bold cyan")
        prompt_box.update(prompt_text)

    def _verdict(self, lint: IdentifierLint) -> Text:
        """One verdict: withheld while the tokenizer is being checked, so a ✓ is never followed by a ⚠."""
        name = self.session.identifier
        if self.checking:
            waited = time.monotonic() - getattr(self, "_check_started", time.monotonic())
            loading = f" (loading it: {waited:.0f} s)" if waited >= 1 else ""
            return Text(f"… checking '{name}' with the base model's tokenizer{loading}\n", style="dim")
        if lint.token_count == 1:
            return Text(f"✓ '{name}' looks like a good rare word and is one token for the model's tokenizer.\n",
                        style="green")
        text = Text(f"✓ '{name}' looks like a good rare word.", style="green")
        if self.why_no_tokenizer:
            text.append(f" Spelling checked; token count not: {self.why_no_tokenizer}.", style="dim")
        text.append("\n")
        return text

    def _fallback_prompt(self) -> str:
        return f"a photo of {self.session.identifier or '‹identifier›'} {self.session.class_name or '‹class›'}"

    def ready_for_next(self) -> bool:
        session = self.session
        if not session.identifier:
            self._say("Type an identifier first: a short made-up word such as zwx.")
            return False
        if not session.class_name:
            self._say("Type the custom class (what kind of thing the subject is), or pick one from the list.")
            return False
        if self.lint is not None and self.lint.errors:
            self._say("Fix the identifier first: " + self.lint.errors[0])
            return False
        return True

    def _say(self, message: str) -> None:
        self.query_one("#subject-lint", Static).update(Text(message, style="bold red"))
