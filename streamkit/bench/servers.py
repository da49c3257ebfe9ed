"""The bench's own servers, each a separate process as deployed, and their memory.

Processes start in their own session (a Ctrl-C in the terminal reaches only the bench, which
then stops them in order); ``Servers.stop()`` terminates, waits, and kills what remains.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

START_TIMEOUT_S = 60.0
_CONNECTOR = re.compile(r"connector serving .* at (grpc(?:\+\w+)?://\S+:\d+)")
_BASELINE = re.compile(r"baseline serving .* at (grpc(?:\+\w+)?://\S+:\d+)")
_GATEWAY_FLIGHT = re.compile(r"^\s+flight\s+(grpc(?:\+\w+)?://\S+:\d+)", re.MULTILINE)
_GATEWAY_HTTP = re.compile(r"^\s+dashboard\s+(https?://\S+:\d+)/", re.MULTILINE)
_DIALED_IN = re.compile(r"(dialed in) to ")
DIAL_TOKEN_ENV = "STREAMKIT_BENCH_DIAL_TOKEN"


class ServerProcess:
    """A child process whose stderr is collected by a thread."""

    def __init__(
        self, name: str, args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = START_TIMEOUT_S) -> str:
        """The first group of ``pattern`` once it appears on stderr."""
        deadline = time.monotonic() + timeout
        while True:
            match = pattern.search(self.stderr)
            if match:
                return match.group(1)
            if self.proc.poll() is not None:
                self._reader.join(1)
                last = (self.stderr.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"the {self.name} exited during startup: {last}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {self.name} did not start within {timeout:.0f} s")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(2)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class PeakRss:
    """Samples the resident memory of some processes every few milliseconds."""

    def __init__(self, pids: dict[str, int], interval: float = 0.02) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak = dict.fromkeys(pids, 0)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        for name, process in self.processes.items():
            try:
                rss = process.memory_info().rss
            except psutil.Error:
                continue
            self.peak[name] = max(self.peak[name], rss)

    def reset(self) -> None:
        self.peak = dict.fromkeys(self.peak, 0)
        self.sample()

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sample()


class Servers:
    """Baseline, connector and gateway over ``data_dir`` (and with ``dial``, a second
    connector that dials the gateway in, as tenant ``bench_dialed``); ``stop()`` is safe to
    call twice."""

    def __init__(
        self, data_dir: Path, data_file: Path | None, workdir: Path, *, dial: bool = False
    ) -> None:
        """``data_file`` None: no baseline server (``bench --live`` needs none)."""
        self.processes: list[ServerProcess] = []
        self.data_dir, self.data_file, self.workdir = data_dir, data_file, workdir
        self.baseline_url = self.connector_url = self.gateway_url = self.http_url = ""
        self.tenant = "bench"
        self.dialed_tenant = "bench_dialed" if dial else None
        self._env = {DIAL_TOKEN_ENV: secrets.token_urlsafe(24)}

    def start(self) -> Servers:
        baseline = None
        if self.data_file is not None:
            baseline = self._spawn(
                "baseline", ["-m", "streamkit.bench.baseline", str(self.data_file)]
            )
        connector = self._spawn(
            "connector",
            ["-m", "streamkit", "connector", "serve", str(self.data_dir), "--port", "0"],
        )
        if baseline is not None:
            self.baseline_url = baseline.wait_for(_BASELINE)
        self.connector_url = connector.wait_for(_CONNECTOR)
        config = self.workdir / "streamkit.toml"
        config.write_text(
            '[gateway]\nhost = "127.0.0.1"\n'
            f'default_tenant = "{self.tenant}"\n\n'
            f'[tenants.{self.tenant}]\nconnector = "{self.connector_url}"\n'
        )
        if self.dialed_tenant:
            with config.open("a") as file:
                file.write(
                    f'\n[tenants.{self.dialed_tenant}]\nconnector_mode = "websocket"\n'
                    f'connector_token = "env:{DIAL_TOKEN_ENV}"\n'
                )
        gateway = self._spawn(
            "gateway",
            [
                "-m",
                "streamkit",
                "gateway",
                "up",
                "--config",
                str(config),
                "--flight-port",
                "0",
                "--http-port",
                "0",
            ],
        )
        self.gateway_url = gateway.wait_for(_GATEWAY_FLIGHT)
        self.http_url = gateway.wait_for(_GATEWAY_HTTP)
        if self.dialed_tenant:
            ws_url = self.http_url.replace("http", "ws", 1) + "/connect"
            dialer = self._spawn(
                "dialed connector",
                [
                    "-m",
                    "streamkit",
                    "connector",
                    "serve",
                    str(self.data_dir),
                    "--dial",
                    ws_url,
                    "--tenant",
                    self.dialed_tenant,
                    "--token",
                    f"env:{DIAL_TOKEN_ENV}",
                ],
            )
            dialer.wait_for(_DIALED_IN)
        return self

    def _spawn(self, name: str, args: list[str]) -> ServerProcess:
        process = ServerProcess(name, args, cwd=self.workdir, env=self._env)
        self.processes.append(process)
        return process

    def pids(self) -> dict[str, int]:
        return {p.name: p.proc.pid for p in self.processes}

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
