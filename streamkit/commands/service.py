"""``streamkit service install connector|gateway -- ARGS``: run a server as a system service."""

from __future__ import annotations

import getpass
import os
import shutil
import sys
import sysconfig
from enum import StrEnum
from pathlib import Path, PureWindowsPath
from typing import Annotated

import typer

from streamkit.service_units import (
    UNIT_NAME,
    Service,
    env_names,
    literal_secrets,
    nssm_commands,
    systemd_unit,
)

app = typer.Typer(help="Run a connector or the gateway as a system service.", no_args_is_help=True)


class Kind(StrEnum):
    connector = "connector"
    gateway = "gateway"


class Platform(StrEnum):
    linux = "linux"
    windows = "windows"


SUBCOMMAND = {Kind.connector: "serve", Kind.gateway: "up"}


def fail(message: str) -> typer.Exit:
    typer.echo(f"streamkit: {message}", err=True)
    return typer.Exit(1)


def streamkit_program() -> list[str]:
    """This ``streamkit``, by absolute path: the script that runs, the one installed next to
    this Python, the one on PATH, or else ``python -m streamkit``."""
    script = "streamkit.exe" if os.name == "nt" else "streamkit"
    for candidate in (
        sys.argv[0],
        os.path.join(sysconfig.get_path("scripts"), script),
        shutil.which("streamkit"),
    ):
        if candidate and Path(candidate).stem == "streamkit" and Path(candidate).is_file():
            return [str(Path(candidate).absolute())]
    return [sys.executable, "-m", "streamkit"]


def default_platform() -> Platform:
    return Platform.windows if sys.platform == "win32" else Platform.linux


@app.command()
def install(
    kind: Annotated[Kind, typer.Argument(help="What the service runs.")],
    args: Annotated[
        list[str] | None,
        typer.Argument(
            help="After --: the arguments of `connector serve` or `gateway up`.",
            show_default=False,
        ),
    ] = None,
    print_only: Annotated[
        bool, typer.Option("--print", help="Print the unit instead of writing it.")
    ] = False,
    name: Annotated[
        str | None,
        typer.Option(help="Service name (default streamkit-connector / streamkit-gateway)."),
    ] = None,
    user: Annotated[
        str | None, typer.Option(help="Linux: user to run as (default: you, or who ran sudo).")
    ] = None,
    working_dir: Annotated[
        str | None, typer.Option(help="Folder to run in (default: the current one).")
    ] = None,
    env_file: Annotated[
        str | None,
        typer.Option(
            help="Linux: file of VAR=value lines for env: secrets (default"
            " /etc/streamkit/NAME.env)."
        ),
    ] = None,
    restart_sec: Annotated[
        int, typer.Option(min=0, help="Linux: seconds to wait before a restart.")
    ] = 5,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write here (default /etc/systemd/system/NAME.service)."
        ),
    ] = None,
    platform: Annotated[
        Platform,
        typer.Option(help="systemd unit (linux) or nssm commands (windows).", show_default=False),
    ] = default_platform(),
) -> None:
    """A systemd unit (Linux) or the nssm commands (Windows) that run the same command line
    as `streamkit connector serve ARGS` or `streamkit gateway up ARGS`."""
    args = args or []
    name = name or f"streamkit-{kind}"
    if not UNIT_NAME.fullmatch(name):
        raise fail(f"--name {name!r}: use letters, digits and _ . @ - only")
    env_file = env_file or f"/etc/streamkit/{name}.env"
    secrets = literal_secrets(args)
    if secrets:
        keep = (
            f"nssm set {name} AppEnvironmentExtra VAR=value"
            if platform is Platform.windows
            else f"put VAR=value in {env_file}"
        )
        raise fail(
            f"{', '.join(secrets)}: refusing a literal secret in a service definition (anyone"
            f" can read it there); {keep} and pass env:VAR (or file:PATH)"
        )
    folder = working_dir or os.getcwd()
    if platform is Platform.linux or not PureWindowsPath(folder).is_absolute():
        folder = os.path.abspath(folder)
    service = Service(
        name=name,
        description=f"streamkit {kind} ({name})",
        command=[*streamkit_program(), str(kind), SUBCOMMAND[kind], *args],
        working_dir=folder,
        user=user or os.environ.get("SUDO_USER") or getpass.getuser(),
        env_file=env_file,
        restart_sec=restart_sec,
        reloads_on_hup=kind is Kind.gateway,
    )
    needs = env_names(args)
    if platform is Platform.windows:
        log_file = str(PureWindowsPath(service.working_dir, f"{name}.log"))
        text = "\n".join(nssm_commands(service, log_file)) + "\n"
        hint = [f"nssm set {name} AppEnvironmentExtra {var}=..." for var in needs]
    else:
        try:
            text = systemd_unit(service)
        except ValueError as exc:
            raise fail(str(exc)) from None
        hint = [f"put {var}=... in {env_file} (root's, mode 600)" for var in needs]
    if print_only or (platform is Platform.windows and output is None):
        typer.echo(text, nl=False)
    else:
        target = output or Path(f"/etc/systemd/system/{name}.service")
        try:
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise fail(
                f"cannot write {target}: {exc.strerror} (run as root, or use --print or --output)"
            ) from None
        typer.echo(f"streamkit: wrote {target}", err=True)
    for line in hint:
        typer.echo(f"streamkit: {line}", err=True)
    if platform is Platform.linux and not print_only:
        typer.echo(f"systemctl daemon-reload && systemctl enable --now {name}", err=True)
