"""``streamkit top``: the gateway's tenants live, from its metrics (like htop)."""

from __future__ import annotations

from typing import Annotated

import typer

from streamkit.client import ClientError
from streamkit.commands._options import GatewayOption, TlsCaOption, TokenOption


def top(
    gateway: GatewayOption = None,
    token: TokenOption = None,
    tls_ca: TlsCaOption = None,
    interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between two scrapes of the gateway.")
    ] = 0.5,
) -> None:
    """Live view of the gateway: per tenant its connector, open streams, MB/s and rows/s
    (sparklines), errors, refusals and live followers. s sorts (or n/o/m/r/e), p pauses,
    q quits.

    Reads the gateway's metrics action, served to hosts in the gateway's metrics_allow
    (default: loopback) or with --token equal to its metrics_token.
    """
    from streamkit.tui.top_app import make_top  # Textual only here, never in headless code

    try:
        app = make_top(gateway, token=token, tls_ca=tls_ca, interval=interval)
    except ClientError as exc:
        typer.echo(f"streamkit: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from None
    app.run()
