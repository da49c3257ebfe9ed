"""``streamkit tui``: browse the gateway's datasets and watch one stream in, live."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamkit.client import TOKEN_ENV, ClientError
from streamkit.commands._options import GatewayOption


def tui(
    gateway: GatewayOption = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="Bearer token for locked tenants (default: $STREAMKIT_TOKEN).",
            envvar=TOKEN_ENV,
            show_default=False,
            show_envvar=False,
        ),
    ] = None,
    tls_ca: Annotated[
        Path | None, typer.Option(help="CA certificate to verify a grpc+tls:// gateway.")
    ] = None,
) -> None:
    """Terminal UI: tenants and datasets on the left; enter streams one, f follows it live."""
    from streamkit.tui.app import make_tui  # Textual only here, never in headless code

    try:
        app = make_tui(gateway, token=token, tls_ca=tls_ca)
    except ClientError as exc:
        typer.echo(f"streamkit: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from None
    app.run()
