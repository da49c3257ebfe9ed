"""Bottom of the main region: the latest rows of the stream, newest first."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import DataTable

from streamkit.tui.widgets._format import cell


class LatestRows(DataTable[str]):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, zebra_stripes=True, cursor_type="none")
        self._columns: tuple[str, ...] = ()

    def on_mount(self) -> None:
        self.border_title = "Latest rows"

    def set_columns(self, names: Sequence[str]) -> None:
        self.clear(columns=True)
        self._columns = tuple(names)
        for name in names:
            self.add_column(cell(name, 20))

    def show(self, rows: Sequence[Sequence[object]]) -> None:
        self.clear()
        self.add_rows([cell(value) for value in row] for row in reversed(rows))
