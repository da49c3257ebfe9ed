"""``streamkit connector serve``: expose the data files under ROOT over Arrow Flight."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from streamkit.lifecycle import run_until_signal
from streamkit.readers import DEFAULT_BATCH_ROWS

app = typer.Typer(help="Serve a folder of data files over Arrow Flight.", no_args_is_help=True)


@app.command()
def serve(
    root: Annotated[Path, typer.Argument(help="Folder whose files become datasets.")] = Path("."),
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind; 0 picks a free one.")] = 50051,
    batch_rows: Annotated[
        int, typer.Option(min=1, help="Most rows per streamed record batch.")
    ] = DEFAULT_BATCH_ROWS,
) -> None:
    """Serve ROOT's CSV, JSON, Parquet and Arrow files as Flight datasets."""
    from streamkit.connector import ConnectorServer

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    if not root.is_dir():
        typer.echo(f"streamkit: {root}: not a folder", err=True)
        raise typer.Exit(1)
    try:
        server = ConnectorServer(str(root), f"grpc://{host}:{port}", batch_rows=batch_rows)
    except Exception as exc:  # e.g. port in use: pyarrow raises a plain ArrowException
        typer.echo(f"streamkit: cannot listen on {host}:{port}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"connector serving {root.resolve()} at grpc://{host}:{server.port}", err=True)

    def stop() -> None:
        server.stop()
        server.shutdown()

    run_until_signal([stop])
