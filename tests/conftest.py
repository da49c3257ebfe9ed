"""Shared fixtures: servers on ephemeral ports that always stop, real processes, waiting."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import hypothesis  # noqa: F401  (see below)
import pyarrow.flight as flight
import pytest

from streamkit.config import GatewayConfig, TenantConfig
from streamkit.connector import ConnectorServer
from streamkit.gateway import Gateway, make_gateway

# hypothesis is imported above, at collection: imported first by its plugin's terminal summary,
# deep in pytest's call stack, Python 3.11.7's ast.parse fails ("AST constructor recursion
# depth mismatch", CPython gh-106905) while pytest rewrites its asserts.

REPO = Path(__file__).resolve().parent.parent
DEMO_DATA = REPO / "examples" / "data"


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition"):
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


async def until(pilot, condition: Callable[[], object], what: str, timeout: float = 20.0):
    """:func:`wait_for` inside a Textual app's test: the app runs while it waits."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.02)
    return value


@contextmanager
def running_connector(root: str | Path, **kwargs) -> Iterator[ConnectorServer]:
    server = ConnectorServer(str(root), "grpc://127.0.0.1:0", **kwargs)
    try:
        yield server
    finally:
        server.stop()
        server.shutdown()


@pytest.fixture
def demo_connector() -> Iterator[ConnectorServer]:
    with running_connector(DEMO_DATA) as server:
        yield server


@contextmanager
def running_gateway(tenants: dict[str, Path | str | TenantConfig], **settings) -> Iterator[Gateway]:
    """A gateway on free ports; a Path tenant is embedded, a str tenant is a connector URI,
    a TenantConfig is taken as it is."""
    settings = {"flight_port": 0, "http_port": 0, **settings}
    config = GatewayConfig(
        default_tenant=next(iter(tenants)),
        tenants={
            name: where
            if isinstance(where, TenantConfig)
            else TenantConfig(name, path=Path(where).resolve())
            if isinstance(where, Path)
            else TenantConfig(name, connector=where)
            for name, where in tenants.items()
        },
        **settings,
    )
    gateway = make_gateway(config)
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def demo_gateway() -> Iterator[Gateway]:
    """The demo tenant (examples/data) behind a gateway: ``.flight_url``, ``.http_url``."""
    with running_gateway({"demo": DEMO_DATA}) as gateway:
        yield gateway


@pytest.fixture
def client_for() -> Iterator[Callable[[flight.FlightServerBase], flight.FlightClient]]:
    clients: list[flight.FlightClient] = []

    def connect(server: flight.FlightServerBase) -> flight.FlightClient:
        client = flight.connect(f"grpc://127.0.0.1:{server.port}")
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


class Process:
    """A streamkit process started with ``python -m streamkit``; stderr collected in a thread."""

    def __init__(
        self,
        *args: str,
        cwd: Path = REPO,
        env: dict[str, str] | None = None,
        prefix: tuple[str, ...] = (),
    ) -> None:
        """``prefix``: a command that runs the process, e.g. ``ip netns exec NAME``."""
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "streamkit", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.stderr_lines: list[str] = []
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def wait_for_stderr(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        def found() -> re.Match[str] | None:
            if self.proc.poll() is not None and not re.search(pattern, self.stderr):
                raise AssertionError(f"process exited early:\n{self.stderr}")
            return re.search(pattern, self.stderr)

        return wait_for(found, timeout, f"{pattern!r} on stderr")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


@pytest.fixture
def process() -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def start(*args: str, **kwargs) -> Process:
        proc = Process(*args, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
