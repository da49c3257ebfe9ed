"""``streamkit.toml``: read with tomllib, validated into typed objects before anything starts.

CLI flags override the file, the file overrides the defaults below, all resolved here.
Every problem is reported as ``file: key: reason``.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from streamkit.catalog import safe_name
from streamkit.readers import DEFAULT_BATCH_BYTES
from streamkit.secrets import Secret, SecretError, resolve_secret
from streamkit.security import RateLimit, parse_networks

DEFAULT_CONFIG = "streamkit.toml"
_TENANT_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # fullmatch: "$" would let "a\n" through
_CONNECTOR_URI = re.compile(r"grpc(\+tcp|\+tls)?://[^/\s]+:(\d{1,5})")


class ConfigError(ValueError):
    """A configuration problem, worded ``file: key: reason``."""


_Fail = Callable[[str, str], ConfigError]
"""Builds the error for a key and a reason (``fail(key, reason)``)."""


@dataclass(frozen=True)
class TenantConfig:
    name: str
    path: Path | None = None
    """Folder served by a connector embedded in the gateway (relative to the config file)."""
    connector: str | None = None
    """URI of a remote connector, e.g. ``grpc://10.0.0.5:50051`` or ``grpc+tls://...``."""
    connector_ca: Path | None = None
    """Trust root for a ``grpc+tls`` connector's certificate."""
    connector_cert: Path | None = None
    """Client certificate the gateway presents to the connector (mutual TLS)."""
    connector_key: Path | None = None
    """Private key of ``connector_cert``."""
    connector_token: Secret | None = None
    """Shared secret the connector demands (``env:NAME`` or ``file:PATH``)."""
    tokens: tuple[Secret, ...] = ()
    """Client tokens that may read this tenant; none means the tenant is open."""
    rate_limit: RateLimit | None = None
    """Per-caller limits: ``{requests_per_second, burst, max_streams}``."""
    simulate: str | None = None
    """Name of a live dataset the gateway feeds with simulated readings (demos; ``path`` only)."""
    connector_mode: str = "grpc"
    """``grpc``: the gateway connects to ``connector``; ``websocket``: the connector dials the
    gateway's ``/connect`` (behind NAT or a firewall) and must present ``connector_token``."""
    replicas: tuple[str, ...] = ()
    """Connectors holding the same data: reads spread over them, and a read whose replica
    fails is resumed on another from the rows already delivered."""
    shards: tuple[str, ...] = ()
    """Connectors holding disjoint parts of each dataset: one endpoint per shard."""

    @property
    def locations(self) -> tuple[str, ...]:
        """Every remote connector of the tenant (one, its replicas, or its shards)."""
        return self.replicas or self.shards or ((self.connector,) if self.connector else ())

    @property
    def dials_in(self) -> bool:
        return self.connector_mode == "websocket"


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    """Address both listeners bind; ``0.0.0.0`` exposes them."""
    flight_port: int = 8815
    """Arrow Flight (gRPC) port for CLI clients; 0 picks a free port."""
    http_port: int = 8080
    """HTTP + WebSocket port for browsers; 0 picks a free port."""
    default_tenant: str | None = None
    """Tenant used by WebSocket queries that name none."""
    idle_timeout: float = 60.0
    """Seconds a stream may make no progress before it is cancelled."""
    ws_frame_bytes: int = 256 * 1024
    """Target size of WebSocket binary frames (batches are re-sliced to fit)."""
    batch_bytes: int = DEFAULT_BATCH_BYTES
    """About this much Arrow data per batch that embedded tenants read (memory per stream
    against speed: bigger batches forward faster, slow readers hold more)."""
    tls_cert: Path | None = None
    """Server certificate: with ``tls_key``, Flight is grpc+tls and HTTP is https/wss."""
    tls_key: Path | None = None
    allow: tuple[str, ...] | None = None
    """Networks (CIDR) whose peers may connect at all, on both listeners."""
    allowed_origins: tuple[str, ...] | None = None
    """Browser origins allowed to open WebSockets; default: the gateway's own origin."""
    max_connections: int = 1000
    """Most WebSocket connections open at once."""
    metrics_allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    """Peers that may read ``/metrics`` (and the Flight ``metrics`` action) without a token."""
    metrics_token: Secret | None = None
    """Bearer token that reads the metrics from anywhere ``allow`` lets in."""
    ticket_key: Secret | None = None
    """Signs tickets; gateways that share it serve each other's tickets (None: a key of
    this process alone)."""
    tenants: dict[str, TenantConfig] = field(default_factory=dict)
    source: str = "<defaults>"
    warnings: tuple[str, ...] = ()

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def auth_required(self) -> bool:
        """Some tenant accepts only tokens."""
        return any(t.tokens for t in self.tenants.values())


