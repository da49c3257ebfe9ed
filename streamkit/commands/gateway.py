"""``streamkit gateway up``: run the multi-tenant router."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from streamkit.commands._options import GatewayOption, TlsCaOption, TokenOption
from streamkit.commands._run import reported
from streamkit.config import DEFAULT_CONFIG, ConfigError, GatewayConfig, load
from streamkit.lifecycle import log_crashes, run_until_signal
from streamkit.logs import LogFormat, configure_logging, say
from streamkit.security import is_loopback

if TYPE_CHECKING:
    from streamkit.gateway import Gateway

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

    def read_config() -> GatewayConfig:
        """The file with the command line's overrides; read again by each reload."""
        settings = load(config, host=host, flight_port=flight_port, http_port=http_port)
        for warning in settings.warnings:
            say(f"streamkit: warning: {settings.source}: {warning}", logging.WARNING)
        open_tenants = [n for n, t in settings.tenants.items() if not t.tokens]
        if not is_loopback(settings.host) and open_tenants and not insecure:
            raise ConfigError(
                f"refusing to serve {settings.host}: tenants without tokens "
                f"({', '.join(open_tenants)}) would be readable by anyone on the network "
                "(add tokens, or pass --insecure to do it anyway)"
            )
        return settings

    try:
        settings = read_config()
    except ConfigError as exc:
        say(f"streamkit: {exc}", logging.ERROR)
        raise typer.Exit(1) from None
    try:
        gateway = make_gateway(settings)
    except Exception as exc:  # e.g. a port in use
        say(f"streamkit: cannot start the gateway: {exc}", logging.ERROR)
        raise typer.Exit(1) from None
    gateway.loader = read_config
    tenants = ", ".join(settings.tenants)
    say(f"gateway up: tenants {tenants}")
    say(f"  dashboard  {gateway.http_url}/")
    say(f"  flight     {gateway.flight_url}")
    run_until_signal([gateway.stop], on_hangup=lambda: _reload(gateway))


def _reload(gateway: Gateway) -> None:
    """SIGHUP: a refused file is logged (``file: key: reason``) and the gateway runs on."""
    with contextlib.suppress(ConfigError):  # already logged by the gateway
        gateway.reload()


@app.command()
def reload(
    gateway: GatewayOption = None,
    token: TokenOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    """Have a running gateway read its configuration again, as ``kill -HUP`` does: tenants
    added, removed or changed without dropping the others' streams. Only from the gateway's
    own machine; a bad file is refused and the running configuration kept."""
    from streamkit.client import GatewayClient

    with reported(), GatewayClient(gateway, token=token, tls_ca=tls_ca) as client:
        changes = client.reload()
    said = [f"{what.replace('_', ' ')}: {', '.join(names)}" for what, names in changes.items()]
    said = [line for line, names in zip(said, changes.values(), strict=True) if names]
    typer.echo(f"reloaded ({'; '.join(said) or 'nothing changed'})", err=True)
