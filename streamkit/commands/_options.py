"""Options client commands share: where the gateway is, how to prove who we are, and (for
the commands that print data) the output format and file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamkit.formats import Format

GatewayOption = Annotated[
    str | None,
    typer.Option(
        help="Gateway URL (default: $STREAMKIT_GATEWAY or grpc://localhost:8815).",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(help="Bearer token (default: $STREAMKIT_TOKEN).", show_default=False),
]
TlsCaOption = Annotated[
    Path | None, typer.Option(help="CA certificate to verify a grpc+tls:// gateway.")
]
FormatOption = Annotated[
    Format | None,
    typer.Option(
        "--format",
        "-f",
        case_sensitive=False,
        help="Output format (default: table on a terminal, csv when piped, or from the"
        " --output extension).",
        show_default=False,
    ),
]
OutputOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Write to FILE (replaced when complete), not stdout."),
]
