"""``streamkit gateway up``: run the multi-tenant router."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamkit.config import DEFAULT_CONFIG, ConfigError, load
from streamkit.lifecycle import log_crashes, run_until_signal
from streamkit.logs import LogFormat, configure_logging
from streamkit.security import is_loopback

app = typer.Typer(
    help="Run the gateway that routes Arrow streams to clients.", no_args_is_help=True
)


@app.command()
def up(
    config: Annotated[Path, typer.Option(help="Configuration file.")] = Path(DEFAULT_CONFIG),
    host: Annotated[str | None, typer.Option(help="Address to bind (overrides the file).")] = None,
    flight_port: Annotated[
        int | None, typer.Option(help="Arrow Flight port; 0 picks a free one.")
    ] = None,
    http_port: Annotated[
        int | None, typer.Option(help="HTTP/WebSocket port; 0 picks a free one.")
    ] = None,
    insecure: Annotated[
        bool, typer.Option(help="Allow a non-loopback address while some tenant has no tokens.")
    ] = False,
    log_format: Annotated[
        LogFormat, typer.Option(help="Log lines on stderr: text, or json (one object a line).")
    ] = LogFormat.text,
) -> None:
    """Start the gateway: Flight for CLIs, WebSocket + HTTP and the dashboard for browsers."""
    from streamkit.gateway import make_gateway

    configure_logging(log_format)
    log_crashes()
    try:
        settings = load(config, host=host, flight_port=flight_port, http_port=http_port)
    except ConfigError as exc:
        typer.echo(f"streamkit: {exc}", err=True)
        raise typer.Exit(1) from None
    for warning in settings.warnings:
        typer.echo(f"streamkit: warning: {settings.source}: {warning}", err=True)
    open_tenants = [n for n, t in settings.tenants.items() if not t.tokens]
    if not is_loopback(settings.host) and open_tenants and not insecure:
        typer.echo(
            f"streamkit: refusing to serve {settings.host}: tenants without tokens "
            f"({', '.join(open_tenants)}) would be readable by anyone on the network "
            "(add tokens, or pass --insecure to do it anyway)",
            err=True,
        )
        raise typer.Exit(1)
    try:
        gateway = make_gateway(settings)
    except Exception as exc:  # e.g. a port in use
        typer.echo(f"streamkit: cannot start the gateway: {exc}", err=True)
        raise typer.Exit(1) from None
    tenants = ", ".join(settings.tenants)
    typer.echo(f"gateway up: tenants {tenants}", err=True)
    typer.echo(f"  dashboard  {gateway.http_url}/", err=True)
    typer.echo(f"  flight     {gateway.flight_url}", err=True)
    run_until_signal([gateway.stop])
