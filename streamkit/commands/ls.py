"""``streamkit ls [TENANT]``: the datasets a gateway serves, with rows, size and columns."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

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
            health = client.health()
        if tenant:
            health = {name: state for name, state in health.items() if name == tenant}
        if as_json:
            document = {"datasets": [d.to_json() for d in datasets], "tenants": health}
            print(json.dumps(document, indent=2))
        elif sys.stdout.isatty():
            _print_table(datasets)
            _print_states(health, err=False)
        else:
            _print_states(health, err=True)
            for d in datasets:
                print(
                    f"{d.tenant}\t{d.dataset}\t{_or_empty(d.rows)}\t{_or_empty(d.bytes)}"
                    f"\t{len(d.schema)}"
                )
        sys.stdout.flush()


ls.__doc__ = f"""List tenants and datasets with rows, size and column count.

A table on a terminal; when piped, tab-separated lines (tenant, dataset, rows, bytes, \
columns; unknown counts left empty); --json for one JSON document. Tenants that are down, \
and connectors that dial in ("dialed in" / "not connected"), are named after the table \
(on stderr when piped; under "tenants" in --json).

{EXIT_CODES_HELP}
"""


def _print_states(health: dict[str, dict[str, Any]], *, err: bool) -> None:
    """One line per tenant worth a note: unreachable, or a connector that dials in."""
    for name, state in sorted(health.items()):
        connection = state.get("connection")
        if state.get("reachable") and connection is None:
            continue
        words = [connection] if connection else []
        if not state.get("reachable") and connection != "not connected":
            words.append(str(state.get("error", "unreachable")))
        typer.echo(f"tenant {name}: {'; '.join(words)}", err=err)


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
