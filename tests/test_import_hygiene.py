"""Headless code never imports Textual: each module is imported alone in a fresh interpreter.

Only the TUI's screen modules (``streamkit.tui.app``, its widgets and messages, and
``streamkit.tui.top_app``) may import Textual, and the ``tui`` and ``top`` commands import
them only when they run.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import streamkit

TUI_SCREEN = (
    "streamkit.tui.app",
    "streamkit.tui.messages",
    "streamkit.tui.widgets",
    "streamkit.tui.top_app",
)


def all_modules() -> list[str]:
    found = ["streamkit"]
    for module in pkgutil.walk_packages(streamkit.__path__, "streamkit."):
        if not module.name.endswith(".__main__"):  # runs the CLI when imported
            found.append(module.name)
    return sorted(found)


def is_tui_screen(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in TUI_SCREEN)


HEADLESS = [name for name in all_modules() if not is_tui_screen(name)]
CHECK = (
    "import importlib, sys; importlib.import_module(sys.argv[1]); print('textual' in sys.modules)"
)


def imports_textual(module: str) -> bool:
    result = subprocess.run(
        [sys.executable, "-c", CHECK, module], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"importing {module} failed:\n{result.stderr}"
    return result.stdout.strip() == "True"


def test_the_walk_finds_the_modules_that_matter():
    for name in (
        "streamkit.cli",
        "streamkit.commands.tui",
        "streamkit.commands.top",
        "streamkit.tui.top",
        "streamkit.tui.flight_data",
    ):
        assert name in HEADLESS
    assert "streamkit.tui.widgets.charts" in all_modules()


@pytest.mark.parametrize("module", HEADLESS)
def test_headless_module_does_not_import_textual(module):
    assert not imports_textual(module), f"{module} imports textual"


def test_the_check_sees_textual_when_it_is_imported():
    assert imports_textual("streamkit.tui.app")


# The shared core: what both servers and every client build on. It imports no server, no
# client and no web or terminal framework; a connector never imports the gateway.
CORE = [
    name
    for name in all_modules()
    if name.count(".") == 1
    and name.split(".")[1]
    not in {"cli", "client", "flight_server", "lifecycle", "simulator", "certs"}
    and name.split(".")[1] not in {"connector", "gateway", "tui", "commands", "bench"}
]
SERVERS_AND_CLIENTS = (
    "streamkit.connector",
    "streamkit.gateway",
    "streamkit.flight_server",
    "streamkit.client",
    "streamkit.commands",
    "streamkit.tui",
    "aiohttp",
    "textual",
    "websockets",
    "typer",
)
LOADED = "import importlib, sys; importlib.import_module(sys.argv[1]); print(' '.join(sys.modules))"


def loaded_by(module: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", LOADED, module], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_no_server_client_or_framework(module):
    loaded = loaded_by(module)
    wrong = sorted(
        name
        for name in loaded
        if any(name == banned or name.startswith(banned + ".") for banned in SERVERS_AND_CLIENTS)
    )
    assert not wrong, f"{module} imports {wrong}"


@pytest.mark.parametrize(
    "module", [name for name in all_modules() if name.startswith("streamkit.connector")]
)
def test_the_connector_never_imports_the_gateway(module):
    assert not any(name.startswith("streamkit.gateway") for name in loaded_by(module))
