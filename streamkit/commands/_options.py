"""Options every client command shares: where the gateway is and how to prove who we are."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
