"""``streamkit tui``: browse the gateway's datasets and watch one stream in, live."""

from __future__ import annotations

from typing import Annotated

import typer


def tui(
    gateway: Annotated[
        str | None,
        typer.Option(
            help="Gateway URL (default: $STREAMKIT_GATEWAY or grpc://localhost:8815).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Terminal UI: tenants and datasets on the left; enter streams one with live sparklines."""
    from streamkit.tui.app import make_tui  # Textual only here, never in headless code

    make_tui(gateway).run()
