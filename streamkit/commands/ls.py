"""``streamkit ls [TENANT]``: the datasets a gateway serves, with rows, size and columns."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from streamkit.client import (
    EXIT_CODES_HELP,
    DatasetListing,
    GatewayClient,
)
from streamkit.commands._options import GatewayOption, TlsCaOption, TokenOption
from streamkit.commands._run import reported


def ls(
    tenant: Annotated[
        str | None, typer.Argument(help="Only this tenant's datasets.", show_default=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    gateway: GatewayOption = None,
    token: TokenOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    with reported():
        with GatewayClient(gateway, token=token, tls_ca=tls_ca) as client:
            datasets = client.list(tenant)
        if as_json:
            print(json.dumps({"datasets": [d.to_json() for d in datasets]}, indent=2))
        elif sys.stdout.isatty():
            _print_table(datasets)
        else:
            for d in datasets:
                print(
                    f"{d.tenant}\t{d.dataset}\t{_or_empty(d.rows)}\t{_or_empty(d.bytes)}"
                    f"\t{len(d.schema)}"
                )
        sys.stdout.flush()


ls.__doc__ = f"""List tenants and datasets with rows, size and column count.

A table on a terminal; when piped, tab-separated lines (tenant, dataset, rows, bytes, \
columns; unknown counts left empty); --json for one JSON document.

{EXIT_CODES_HELP}
"""


def _or_empty(value: int | None) -> str:
    return "" if value is None else str(value)


def _print_table(datasets: list[DatasetListing]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(header_style="bold")
    table.add_column("tenant")
    table.add_column("dataset")
    table.add_column("rows", justify="right")
    table.add_column("size", justify="right")
    table.add_column("columns", justify="right")
    for d in datasets:
        table.add_row(
            d.tenant,
            d.dataset,
            "?" if d.rows is None else f"{d.rows:,}",
            "?" if d.bytes is None else human_bytes(d.bytes),
            str(len(d.schema)),
        )
    console = Console()
    console.print(table)
    if not datasets:
        console.print("[dim]no datasets[/]")


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
