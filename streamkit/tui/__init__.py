"""``streamkit tui``: a Textual terminal client for the gateway.

Only ``streamkit.tui.app`` and its widgets import Textual; import them lazily (the ``tui``
command does) so headless code never pays for, or depends on, Textual.
"""
