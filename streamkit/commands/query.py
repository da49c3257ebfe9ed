"""``streamkit query TENANT/DATASET``: stream a dataset to stdout or a file, batch by batch."""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any, BinaryIO, cast

import typer

from streamkit.batches import batch_bytes
from streamkit.client import (
    EXIT_CODES_HELP,
    EXIT_ERROR,
    EXIT_USAGE,
    ClientError,
    GatewayClient,
    parse_target,
    read_chunks,
)
from streamkit.commands._options import (
    FormatOption,
    GatewayOption,
    OutputOption,
    TlsCaOption,
    TokenOption,
)
from streamkit.commands._progress import Progress
from streamkit.commands._run import reported
from streamkit.formats import (
    Format,
    dumps,
    format_for_path,
    make_writer,
)
from streamkit.formats import rows as batch_rows
from streamkit.live_wire import skipped_rows
from streamkit.query import Query

PREVIEW_ROWS = 100


class FollowFrom(StrEnum):
    start = "start"
    end = "end"


class OnLag(StrEnum):
    error = "error"
    skip = "skip"


HELP = f"""Stream TENANT/DATASET as table, CSV, JSON, NDJSON, Parquet or Arrow.

Data goes to stdout (or --output FILE), batch by batch: the first rows arrive before the \
last, and memory stays bounded whatever the dataset size. Progress goes to stderr when it \
is a terminal. The default format is a table preview on a terminal, CSV when piped.

--follow (live datasets and growing files): print the existing rows (or none, with --from \
end), then each new batch as it arrives, flushed, like tail -f; CSV (header once) unless \
--format says ndjson, json or arrow. It runs until Ctrl-C, which ends it quietly with exit \
130; a closed pipe (| head) ends it with exit 0. A reader that falls too far behind is \
disconnected (exit 4), or with --on-lag skip jumps ahead with a note on stderr.

{EXIT_CODES_HELP}
"""


def query(
    target: Annotated[str, typer.Argument(metavar="TENANT/DATASET", help="What to read.")],
    format: FormatOption = None,
    columns: Annotated[
        str | None, typer.Option("--columns", "-c", help="Only these columns: a,b,c.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=0, help="At most N rows.")
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            "-w",
            help="Only rows matching this SQL expression, filtered at the connector"
            " (\"amount > 100 AND region = 'EU'\"); with --follow too.",
        ),
    ] = None,
    output: OutputOption = None,
    gateway: GatewayOption = None,
    token: TokenOption = None,
    tls_ca: TlsCaOption = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-F",
            help="Live: after the existing rows, print new rows as they arrive (like tail -f)"
            " until Ctrl-C (exit 130).",
        ),
    ] = False,
    start: Annotated[
        FollowFrom | None,
        typer.Option("--from", help="With --follow: start (history first, default) or end."),
    ] = None,
    on_lag: Annotated[
        OnLag | None,
        typer.Option(
            help="With --follow, when this reader falls behind: error (exit 4, default) or"
            " skip ahead (a note on stderr says how many rows were missed)."
        ),
    ] = None,
) -> None:
    to_stdout = output is None or str(output) == "-"
    if (start or on_lag) and not follow:
        typer.echo("streamkit: --from and --on-lag need --follow", err=True)
        raise typer.Exit(EXIT_USAGE)
    if follow and not to_stdout:
        typer.echo("streamkit: --follow writes to stdout; redirect it to a file", err=True)
        raise typer.Exit(EXIT_USAGE)
    fmt = resolve_format(format, None if to_stdout else output)
    if follow and fmt is Format.table:
        fmt = Format.csv  # followed rows are printed as they come: CSV text, header once
    if follow and fmt is Format.parquet:
        typer.echo("streamkit: --follow cannot write parquet (it ends only at the end)", err=True)
        raise typer.Exit(EXIT_USAGE)
    refuse_binary_to_terminal(fmt, to_stdout)
    # Ctrl-C is how a follow ends: quietly, with exit 130.
    with reported(interrupted=None if follow else "interrupted"):
        tenant, dataset = parse_target(target)
        wanted = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
        if columns is not None and not wanted:
            raise ClientError("--columns needs at least one column name", EXIT_USAGE)
        q = Query(
            dataset=dataset,
            tenant=tenant,
            columns=tuple(wanted) if wanted else None,
            limit=limit,
            follow=follow or None,
            from_=start.value if start else None,
            on_lag=on_lag.value if on_lag else None,
            where=where,
        )
        with (
            GatewayClient(gateway, token=token, tls_ca=tls_ca) as client,
            open_sink(None if to_stdout else output) as sink,
        ):
            if follow:
                _follow(client, q, fmt, sink)
            elif fmt is Format.table:
                write_preview(client, q, sink)
            else:
                write_stream(client, q, fmt, sink)


query.__doc__ = HELP


