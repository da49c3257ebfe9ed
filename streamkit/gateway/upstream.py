"""The gateway's side of each tenant's connector: one reusable Flight client per remote
tenant, an in-process connector per ``path`` tenant, and upstream errors turned into the
contract's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import pyarrow.flight as flight

from streamkit import errors
from streamkit.config import GatewayConfig, TenantConfig
from streamkit.connector.service import Connector, LocalStream
from streamkit.gateway.live_hub import Hubs
from streamkit.gateway.metrics import ConnectorStates
from streamkit.gateway.pump import Upstream
from streamkit.gateway.tunnels import TenantTunnels, Tunnels
from streamkit.live_wire import is_live_info
from streamkit.query import Query
from streamkit.simulator import Simulator

log = logging.getLogger("streamkit.gateway")

CONNECT_TIMEOUT_MS = 3000
HEALTH_TIMEOUT_S = 5.0  # load balancers should not wait long for an answer
PROBE_TIMEOUT_S = 2.0
LIVE_CACHE_SECONDS = 5.0
MAX_LIVE_CACHE = 10_000
# gRPC waits up to two minutes between reconnect attempts by default; a restarted connector
# should be served again within about a second. The minimum backoff is also the connect timeout.
# No client keepalive pings: Flight servers answer frequent pings with GOAWAY (too_many_pings).
# No BDP probing: it grows each stream's receive window to many MB, which a slow client's
# stream then holds in the gateway (20 slow readers: 493 MB of RSS with it, 253 MB without).
# The window stays at STREAM_WINDOW_BYTES: enough for ~400 MB/s per stream at 10 ms RTT.
STREAM_WINDOW_BYTES = 4 << 20
_CHANNEL_OPTIONS = [
    ("grpc.min_reconnect_backoff_ms", CONNECT_TIMEOUT_MS),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", STREAM_WINDOW_BYTES),
]


@dataclass
class Tenant:
    """A tenant's connector: remote (``client``, a Flight client reused by every call) or
    embedded (``embedded``, read in-process, with no gRPC hop)."""

    config: TenantConfig
    client: flight.FlightClient | None = None
    embedded: Connector | None = None
    simulator: Simulator | None = None
    tunnels: TenantTunnels | None = None  # a connector that dials in

    def check_connected(self) -> None:
        """A dialing connector's tenant is ``unavailable`` while no tunnel is up."""
        if self.tunnels is not None and not self.tunnels.connected:
            raise errors.unavailable(f"connector of tenant {self.name!r} is not connected")

    @property
    def name(self) -> str:
        return self.config.name

    def options(self, timeout: float | None = None) -> flight.FlightCallOptions:
        """Call options: a deadline for metadata calls, the connector's token if any."""
        token = self.config.connector_token
        headers = [(b"authorization", f"Bearer {token.value}".encode())] if token else []
        return flight.FlightCallOptions(timeout=timeout, headers=headers)

    def remote(self) -> flight.FlightClient:
        assert self.client is not None
        return self.client


def _connect(config: TenantConfig, location: str | None = None) -> flight.FlightClient:
    location = location or config.connector
    assert location is not None
    tls: dict[str, bytes] = {}
    if config.connector_ca is not None:
        tls["tls_root_certs"] = config.connector_ca.read_bytes()
    if config.connector_cert is not None and config.connector_key is not None:
        tls["cert_chain"] = config.connector_cert.read_bytes()
        tls["private_key"] = config.connector_key.read_bytes()
    return flight.connect(location, generic_options=_CHANNEL_OPTIONS, **tls)


