"""``streamkit connector serve``: expose the data files under ROOT over Arrow Flight."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from streamkit.lifecycle import log_crashes, run_until_signal
from streamkit.logs import LogFormat, configure_logging, say
from streamkit.readers import DEFAULT_BATCH_BYTES, DEFAULT_BATCH_ROWS
from streamkit.secrets import SecretError, resolve_secret
from streamkit.security import is_loopback, parse_networks

app = typer.Typer(help="Serve a folder of data files over Arrow Flight.", no_args_is_help=True)


def fail(message: str) -> typer.Exit:
    say(f"streamkit: {message}", logging.ERROR)
    return typer.Exit(1)


@app.command()
def serve(
    root: Annotated[Path, typer.Argument(help="Folder whose files become datasets.")] = Path("."),
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option(help="Port to bind (default 50051; none with --dial); 0 picks a free one."),
    ] = None,
    batch_rows: Annotated[
        int, typer.Option(min=1, help="Most rows per streamed record batch.")
    ] = DEFAULT_BATCH_ROWS,
    batch_bytes: Annotated[
        int,
        typer.Option(
            min=1024,
            help="About this much Arrow data per batch: bigger forwards faster, smaller keeps"
            " slow readers' memory down.",
        ),
    ] = DEFAULT_BATCH_BYTES,
    tls_cert: Annotated[Path | None, typer.Option(help="Server certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Server private key (PEM).")] = None,
    tls_client_ca: Annotated[
        Path | None, typer.Option(help="Require client certificates signed by this CA.")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(help="Secret every request must bring: env:NAME or file:PATH."),
    ] = None,
    allow: Annotated[
        list[str] | None, typer.Option(help="Peer network allowed to connect (repeatable).")
    ] = None,
    insecure: Annotated[
        bool, typer.Option(help="Allow a non-loopback address without --token.")
    ] = False,
    dial: Annotated[
        str | None,
        typer.Option(
            help="Dial the gateway instead of being reached: ws(s)://GATEWAY:8080/connect"
            " (behind NAT or a firewall); needs --tenant and --token."
        ),
    ] = None,
    tenant: Annotated[
        str | None, typer.Option(help="With --dial: the tenant this connector serves.")
    ] = None,
    tls_ca: Annotated[
        Path | None, typer.Option(help="With --dial wss://: the CA that signed the gateway.")
    ] = None,
    sql_memory_mb: Annotated[
        int,
        typer.Option(
            min=16, help="Memory each SQL query may use before it spills to disk or fails."
        ),
    ] = 256,
    spill_dir: Annotated[
        Path | None,
        typer.Option(
            help="Let SQL queries that outgrow their memory spill into this folder (its size"
            " is not bounded); without it they fail."
        ),
    ] = None,
    log_format: Annotated[
        LogFormat, typer.Option(help="Log lines on stderr: text, or json (one object a line).")
    ] = LogFormat.text,
) -> None:
    """Serve ROOT's CSV, JSON, Parquet and Arrow files as Flight datasets."""
    from streamkit.connector import ConnectorServer

    configure_logging(log_format)
    log_crashes()
    if not root.is_dir():
        raise fail(f"{root}: not a folder")
    if spill_dir is not None and not spill_dir.is_dir():
        raise fail(f"--spill-dir {spill_dir}: not a folder")
    if (tls_cert is None) != (tls_key is None):
        raise fail("--tls-cert and --tls-key go together")
    if tls_client_ca is not None and tls_cert is None:
        raise fail("--tls-client-ca needs --tls-cert and --tls-key")
    for path in (tls_cert, tls_key, tls_client_ca):
        if path is not None and not path.is_file():
            raise fail(f"{path}: not a readable file")
    try:
        parse_networks(allow or [])
    except ValueError as exc:
        raise fail(f"--allow: {exc}") from None
    secret = None
    if token is not None:
        try:
            secret = resolve_secret(token)
        except SecretError as exc:
            raise fail(f"--token: {exc}") from None
        if secret.literal:
            say(
                "streamkit: warning: --token is a literal secret (visible in the process "
                "list); prefer env:NAME or file:PATH",
                logging.WARNING,
            )
    if dial is not None:
        if not dial.startswith(("ws://", "wss://")):
            raise fail("--dial: expected ws://GATEWAY:PORT/connect or wss://...")
        if not tenant or secret is None:
            raise fail("--dial needs --tenant and --token (the tenant's connector_token)")
        if tls_ca is not None and not tls_ca.is_file():
            raise fail(f"{tls_ca}: not a readable file")
        if tls_cert is not None:
            raise fail("--dial carries TLS on the WebSocket (wss:// and --tls-ca), not --tls-cert")
    if port is None and dial is None:
        port = 50051
    if not is_loopback(host) and secret is None and not insecure:
        raise fail(
            f"refusing to serve {host} without --token: anyone on the network could "
            "read the data (pass --insecure to do it anyway)"
        )
    # Dialing without --port: the Flight service listens on a private Unix socket only.
    private = tempfile.mkdtemp(prefix="streamkit-connector-") if port is None else None
    location = f"grpc+unix://{private}/flight.sock" if private else f"grpc://{host}:{port}"
    try:
        server = ConnectorServer(
            str(root),
            location,
            batch_rows=batch_rows,
            batch_bytes=batch_bytes,
            sql_memory=sql_memory_mb * 1024 * 1024,
            spill_dir=spill_dir,
            token=secret.value if secret else None,
            allow=allow or None,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_client_ca=tls_client_ca,
        )
    except Exception as exc:  # e.g. port in use, bad certificate: a plain ArrowException
        raise fail(f"cannot listen on {host}:{port}: {exc}") from None
    dialer = None
    if dial is not None:
        assert tenant is not None and secret is not None
        from streamkit.connector.dial import Dialer

        local: Path | tuple[str, int] = (
            Path(private, "flight.sock") if private else ("127.0.0.1", server.port)
        )
        dialer = Dialer(dial, tenant, secret.value, local, tls_ca=tls_ca).start()
        say(f"connector serving {root.resolve()} by dialing {dial} for tenant {tenant}")
    else:
        say(f"connector serving {root.resolve()} at {server.url}")

    def stop() -> None:
        if dialer is not None:
            dialer.stop()
        server.stop()
        server.shutdown()
        if private:
            shutil.rmtree(private, ignore_errors=True)

    run_until_signal([stop])
