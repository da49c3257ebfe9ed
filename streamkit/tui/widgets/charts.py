"""Middle of the main region: one sparkline per numeric column, with latest, min and max."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Label, Sparkline

from streamkit.tui.series import ColumnSummary
from streamkit.tui.widgets._format import number


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


class ColumnChart(Vertical):
    """A column's name and latest/min/max above its sparkline."""

    def __init__(self, column: str) -> None:
        super().__init__(classes="chart")
        self.column = column
        self.summary: ColumnSummary | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="chart-caption"):
            yield Label(self.column, classes="chart-name", markup=False)
            yield Label("", classes="chart-values")
        yield Sparkline([], summary_function=mean)

    def show(self, summary: ColumnSummary) -> None:
        self.summary = summary
        self.query_one(Sparkline).data = summary.points
        self.query_one(".chart-values", Label).update(
            Text.assemble(
                ("latest ", "dim"),
                (number(summary.latest), "bold"),
                ("  min ", "dim"),
                number(summary.minimum),
                ("  max ", "dim"),
                number(summary.maximum),
            )
        )


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
            if chart is not None and chart.is_mounted:
                chart.show(summary)

    def charts(self) -> list[ColumnChart]:
        return list(self.query(ColumnChart))