class Upstreams:
    def __init__(
        self,
        config: GatewayConfig,
        tunnels: Tunnels | None = None,
        states: ConnectorStates | None = None,
    ) -> None:
        self.tenants: dict[str, Tenant] = {}
        # A metadata call may wait this long: under heavy load, queueing is not failure.
        self.call_timeout = config.idle_timeout
        self.hubs = Hubs()
        self.states = states
        self._tunnels = tunnels
        self._live: dict[tuple[str, str], tuple[bool, float]] = {}  # -> (live, when known)
        try:
            for name, tenant_config in config.tenants.items():
                self.tenants[name] = self.connect(tenant_config, config.batch_bytes)
        except BaseException:
            self.close()
            raise

    def connect(self, config: TenantConfig, batch_bytes: int) -> Tenant:
        """A tenant's connector, reached as its configuration says."""
        dialing = self._tunnels.get(config.name) if self._tunnels is not None else None
        if dialing is not None:  # the connector dials in: reached through its tunnels
            return Tenant(config, client=_connect(config, dialing.location), tunnels=dialing)
        if config.path is None:
            return Tenant(config, client=_connect(config))
        embedded = Connector(str(config.path), batch_bytes=batch_bytes)
        simulator = Simulator(embedded.live, config.simulate) if config.simulate else None
        return Tenant(config, embedded=embedded, simulator=simulator)

    def seen(self, tenant: str, up: bool) -> None:
        if self.states is not None:
            self.states.seen(tenant, up)

    def probe(self) -> None:
        """Look at every connector once (a ListActions round trip: any answer, even
        "unimplemented", means it is up) and tell ``states``."""
        for name, tenant in list(self.tenants.items()):
            if tenant.embedded is not None:
                up = True
            elif tenant.tunnels is not None and not tenant.tunnels.connected:
                up = False
            else:
                try:
                    tenant.remote().list_actions(tenant.options(PROBE_TIMEOUT_S))
                    up = True
                except flight.FlightUnavailableError:
                    up = False
                except flight.FlightTimedOutError:
                    up = False
                except Exception:  # refused or unimplemented: it answered
                    up = True
            self.seen(name, up)

    def followers(self) -> Iterator[tuple[str, int]]:
        """``(tenant, batches queued)`` of every live follower the gateway serves."""
        for hub in self.hubs.all():
            for follower in list(hub.followers):
                yield hub.key[0], len(follower.queue)
        for name, tenant in list(self.tenants.items()):
            if tenant.embedded is not None:
                for live in tenant.embedded.live.all():
                    for follower in list(live.followers):
                        yield name, len(follower.queue)

    def tenant(self, name: str | None) -> Tenant:
        tenant = self.tenants.get(name or "")
        if tenant is None:
            raise errors.not_found(f"tenant {name!r}")
        return tenant

    def _reachable(self, name: str | None) -> Tenant:
        tenant = self.tenant(name)
        tenant.check_connected()
        return tenant

    def get_flight_info(self, query: Query) -> flight.FlightInfo:
        tenant = self._reachable(query.tenant)
        upstream = query.upstream()
        with _upstream_errors(tenant, self.seen):
            if tenant.embedded is not None:
                return tenant.embedded.flight_info(upstream)
            info = tenant.remote().get_flight_info(
                upstream.to_descriptor(), tenant.options(self.call_timeout)
            )
        if query.sql is None and not query.where:  # a filter's info says nothing of liveness
            self._note_live(tenant, query.dataset, info)
        return info

    def list_flights(self, tenant: Tenant, timeout: float | None = None) -> list[flight.FlightInfo]:
        tenant.check_connected()
        with _upstream_errors(tenant, self.seen):
            if tenant.embedded is not None:
                return list(tenant.embedded.list_flights())
            options = tenant.options(timeout or self.call_timeout)
            infos = list(tenant.remote().list_flights(b"", options))
        for info in infos:
            if info.descriptor.path:
                self._note_live(tenant, info.descriptor.path[0].decode(), info)
        return infos

    def do_get(self, query: Query) -> Upstream:
        """Open the upstream stream; no call deadline, as streams may run for a long time.

        Followers of a remote live dataset share one upstream follow (see ``live_hub``); an
        embedded live dataset fans out to its followers itself."""
        tenant = self._reachable(query.tenant)
        upstream = query.upstream()
        with _upstream_errors(tenant, self.seen):
            if tenant.embedded is not None:
                return LocalStream(tenant.embedded, upstream)
            client = tenant.remote()
            # A filtered follow is the connector's to filter (the gateway runs no SQL), so
            # it has an upstream follow of its own instead of a share of the hub's.
            if query.follow and not query.where and self._is_live(tenant, query):
                return self.hubs.follow(
                    (tenant.name, query.dataset),
                    query,
                    open_follow=lambda: client.do_get(
                        Query(dataset=query.dataset, follow=True, from_="end").to_ticket(),
                        tenant.options(),
                    ),
                    open_history=lambda: client.do_get(
                        Query(dataset=query.dataset, columns=query.columns).to_ticket(),
                        tenant.options(),
                    ),
                    error=lambda exc: upstream_error(tenant.name, exc),
                )
            stream: Upstream = client.do_get(upstream.to_ticket(), tenant.options())
            return stream

    def _is_live(self, tenant: Tenant, query: Query) -> bool:
        """Whether ``query.dataset`` is a published live dataset (its followed batches carry
        row offsets, so a hub can share them). Asked of the connector only when the answer
        is older than ``LIVE_CACHE_SECONDS``: a plain GetFlightInfo before the DoGet, as
        Flight clients make, or a listing, answers it too."""
        known = self._live.get((tenant.name, query.dataset))
        if known is not None and time.monotonic() - known[1] < LIVE_CACHE_SECONDS:
            return known[0]
        info = tenant.remote().get_flight_info(
            Query(dataset=query.dataset).to_descriptor(), tenant.options(self.call_timeout)
        )
        return self._note_live(tenant, query.dataset, info)

    def _note_live(self, tenant: Tenant, dataset: str, info: flight.FlightInfo) -> bool:
        live = is_live_info(info)
        if len(self._live) > MAX_LIVE_CACHE:
            self._live.clear()
        self._live[(tenant.name, dataset)] = (live, time.monotonic())
        return live

    def do_put(self, query: Query, reader: flight.MetadataRecordBatchReader) -> int:
        """Forward a publish batch by batch; returns the rows sent."""
        tenant = self._reachable(query.tenant)
        rows = 0
        with _upstream_errors(tenant, self.seen):
            if tenant.embedded is not None:
                return tenant.embedded.publish(query.dataset, reader)
            writer, _ = tenant.remote().do_put(
                flight.FlightDescriptor.for_path(query.dataset), reader.schema, tenant.options()
            )
            try:
                while True:
                    try:
                        chunk = reader.read_chunk()
                    except StopIteration:
                        break
                    if chunk.data is not None:
                        writer.write_batch(chunk.data)
                        rows += chunk.data.num_rows
                writer.done_writing()
            finally:
                writer.close()
        return rows

    def health(self, tenants: frozenset[str] | None = None) -> dict[str, dict[str, Any]]:
        """Reachability, latency and dataset count of ``tenants`` (default all)."""
        report: dict[str, dict[str, Any]] = {}
        for name, tenant in self.tenants.items():
            if tenants is not None and name not in tenants:
                continue
            started = time.perf_counter()
            try:
                datasets = len(self.list_flights(tenant, HEALTH_TIMEOUT_S))
                report[name] = {
                    "reachable": True,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                    "datasets": datasets,
                }
            except errors.StreamkitError as exc:
                report[name] = {"reachable": False, "error": exc.message}
            if tenant.tunnels is not None:
                connected = tenant.tunnels.connected
                report[name]["connection"] = "dialed in" if connected else "not connected"
        return report

    def retire(self, tenant: Tenant) -> None:
        """Release a tenant the configuration no longer has (its streams already ended)."""
        if tenant.simulator is not None:
            tenant.simulator.stop()
        if tenant.client is not None:
            tenant.client.close()
        if tenant.embedded is not None:
            tenant.embedded.stop()
        self._live = {key: v for key, v in self._live.items() if key[0] != tenant.name}

    def close(self) -> None:
        self.hubs.close()
        for tenant in self.tenants.values():
            self.retire(tenant)
        self.tenants.clear()


