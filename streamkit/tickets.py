"""The gateway's tickets: self-describing and signed, so any gateway that shares the
``ticket_key`` serves a ticket another one minted (DESIGN.md "Scale-out").

A ticket is ``{"signed": {...the query, and where to read it...}, "sig": HMAC-SHA256}``
in canonical JSON. A plain query JSON, with no routing in it, is still a ticket (clients
have always been able to send one): it grants nothing its caller's token does not. A
ticket that carries a signature must verify; one that was forged or altered is ``invalid``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

import pyarrow.flight as flight

from streamkit import errors
from streamkit.query import Query, load_json


@dataclass(frozen=True)
class ShardRef:
    """One shard of a sharded tenant, as a ticket names it."""

    index: int
    layout: str
    """The tenant's shard list when the ticket was minted (a digest, no addresses): after
    a reload that changes the list, ``index`` may name another shard, so it is refused."""


@dataclass(frozen=True)
class Ticket:
    query: Query
    shard: ShardRef | None = None
    """For a sharded tenant: the one shard this endpoint reads (None: all of them)."""


class TicketSigner:
    def __init__(self, key: bytes | None = None) -> None:
        """``key``: the deployment's shared ``ticket_key``; None makes one for this
        process alone (its tickets are then served by this gateway only)."""
        self._key = key if key is not None else secrets.token_bytes(32)

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()

    def mint(self, query: Query, shard: ShardRef | None = None) -> bytes:
        body: dict[str, Any] = query.to_json()
        if shard is not None:
            body["shard"], body["shards"] = shard.index, shard.layout
        payload = _canonical(body)
        return _canonical({"signed": body, "sig": self._sign(payload)})

    def ticket(self, query: Query, shard: ShardRef | None = None) -> flight.Ticket:
        return flight.Ticket(self.mint(query, shard))

    def read(self, raw: bytes) -> Ticket:
        """The ticket's query and routing; raises ``invalid`` for a bad signature."""
        obj = load_json(raw, "ticket")
        if not isinstance(obj, dict) or ("sig" not in obj and "signed" not in obj):
            return Ticket(Query.from_json(obj))
        body, sig = obj.get("signed"), obj.get("sig")
        if set(obj) != {"signed", "sig"} or not isinstance(body, dict) or not isinstance(sig, str):
            raise errors.invalid("the ticket is malformed")
        # As bytes: compare_digest refuses a str with non-ASCII characters (a TypeError).
        if not hmac.compare_digest(self._sign(_canonical(body)).encode(), _utf8(sig)):
            raise errors.invalid(
                "the ticket's signature does not match (altered, forged, or minted by a "
                "gateway with another ticket_key)"
            )
        index, layout = body.pop("shard", None), body.pop("shards", None)
        if index is None and layout is None:
            return Ticket(Query.from_json(body))
        if not isinstance(index, int) or isinstance(index, bool) or not isinstance(layout, str):
            raise errors.invalid(
                "the ticket's shard is malformed or from another version of the gateway: "
                "ask for the dataset's FlightInfo again"
            )
        return Ticket(Query.from_json(body), ShardRef(index, layout))


def _canonical(obj: object) -> bytes:
    return _utf8(json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False))


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8; a lone surrogate (JSON may escape one: ``"\\ud800"``) is kept
    as its bytes instead of failing, so such a ticket is refused like any altered one."""
    return text.encode("utf-8", "surrogatepass")
