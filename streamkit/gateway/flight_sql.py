"""Flight SQL on the gateway's Flight port (DESIGN.md "SQL at the connector, Flight SQL at the
gateway"), for ADBC, JDBC and the BI tools built on them.

The catalog is ``streamkit``, each tenant the caller may read is a schema (``db_schema``) and
each of its datasets a table. A statement is routed, like any streamkit query, to the one
tenant it names (:mod:`streamkit.sql_route` rewrites ``demo.sensors`` to the connector's
``"sensors"``), and runs there: the gateway plans and executes nothing. Its ticket is a
``TicketStatementQuery`` whose handle is the streamkit query itself (tenant and SQL), so any
gateway serves it and the caller's identity is checked again when it is read.

Prepared statements keep no state either: the handle is the statement's text (and an id); a
``DoPut`` of parameter values answers with a new handle that carries them too (the
``DoPutPreparedStatementResult`` of Flight SQL 15+). For clients that keep the first handle,
the values are also remembered by id in a small bounded table of this gateway. Values become
SQL literals of their Arrow type at execution (:func:`streamkit.sql_route.literal`).

Plain streamkit descriptors, tickets and actions are told apart by their bytes: Flight SQL
packs every command in a ``google.protobuf.Any`` whose type URL names its message; streamkit
sends JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

import streamkit
from streamkit import errors
from streamkit import flight_sql_messages as m
from streamkit.gateway.access import Identity
from streamkit.gateway.forward import Forwarder
from streamkit.query import Query
from streamkit.security import request_token
from streamkit.sql_route import CATALOG, MAX_SQL_CHARS, Statement, bound_literals, route
from streamkit.tickets import Ticket

TABLE_TYPE = "TABLE"
MAX_PARAMETER_BYTES = 64 * 1024
MAX_REMEMBERED = 1024  # bound parameter sets kept for clients that reuse the first handle
CREATE_PREPARED = "CreatePreparedStatement"
CLOSE_PREPARED = "ClosePreparedStatement"
# Flight SQL (and Flight session) actions the gateway does not serve: answered with the
# contract's "unimplemented" (code in extra_info), not with "unknown action".
UNSERVED_ACTIONS = frozenset(
    {
        "CreatePreparedSubstraitPlan",
        "BeginTransaction",
        "BeginSavepoint",
        "EndTransaction",
        "EndSavepoint",
        "CancelQuery",
        "CancelFlightInfo",
        "RenewFlightEndpoint",
        "SetSessionOptions",
        "GetSessionOptions",
        "CloseSession",
    }
)
METADATA_SCHEMAS = {
    "CommandGetSqlInfo": m.SQL_INFO_SCHEMA,
    "CommandGetCatalogs": m.CATALOGS_SCHEMA,
    "CommandGetDbSchemas": m.DB_SCHEMAS_SCHEMA,
    "CommandGetTableTypes": m.TABLE_TYPES_SCHEMA,
    "CommandGetPrimaryKeys": m.PRIMARY_KEYS_SCHEMA,
}

# Words beyond SQL:2003 that DataFusion's parser reserves or gives a meaning (JDBC's
# getSQLKeywords; DBeaver highlights and quotes with them), and the engine's functions.
KEYWORDS = """ANALYZE ANTI ARRAY_AGG ASOF COPY DATABASE DESCRIBE DISTRIBUTE EXCLUDE EXPLAIN
    EXTERNAL FIRST_VALUE FORMAT FULLTEXT IF ILIKE INTERVAL LAST_VALUE LIMIT LOCATION MAP NULLS
    OFFSET OPTIONS PARQUET PARTITIONED PIVOT PREPARE QUALIFY REPLACE RLIKE SEMI SHOW STRUCT
    TABLESAMPLE TBLPROPERTIES UNNEST UNPIVOT UNSIGNED""".split()  # noqa: SIM905
NUMERIC_FUNCTIONS = """abs acos acosh asin asinh atan atan2 atanh cbrt ceil cos cosh cot
    degrees exp factorial floor gcd isnan iszero lcm ln log log10 log2 nanvl pi pow power
    radians random round signum sin sinh sqrt tan tanh trunc""".split()  # noqa: SIM905
STRING_FUNCTIONS = """ascii bit_length btrim char_length character_length chr concat
    concat_ws ends_with find_in_set initcap instr left length levenshtein lower lpad ltrim
    octet_length overlay position regexp_like regexp_match regexp_replace repeat replace
    reverse right rpad rtrim split_part starts_with strpos substr substr_index substring
    to_hex translate trim upper uuid""".split()  # noqa: SIM905
DATETIME_FUNCTIONS = """current_date current_time current_timestamp date_bin date_format
    date_part date_trunc datepart datetrunc extract from_unixtime make_date now to_char
    to_date to_local_time to_timestamp to_timestamp_micros to_timestamp_millis
    to_timestamp_nanos to_timestamp_seconds to_unixtime""".split()  # noqa: SIM905
SYSTEM_FUNCTIONS = ["arrow_cast", "arrow_typeof", "coalesce", "nullif", "nvl", "nvl2"]


def sql_info() -> dict[int, tuple[int, object]]:
    """What GetSqlInfo answers: code -> (union member, value)."""
    s, b, i64, i32, strings = (
        m.STRING_VALUE,
        m.BOOL_VALUE,
        m.BIGINT_VALUE,
        m.INT32_BITMASK,
        m.STRING_LIST,
    )
    return {
        m.SERVER_NAME: (s, "streamkit"),
        m.SERVER_VERSION: (s, streamkit.__version__),
        m.SERVER_ARROW_VERSION: (s, pa.__version__),
        m.SERVER_READ_ONLY: (b, True),
        m.SERVER_SQL: (b, True),
        m.SERVER_SUBSTRAIT: (b, False),
        m.SERVER_TRANSACTION: (i32, 0),  # SQL_SUPPORTED_TRANSACTION_NONE
        m.SERVER_CANCEL: (b, False),
        m.SERVER_STATEMENT_TIMEOUT: (i32, 0),
        m.SERVER_TRANSACTION_TIMEOUT: (i32, 0),
        m.SQL_DDL_CATALOG: (b, False),
        m.SQL_DDL_SCHEMA: (b, False),
        m.SQL_DDL_TABLE: (b, False),
        m.SQL_IDENTIFIER_CASE: (i32, 3),  # unquoted names fold to lower case
        m.SQL_IDENTIFIER_QUOTE_CHAR: (s, '"'),
        m.SQL_QUOTED_IDENTIFIER_CASE: (i32, 0),  # kept as written (no "case sensitive" value)
        m.SQL_ALL_TABLES_ARE_SELECTABLE: (b, True),
        m.SQL_NULL_ORDERING: (i32, 0),  # NULLS LAST ascending, FIRST descending: sorted high
        m.SQL_KEYWORDS: (strings, KEYWORDS),
        m.SQL_NUMERIC_FUNCTIONS: (strings, NUMERIC_FUNCTIONS),
        m.SQL_STRING_FUNCTIONS: (strings, STRING_FUNCTIONS),
        m.SQL_SYSTEM_FUNCTIONS: (strings, SYSTEM_FUNCTIONS),
        m.SQL_DATETIME_FUNCTIONS: (strings, DATETIME_FUNCTIONS),
        m.SQL_SEARCH_STRING_ESCAPE: (s, "\\"),
        m.SQL_EXTRA_NAME_CHARACTERS: (s, ""),
        m.SQL_SUPPORTS_COLUMN_ALIASING: (b, True),
        m.SQL_NULL_PLUS_NULL_IS_NULL: (b, True),
        m.SQL_SUPPORTS_TABLE_CORRELATION_NAMES: (b, True),
        m.SQL_SUPPORTS_DIFFERENT_TABLE_CORRELATION_NAMES: (b, False),
        m.SQL_SUPPORTS_EXPRESSIONS_IN_ORDER_BY: (b, True),
        m.SQL_SUPPORTS_ORDER_BY_UNRELATED: (b, True),
        m.SQL_SUPPORTED_GROUP_BY: (i32, 0b11),  # unrelated, beyond select
        m.SQL_SUPPORTS_LIKE_ESCAPE_CLAUSE: (b, True),
        m.SQL_SUPPORTS_NON_NULLABLE_COLUMNS: (b, False),
        m.SQL_OUTER_JOINS_SUPPORT_LEVEL: (i32, 2),  # full outer joins
        m.SQL_SCHEMA_TERM: (s, "tenant"),
        m.SQL_PROCEDURE_TERM: (s, "procedure"),
        m.SQL_CATALOG_TERM: (s, "catalog"),
        m.SQL_CATALOG_AT_START: (b, True),
        m.SQL_SELECT_FOR_UPDATE_SUPPORTED: (b, False),
        m.SQL_STORED_PROCEDURES_SUPPORTED: (b, False),
        m.SQL_SUPPORTED_SUBQUERIES: (i32, 0b1111),
        m.SQL_CORRELATED_SUBQUERIES_SUPPORTED: (b, True),
        m.SQL_SUPPORTED_UNIONS: (i32, 0b11),
        m.SQL_MAX_STATEMENT_LENGTH: (i64, MAX_SQL_CHARS),
        m.SQL_MAX_TABLES_IN_SELECT: (i64, 64),
        m.SQL_DEFAULT_TRANSACTION_ISOLATION: (i32, 0),  # SQL_TRANSACTION_NONE
        m.SQL_TRANSACTIONS_SUPPORTED: (b, False),
        m.SQL_BATCH_UPDATES_SUPPORTED: (b, False),
        m.SQL_SAVEPOINTS_SUPPORTED: (b, False),
        m.SQL_NAMED_PARAMETERS_SUPPORTED: (b, False),
    }


def sql_info_table(codes: list[int]) -> pa.Table:
    """The rows of GetSqlInfo for ``codes`` (all when empty; unknown codes left out)."""
    known = sql_info()
    wanted = [c for c in (codes or sorted(known)) if c in known]
    children: list[list[object]] = [[] for _ in m.SQL_INFO_VALUE]
    types, offsets = [], []
    for code in wanted:
        member, value = known[code]
        types.append(member)
        offsets.append(len(children[member]))
        children[member].append(value)
    arrays = [
        pa.array(values, type=m.SQL_INFO_VALUE.field(n).type) for n, values in enumerate(children)
    ]
    value = pa.UnionArray.from_dense(
        pa.array(types, pa.int8()),
        pa.array(offsets, pa.int32()),
        arrays,
        [f.name for f in m.SQL_INFO_VALUE],
        list(m.SQL_INFO_VALUE.type_codes),
    )
    return pa.Table.from_arrays([pa.array(wanted, pa.uint32()), value], schema=m.SQL_INFO_SCHEMA)


def like(pattern: str | None) -> Callable[[str], bool]:
    """A Flight SQL filter pattern (``%`` any run, ``_`` one character, ``\\`` escapes) as a
    test; no pattern matches everything."""
    if pattern is None:
        return lambda _: True
    parts, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    compiled = re.compile("".join(parts), re.DOTALL)
    return lambda name: compiled.fullmatch(name) is not None


def _optional(message: Any, field: str) -> str | None:
    return str(getattr(message, field)) if message.HasField(field) else None


class _Remembered:
    """Bound parameter sets by prepared statement id, the oldest forgotten first."""

    def __init__(self, limit: int = MAX_REMEMBERED) -> None:
        self.limit = limit
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: str, value: bytes) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.limit:
                self._items.popitem(last=False)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._items.get(key)

    def drop(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


class FlightSql:
    """The Flight SQL side of :class:`~streamkit.gateway.flight_service.GatewayFlightServer`:
    each method answers a Flight SQL request, or returns None/False for a plain one."""

    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder
        self.remembered = _Remembered()

    # -- server wiring ---------------------------------------------------------------------

    def server_options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` for the Flight server with the Handshake served: credentials travel in
        the ``authorization`` header (Basic with the token as the password, or Bearer), are
        checked by a middleware, and a Basic login is answered with the Bearer header."""
        middleware = dict(kwargs.get("middleware") or {})
        middleware["flight-sql-handshake"] = HandshakeCheck(self.forwarder.identify)
        return {**kwargs, "auth_handler": HeaderAuth(), "middleware": middleware}

    def serves_action(self, kind: str) -> bool:
        return kind in (CREATE_PREPARED, CLOSE_PREPARED) or kind in UNSERVED_ACTIONS

    # -- GetFlightInfo ---------------------------------------------------------------------

    def get_flight_info(
        self, identity: Identity, peer: str, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo | None:
        command = _command(descriptor)
        if command is None:
            return None
        name, message = command
        if name == "CommandStatementQuery":
            _no_transaction(message)
            return self._statement_info(identity, peer, message.query, descriptor, [])
        if name == "CommandPreparedStatementQuery":
            sql, key, values = _read_handle(message.prepared_statement_handle)
            if values is None:
                values = self.remembered.get(key)
            literals = bound_literals(_read_ipc(values)) if values else []
            return self._statement_info(identity, peer, sql, descriptor, literals)
        if name == "CommandGetTables":
            schema = m.TABLES_WITH_SCHEMA_SCHEMA if message.include_schema else m.TABLES_SCHEMA
        elif name in METADATA_SCHEMAS and message is not None:
            schema = METADATA_SCHEMAS[name]
        else:
            raise _unimplemented(f"Flight SQL {name} is not served by the gateway")
        endpoint = flight.FlightEndpoint(descriptor.command, [])
        return flight.FlightInfo(schema, descriptor, [endpoint], -1, -1)

    def _statement_info(
        self,
        identity: Identity,
        peer: str,
        sql: str,
        descriptor: flight.FlightDescriptor,
        literals: list[str],
    ) -> flight.FlightInfo:
        statement = route(sql, self.forwarder.config.default_tenant)
        query = _query(statement, literals)
        upstream = self.forwarder.info(query, identity, peer)
        endpoints = [
            flight.FlightEndpoint(m.pack(m.TicketStatementQuery(statement_handle=minted)), [])
            for minted in self.forwarder.tickets_for(query)
        ]
        return flight.FlightInfo(
            upstream.schema, descriptor, endpoints, upstream.total_records, upstream.total_bytes
        )

    # -- DoGet -----------------------------------------------------------------------------

    def do_get(
        self, identity: Identity, ticket: flight.Ticket
    ) -> Ticket | flight.FlightDataStream | None:
        """The streamkit ticket of a statement (the caller streams it as any other), a
        metadata command's results, or None for a plain ticket."""
        unpacked = m.unpack(ticket.ticket)
        if unpacked is None:
            return None
        name, message = unpacked
        if name == "TicketStatementQuery" and message is not None:
            return self.forwarder.read_ticket(message.statement_handle)
        if (name not in METADATA_SCHEMAS and name != "CommandGetTables") or message is None:
            raise _unimplemented(f"Flight SQL {name} is not served by the gateway")
        return flight.RecordBatchStream(self._metadata(identity, name, message))

    def _metadata(self, identity: Identity, name: str, message: Any) -> pa.Table:
        if name == "CommandGetSqlInfo":
            return sql_info_table(list(message.info))
        if name == "CommandGetCatalogs":
            return pa.Table.from_pylist([{"catalog_name": CATALOG}], schema=m.CATALOGS_SCHEMA)
        if name == "CommandGetTableTypes":
            return pa.Table.from_pylist([{"table_type": TABLE_TYPE}], schema=m.TABLE_TYPES_SCHEMA)
        if name == "CommandGetPrimaryKeys":
            return m.PRIMARY_KEYS_SCHEMA.empty_table()  # datasets have no declared keys
        if name == "CommandGetDbSchemas":
            tenants = self._tenants(identity, message)
            rows = [{"catalog_name": CATALOG, "db_schema_name": t} for t in tenants]
            return pa.Table.from_pylist(rows, schema=m.DB_SCHEMAS_SCHEMA)
        return self._tables(identity, message)

    def _tenants(self, identity: Identity, message: Any) -> list[str]:
        """The tenants the caller may read that ``message``'s catalog and pattern select."""
        catalog = _optional(message, "catalog")
        if catalog is not None and catalog != CATALOG:
            return []
        matches = like(_optional(message, "db_schema_filter_pattern"))
        known = self.forwarder.upstreams.tenants
        return sorted(name for name in known if name in identity.tenants and matches(name))

    def _tables(self, identity: Identity, message: Any) -> pa.Table:
        include = bool(message.include_schema)
        schema = m.TABLES_WITH_SCHEMA_SCHEMA if include else m.TABLES_SCHEMA
        types = [str(t) for t in message.table_types]
        if types and TABLE_TYPE not in (t.upper() for t in types):
            return schema.empty_table()
        matches = like(_optional(message, "table_name_filter_pattern"))
        rows: list[dict[str, object]] = []
        for tenant in self._tenants(identity, message):
            try:
                infos = self.forwarder.datasets(identity, tenant)
            except errors.StreamkitError:
                continue  # a tenant that is down does not hide the others
            for _, info in sorted(infos, key=lambda pair: pair[1].descriptor.path[0]):
                dataset = info.descriptor.path[0].decode()
                if not matches(dataset):
                    continue
                row: dict[str, object] = {
                    "catalog_name": CATALOG,
                    "db_schema_name": tenant,
                    "table_name": dataset,
                    "table_type": TABLE_TYPE,
                }
                if include:
                    row["table_schema"] = info.schema.serialize().to_pybytes()
                rows.append(row)
        return pa.Table.from_pylist(rows, schema=schema)

    # -- DoPut: parameters of a prepared statement ----------------------------------------

    def do_put(
        self,
        identity: Identity,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> bool:
        """Bind the values ``reader`` sends to the prepared statement of ``descriptor``;
        False for a plain descriptor (a publish)."""
        command = _command(descriptor)
        if command is None:
            return False
        name, message = command
        if name != "CommandPreparedStatementQuery" or message is None:
            raise _unimplemented(f"Flight SQL {name} is not served: the gateway is read-only")
        sql, key, _ = _read_handle(message.prepared_statement_handle)
        statement = route(sql, self.forwarder.config.default_tenant)
        self.forwarder.admit(_query(statement, None), identity)
        values = _read_values(reader)
        raw = None
        if values.num_rows:
            statement.render(bound_literals(values))  # a bad value fails the bind, not later
            raw = _write_ipc(values)
            self.remembered.put(key, raw)
        handle = _handle(sql, key, raw)
        result = m.DoPutPreparedStatementResult(prepared_statement_handle=handle)
        writer.write(pa.py_buffer(m.serialize(result)))
        return True

    # -- DoAction --------------------------------------------------------------------------

    def do_action(
        self, identity: Identity, peer: str, action: flight.Action
    ) -> Iterator[flight.Result]:
        body = action.body.to_pybytes() if action.body is not None else b""
        if action.type == CREATE_PREPARED:
            request = m.parse(m.ActionCreatePreparedStatementRequest, body)
            if request is None:
                raise errors.invalid("CreatePreparedStatement: the request is not readable")
            _no_transaction(request)
            yield flight.Result(m.pack(self._prepare(identity, peer, request.query)))
        elif action.type == CLOSE_PREPARED:
            request = m.parse(m.ActionClosePreparedStatementRequest, body)
            if request is None:
                raise errors.invalid("ClosePreparedStatement: the request is not readable")
            _, key, _ = _read_handle(request.prepared_statement_handle)
            self.remembered.drop(key)
        else:
            raise _unimplemented(f"the action {action.type!r} is not served by the gateway")

    def _prepare(self, identity: Identity, peer: str, sql: str) -> Any:
        statement = route(sql, self.forwarder.config.default_tenant)
        dataset_schema = b""
        if statement.parameters:
            # Its result schema depends on the values: known at execution.
            self.forwarder.admit(_query(statement, None), identity)
        else:
            info = self.forwarder.info(_query(statement, []), identity, peer)
            dataset_schema = info.schema.serialize().to_pybytes()
        return m.ActionCreatePreparedStatementResult(
            prepared_statement_handle=_handle(sql, secrets.token_hex(8), None),
            dataset_schema=dataset_schema,
        )


# -- handshake ------------------------------------------------------------------------------


class HeaderAuth(flight.ServerAuthHandler):  # type: ignore[misc]  # pyarrow: no stubs
    """Serves the Handshake (a server without an auth handler refuses it, and with it a
    username/password login). Credentials are headers, read by ``TokenMiddlewareFactory``
    and checked by :class:`HandshakeCheck`; every call is still checked by its handler."""

    def authenticate(self, outgoing: Any, incoming: Any) -> None:
        return None

    def is_valid(self, token: bytes) -> str:
        return ""  # no Flight auth token: calls are authorized by their bearer token


class HandshakeCheck(flight.ServerMiddlewareFactory):  # type: ignore[misc]  # pyarrow: no stubs
    """Refuses a Handshake whose token is not valid, so a wrong password fails the login."""

    def __init__(self, identify: Callable[[str | None], Identity]) -> None:
        self.identify = identify

    def start_call(self, info: flight.CallInfo, headers: dict[str, list[str]]) -> None:
        if info.method != flight.FlightMethod.HANDSHAKE:
            return None
        values = headers.get("authorization") or []
        token, _ = request_token(values[0]) if values else (None, False)
        if values and token is None:
            raise flight.FlightUnauthenticatedError(
                "unauthenticated: log in with the token as the password (or a Bearer header)",
                extra_info=errors.UNAUTHENTICATED.encode(),
            )
        try:
            self.identify(token)
        except errors.StreamkitError as exc:
            raise errors.to_flight(exc) from None
        return None


# -- helpers --------------------------------------------------------------------------------


def _command(descriptor: flight.FlightDescriptor) -> tuple[str, Any] | None:
    if descriptor.descriptor_type != flight.DescriptorType.CMD:
        return None
    return m.unpack(descriptor.command)


def _unimplemented(what: str) -> errors.Unimplemented:
    return errors.Unimplemented(f"unimplemented: {what}")


def _no_transaction(message: Any) -> None:
    if message.HasField("transaction_id"):
        raise _unimplemented("transactions (the gateway is read-only)")


def _query(statement: Statement, literals: list[str] | None) -> Query:
    """The streamkit query of ``statement``; with ``literals`` None (values not bound yet),
    one that only names the tenant, for admission."""
    sql = statement.render(literals) if literals is not None else "SELECT 1"
    return Query.from_json({"tenant": statement.tenant, "sql": sql})


def _handle(sql: str, key: str, values: bytes | None) -> bytes:
    document: dict[str, str] = {"sql": sql, "id": key}
    if values is not None:
        document["values"] = base64.b64encode(values).decode()
    return json.dumps(document, separators=(",", ":")).encode()


def _read_handle(raw: bytes) -> tuple[str, str, bytes | None]:
    """``(sql, id, bound values as IPC or None)`` of a prepared statement handle."""
    try:
        document = json.loads(raw)
        sql, key = document["sql"], document["id"]
        values = document.get("values")
        if not isinstance(sql, str) or not isinstance(key, str):
            raise TypeError
        decoded = base64.b64decode(values, validate=True) if isinstance(values, str) else None
    except (ValueError, TypeError, KeyError, binascii.Error, RecursionError):
        raise errors.invalid("not a prepared statement handle of this gateway") from None
    return sql, key, decoded


def _read_values(reader: flight.MetadataRecordBatchReader) -> pa.Table:
    """The parameter values a DoPut sends, up to ``MAX_PARAMETER_BYTES``."""
    try:
        schema = reader.schema
    except (pa.ArrowException, flight.FlightError):
        return pa.table({})
    batches, size = [], 0
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            break
        if chunk.data is None:
            continue
        size += chunk.data.nbytes
        if size > MAX_PARAMETER_BYTES:
            raise errors.invalid(f"parameter values over {MAX_PARAMETER_BYTES} bytes")
        batches.append(chunk.data)
    return pa.Table.from_batches(batches, schema=schema)


def _write_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as out:
        out.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _read_ipc(raw: bytes) -> pa.Table:
    try:
        return pa.ipc.open_stream(raw).read_all()
    except pa.ArrowException:
        raise errors.invalid("the prepared statement's parameter values are not readable") from None
