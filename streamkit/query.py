"""What a client asks for: a dataset (of a tenant), which columns, how many rows.

Queries travel as Flight descriptors (a path, or a command holding JSON), as WebSocket
messages and as tickets. A ticket is the query's canonical JSON: opaque to clients, and
self-contained so any server process can serve it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from streamkit import errors

MAX_TICKET_BYTES = 64 * 1024
MAX_NAME_CHARS = 1024


@dataclass(frozen=True)
class Query:
    dataset: str
    """Empty for a ``sql`` query (its datasets are its tables)."""
    tenant: str | None = None
    columns: tuple[str, ...] | None = None
    limit: int | None = None
    follow: bool | None = None
    """Live: after the existing rows, stream new ones as they arrive until cancelled."""
    from_: str | None = None
    """With ``follow``: ``"start"`` (history first, the default) or ``"end"`` (new rows only)."""
    on_lag: str | None = None
    """With ``follow``: ``"error"`` (default: a lagging follower is disconnected) or ``"skip"``."""
    where: str | None = None
    """A SQL filter expression on the dataset, run at its connector (``amount > 100``)."""
    sql: str | None = None
    """One SELECT over the connector's datasets, instead of ``dataset``."""
    offset: int | None = None
    """Skip this many rows first (with ``follow``: start at this dataset row number). A
    read resumed on another replica asks for the rows after those already delivered."""

    @classmethod
    def from_json(cls, obj: Any, *, allowed: frozenset[str] = frozenset()) -> Query:
        """Validate a query object; ``allowed`` names extra keys the caller handles itself."""
        if not isinstance(obj, dict):
            raise errors.invalid("a query must be a JSON object")
        known = {f.name.rstrip("_") for f in fields(cls)} | allowed
        unknown = sorted(set(obj) - known)
        if unknown:
            raise errors.invalid(f"unknown query key {unknown[0]!r}")
        sql = obj.get("sql")
        if sql is not None:
            if not isinstance(sql, str) or not sql.strip():
                raise errors.invalid("'sql' must be a non-empty string")
            clash = sorted(set(obj) & {"dataset", "columns", "where", "follow", "limit"})
            if clash:
                raise errors.invalid(f"'sql' does not go with {clash[0]!r} (say it in the SQL)")
        dataset = obj.get("dataset", "" if sql is not None else None)
        if sql is None and (
            not isinstance(dataset, str) or not dataset or len(dataset) > MAX_NAME_CHARS
        ):
            raise errors.invalid("'dataset' (or 'sql') must be a non-empty string")
        where = obj.get("where")
        if where is not None and (not isinstance(where, str) or not where.strip()):
            raise errors.invalid("'where' must be a non-empty SQL expression")
        tenant = obj.get("tenant")
        if tenant is not None and (not isinstance(tenant, str) or not tenant):
            raise errors.invalid("'tenant' must be a non-empty string")
        columns = obj.get("columns")
        if columns is not None:
            if not isinstance(columns, list) or not all(isinstance(c, str) and c for c in columns):
                raise errors.invalid("'columns' must be a list of column names")
            columns = tuple(columns)
        limit = obj.get("limit")
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 0
        ):
            raise errors.invalid("'limit' must be a non-negative integer")
        follow = obj.get("follow")
        if follow is not None and not isinstance(follow, bool):
            raise errors.invalid("'follow' must be true or false")
        start = obj.get("from")
        if start is not None and start not in ("start", "end"):
            raise errors.invalid('\'from\' must be "start" or "end"')
        on_lag = obj.get("on_lag")
        if on_lag is not None and on_lag not in ("error", "skip"):
            raise errors.invalid('\'on_lag\' must be "error" or "skip"')
        if (start or on_lag) and not follow:
            raise errors.invalid("'from' and 'on_lag' need \"follow\": true")
        offset = obj.get("offset")
        if offset is not None:
            if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
                raise errors.invalid("'offset' must be a non-negative integer")
            if sql is not None:
                raise errors.invalid("'sql' does not go with 'offset' (say it in the SQL)")
            if start == "end":
                raise errors.invalid("'offset' does not go with \"from\": \"end\"")
        return cls(
            dataset=str(dataset),
            tenant=tenant,
            columns=columns,
            limit=limit,
            follow=follow or None,
            from_=start,
            on_lag=on_lag,
            where=where,
            sql=sql,
            offset=offset or None,
        )

    @classmethod
    def from_descriptor(cls, descriptor: flight.FlightDescriptor, *, with_tenant: bool) -> Query:
        """Path ``[dataset]`` (connector) or ``[tenant, dataset]`` (gateway), or a JSON command."""
        if descriptor.descriptor_type == flight.DescriptorType.CMD:
            return cls.from_json(load_json(descriptor.command, "command"))
        parts = [p.decode("utf-8", "replace") for p in descriptor.path or []]
        if with_tenant:
            if len(parts) != 2:
                raise errors.invalid("descriptor path must be [tenant, dataset]")
            return cls.from_json({"tenant": parts[0], "dataset": parts[1]})
        if len(parts) != 1:
            raise errors.invalid("descriptor path must be [dataset]")
        return cls.from_json({"dataset": parts[0]})

    @classmethod
    def from_ticket(cls, ticket: flight.Ticket) -> Query:
        return cls.from_json(load_json(ticket.ticket, "ticket"))

    def to_json(self) -> dict[str, Any]:
        out = {k.rstrip("_"): v for k, v in asdict(self).items() if v is not None}
        if self.sql is not None:
            del out["dataset"]
        if self.columns is not None:
            out["columns"] = list(self.columns)
        return out

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    def to_ticket(self) -> flight.Ticket:
        return flight.Ticket(self.to_bytes())

    def to_descriptor(self) -> flight.FlightDescriptor:
        return flight.FlightDescriptor.for_command(self.to_bytes())

    def upstream(self) -> Query:
        """The same query without the tenant, as a connector takes it."""
        return replace(self, tenant=None)

    def projected(self, schema: pa.Schema) -> pa.Schema:
        """``schema`` narrowed to this query's columns; a column it lacks is ``invalid``."""
        if self.columns is None:
            return schema
        missing = [c for c in self.columns if c not in schema.names]
        if missing:
            raise errors.invalid(f"dataset {self.dataset!r} has no column {missing[0]!r}")
        return pa.schema([schema.field(c) for c in self.columns])

    def label(self) -> str:
        name = self.dataset if self.sql is None else "sql"
        return f"{self.tenant}/{name}" if self.tenant else name


def load_json(raw: bytes, what: str) -> Any:
    if len(raw) > MAX_TICKET_BYTES:
        raise errors.invalid(f"{what} is larger than {MAX_TICKET_BYTES} bytes")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise errors.invalid(f"{what} is not valid JSON") from None
    except RecursionError:  # e.g. 40,000 nested brackets
        raise errors.invalid(f"{what} is nested too deeply") from None
