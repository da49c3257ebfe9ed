"""``streamkit.toml``: read with tomllib, validated into typed objects before anything starts.

CLI flags override the file, the file overrides the defaults below, all resolved here.
Every problem is reported as ``file: key: reason``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = "streamkit.toml"
_TENANT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_CONNECTOR_URI = re.compile(r"^grpc(\+tcp|\+tls)?://[^/\s]+:\d+$")


class ConfigError(ValueError):
    """A configuration problem, worded ``file: key: reason``."""


@dataclass(frozen=True)
class TenantConfig:
    name: str
    path: Path | None = None
    """Folder served by a connector embedded in the gateway (relative to the config file)."""
    connector: str | None = None
    """URI of a remote connector, e.g. ``grpc://10.0.0.5:50051``."""


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
    tenants: dict[str, TenantConfig] = field(default_factory=dict)
    source: str = "<defaults>"


_GATEWAY_KEYS: dict[str, type | tuple[type, ...]] = {
    "host": str,
    "flight_port": int,
    "http_port": int,
    "default_tenant": str,
    "idle_timeout": (int, float),
    "ws_frame_bytes": int,
}
_TENANT_KEYS: dict[str, type | tuple[type, ...]] = {"path": str, "connector": str}


def load(path: str | Path, **overrides: Any) -> GatewayConfig:
    """Read and validate a config file; ``overrides`` (CLI flags) win when not None."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
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

    tenants_raw = raw.get("tenants", {})
    if not isinstance(tenants_raw, dict) or not tenants_raw:
        raise fail("tenants", "at least one [tenants.NAME] table is required")
    tenants: dict[str, TenantConfig] = {}
    for name, table in tenants_raw.items():
        where = f"tenants.{name}"
        if not _TENANT_NAME.match(name):
            raise fail(where, "tenant names use letters, digits, '_', '.' and '-' only")
        if not isinstance(table, dict):
            raise fail(where, "must be a table")
        t = _check_table(table, _TENANT_KEYS, where, fail)
        if ("path" in t) == ("connector" in t):
            raise fail(where, "set exactly one of 'path' (embedded) or 'connector' (remote)")
        if "path" in t:
            folder = (base / t["path"]).resolve()
            if not folder.is_dir():
                raise fail(f"{where}.path", f"{t['path']!r} is not a folder")
            tenants[name] = TenantConfig(name, path=folder)
        else:
            if not _CONNECTOR_URI.match(t["connector"]):
                raise fail(f"{where}.connector", "expected grpc://HOST:PORT")
            tenants[name] = TenantConfig(name, connector=t["connector"])

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
        tenants=tenants,
        source=source,
    )


def apply_overrides(config: GatewayConfig, **overrides: Any) -> GatewayConfig:
    given = {k: v for k, v in overrides.items() if v is not None}
    for key in ("flight_port", "http_port"):
        if key in given:
            _check_port(
                given[key], f"--{key.replace('_', '-')}", lambda k, r: ConfigError(f"{k}: {r}")
            )
    return replace(config, **given)


def _check_table(table, allowed, where, fail) -> dict[str, Any]:
    for key, value in table.items():
        if key not in allowed:
            raise fail(f"{where}.{key}", "unknown key")
        expected = allowed[key]
        if isinstance(value, bool) or not isinstance(value, expected):
            names = expected.__name__ if isinstance(expected, type) else "number"
            raise fail(f"{where}.{key}", f"must be a {names}")
    return dict(table)


def _check_port(value: int, key: str, fail) -> None:
    if not 0 <= value <= 65535:
        raise fail(key, f"{value} is not a port (0-65535)")
