"""Run a redraw at most ``rate`` times a second, and never leave the last request undrawn."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol


class _Timer(Protocol):
    def stop(self) -> None: ...


class Throttle:
    """``request()`` runs ``callback`` now if it last ran over ``1/rate`` s ago, else once
    when that time comes (however many requests arrive meanwhile); ``flush()`` runs it now.

    ``set_timer(delay, callback)`` schedules on the UI loop: Textual's ``App.set_timer``.
    """

    def __init__(
        self, rate: float, callback: Callable[[], None], set_timer: Callable[..., Any]
    ) -> None:
        self.interval = 1 / rate
        self.callback = callback
        self.set_timer = set_timer
        self._last = float("-inf")
        self._timer: _Timer | None = None

    def request(self) -> None:
        if self._timer is not None:
            return
        wait = self._last + self.interval - time.monotonic()
        if wait <= 0:
            self._run()
        else:
            self._timer = self.set_timer(wait, self._run)

    def flush(self) -> None:
        self.cancel()
        self._run()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _run(self) -> None:
        self._timer = None
        self._last = time.monotonic()
        self.callback()
