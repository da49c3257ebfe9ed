"""Left region: the tree of tenants and their datasets."""

from __future__ import annotations

from itertools import groupby

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from streamkit.tui.flight_data import DatasetEntry
from streamkit.tui.widgets._format import short_count, size


class DatasetTree(Tree[DatasetEntry | None]):
    """Tenants → datasets, each with its rows and size; ``node.data`` is the dataset.

    Datasets in a namespace (``archive/2025/q1_sales``) sit under a folder node, which keeps
    labels short enough for a narrow column.
    """

    BINDINGS = [Binding("enter", "select_cursor", "Stream")]  # noqa: RUF012

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
            tenant_node = self.root.add(label, expand=True)
            folders: dict[str, TreeNode[DatasetEntry | None]] = {}
            for entry in datasets:
                folder, _, name = entry.dataset.rpartition("/")
                parent = tenant_node
                if folder:  # datasets in a namespace (`archive/2025/q1`) under a folder node
                    if folder not in folders:
                        folders[folder] = tenant_node.add(Text(folder + "/", "italic"), expand=True)
                    parent = folders[folder]
                leaf = parent.add_leaf(dataset_label(name, entry), data=entry)
                if current is not None and entry.key == current.key:
                    keep = leaf
        self.border_subtitle = f"{len(entries)} datasets"
        if keep is not None:
            self.call_after_refresh(self.move_cursor, keep)
        else:
            self.call_after_refresh(self._first_dataset)

    def _first_dataset(self) -> None:
        """Put the cursor on the first dataset, so ``enter`` streams something at once."""
        if self.selected_dataset() is not None:  # the user got there first
            return
        for line in range(self.last_line + 1):
            node = self.get_node_at_line(line)
            if node is not None and node.data is not None:
                self.move_cursor(node)
                return

    def datasets(self) -> list[DatasetEntry]:
        """Every dataset in the tree, in tree order."""
        found: list[DatasetEntry] = []
        stack = list(reversed(self.root.children))
        while stack:
            node = stack.pop()
            if node.data is not None:
                found.append(node.data)
            stack.extend(reversed(node.children))
        return found

    def node_of(self, key: str) -> TreeNode[DatasetEntry | None] | None:
        """The node of the dataset ``tenant/dataset``."""
        stack = list(self.root.children)
        while stack:
            node = stack.pop()
            if node.data is not None and node.data.key == key:
                return node
            stack.extend(node.children)
        return None

    def show_unreachable(self) -> None:
        self.clear()
        self.border_subtitle = "unavailable"

    def selected_dataset(self) -> DatasetEntry | None:
        node = self.cursor_node
        return node.data if node is not None else None


def dataset_label(name: str, entry: DatasetEntry) -> Text:
    details = (
        size(entry.bytes)
        if entry.rows < 0
        else f"{short_count(entry.rows)} rows · {size(entry.bytes)}"
    )
    return Text.assemble(name, ("  " + details, "dim"))
