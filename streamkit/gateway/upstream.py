"""The gateway's side of each tenant's connector: one reusable Flight client per remote
tenant, an in-process connector per ``path`` tenant, and upstream errors turned into the
contract's.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypeVar

import pyarrow as pa
import pyarrow.flight as flight

from streamkit import errors
from streamkit.config import GatewayConfig, TenantConfig
from streamkit.connector.service import Connector, LocalStream
from streamkit.gateway.live_hub import Hubs
from streamkit.gateway.metrics import ConnectorStates
from streamkit.gateway.opening import answers, open_stream
from streamkit.gateway.pump import Upstream
from streamkit.gateway.replicas import ResumingReader, Rotation, first_answer
from streamkit.gateway.shards import ShardPlan, combined_info, shard_plan
from streamkit.gateway.tunnels import TenantTunnels, Tunnels
from streamkit.live_wire import is_live_info
from streamkit.merged import MergedReader
from streamkit.query import Query
from streamkit.simulator import Simulator
from streamkit.tickets import ShardRef

T = TypeVar("T")
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
    clients: list[flight.FlightClient] = field(default_factory=list)
    """One per replica or shard (``config.replicas`` / ``config.shards``)."""
    rotation: Rotation | None = None  # which replica a read starts on
    up: dict[int, bool] = field(default_factory=dict)  # each replica's or shard's last state

    @property
    def sharded(self) -> bool:
        return bool(self.config.shards)

    def note(self, index: int, answered: bool) -> bool:
        """One location seen up or down; returns whether the tenant is up (replicas: any
        of them; shards: all of them)."""
        self.up[index] = answered
        states = [self.up.get(i, True) for i in range(len(self.clients))]
        return all(states) if self.sharded else any(states)

    def replica_order(self) -> list[int]:
        """The replicas a read tries, in turn: the next one first, those last seen down
        at the end (a replica that hangs would make every read that starts on it wait)."""
        assert self.rotation is not None
        return sorted(self.rotation.order(), key=lambda index: not self.up.get(index, True))

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
        if config.replicas or config.shards:
            clients = [_connect(config, location) for location in config.locations]
            return Tenant(config, clients=clients, rotation=Rotation(len(clients)))
        if config.path is None:
            return Tenant(config, client=_connect(config))
        embedded = Connector(str(config.path), batch_bytes=batch_bytes)
        simulator = Simulator(embedded.live, config.simulate) if config.simulate else None
        return Tenant(config, embedded=embedded, simulator=simulator)

    def seen(self, tenant: str, up: bool) -> None:
        if self.states is not None:
            self.states.seen(tenant, up)

    def _seen_at(self, tenant: Tenant) -> Callable[[int, bool], None]:
        """``seen`` for one replica or shard of ``tenant``."""
        return lambda index, up: self.seen(tenant.name, tenant.note(index, up))

    def _each_shard(
        self,
        tenant: Tenant,
        call: Callable[[flight.FlightClient], T],
        undo: Callable[[T], None] | None = None,
    ) -> list[T]:
        """``call`` on every shard at once (a slow shard does not add to the others); if
        one fails, ``undo`` is called on the others' results (e.g. cancel their streams)."""
        results: list[T | None] = [None] * len(tenant.clients)
        failures: list[BaseException] = []

        def run(index: int) -> None:
            try:
                results[index] = call(tenant.clients[index])
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(tenant.clients))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            if undo is not None:
                for result in results:
                    if result is not None:
                        undo(result)
            raise failures[0]
        return [r for r in results if r is not None]

    def shards(self, tenant: str | None) -> int:
        """How many shards the tenant's datasets are split into (1: not sharded)."""
        found = self.tenants.get(tenant or "")
        return len(found.clients) if found is not None and found.sharded else 1

    def shard_layout(self, tenant: str | None) -> str:
        """A digest of the tenant's shard list, which its shard tickets carry."""
        return _layout(self.tenant(tenant).config.shards)

    def probe(self) -> None:
        """Look at every connector once (a ListActions round trip: any answer, even
        "unimplemented", means it is up) and tell ``states``."""
        for name, tenant in list(self.tenants.items()):
            if tenant.embedded is not None:
                self.seen(name, True)
            elif tenant.tunnels is not None and not tenant.tunnels.connected:
                self.seen(name, False)
            elif tenant.clients:
                for index, client in enumerate(tenant.clients):
                    answered = answers(client, tenant.options, PROBE_TIMEOUT_S)
                    self.seen(name, tenant.note(index, answered))
            else:
                self.seen(name, answers(tenant.remote(), tenant.options, PROBE_TIMEOUT_S))

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
        options = tenant.options(self.call_timeout)

        def ask(client: flight.FlightClient) -> flight.FlightInfo:
            return client.get_flight_info(upstream.to_descriptor(), options)

        with _upstream_errors(tenant, self.seen):
            if tenant.embedded is not None:
                return tenant.embedded.flight_info(upstream)
            if tenant.sharded:
                _check_no_offset(tenant, upstream)
                if upstream.sql is not None and self._sql_plan(tenant, upstream.sql).one_shard:
                    return ask(tenant.clients[0])
                infos = self._each_shard(tenant, ask)
                return combined_info(infos, query.label(), upstream.to_descriptor())
            if tenant.rotation is not None:
                return first_answer(
                    tenant.clients, tenant.replica_order(), ask, self._seen_at(tenant)
                )
            info = ask(tenant.remote())
        if query.sql is None and not query.where:  # a filter's info says nothing of liveness
            self._note_live(tenant, query.dataset, info)
        return info

    def list_flights(self, tenant: Tenant, timeout: float | None = None) -> list[flight.FlightInfo]:
        tenant.check_connected()
        options = tenant.options(timeout or self.call_timeout)

        def ask(client: flight.FlightClient) -> list[flight.FlightInfo]:
            return list(client.list_flights(b"", options))

        with _upstream_errors(tenant, self.seen):
            if tenant.embedded is not None:
                return list(tenant.embedded.list_flights())
            if tenant.sharded:
                return _combined_listing(tenant.name, self._each_shard(tenant, ask))
            if tenant.rotation is not None:
                return first_answer(
                    tenant.clients, tenant.replica_order(), ask, self._seen_at(tenant)
                )
            infos = ask(tenant.remote())
        for info in infos:
            if info.descriptor.path:
                self._note_live(tenant, info.descriptor.path[0].decode(), info)
        return infos

    def do_get(self, query: Query, shard: ShardRef | None = None) -> Upstream:
        """Open the upstream stream; no call deadline, as streams may run for a long time.
        ``shard``: of a sharded tenant, the one shard to read (None: all, merged).

        Followers of a remote live dataset share one upstream follow (see ``live_hub``); an
        embedded live dataset fans out to its followers itself."""
        tenant = self._reachable(query.tenant)
        upstream = query.upstream()
        if shard is not None and not tenant.sharded:  # minted before a reload changed it
            raise errors.invalid(f"tenant {tenant.name!r} is not sharded (an old ticket?)")
        with _upstream_errors(tenant, self.seen):
            if tenant.embedded is not None:
                return LocalStream(tenant.embedded, upstream)
            if tenant.sharded:
                return self._sharded_get(tenant, upstream, shard)
            if tenant.rotation is not None:
                return ResumingReader(
                    tenant.name,
                    tenant.clients,
                    tenant.replica_order(),
                    upstream,
                    tenant.options,
                    self._seen_at(tenant),
                    stall=self.call_timeout / 2,  # before the stream's own idle timeout
                )
            client = tenant.remote()
            # A filtered follow is the connector's to filter (the gateway runs no SQL), so
            # it has an upstream follow of its own instead of a share of the hub's.
            if query.follow and not query.where and self._is_live(tenant, query):
                return self.hubs.follow(
                    (tenant.name, query.dataset),
                    query,
                    open_follow=lambda: open_stream(
                        client,
                        Query(dataset=query.dataset, follow=True, from_="end").to_ticket(),
                        tenant.options,
                    ),
                    open_history=lambda: open_stream(
                        client,
                        Query(dataset=query.dataset, columns=query.columns).to_ticket(),
                        tenant.options,
                    ),
                    error=lambda exc: upstream_error(tenant.name, exc),
                )
            stream: Upstream = open_stream(client, upstream.to_ticket(), tenant.options)
            return stream

    def _sharded_get(self, tenant: Tenant, query: Query, shard: ShardRef | None) -> Upstream:
        def open_on(client: flight.FlightClient) -> Upstream:
            reader: Upstream = open_stream(client, query.to_ticket(), tenant.options)
            return reader

        if shard is not None:
            if shard.layout != _layout(tenant.config.shards):
                raise errors.invalid(
                    f"the shards of tenant {tenant.name!r} have changed since this ticket was "
                    "issued: ask for the dataset's FlightInfo again"
                )
            if not 0 <= shard.index < len(tenant.clients):
                raise errors.invalid(f"tenant {tenant.name!r} has no shard {shard.index}")
            return open_on(tenant.clients[shard.index])
        _check_no_offset(tenant, query)
        limit = query.limit
        if query.sql is not None:
            plan = self._sql_plan(tenant, query.sql)
            if plan.one_shard:
                return open_on(tenant.clients[0])
            limit = plan.limit
        readers = self._each_shard(tenant, open_on, lambda r: r.cancel())
        return MergedReader(readers, limit)

    def sql_plan(self, query: Query) -> ShardPlan:
        """How ``query``'s SQL is answered on a sharded tenant (checked to be answerable)."""
        assert query.sql is not None
        tenant = self.tenant(query.tenant)
        with _upstream_errors(tenant, self.seen):
            return self._sql_plan(tenant, query.sql)

    def _sql_plan(self, tenant: Tenant, sql: str) -> ShardPlan:
        return shard_plan(sql, lambda name: self._shard_schema(tenant, name))

    def _shard_schema(self, tenant: Tenant, dataset: str) -> pa.Schema:
        """A table's schema for planning SQL over shards (every shard has the same)."""
        info = tenant.clients[0].get_flight_info(
            Query(dataset=dataset).to_descriptor(), tenant.options(self.call_timeout)
        )
        return info.schema

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
        if tenant.clients:
            raise errors.invalid(
                f"tenant {tenant.name!r} has several connectors: publish to each of them"
            )
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
        for client in [tenant.client, *tenant.clients]:
            if client is not None:
                client.close()
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
        if error.code == errors.UNAVAILABLE and error is not exc:  # not one of our own
            self.seen(self.tenant.name, False)
        raise error from None


