"""``streamkit sql TENANT "SELECT …"``: one SQL query, run at the tenant's connector."""

from __future__ import annotations

from typing import Annotated

import typer

from streamkit.client import EXIT_CODES_HELP, GatewayClient
from streamkit.commands._options import (
    FormatOption,
    GatewayOption,
    OutputOption,
    TlsCaOption,
    TokenOption,
)
from streamkit.commands._run import reported
from streamkit.commands.query import (
    open_sink,
    refuse_binary_to_terminal,
    resolve_format,
    write_preview,
    write_stream,
)
from streamkit.formats import Format
from streamkit.query import Query


def sql(
    tenant: Annotated[str, typer.Argument(help="The tenant whose datasets are the tables.")],
    statement: Annotated[
        str,
        typer.Argument(
            metavar="SQL",
            help='One SELECT; datasets are tables, names with / quoted: "sales/2024".',
        ),
    ],
    format: FormatOption = None,
    output: OutputOption = None,
    gateway: GatewayOption = None,
    token: TokenOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    to_stdout = output is None or str(output) == "-"
    fmt = resolve_format(format, None if to_stdout else output)
    refuse_binary_to_terminal(fmt, to_stdout)
    with reported():
        q = Query(dataset="", tenant=tenant, sql=statement)
        with (
            GatewayClient(gateway, token=token, tls_ca=tls_ca) as client,
            open_sink(None if to_stdout else output) as sink,
        ):
            if fmt is Format.table:
                write_preview(client, q, sink)
            else:
                write_stream(client, q, fmt, sink)


sql.__doc__ = f"""Run one SELECT over TENANT's datasets, at its connector; print the result as
table, CSV, JSON, NDJSON, Parquet or Arrow, streamed batch by batch.

Only SELECT (and WITH … SELECT) runs; files, URLs, COPY, SET and DDL are refused (exit 6). \
An unknown table is "not found" (exit 3).

{EXIT_CODES_HELP}
"""
