"""Prompts: the pack's styles (toggle, add, edit) and the run length, chosen before the job starts."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from ioncannon.job.plans import GeneratePlan
from ioncannon.job.prompts import PromptPackError, PromptStyle
from ioncannon.tui import format as fmt
from ioncannon.tui import pack
from ioncannon.tui.dialogs.choice import Choice, ChoiceDialog
from ioncannon.tui.dialogs.style import StyleDialog
from ioncannon.tui.screens.base import WizardScreen
from ioncannon.tui.wizard import Step

HELP = "Each style makes a folder of images and a collage; [b]{token}[/b] is your subject."
KEYWORD_WIDTH = 13


class PromptsScreen(WizardScreen):
    """Step 4: what to generate once the model is trained."""

    STEP = Step.PROMPTS
    HELP_EXTRA = (("↑ ↓", "pick a style"),)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_style", "On/off"),
        Binding("a", "add", "Add"),
        Binding("e", "edit", "Edit"),
        Binding("l", "cycle_length", "Length"),
        Binding("r", "reset", "Reset"),
        Binding("ctrl+n", "next", "Next"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.pack_styles: list[PromptStyle] = []
        self.load_error = ""
        self._prompt_width = 0

    def compose_body(self) -> ComposeResult:
        with Vertical(id="prompts-body"):
            yield Static(HELP, id="prompts-help")
            yield DataTable(id="prompts-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="prompts-detail")
            yield Static("", id="prompts-length")
            yield Static("", id="prompts-message")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        self._fit_columns()
        try:
            self.pack_styles = pack.starting_styles(self.session.prompt_styles, self.wizard.demo)
        except PromptPackError as exc:
            self.pack_styles, self.load_error = [], str(exc)
        self._fill_table()
        table.focus()
        self._redraw()

    # ------------------------------------------------------------------ drawing

    def on_resize(self) -> None:
        """The prompt column takes whatever width the terminal has."""
        if self._fit_columns():
            self._fill_table()

    def _fit_columns(self) -> bool:
        table = self.query_one(DataTable)
        prompt_w = fmt.flexible_width(table.size.width or self.size.width or 80, 3 + KEYWORD_WIDTH, 3, minimum=20)
        if prompt_w == self._prompt_width:
            return False
        self._prompt_width = prompt_w
        table.clear(columns=True)
        table.add_column("on", width=3, key="on")
        table.add_column("keyword", width=KEYWORD_WIDTH, key="keyword")
        table.add_column("prompt", width=prompt_w, key="prompt")
        return True

    def _fill_table(self, cursor: int | None = None) -> None:
        table = self.query_one(DataTable)
        row = table.cursor_row if cursor is None else cursor
        table.clear()
        for style in self.pack_styles:
            mark = Text("[x]", style="bold green") if style.enabled else Text("[ ]", style="dim")
            keyword = Text(fmt.fit(style.keyword, KEYWORD_WIDTH), style="" if style.enabled else "dim")
            prompt = Text(fmt.fit(style.prompt, self._prompt_width), style="" if style.enabled else "dim")
            table.add_row(mark, keyword, prompt)
        if self.pack_styles:
            table.move_cursor(row=max(0, min(row, len(self.pack_styles) - 1)))

    def _redraw(self) -> None:
        self.query_one("#prompts-detail", Static).update(self._detail())
        self.query_one("#prompts-length", Static).update(self._length_line())
        message = self.query_one("#prompts-message", Static)
        message.update(Text(self.load_error, style="bold red") if self.load_error else self._summary())

    def _detail(self) -> Text:
        style = self.selected()
        if style is None:
            return Text("no styles: press a to add one", style="dim")
        session = self.session
        text = Text(no_wrap=False, overflow="ellipsis")
        text.append(style.render(session.identifier or "‹identifier›", session.class_name or "‹class›"))
        # the negative prompt in full (wrapped): a cut one hides what the style keeps out
        text.append(f"\nseed {style.seed} · not: {style.negative or '–'}", style="dim")
        return text

    def _length_line(self) -> Text:
        text = Text()
        text.append("Run length ", style="bold")
        for name in pack.run_lengths(self.wizard.demo):
            label = pack.RUN_LENGTH_LABELS[name]
            if name != "bare":
                label += f" {self._per_prompt(name)}"
            text.append(f" {label} ", style="bold reverse" if name == self.session.run_length else "")
            text.append(" ")
        text.append("(l)", style="dim")
        return text

    def _summary(self) -> Text:
        per_prompt = self._per_prompt(self.session.run_length)
        enabled = sum(1 for s in self.pack_styles if s.enabled)
        bare = self._bare_images()
        total = pack.total_images(self.pack_styles, per_prompt, bare)
        text = Text()
        if per_prompt == 0:
            text.append(f"{bare} images of the bare prompt only: a quick look at the likeness", style="dim")
        else:
            text.append(f"{enabled} of {len(self.pack_styles)} styles on · {per_prompt} images each + {bare} bare "
                        f"= {total} images", style="dim")
        return text

    def _per_prompt(self, run_length: str) -> int:
        return pack.images_per_prompt(run_length, self._demo_plan())

    def _bare_images(self) -> int:
        plan = self._demo_plan()
        return plan.bare_token_images if plan is not None else GeneratePlan().bare_token_images

    def _demo_plan(self) -> GeneratePlan | None:
        if not self.wizard.demo:
            return None
        from ioncannon.job.plan import demo
        return demo.DEMO_GENERATE_PLAN

    def selected(self) -> PromptStyle | None:
        table = self.query_one(DataTable)
        if not self.pack_styles or table.cursor_row < 0:
            return None
        return self.pack_styles[min(table.cursor_row, len(self.pack_styles) - 1)]

    @on(DataTable.RowHighlighted)
    def row_highlighted(self) -> None:
        """Show the highlighted style in full."""
        self.query_one("#prompts-detail", Static).update(self._detail())

    @on(DataTable.RowSelected)
    def row_selected(self) -> None:
        """enter on the list means next, as on every screen (e edits)."""
        self.action_next()

    # ------------------------------------------------------------------ keys

    def _changed(self, cursor: int | None = None) -> None:
        self.load_error = ""
        self.wizard.store.update(prompt_styles=pack.styles_to_json(self.pack_styles))
        self._fill_table(cursor)
        self._redraw()

    def action_toggle_style(self) -> None:
        """Turn the highlighted style on or off."""
        style = self.selected()
        if style is None:
            return
        index = self.pack_styles.index(style)
        self.pack_styles[index] = PromptStyle(
            style.keyword, style.prompt, style.negative, style.seed, not style.enabled
        )
        self._changed(index)

    def action_add(self) -> None:
        """Add a style of your own."""
        blank = PromptStyle(keyword="", prompt="a photo of {token}, ", negative="blurry, lowres, watermark, text",
                            seed=pack.next_seed(self.pack_styles))
        self._open_dialog(None, blank)

    def action_edit(self) -> None:
        """Edit the highlighted style."""
        style = self.selected()
        if style is not None:
            self._open_dialog(self.pack_styles.index(style), style)

    def _open_dialog(self, index: int | None, style: PromptStyle) -> None:
        def check(candidate: PromptStyle) -> str | None:
            try:
                pack.with_style(self.pack_styles, index, candidate)
            except PromptPackError as exc:
                return str(exc)
            return None

        def saved(result: PromptStyle | None) -> None:
            if result is not None:
                self.pack_styles = pack.with_style(self.pack_styles, index, result)
                self._changed(len(self.pack_styles) - 1 if index is None else index)

        subject = f"{self.session.identifier or 'zwx'} {self.session.class_name or 'person'}"
        self.app.push_screen(StyleDialog(style, check, subject, new=index is None), saved)

    def action_cycle_length(self) -> None:
        """Switch between bare token only, short, medium and long runs."""
        lengths = pack.run_lengths(self.wizard.demo)
        current = self.session.run_length
        following = lengths[(lengths.index(current) + 1) % len(lengths)] if current in lengths else lengths[0]
        self.wizard.store.update(run_length=following)
        self._redraw()

    def action_reset(self) -> None:
        """Forget the edits, once confirmed with y: back to the pack as shipped."""
        if self.session.prompt_styles is None:
            self.notify("The styles are the pack as shipped: nothing to reset.")
            return
        self.app.push_screen(
            ChoiceDialog("Reset the styles?",
                         "Every style you added, edited or turned on or off goes back to the pack as shipped; "
                         "this can't be undone.",
                         [Choice("y", "reset them", "reset"), Choice("escape", "keep my edits", "keep")]),
            lambda answer: self._reset() if answer == "reset" else None,
        )

    def _reset(self) -> None:
        self.wizard.store.update(prompt_styles=None)
        try:
            self.pack_styles, self.load_error = pack.starting_styles(None, self.wizard.demo), ""
        except PromptPackError as exc:
            self.pack_styles, self.load_error = [], str(exc)
        self._fill_table(0)
        self._redraw()

    def ready_for_next(self) -> bool:
        problem = ""
        if self.load_error:
            problem = self.load_error
        elif self._per_prompt(self.session.run_length) > 0 and not any(s.enabled for s in self.pack_styles):
            problem = "Turn at least one style on (space), or pick 'bare token only' (l)."
        if problem:
            self.query_one("#prompts-message", Static).update(Text(problem, style="bold red"))
            return False
        return True