class _upstream_errors:
    """Re-raise upstream failures as clean contract errors that name the tenant, and tell
    ``seen`` whether its connector answered."""

    def __init__(self, tenant: Tenant, seen: Callable[[str, bool], None]) -> None:
        self.tenant, self.seen = tenant, seen

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        if exc is None or not isinstance(exc, Exception):
            if exc is None:
                self.seen(self.tenant.name, True)
            return False
        error = upstream_error(self.tenant.name, exc)
        if error.code == errors.UNAVAILABLE:
            self.seen(self.tenant.name, False)
        raise error from None


def upstream_error(tenant: str, exc: BaseException) -> errors.StreamkitError:
    """What a client is told of a failure of ``tenant``'s connector (or of its stream)."""
    if isinstance(exc, errors.StreamkitError):
        return exc  # already ours (an embedded connector, a hub)
    code, message = errors.code_of(exc), errors.clean_message(exc)
    if code in (errors.RATE_LIMITED, errors.LAGGING, errors.CANCELLED):
        return errors.error(code, message)
    if code == errors.UNAVAILABLE:
        log.warning("tenant %s: connector unreachable: %s", tenant, message)
        return errors.unavailable(f"the connector of tenant {tenant!r} is unreachable")
    if code in (errors.UNAUTHENTICATED, errors.UNAUTHORIZED):
        log.warning("tenant %s: connector refused the gateway: %s", tenant, message)
        return errors.unavailable(f"the connector of tenant {tenant!r} refused the gateway")
    if message.startswith(("not found:", "invalid:")):
        return errors.error(code, message)
    return errors.invalid(f"tenant {tenant!r}: {message}")
