"""Above the stream: a prompt for a SQL filter on the selected dataset, hidden until ``/``."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input

PLACEHOLDER = "a SQL filter, e.g. temperature > 24 AND sensor = 's1'"


class FilterPrompt(Input):
    """Enter applies the filter (empty clears it), escape closes the prompt unchanged.

    The app opens it with ``ask`` and hides it again when it posts ``Applied`` or ``Closed``;
    ``key`` is the dataset it was opened for.
    """

    BINDINGS = [Binding("escape", "close", "Cancel", show=False)]  # noqa: RUF012

    @dataclass
    class Applied(Message):
        """The filter for the prompt's dataset; None clears it."""

        where: str | None

    @dataclass
    class Closed(Message):
        """Escape: the filter stays as it was."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(placeholder=PLACEHOLDER, id=id)
        self.key = ""
        self.display = False

    def ask(self, key: str, where: str | None) -> None:
        """Open the prompt for dataset ``key``, holding its current filter."""
        self.key = key
        self.border_title = f"Filter {key}"
        self.border_subtitle = "enter applies · empty clears · esc cancels"
        self.value = where or ""
        self.cursor_position = len(self.value)
        self.display = True
        self.focus()

    def hide(self) -> None:
        self.display = False

    def action_close(self) -> None:
        self.post_message(self.Closed())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.Applied(event.value.strip() or None))
