"""Middle of the main region: one sparkline per numeric column, with latest, min and max."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.widget import Widget
from textual.widgets import Label, Sparkline

from streamkit.tui.series import ColumnSummary
from streamkit.tui.widgets._format import number


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


class ChartCaption(Widget):
    """``name`` on the left, ``latest min max`` on the right; shorter words when narrow."""

    DEFAULT_CSS = """
    ChartCaption {
        height: 1;
    }
    """

    def __init__(self, column: str) -> None:
        super().__init__(classes="chart-caption")
        self.column = column
        self.summary: ColumnSummary | None = None

    def render(self) -> Text:
        width = self.content_size.width
        name = Text(self.column, "bold")
        if self.summary is None:
            return name
        latest, low, high = (
            number(self.summary.latest, self.summary.integer),
            number(self.summary.minimum, self.summary.integer),
            number(self.summary.maximum, self.summary.integer),
        )
        values = Text.assemble(
            ("latest ", "dim"), (latest, "bold"), ("  min ", "dim"), low, ("  max ", "dim"), high
        )
        if not width:  # not laid out yet
            return Text.assemble(name, "  ", values)
        if name.cell_len + 2 + values.cell_len > width:
            values = Text.assemble((latest, "bold"), ("  ↓", "dim"), low, (" ↑", "dim"), high)
        name.truncate(max(1, width - values.cell_len - 2), overflow="ellipsis")
        gap = max(2, width - name.cell_len - values.cell_len)
        return Text.assemble(name, " " * gap, values)


class ColumnChart(Vertical):
    """A column's name and latest/min/max above its sparkline."""

    def __init__(self, column: str) -> None:
        super().__init__(classes="chart")
        self.column = column
        self.summary: ColumnSummary | None = None

    def compose(self) -> ComposeResult:
        yield ChartCaption(self.column)
        yield Sparkline([], summary_function=mean)

    def on_mount(self) -> None:
        self._apply()

    def show(self, summary: ColumnSummary) -> None:
        """Show ``summary``; kept for ``on_mount`` if it comes before the chart is composed."""
        self.summary = summary
        self._apply()

    def _apply(self) -> None:
        if self.summary is None:
            return
        try:
            sparkline, caption = self.query_one(Sparkline), self.query_one(ChartCaption)
        except NoMatches:  # not composed yet: on_mount applies it
            return
        sparkline.data = self.summary.points
        caption.summary = self.summary
        caption.refresh()


class ColumnCharts(VerticalScroll):
    """The charts of the current stream; a hint when it has no numeric columns."""

    can_focus = False

    def set_columns(self, columns: Sequence[str]) -> None:
        self.remove_children()
        if columns:
            self.mount_all(ColumnChart(column) for column in columns)
        else:
            self.mount(Label("No numeric columns to chart.", classes="charts-empty"))

    def show(self, summaries: Sequence[ColumnSummary]) -> None:
        charts = {chart.column: chart for chart in self.query(ColumnChart)}
        for summary in summaries:
            chart = charts.get(summary.name)
            if chart is not None:
                chart.show(summary)

    def charts(self) -> list[ColumnChart]:
        return list(self.query(ColumnChart))
