"""The gateway: Flight and HTTP/WebSocket listeners over the tenants' connectors."""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from streamkit import errors
from streamkit.config import ConfigError, GatewayConfig
from streamkit.gateway.access import Access
from streamkit.gateway.flight_service import GatewayFlightServer
from streamkit.gateway.forward import Forwarder
from streamkit.gateway.http_service import make_http_app
from streamkit.gateway.metrics import ConnectorStates, LiveFollowers, Metrics
from streamkit.gateway.reload import ReloadPlan, plan
from streamkit.gateway.tunnels import Tunnels
from streamkit.gateway.upstream import Tenant, Upstreams
from streamkit.gateway.web_context import WebContext
from streamkit.security import PeerFilter

log = logging.getLogger("streamkit.gateway")

STREAM_THREADS = 128  # blocking upstream reads of WebSocket/HTTP streams
PROBE_SECONDS = 5.0  # how often each connector is looked at for streamkit_connector_up
SHUTDOWN_SECONDS = 5.0  # most that stop() waits for open Flight calls


class Gateway:
    """Start with :func:`make_gateway`; ``stop()`` (or ``with``) shuts everything down."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.pool = ThreadPoolExecutor(STREAM_THREADS, thread_name_prefix="streamkit-stream")
        self.access = Access(config)
        self.metrics = Metrics(lambda: self.config.tenants)
        self.connector_states = ConnectorStates(self.metrics)
        self.metrics.sample(self.connector_states)
        self.tunnels = Tunnels([n for n, t in config.tenants.items() if t.dials_in])
        self.upstreams = Upstreams(config, self.tunnels, self.connector_states)
        self.metrics.sample(LiveFollowers(self.upstreams.followers))
        self.forwarder = Forwarder(config, self.access, self.upstreams, self.metrics)
        self._probing = threading.Thread(target=self._probe, name="streamkit-probe", daemon=True)
        self.loader: Callable[[], GatewayConfig] | None = None
        """Reads the configuration again (the file, with the command line's overrides)."""
        self._reloading = threading.Lock()
        self.web = WebContext(config, self.forwarder, self.pool, self.tunnels)
        self.flight: GatewayFlightServer | None = None
        self.http_port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def flight_port(self) -> int:
        assert self.flight is not None
        port: int = self.flight.port
        return port

    @property
    def flight_url(self) -> str:
        assert self.flight is not None
        return self.flight.url

    @property
    def http_url(self) -> str:
        scheme = "https" if self.config.tls else "http"
        return f"{scheme}://{self.config.host}:{self.http_port}"

    def start(self) -> Gateway:
        try:
            self.flight = GatewayFlightServer(
                self.forwarder,
                f"grpc://{self.config.host}:{self.config.flight_port}",
                reload=lambda: self.reload().summary(),
                allow=self.config.allow,
                tls_cert=self.config.tls_cert,
                tls_key=self.config.tls_key,
            )
            self._start_http()
        except BaseException:
            self.stop()
            raise
        self._probing.start()
        return self

    def _probe(self) -> None:
        stopping = self.forwarder.stopping
        while not stopping.is_set():
            try:
                self.upstreams.probe()
            except Exception:  # a tenant removed meanwhile, a closing client: next round
                log.debug("connector probe failed", exc_info=True)
            stopping.wait(PROBE_SECONDS)

    def _start_http(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            await self.tunnels.start()
            app = make_http_app(self.web)
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
            await self._runner.setup()
            site = web.TCPSite(
                self._runner,
                self.config.host,
                self.config.http_port,
                ssl_context=self._ssl_context(),
            )
            await site.start()
            self.http_port = self._runner.addresses[0][1]

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                assert self._loop is not None
                self._loop.run_until_complete(serve())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            assert self._loop is not None
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="streamkit-http", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]

    def reload(self) -> ReloadPlan:
        """Read the configuration again and apply it (``kill -HUP``, ``gateway reload``); a
        bad file raises :class:`ConfigError` and changes nothing."""
        if self.loader is None:
            raise ConfigError(f"{self.config.source}: the gateway was not started from a file")
        try:
            return self.apply(self.loader())
        except ConfigError as exc:
            raise self._refused(exc) from None
        except Exception as exc:  # whatever it is, the running gateway goes on
            log.debug("reload failed", exc_info=True)
            message = f"{self.config.source}: {errors.clean_message(exc)}"
            raise self._refused(ConfigError(message)) from None

    def _refused(self, exc: ConfigError) -> ConfigError:
        self.metrics.reloads.labels("invalid").inc()
        log.error("reload refused, the running configuration is kept: %s", exc)
        return exc

    def apply(self, new: GatewayConfig) -> ReloadPlan:
        """Run ``new``: other tenants' streams go on; a removed or reconnected tenant's
        streams end with the reason, and so do those of a revoked token."""
        with self._reloading:
            change = plan(self.config, new)
            config = change.config
            for key in change.needs_restart:
                log.warning("reload: %s changed; it takes effect after a restart", key)
            fresh: dict[str, Tenant] = {}
            try:  # connecting to a new connector is the one step that may still fail
                for name in change.added + change.reconnected:
                    settings = config.tenants[name]
                    if name in change.reconnected and name in self.tunnels:
                        self._on_loop(self.tunnels.by_tenant[name].close())
                        self.tunnels.remove(name)
                    if settings.dials_in:
                        self._on_loop(self.tunnels.add(name).start())
                    fresh[name] = self.upstreams.connect(settings, config.batch_bytes)
            except Exception as exc:
                for tenant in fresh.values():
                    self.upstreams.retire(tenant)
                raise ConfigError(
                    f"{config.source}: tenants.{name}: {errors.clean_message(exc)}"
                ) from None
            self.config = self.forwarder.config = self.web.config = config
            self.upstreams.call_timeout = config.idle_timeout
            self.access.reload(config)
            self.forwarder.rekey(config)
            if self.flight is not None:
                self.flight.peers = PeerFilter(config.allow)
            retired = [self.upstreams.tenants[n] for n in change.removed + change.reconnected]
            for name in change.removed:
                del self.upstreams.tenants[name]
            self.upstreams.tenants.update(fresh)
            self.forwarder.end_stale()
            for tenant in retired:
                self.upstreams.retire(tenant)
            for name in change.removed:
                if name in self.tunnels:
                    self._on_loop(self.tunnels.by_tenant[name].close())
                    self.tunnels.remove(name)
                self.metrics.forget(name)
                self.connector_states.forget(name)
            self.metrics.reloads.labels("ok").inc()
            log.info("reloaded %s: %s", config.source, change.summary())
            return change

    def _on_loop(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` on the HTTP event loop (where the tunnels live) and wait for it."""
        if self._loop is None:
            work.close()
            return
        asyncio.run_coroutine_threadsafe(work, self._loop).result(10)

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.config.tls:
            return None
        assert self.config.tls_cert is not None and self.config.tls_key is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        return context

    def stop(self) -> None:
        """Stop accepting, end open streams, release the connectors. Safe to call twice.

        An open publish (DoPut) keeps ``flight.shutdown()`` waiting until its client ends
        it: pyarrow gives shutdown no deadline and a put's read cannot be interrupted. So
        it waits ``SHUTDOWN_SECONDS`` for the Flight server, then goes on without it (the
        command line's grace period, in ``lifecycle``, then ends the process)."""
        self.forwarder.stop()
        if self._loop is not None and self._runner is not None:
            for closing in (self.tunnels.close(), self._runner.cleanup()):
                future = asyncio.run_coroutine_threadsafe(closing, self._loop)
                try:
                    future.result(5)
                except Exception:
                    log.debug("http shutdown did not finish cleanly", exc_info=True)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(5)
            if not self._loop.is_running():
                self._loop.close()
            self._loop = None
        if self.flight is not None:
            server, self.flight = self.flight, None
            stopper = threading.Thread(
                target=server.shutdown, name="streamkit-flight-stop", daemon=True
            )
            stopper.start()
            stopper.join(SHUTDOWN_SECONDS)
            if stopper.is_alive():
                log.warning(
                    "Flight calls still open after %g s (a publish its client keeps open); "
                    "not waiting for them",
                    SHUTDOWN_SECONDS,
                )
        self.upstreams.close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_gateway(config: GatewayConfig) -> Gateway:
    """Build and start a gateway (ports 0 in ``config`` pick free ports)."""
    return Gateway(config).start()
