"""What every wizard screen shares: a title line, the cost meter and footer, and back/next/quit keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import Worker

from ioncannon.tui.widgets.meter import CostMeter
from ioncannon.tui.wizard import ORDER, Step

if TYPE_CHECKING:
    from ioncannon.tui.app import IonCannonApp
    from ioncannon.tui.session import WizardSession

STEP_TITLES: dict[Step, str] = {
    Step.WELCOME: "Welcome",
    Step.PHOTOS: "Photos",
    Step.CHECK: "Check the photos",
    Step.SUBJECT: "Subject",
    Step.PROMPTS: "Prompts",
    Step.HARDWARE: "Hardware and plan",
    Step.TRAIN: "Training",
    Step.GENERATE: "Generating images",
    Step.FINISH: "Finished",
}
DEMO_NOTE = "demo: tiny random-weight model"


class WizardScreen(Screen[None]):
    """A step of the wizard. Subclasses set STEP and compose_body(); `next` validates, then advances."""

    STEP: ClassVar[Step] = Step.WELCOME
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+n", "next", "Next"),
        Binding("ctrl+c", "app.request_quit", "Quit", show=False),
    ]

    @property
    def wizard(self) -> IonCannonApp:
        return cast("IonCannonApp", self.app)

    @property
    def session(self) -> WizardSession:
        return self.wizard.store.session

    def compose(self) -> ComposeResult:
        yield Static(self.title_line(), classes="titlebar")
        yield from self.compose_body()
        yield CostMeter(
            self.wizard.hourly_price(), self.wizard.meter_started_at(), clock=self.wizard.clock, proc=self.wizard.proc,
        )
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    @property
    def HELP_TITLE(self) -> str:  # noqa: N802 - read like the class constants of the other screens
        return STEP_TITLES[self.STEP]

    def title_line(self) -> Text:
        number = ORDER.index(self.STEP) if self.STEP is not Step.WELCOME else 0
        text = Text()
        text.append(" ioncannon ", style="bold")
        if number:
            text.append(f" step {number} of {len(ORDER) - 1} · ", style="dim")
        text.append(STEP_TITLES[self.STEP], style="bold")
        # the watched job says whether it is a demo, not the command that opened the wizard
        demo = self.wizard.job.spec.demo if self.wizard.job is not None else self.wizard.demo
        if demo:
            text.append(f"   {DEMO_NOTE}", style="italic")
        text.append("   ? keys", style="dim")
        return text

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A background task of this screen that crashed opens an error dialog; the screen stays usable."""
        self.wizard.report_worker(event)

    def action_back(self) -> None:
        """Go to the previous step (answers are kept)."""
        self.wizard.go_back(self.STEP)

    def action_next(self) -> None:
        """Go on to the next step when this one is complete."""
        if self.ready_for_next():
            self.wizard.go_next(self.STEP)

    def ready_for_next(self) -> bool:
        """Override: say what is missing (inline) and return False to stay."""
        return True