def _follow(client: GatewayClient, q: Query, fmt: Format, sink: BinaryIO) -> None:
    """Print each batch as it arrives, flushed, until the stream ends or Ctrl-C.

    Chunks are read in a thread so Ctrl-C reaches the main thread at once; the bounded
    queue keeps a slow stdout pushing back on the stream (and so on the follower's queue).
    """
    _, reader = client.open(q)
    chunks: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=4)

    def read() -> None:
        try:
            while True:
                chunks.put(("chunk", reader.read_chunk()))
        except StopIteration:
            chunks.put(("end", None))
        except BaseException as exc:
            chunks.put(("error", exc))

    threading.Thread(target=read, name="follow-reader", daemon=True).start()
    writer = None
    try:
        with client.errors():
            writer = make_writer(fmt, sink, reader.schema)
            while True:
                try:
                    kind, item = chunks.get(timeout=0.5)
                except queue.Empty:
                    continue
                if kind == "end":
                    break
                if kind == "error":
                    raise item
                if item.app_metadata:
                    _note_skipped(skipped_rows(item.app_metadata))
                if item.data is not None and item.data.num_rows:
                    writer.write(item.data)
    except KeyboardInterrupt:
        reader.cancel()
        if writer is not None:
            with contextlib.suppress(OSError, ValueError):
                writer.close()
        raise
    except BaseException:
        reader.cancel()
        raise
    writer.close()


def _note_skipped(skipped: int) -> None:
    if skipped:
        typer.echo(
            f"streamkit: skipped {skipped:,} rows (this reader fell behind the live dataset)",
            err=True,
        )


def refuse_binary_to_terminal(fmt: Format, to_stdout: bool) -> None:
    if fmt in (Format.arrow, Format.parquet) and to_stdout and sys.stdout.isatty():
        typer.echo(
            f"streamkit: not writing binary {fmt.value} to a terminal; pipe it or use --output",
            err=True,
        )
        raise typer.Exit(EXIT_USAGE)


def resolve_format(given: Format | None, output: Path | None) -> Format:
    if given is not None:
        return given
    if output is not None:
        fmt = format_for_path(output)
        if fmt is None:
            typer.echo(
                f"streamkit: cannot tell the format of {output.name!r} from its extension;"
                " use --format",
                err=True,
            )
            raise typer.Exit(EXIT_USAGE)
        return fmt
    return Format.table if sys.stdout.isatty() else Format.csv


@contextmanager
def open_sink(path: Path | None) -> Iterator[BinaryIO]:
    """stdout, or a temporary file next to ``path`` renamed over it once complete."""
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        handle = open(partial, "wb")  # noqa: SIM115 - closed below, renamed on success
    except OSError as exc:
        raise ClientError(f"cannot write {path}: {exc.strerror}", EXIT_ERROR) from None
    try:
        with handle:
            yield handle
        os.replace(partial, path)
    except OSError as exc:
        raise ClientError(f"cannot write {path}: {exc.strerror}", EXIT_ERROR) from None
    finally:
        partial.unlink(missing_ok=True)


def write_stream(client: GatewayClient, q: Query, fmt: Format, sink: BinaryIO) -> None:
    info, reader = client.open(q)
    total = info.total_records if info.total_records >= 0 else None
    complete = False
    try:
        with client.errors(), Progress(q.label(), total, data=True) as progress:
            writer = make_writer(fmt, sink, reader.schema)
            for batch in read_chunks(reader):
                writer.write(batch)
                progress.advance(batch.num_rows, batch_bytes(batch))
            writer.close()
            complete = True
    finally:
        if not complete:  # a closed pipe, Ctrl-C, a failed write: stop the upstream read too
            reader.cancel()


def write_preview(client: GatewayClient, q: Query, sink: BinaryIO) -> None:
    """The first rows as a rich table; a note on stderr says how many more there are."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    info = client.info(q)
    shown = PREVIEW_ROWS if q.limit is None else min(q.limit, PREVIEW_ROWS)
    # One row more than shown says whether there are more (SQL says its own LIMIT: its
    # stream is cancelled once the rows are in).
    _, reader = client.open(q if q.sql is not None else replace(q, limit=shown + 1))
    rows: list[dict[str, str | None]] = []
    with client.errors():
        for batch in read_chunks(reader):
            rows.extend(batch_rows(batch))
            if len(rows) > shown:
                reader.cancel()
                break
    more = len(rows) > shown and shown < (q.limit if q.limit is not None else shown + 1)
    rows = rows[:shown]
    table = Table(show_lines=False, header_style="bold", row_styles=["", "dim"])
    for field in reader.schema:
        table.add_column(
            f"{escape(field.name)}\n[dim]{escape(str(field.type))}[/dim]",
            overflow="ellipsis",
            no_wrap=True,
        )
    for row in rows:
        table.add_row(*(_cell(v) for v in row.values()))
    text = _TextSink(sink)
    console = Console(
        file=cast(IO[str], text), force_terminal=sys.stdout.isatty() and text.is_stdout
    )
    console.print(table)
    total = info.total_records
    if more:
        of = f" of {total:,}" if total >= 0 else ""
        typer.echo(
            f"showing the first {shown:,}{of} rows; use --format csv (or another format)"
            " or --output FILE for all of them",
            err=True,
        )
    else:
        typer.echo(f"{len(rows):,} rows", err=True)


def _cell(value: object) -> str:
    if value is None:
        return "[dim italic]null[/]"
    if isinstance(value, dict | list):
        value = dumps(value)
    from rich.markup import escape

    return escape(str(value))


class _TextSink:
    """A text file over a binary sink, for rich."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink = sink
        self.is_stdout = sink is sys.stdout.buffer

    def write(self, text: str) -> int:
        self.sink.write(text.encode("utf-8"))
        return len(text)

    def flush(self) -> None:
        self.sink.flush()

    def isatty(self) -> bool:
        return self.is_stdout and sys.stdout.isatty()
