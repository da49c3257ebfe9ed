"""Who may read what at the gateway (DESIGN.md "Security decisions").

A caller is identified by a bearer token (or none). A tenant with ``tokens`` accepts only
those; a tenant without is open. With authentication on, a tenant outside the caller's set,
existing or not, is refused the same way, so nothing reveals which tenants exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamkit import errors
from streamkit.config import GatewayConfig
from streamkit.security import PeerFilter, RateLimiter, same_secret, token_id


@dataclass(frozen=True)
class Identity:
    tenants: frozenset[str]
    """Tenants this caller may read (its tokens' tenants and the open ones)."""
    token: str | None = None
    """Non-secret name of the token (``token:…``), None for anonymous callers."""

    def caller(self, peer: str) -> str:
        """Rate-limit key: the token, or the peer address for anonymous callers."""
        return self.token or f"peer:{peer}"


class Access:
    def __init__(self, config: GatewayConfig) -> None:
        self.limits = RateLimiter({})
        self.reload(config)

    def reload(self, config: GatewayConfig) -> None:
        """Take ``config``'s tokens, allow-lists and limits; rate-limit buckets (and the
        streams they count) carry over."""
        self.auth_required = config.auth_required
        self.open = frozenset(n for n, t in config.tenants.items() if not t.tokens)
        self._tokens = [(s.value, n) for n, t in config.tenants.items() for s in t.tokens]
        granted: dict[str, set[str]] = {}  # token id -> tenants, for tenants_of
        for secret, tenant in self._tokens:
            granted.setdefault(token_id(secret), set()).add(tenant)
        self._granted = granted
        self.peers = PeerFilter(config.allow)
        self.limits.limits = {n: t.rate_limit for n, t in config.tenants.items() if t.rate_limit}
        self.metrics_peers = PeerFilter(config.metrics_allow)
        self.metrics_token = config.metrics_token

    def check_metrics(self, peer: str, token: str | None) -> None:
        """Metrics go to ``metrics_allow`` peers, or to any caller with ``metrics_token``."""
        secret = self.metrics_token
        if token is not None and secret is not None and same_secret(token, secret.value):
            return
        if self.metrics_peers.allows(peer):
            return
        raise errors.Unauthorized(
            "unauthorized: metrics are served to metrics_allow peers or with metrics_token"
        )

    def tenants_of(self, identity: Identity) -> frozenset[str]:
        """The tenants ``identity`` may read under the current configuration (a reload may
        have revoked its token)."""
        if identity.token is None:
            return self.open
        granted = self._granted.get(identity.token)
        return self.open | granted if granted else frozenset()

    def identify(self, token: str | None) -> Identity:
        """The caller's identity; an unknown token is refused outright."""
        if token is None:
            return Identity(self.open)
        tenants = set(self.open)
        known = False
        for secret, tenant in self._tokens:  # every comparison runs: no early exit
            if same_secret(token, secret):
                tenants.add(tenant)
                known = True
        if not known:
            raise unauthenticated("the token is not valid")
        return Identity(frozenset(tenants), token_id(token))

    def authorize(self, identity: Identity, tenant: str | None) -> None:
        """Refuse a tenant outside the caller's set (unknown tenants included)."""
        if tenant in identity.tenants:
            return
        if not self.auth_required:
            raise errors.not_found(f"tenant {tenant!r}")
        if identity.token is None:
            raise unauthenticated(f"tenant {tenant!r} needs a token")
        raise errors.Unauthorized(f"unauthorized: this token may not read tenant {tenant!r}")


def unauthenticated(why: str) -> errors.Unauthenticated:
    return errors.Unauthenticated(f"unauthenticated: {why}")
