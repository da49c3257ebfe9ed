"""Headless code never imports Textual: each module is imported alone in a fresh interpreter.

Only the TUI's screen modules (``streamkit.tui.app``, its widgets and messages) may import
Textual, and the ``tui`` command imports them only when it runs.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import streamkit

TUI_SCREEN = ("streamkit.tui.app", "streamkit.tui.messages", "streamkit.tui.widgets")


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
    for name in ("streamkit.cli", "streamkit.commands.tui", "streamkit.tui.flight_data"):
        assert name in HEADLESS
    assert "streamkit.tui.widgets.charts" in all_modules()


@pytest.mark.parametrize("module", HEADLESS)
def test_headless_module_does_not_import_textual(module):
    assert not imports_textual(module), f"{module} imports textual"


def test_the_check_sees_textual_when_it_is_imported():
    assert imports_textual("streamkit.tui.app")
