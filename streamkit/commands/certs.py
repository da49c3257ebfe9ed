"""``streamkit certs dev DIR``: certificates for trying TLS locally."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Make certificates for trying TLS.", no_args_is_help=True)


@app.command()
def dev(
    directory: Annotated[Path, typer.Argument(help="Folder to write the files to.")],
    host: Annotated[
        list[str] | None,
        typer.Option(help="Name or address the server certificate is for (repeatable)."),
    ] = None,
) -> None:
    """Write a local CA (ca.pem/.key), a server pair and a client pair (mutual TLS)."""
    from streamkit.certs import write_dev_certs

    try:
        written = write_dev_certs(directory, host)
    except OSError as exc:
        typer.echo(f"streamkit: cannot write to {directory}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    for path in written:
        typer.echo(str(path))
