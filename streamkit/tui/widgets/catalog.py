"""Left region: the tree of tenants and their datasets."""

from __future__ import annotations

from itertools import groupby

from rich.text import Text
from textual.widgets import Tree

from streamkit.tui.flight_data import DatasetEntry
from streamkit.tui.widgets._format import count, size


class DatasetTree(Tree[DatasetEntry | None]):
    """Tenants → datasets, each with its rows and size; ``node.data`` is the dataset."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("gateway", id=id)
        self.show_root = False
        self.guide_depth = 2

    def on_mount(self) -> None:
        self.border_title = "Datasets"

    def show_datasets(self, entries: list[DatasetEntry]) -> None:
        """Replace the tree; the cursor stays on the same dataset if it still exists."""
        current = self.cursor_node.data if self.cursor_node is not None else None
        self.clear()
        keep = None
        for tenant, group in groupby(entries, key=lambda entry: entry.tenant):
            datasets = list(group)
            label = Text.assemble((tenant, "bold"), (f"  {len(datasets)}", "dim"))
            node = self.root.add(label, expand=True)
            for entry in datasets:
                leaf = node.add_leaf(dataset_label(entry), data=entry)
                if current is not None and entry.key == current.key:
                    keep = leaf
        self.border_subtitle = f"{len(entries)} datasets"
        if keep is not None:
            self.call_after_refresh(self.move_cursor, keep)
        else:
            self.call_after_refresh(self._first_dataset)

    def _first_dataset(self) -> None:
        """Put the cursor on the first dataset, so ``enter`` streams something at once."""
        if self.cursor_line <= 0 and self.last_line >= 1:
            self.cursor_line = 1

    def show_unreachable(self) -> None:
        self.clear()
        self.border_subtitle = "unavailable"

    def selected_dataset(self) -> DatasetEntry | None:
        node = self.cursor_node
        return node.data if node is not None else None


def dataset_label(entry: DatasetEntry) -> Text:
    details = f"{count(entry.rows)} rows · {size(entry.bytes)}"
    if entry.rows < 0:
        details = size(entry.bytes)
    return Text.assemble(entry.dataset, ("  " + details, "dim"))
