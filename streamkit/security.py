"""Shared security pieces of the connector and the gateway: bearer tokens, peer allow-lists,
rate limits, TLS options and the rule against exposing unauthenticated servers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pyarrow.flight as flight

from streamkit import errors

AUTH_MIDDLEWARE = "auth"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def bearer_token(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def basic_token(value: str | None) -> str | None:
    """The token of an ``Authorization: Basic base64(user:token)`` header value: the password
    (Flight SQL clients such as ADBC log in with a username and password). Padding is optional:
    the Go Flight client sends unpadded base64."""
    if not value:
        return None
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    encoded = encoded.strip()
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        _, colon, password = decoded.decode("utf-8").partition(":")
    except (binascii.Error, ValueError):
        return None
    return password or None if colon else None


def request_token(value: str | None) -> tuple[str | None, bool]:
    """The token of an ``Authorization`` header value, Bearer or Basic (then True)."""
    token = bearer_token(value)
    if token is not None:
        return token, False
    token = basic_token(value)
    return token, token is not None


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison (of digests, so lengths leak nothing either)."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


def token_id(token: str) -> str:
    """A short non-secret name for a token, for rate-limit keys and logs."""
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:12]


class TokenMiddleware(flight.ServerMiddleware):  # type: ignore[misc]  # pyarrow: no stubs
    def __init__(self, token: str | None, basic: bool = False) -> None:
        self.token, self.basic = token, basic

    def sending_headers(self) -> dict[str, str]:
        """A call that logged in with Basic (a Handshake, say) is answered with the Bearer
        header clients use from then on."""
        return {"authorization": f"Bearer {self.token}"} if self.basic and self.token else {}


class TokenMiddlewareFactory(flight.ServerMiddlewareFactory):  # type: ignore[misc]  # no stubs
    """Reads the token of each call (Bearer, or Basic with the token as the password);
    handlers decide what it may do."""

    def start_call(self, info: flight.CallInfo, headers: dict[str, list[str]]) -> TokenMiddleware:
        values = headers.get("authorization") or headers.get("Authorization") or []
        return TokenMiddleware(*request_token(values[0]) if values else (None, False))


def call_token(context: flight.ServerCallContext) -> str | None:
    middleware = context.get_middleware(AUTH_MIDDLEWARE)
    return middleware.token if middleware is not None else None


# -- peers -------------------------------------------------------------------


def parse_networks(specs: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(spec, strict=False) for spec in specs]


def peer_address(peer: str) -> str:
    """The IP of a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``) or a bare address."""
    for prefix in ("ipv4:", "ipv6:"):
        if peer.startswith(prefix):
            host = peer[len(prefix) :].rsplit(":", 1)[0]
            return host.strip("[]")
    return peer


class PeerFilter:
    def __init__(self, allow: Iterable[str] | None) -> None:
        self.networks = parse_networks(allow) if allow else None

    def allows(self, address: str) -> bool:
        if self.networks is None:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def check_flight(self, context: flight.ServerCallContext) -> str:
        """The caller's address; refuses a peer outside the allow-list before any work."""
        address = peer_address(context.peer())
        if not self.allows(address):
            raise errors.Unauthorized(f"peer not allowed: {address}")
        return address


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- rate limits -------------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    requests_per_second: float
    burst: int
    max_streams: int


class _Bucket:
    def __init__(self, limit: RateLimit) -> None:
        self.tokens = float(limit.burst)
        self.updated = time.monotonic()
        self.streams = 0


class RateLimiter:
    """Token buckets and stream caps per (tenant, caller). Refused requests take nothing."""

    def __init__(self, limits: dict[str, RateLimit]) -> None:
        self.limits = limits
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def _bucket(self, tenant: str, caller: str, limit: RateLimit) -> _Bucket:
        key = (tenant, caller)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) > 100_000:  # forget idle callers rather than grow forever
                self._buckets = {k: b for k, b in self._buckets.items() if b.streams}
            bucket = self._buckets[key] = _Bucket(limit)
        now = time.monotonic()
        bucket.tokens = min(
            limit.burst, bucket.tokens + (now - bucket.updated) * limit.requests_per_second
        )
        bucket.updated = now
        return bucket

    def request(self, tenant: str, caller: str) -> None:
        limit = self.limits.get(tenant)
        if limit is None:
            return
        with self._lock:
            bucket = self._bucket(tenant, caller, limit)
            if bucket.tokens < 1:
                raise _limited(tenant, f"over {limit.requests_per_second:g} requests/s")
            bucket.tokens -= 1

    def acquire_stream(self, tenant: str, caller: str) -> Callable[[], None]:
        """Take one of the caller's concurrent stream slots (and one request); returns the
        function that gives it back (calling it more than once is harmless)."""
        limit = self.limits.get(tenant)
        if limit is None:
            return lambda: None
        with self._lock:
            bucket = self._bucket(tenant, caller, limit)
            if bucket.streams >= limit.max_streams:
                raise _limited(tenant, f"more than {limit.max_streams} concurrent streams")
            if bucket.tokens < 1:
                raise _limited(tenant, f"over {limit.requests_per_second:g} requests/s")
            bucket.tokens -= 1
            bucket.streams += 1
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if not released.is_set():
                    released.set()
                    bucket.streams -= 1

        return release


def _limited(tenant: str, why: str) -> errors.RateLimited:
    return errors.rate_limited(f"tenant {tenant!r}: {why}")
