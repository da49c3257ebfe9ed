"""``streamkit publish TENANT/DATASET [FILE|-]``: push a file or stdin to a live dataset.

Batches go out with one DoPut as the input is read, so ``tail -f app.log.jsonl | streamkit
publish demo/logs`` publishes each line within about ``--linger`` of it being written.
CSV and NDJSON are read as lines: a reader thread hands over whatever complete lines a read
returns, and a batch is cut after ``--batch-rows`` lines or ``--linger`` seconds after its
first line, whichever comes first. Each batch is parsed by pyarrow; the schema is fixed by
the first batch, so later batches are parsed to the same types. Arrow input is an IPC stream,
forwarded batch by batch.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, BinaryIO

import pyarrow as pa
import pyarrow.flight as flight
import typer

from streamkit.client import (
    EXIT_CODES_HELP,
    EXIT_ERROR,
    EXIT_USAGE,
    ClientError,
    GatewayClient,
    parse_target,
)
from streamkit.commands._options import GatewayOption, TlsCaOption, TokenOption
from streamkit.commands._run import reported
from streamkit.ingest import arrow_batches, text_batches

READ_BYTES = 64 * 1024
MAX_BATCH_BYTES = 16 * 1024 * 1024
_EOF = None


class InputFormat(StrEnum):
    csv = "csv"
    ndjson = "ndjson"
    arrow = "arrow"


EXTENSIONS = {
    ".csv": InputFormat.csv,
    ".jsonl": InputFormat.ndjson,
    ".ndjson": InputFormat.ndjson,
    ".json": InputFormat.ndjson,
    ".arrows": InputFormat.arrow,
    ".arrow": InputFormat.arrow,
    ".feather": InputFormat.arrow,
    ".ipc": InputFormat.arrow,
}

HELP = f"""Publish FILE (or stdin: - or nothing) to the live dataset TENANT/DATASET.

Rows are sent batch by batch as they are read: `tail -f app.log.jsonl | streamkit publish \
demo/logs` publishes each new line within about --linger seconds. The format comes from \
--format, else from the file extension (.csv, .jsonl/.ndjson, .arrows/.arrow), else NDJSON. \
The first batch fixes the dataset's schema; a line that does not fit it, or a dataset \
with another schema, ends the command with exit code 6. Ctrl-C stops reading; what was \
sent stays published. A summary (rows, batches) goes to stderr.

{EXIT_CODES_HELP}
"""


def publish(
    target: Annotated[str, typer.Argument(metavar="TENANT/DATASET", help="Where to publish.")],
    source: Annotated[
        str, typer.Argument(metavar="[FILE|-]", help="Input file; - or nothing for stdin.")
    ] = "-",
    format: Annotated[
        InputFormat | None,
        typer.Option(
            "--format",
            "-f",
            case_sensitive=False,
            help="Input format (default: from the file extension, else ndjson).",
            show_default=False,
        ),
    ] = None,
    batch_rows: Annotated[
        int, typer.Option(min=1, help="CSV/NDJSON: at most this many lines per batch.")
    ] = 10_000,
    linger: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="CSV/NDJSON: send a batch at most this many seconds after its first line arrived.",
        ),
    ] = 0.1,
    gateway: GatewayOption = None,
    token: TokenOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    sent = _Sent()
    try:
        with reported(interrupted="interrupted; what was sent stays published"):
            tenant, dataset = parse_target(target)
            fmt = _resolve_format(format, source)
            with (
                _open(source) as stream,
                GatewayClient(gateway, token=token, tls_ca=tls_ca) as client,
            ):
                batches = (
                    arrow_batches(stream)
                    if fmt is InputFormat.arrow
                    else text_batches(stream, fmt is InputFormat.csv, batch_rows, linger)
                )
                _send(client, tenant, dataset, batches, sent)
    finally:
        typer.echo(
            f"published {sent.rows:,} rows in {sent.batches:,} batches to {target}", err=True
        )


publish.__doc__ = HELP


class _Sent:
    rows = 0
    batches = 0


def _resolve_format(given: InputFormat | None, source: str) -> InputFormat:
    if given is not None:
        return given
    if source == "-":
        return InputFormat.ndjson
    path = Path(source)
    suffixes = [s.lower() for s in path.suffixes]
    for suffix in reversed(suffixes):
        if suffix in EXTENSIONS:
            return EXTENSIONS[suffix]
    raise ClientError(
        f"cannot tell the format of {path.name!r} from its extension; use --format", EXIT_USAGE
    )


class _open:
    """stdin (binary) for ``-``, else the file, closed afterwards."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.handle: BinaryIO | None = None

    def __enter__(self) -> BinaryIO:
        if self.source == "-":
            return sys.stdin.buffer
        try:
            self.handle = open(self.source, "rb")
        except OSError as exc:
            raise ClientError(f"cannot read {self.source}: {exc.strerror}", EXIT_ERROR) from None
        return self.handle

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()


def _send(
    client: GatewayClient,
    tenant: str,
    dataset: str,
    batches: Iterator[pa.RecordBatch],
    sent: _Sent,
) -> None:
    """One DoPut, opened with the first batch's schema; each batch written as it comes."""
    writer = None
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            with client.errors():
                if writer is None:
                    writer = client.publish(tenant, dataset, batch.schema)
                writer.write_batch(batch)
            sent.rows += batch.num_rows
            sent.batches += 1
    except KeyboardInterrupt:
        _finish(client, writer)
        raise
    except BaseException:
        if writer is not None:
            with contextlib.suppress(Exception):  # the first error is the one to report
                writer.close()
        raise
    _finish(client, writer)


def _finish(client: GatewayClient, writer: flight.FlightStreamWriter | None) -> None:
    if writer is None:
        return
    with client.errors():
        writer.done_writing()
        writer.close()
