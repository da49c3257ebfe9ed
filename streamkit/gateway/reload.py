"""What a configuration reload changes (DESIGN.md "Metrics and operations").

Tenants are added, removed or reconnected; tokens and rate limits change in place. The
listeners cannot move while running, so a changed address, port or certificate is kept and
reported as needing a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from streamkit.config import GatewayConfig, TenantConfig

RESTART_KEYS = ("host", "flight_port", "http_port", "tls_cert", "tls_key")
ACCESS_KEYS = ("tokens", "rate_limit")  # the rest of a tenant's keys say how to reach it


@dataclass
class ReloadPlan:
    config: GatewayConfig
    """The configuration to run: the new one, with the listeners' keys kept."""
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reconnected: list[str] = field(default_factory=list)
    """Tenants whose connector (path, address, certificates, token, mode) changed."""
    access_changed: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.reconnected or self.access_changed)

    def summary(self) -> dict[str, list[str]]:
        return {
            "added": self.added,
            "removed": self.removed,
            "reconnected": self.reconnected,
            "access_changed": self.access_changed,
            "needs_restart": self.needs_restart,
        }


def plan(running: GatewayConfig, new: GatewayConfig) -> ReloadPlan:
    needs_restart = [
        f"gateway.{key}" for key in RESTART_KEYS if getattr(new, key) != getattr(running, key)
    ]
    config = replace(new, **{key: getattr(running, key) for key in RESTART_KEYS})
    old, now = running.tenants, config.tenants
    common = [name for name in now if name in old]
    return ReloadPlan(
        config,
        added=[name for name in now if name not in old],
        removed=[name for name in old if name not in now],
        reconnected=[n for n in common if not same_connector(old[n], now[n])],
        access_changed=[n for n in common if _access(old[n]) != _access(now[n])],
        needs_restart=needs_restart,
    )


def same_connector(one: TenantConfig, other: TenantConfig) -> bool:
    """Whether both reach the tenant's data the same way (only access keys may differ)."""
    return one is other or all(
        getattr(one, f.name) == getattr(other, f.name)
        for f in fields(TenantConfig)
        if f.name not in ACCESS_KEYS
    )


def _access(tenant: TenantConfig) -> tuple[object, ...]:
    return tuple(getattr(tenant, key) for key in ACCESS_KEYS)
