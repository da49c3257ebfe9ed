"""Run servers until Ctrl-C or SIGTERM, then stop within a bounded time.

pyarrow's ``FlightServerBase.shutdown()`` waits for every open call, and a client that has
stopped reading keeps its call open forever (pyarrow does not expose gRPC's shutdown
deadline). So streams are first told to stop, shutdown gets a grace period, and if a call
is still stuck after it the process exits anyway.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import cast

from streamkit.logs import say

GRACE_SECONDS = 1.5


def log_crashes() -> None:
    """A server that dies says why: a fatal signal (a crash in native code) prints every
    thread's Python stack on stderr, and an exception that ends a thread is logged."""
    faulthandler.enable(file=sys.stderr, all_threads=True)
    log = logging.getLogger("streamkit")

    def on_thread_exception(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        # Typed as possibly None, but a thread's uncaught exception always has its value.
        exc_info = cast(
            "tuple[type[BaseException], BaseException, TracebackType | None]",
            (args.exc_type, args.exc_value, args.exc_traceback),
        )
        log.error("thread %s failed", name, exc_info=exc_info)

    threading.excepthook = on_thread_exception


def run_until_signal(
    stop_callbacks: list[Callable[[], None]],
    grace: float = GRACE_SECONDS,
    on_hangup: Callable[[], None] | None = None,
) -> None:
    """Block until SIGINT/SIGTERM, run ``stop_callbacks`` in parallel, exit within ``grace``.
    ``on_hangup`` runs on each SIGHUP (in this thread, not in the signal handler)."""
    received = threading.Event()
    hangups = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        received.set()

    def on_sighup(signum: int, frame: object) -> None:
        hangups.set()
        received.set()  # wake the wait below

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if on_hangup is not None:
        signal.signal(signal.SIGHUP, on_sighup)
    while True:
        received.wait()
        if not hangups.is_set():
            break
        hangups.clear()
        received.clear()
        assert on_hangup is not None
        on_hangup()
    say("streamkit: stopping")
    threads = [threading.Thread(target=cb, daemon=True) for cb in stop_callbacks]
    for thread in threads:
        thread.start()
    deadline = threading.Event()
    timer = threading.Timer(grace, deadline.set)
    timer.start()
    for thread in threads:
        while thread.is_alive() and not deadline.is_set():
            thread.join(0.05)
    timer.cancel()
    if any(thread.is_alive() for thread in threads):
        say("streamkit: streams still open after the grace period; exiting", logging.WARNING)
        sys.stdout.flush()
        os._exit(0)
