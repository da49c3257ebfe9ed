"""Run servers until Ctrl-C or SIGTERM, then stop within a bounded time.

pyarrow's ``FlightServerBase.shutdown()`` waits for every open call, and a client that has
stopped reading keeps its call open forever (pyarrow does not expose gRPC's shutdown
deadline). So streams are first told to stop, shutdown gets a grace period, and if a call
is still stuck after it the process exits anyway.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable

GRACE_SECONDS = 1.5


def run_until_signal(
    stop_callbacks: list[Callable[[], None]], grace: float = GRACE_SECONDS
) -> None:
    """Block until SIGINT/SIGTERM, run ``stop_callbacks`` in parallel, exit within ``grace``."""
    received = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        received.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not received.wait(0.5):
        pass
    print("streamkit: stopping", file=sys.stderr, flush=True)
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
        print(
            "streamkit: streams still open after the grace period; exiting",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        os._exit(0)
