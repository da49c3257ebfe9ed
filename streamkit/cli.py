"""The ``streamkit`` command: one typer app, one module per command group."""

from __future__ import annotations

import typer

from streamkit.commands import certs, connector, gateway, service
from streamkit.commands.bench import bench
from streamkit.commands.ls import ls
from streamkit.commands.publish import publish
from streamkit.commands.query import query
from streamkit.commands.sql import sql
from streamkit.commands.top import top
from streamkit.commands.tui import tui

app = typer.Typer(
    help="Stream columnar data files as Apache Arrow, from connectors through a gateway.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(connector.app, name="connector")
app.add_typer(gateway.app, name="gateway")
app.add_typer(certs.app, name="certs")
app.add_typer(service.app, name="service")
app.command("ls")(ls)
app.command("query")(query)
app.command("sql")(sql)
app.command("publish")(publish)
app.command("bench")(bench)
app.command("tui")(tui)
app.command("top")(top)


def main() -> None:
    app()