_GATEWAY_KEYS: dict[str, type | tuple[type, ...]] = {
    "host": str,
    "flight_port": int,
    "http_port": int,
    "default_tenant": str,
    "idle_timeout": (int, float),
    "ws_frame_bytes": int,
    "batch_bytes": int,
    "tls_cert": str,
    "tls_key": str,
    "allow": list,
    "allowed_origins": list,
    "max_connections": int,
    "metrics_allow": list,
    "metrics_token": str,
    "ticket_key": str,
}
_TENANT_KEYS: dict[str, type | tuple[type, ...]] = {
    "path": str,
    "connector": str,
    "connector_ca": str,
    "connector_cert": str,
    "connector_key": str,
    "connector_token": str,
    "tokens": list,
    "rate_limit": dict,
    "simulate": str,
    "connector_mode": str,
    "replicas": list,
    "shards": list,
}
_RATE_LIMIT_KEYS: dict[str, type | tuple[type, ...]] = {
    "requests_per_second": (int, float),
    "burst": int,
    "max_streams": int,
}


def load(path: str | Path, **overrides: Any) -> GatewayConfig:
    """Read and validate a config file; ``overrides`` (CLI flags) win when not None."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:  # a folder, no permission, a name too long
        raise ConfigError(f"{path}: cannot read it: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    config = parse(raw, source=str(path), base=path.parent)
    return apply_overrides(config, **overrides)


def parse(raw: dict[str, Any], *, source: str, base: Path) -> GatewayConfig:
    def fail(key: str, reason: str) -> ConfigError:
        return ConfigError(f"{source}: {key}: {reason}")

    unknown = sorted(set(raw) - {"gateway", "tenants"})
    if unknown:
        raise fail(unknown[0], "unknown key")
    gateway = raw.get("gateway", {})
    if not isinstance(gateway, dict):
        raise fail("gateway", "must be a table")
    values = _check_table(gateway, _GATEWAY_KEYS, "gateway", fail)
    for key in ("flight_port", "http_port"):
        if key in values:
            _check_port(values[key], f"gateway.{key}", fail)
    if values.get("idle_timeout", GatewayConfig.idle_timeout) <= 0:
        raise fail("gateway.idle_timeout", "must be positive")
    if values.get("ws_frame_bytes", GatewayConfig.ws_frame_bytes) < 1024:
        raise fail("gateway.ws_frame_bytes", "must be at least 1024")
    if values.get("batch_bytes", GatewayConfig.batch_bytes) < 1024:
        raise fail("gateway.batch_bytes", "must be at least 1024")

    tenants_raw = raw.get("tenants", {})
    if not isinstance(tenants_raw, dict) or not tenants_raw:
        raise fail("tenants", "at least one [tenants.NAME] table is required")
    warnings: list[str] = []
    tls = {
        k: _existing_file(base, values[k], f"gateway.{k}", fail)
        for k in ("tls_cert", "tls_key")
        if k in values
    }
    if len(tls) == 1:
        raise fail("gateway", "set both 'tls_cert' and 'tls_key', or neither")
    for key in ("allow", "allowed_origins", "metrics_allow"):
        if key in values and not all(isinstance(v, str) for v in values[key]):
            raise fail(f"gateway.{key}", "must be a list of strings")
    for key in ("allow", "metrics_allow"):
        for spec in values.get(key, []):
            try:
                parse_networks([spec])
            except ValueError:
                raise fail(f"gateway.{key}", f"{spec!r} is not an address or network") from None
    metrics_token = ticket_key = None
    if "metrics_token" in values:
        metrics_token = _secret(
            values["metrics_token"], base, "gateway.metrics_token", fail, warnings
        )
    if "ticket_key" in values:
        ticket_key = _secret(values["ticket_key"], base, "gateway.ticket_key", fail, warnings)
        if len(ticket_key.value) < 16:
            raise fail("gateway.ticket_key", "must be at least 16 characters")
    if values.get("max_connections", 1) < 1:
        raise fail("gateway.max_connections", "must be positive")

    tenants: dict[str, TenantConfig] = {}
    for name, table in tenants_raw.items():
        where = f"tenants.{name}"
        if not _TENANT_NAME.fullmatch(name):
            raise fail(where, "tenant names use letters, digits, '_', '.' and '-' only")
        if not isinstance(table, dict):
            raise fail(where, "must be a table")
        t = _check_table(table, _TENANT_KEYS, where, fail)
        mode = t.get("connector_mode", "grpc")
        if mode not in ("grpc", "websocket"):
            raise fail(f"{where}.connector_mode", 'must be "grpc" or "websocket"')
        if mode == "websocket":
            for key in (
                "path", "connector", "replicas", "shards", "connector_ca", "connector_cert",
                "connector_key",
            ):
                if key in t:
                    raise fail(f"{where}.{key}", "not for a connector that dials in (websocket)")
            if "connector_token" not in t:
                raise fail(f"{where}.connector_token", "a dialing connector must present a token")
        elif sum(k in t for k in ("path", "connector", "replicas", "shards")) != 1:
            raise fail(
                where,
                "set exactly one of 'path' (embedded), 'connector' (remote), "
                "'replicas' or 'shards'",
            )
        remote_only = [k for k in t if k.startswith("connector_") and k != "connector_mode"]
        if "simulate" in t and "path" not in t:
            raise fail(f"{where}.simulate", "only for an embedded 'path' tenant")
        if "simulate" in t and not safe_name(t["simulate"]):
            raise fail(f"{where}.simulate", f"{t['simulate']!r} is not a valid dataset name")
        if "path" in t:
            if remote_only:
                raise fail(f"{where}.{remote_only[0]}", "only for a remote 'connector'")
            found = _resolved(base / t["path"], Path.is_dir)
            if found is None:
                raise fail(f"{where}.path", f"{t['path']!r} is not a folder")
            folder = found
        elif "connector" in t and not _connector_uri(t["connector"]):
            raise fail(f"{where}.connector", "expected grpc://HOST:PORT or grpc+tls://HOST:PORT")
        for key in ("replicas", "shards"):
            if key not in t:
                continue
            uris = t[key]
            if not uris or not all(isinstance(u, str) and _connector_uri(u) for u in uris):
                raise fail(
                    f"{where}.{key}", "must be a non-empty list of grpc://HOST:PORT connectors"
                )
            if len(set(uris)) != len(uris):
                raise fail(f"{where}.{key}", "lists a connector twice")
        files = {
            k: _existing_file(base, t[k], f"{where}.{k}", fail)
            for k in ("connector_ca", "connector_cert", "connector_key")
            if k in t
        }
        if ("connector_cert" in files) != ("connector_key" in files):
            raise fail(where, "set both 'connector_cert' and 'connector_key', or neither")
        uris = [t["connector"]] if "connector" in t else t.get("replicas", t.get("shards", []))
        if files and not all(u.startswith("grpc+tls://") for u in uris):
            raise fail(f"{where}.connector", "certificates need grpc+tls:// connectors")
        connector_token = None
        if "connector_token" in t:
            connector_token = _secret(
                t["connector_token"], base, f"{where}.connector_token", fail, warnings
            )
        tokens = []
        for i, spec in enumerate(t.get("tokens", [])):
            if not isinstance(spec, str):
                raise fail(f"{where}.tokens", "must be a list of strings")
            tokens.append(_secret(spec, base, f"{where}.tokens[{i}]", fail, warnings))
        rate_limit = None
        if "rate_limit" in t:
            limits = _check_table(t["rate_limit"], _RATE_LIMIT_KEYS, f"{where}.rate_limit", fail)
            if set(limits) != set(_RATE_LIMIT_KEYS) or min(limits.values()) <= 0:
                raise fail(
                    f"{where}.rate_limit",
                    "needs positive requests_per_second, burst and max_streams",
                )
            rate_limit = RateLimit(**limits)
        tenants[name] = TenantConfig(
            name,
            path=folder if "path" in t else None,
            connector=t.get("connector"),
            connector_ca=files.get("connector_ca"),
            connector_cert=files.get("connector_cert"),
            connector_key=files.get("connector_key"),
            connector_token=connector_token,
            tokens=tuple(tokens),
            rate_limit=rate_limit,
            simulate=t.get("simulate"),
            connector_mode=mode,
            replicas=tuple(t.get("replicas", ())),
            shards=tuple(t.get("shards", ())),
        )

    default = values.get("default_tenant") or next(iter(tenants))
    if default not in tenants:
        raise fail("gateway.default_tenant", f"no tenant named {default!r}")
    return GatewayConfig(
        host=values.get("host", GatewayConfig.host),
        flight_port=values.get("flight_port", GatewayConfig.flight_port),
        http_port=values.get("http_port", GatewayConfig.http_port),
        default_tenant=default,
        idle_timeout=float(values.get("idle_timeout", GatewayConfig.idle_timeout)),
        ws_frame_bytes=values.get("ws_frame_bytes", GatewayConfig.ws_frame_bytes),
        batch_bytes=values.get("batch_bytes", GatewayConfig.batch_bytes),
        **tls,
        allow=tuple(values["allow"]) if "allow" in values else None,
        allowed_origins=(tuple(values["allowed_origins"]) if "allowed_origins" in values else None),
        max_connections=values.get("max_connections", GatewayConfig.max_connections),
        metrics_allow=tuple(values.get("metrics_allow", GatewayConfig.metrics_allow)),
        metrics_token=metrics_token,
        ticket_key=ticket_key,
        tenants=tenants,
        source=source,
        warnings=tuple(warnings),
    )


def apply_overrides(config: GatewayConfig, **overrides: Any) -> GatewayConfig:
    given = {k: v for k, v in overrides.items() if v is not None}
    for key in ("flight_port", "http_port"):
        if key in given:
            _check_port(
                given[key], f"--{key.replace('_', '-')}", lambda k, r: ConfigError(f"{k}: {r}")
            )
    return replace(config, **given)


def _check_table(
    table: dict[str, Any], allowed: dict[str, type | tuple[type, ...]], where: str, fail: _Fail
) -> dict[str, Any]:
    for key, value in table.items():
        if key not in allowed:
            raise fail(f"{where}.{key}", "unknown key")
        expected = allowed[key]
        if isinstance(value, bool) or not isinstance(value, expected):
            names = expected.__name__ if isinstance(expected, type) else "number"
            raise fail(f"{where}.{key}", f"must be a {names}")
        if isinstance(value, float) and not math.isfinite(value):  # TOML has nan and inf
            raise fail(f"{where}.{key}", f"must be a finite number, not {value}")
    return dict(table)


def _existing_file(base: Path, value: str, key: str, fail: _Fail) -> Path:
    path = _resolved(base / value, Path.is_file)
    if path is None:
        raise fail(key, f"{value!r} is not a readable file")
    return path


def _resolved(path: Path, kind: Callable[[Path], bool]) -> Path | None:
    """``path`` made absolute if ``kind`` (``Path.is_dir``, ``Path.is_file``) says it is
    one; None if not, or if the system refuses the path (too long, a NUL byte)."""
    try:
        resolved = path.resolve()
        return resolved if kind(resolved) else None
    except (OSError, ValueError):
        return None


def _connector_uri(uri: str) -> bool:
    found = _CONNECTOR_URI.fullmatch(uri)
    return found is not None and int(found.group(2)) <= 65535


def _secret(spec: str, base: Path, key: str, fail: _Fail, warnings: list[str]) -> Secret:
    try:
        secret = resolve_secret(spec, base)
    except SecretError as exc:
        raise fail(key, str(exc)) from None
    if secret.literal:
        warnings.append(f"{key}: a literal secret; prefer env:NAME or file:PATH")
    return secret


def _check_port(value: int, key: str, fail: _Fail) -> None:
    if not 0 <= value <= 65535:
        raise fail(key, f"{value} is not a port (0-65535)")