def _layout(shards: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(shards).encode()).hexdigest()[:16]


def _check_no_offset(tenant: Tenant, query: Query) -> None:
    """A merged read has no row order to skip rows by."""
    if query.offset:
        raise errors.invalid(
            f"'offset' on sharded tenant {tenant.name!r}: read its shards' endpoints"
        )


def _combined_listing(
    tenant: str, per_shard: list[list[flight.FlightInfo]]
) -> list[flight.FlightInfo]:
    """The datasets of every shard, each one FlightInfo over its shards. A dataset that
    is not on every shard, or whose shards disagree on its schema, is left out: its
    FlightInfo is refused too (``not found``, ``invalid``), and one bad dataset must not
    hide the tenant's others."""
    by_name: dict[bytes, list[flight.FlightInfo]] = {}
    for infos in per_shard:
        for info in infos:
            if info.descriptor.path:
                by_name.setdefault(info.descriptor.path[0], []).append(info)
    listing = []
    for name, infos in by_name.items():
        label = f"{tenant}/{name.decode('utf-8', 'replace')}"
        if len(infos) < len(per_shard):
            _warn_once(f"{label!r} is not on every shard: left out of the listing")
            continue
        try:
            listing.append(combined_info(infos, label, infos[0].descriptor))
        except errors.StreamkitError as exc:
            _warn_once(f"{exc.message.removeprefix('invalid: ')}: left out of the listing")
    return listing


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """Log ``message`` the first time only (listings are asked for every few seconds)."""
    if message not in _warned and len(_warned) < 1000:
        _warned.add(message)
        log.warning("%s", message)


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
