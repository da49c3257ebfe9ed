"""The Flight SQL protocol messages streamkit serves, and the result schemas of its commands.

The messages are the subset of Apache Arrow's ``format/FlightSql.proto`` (package
``arrow.flight.protocol.sql``) that the gateway serves, declared here field by field (names,
numbers, types, proto3 ``optional`` presence) as a ``FileDescriptorProto`` in a descriptor
pool of their own, so the ``protobuf`` runtime encodes and decodes them: no bytes are parsed by
hand and no generated code is needed. Commands travel packed in ``google.protobuf.Any``
(``type.googleapis.com/arrow.flight.protocol.sql.<Message>``).

The result schemas are those of the Flight SQL reference implementations (C++, Java, Go),
nullability included: ADBC compares them exactly. (``GetPrimaryKeys``: the implementations
put ``key_sequence`` before ``key_name``, where the .proto comment lists them the other way;
clients check against the implementations' order.)
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from google.protobuf import (  # type: ignore[import-untyped,unused-ignore]
    any_pb2,
    descriptor_pb2,
    descriptor_pool,
)
from google.protobuf.message import DecodeError  # type: ignore[import-untyped,unused-ignore]

PACKAGE = "arrow.flight.protocol.sql"
TYPE_URL_PREFIX = f"type.googleapis.com/{PACKAGE}."

_F = descriptor_pb2.FieldDescriptorProto
_STRING, _BYTES, _BOOL, _UINT32 = _F.TYPE_STRING, _F.TYPE_BYTES, _F.TYPE_BOOL, _F.TYPE_UINT32
_PLAIN, _OPTIONAL, _REPEATED = "plain", "optional", "repeated"

# message -> (field, number, type, presence); as in FlightSql.proto.
_MESSAGES: dict[str, list[tuple[str, int, int, str]]] = {
    "CommandGetSqlInfo": [("info", 1, _UINT32, _REPEATED)],
    "CommandGetCatalogs": [],
    "CommandGetDbSchemas": [
        ("catalog", 1, _STRING, _OPTIONAL),
        ("db_schema_filter_pattern", 2, _STRING, _OPTIONAL),
    ],
    "CommandGetTables": [
        ("catalog", 1, _STRING, _OPTIONAL),
        ("db_schema_filter_pattern", 2, _STRING, _OPTIONAL),
        ("table_name_filter_pattern", 3, _STRING, _OPTIONAL),
        ("table_types", 4, _STRING, _REPEATED),
        ("include_schema", 5, _BOOL, _PLAIN),
    ],
    "CommandGetTableTypes": [],
    "CommandGetPrimaryKeys": [
        ("catalog", 1, _STRING, _OPTIONAL),
        ("db_schema", 2, _STRING, _OPTIONAL),
        ("table", 3, _STRING, _PLAIN),
    ],
    "CommandStatementQuery": [
        ("query", 1, _STRING, _PLAIN),
        ("transaction_id", 2, _BYTES, _OPTIONAL),
    ],
    "TicketStatementQuery": [("statement_handle", 1, _BYTES, _PLAIN)],
    "CommandPreparedStatementQuery": [("prepared_statement_handle", 1, _BYTES, _PLAIN)],
    "ActionCreatePreparedStatementRequest": [
        ("query", 1, _STRING, _PLAIN),
        ("transaction_id", 2, _BYTES, _OPTIONAL),
    ],
    "ActionCreatePreparedStatementResult": [
        ("prepared_statement_handle", 1, _BYTES, _PLAIN),
        ("dataset_schema", 2, _BYTES, _PLAIN),
        ("parameter_schema", 3, _BYTES, _PLAIN),
    ],
    "ActionClosePreparedStatementRequest": [("prepared_statement_handle", 1, _BYTES, _PLAIN)],
    "DoPutPreparedStatementResult": [("prepared_statement_handle", 1, _BYTES, _OPTIONAL)],
}


def _json_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _file() -> Any:
    proto = descriptor_pb2.FileDescriptorProto(
        name="streamkit/flight_sql_subset.proto", package=PACKAGE, syntax="proto3"
    )
    for name, fields in _MESSAGES.items():
        message = proto.message_type.add(name=name)
        for field_name, number, kind, presence in fields:
            field = message.field.add(
                name=field_name,
                number=number,
                type=kind,
                label=_F.LABEL_REPEATED if presence == _REPEATED else _F.LABEL_OPTIONAL,
                json_name=_json_name(field_name),
            )
            if presence == _OPTIONAL:  # proto3 `optional`: a synthetic oneof of its own
                field.proto3_optional = True
                field.oneof_index = len(message.oneof_decl)
                message.oneof_decl.add(name=f"_{field_name}")
    return proto


def _classes() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file())
    try:
        from google.protobuf.message_factory import (  # type: ignore[import-untyped,unused-ignore]
            GetMessageClass,
        )
    except ImportError:  # protobuf < 4.22
        from google.protobuf.message_factory import (  # type: ignore[import-untyped,unused-ignore]
            MessageFactory,
        )

        factory = MessageFactory(pool)
        return {
            name: factory.GetPrototype(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
            for name in _MESSAGES
        }
    return {
        name: GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}")) for name in _MESSAGES
    }


MESSAGES = _classes()
CommandGetSqlInfo = MESSAGES["CommandGetSqlInfo"]
CommandGetCatalogs = MESSAGES["CommandGetCatalogs"]
CommandGetDbSchemas = MESSAGES["CommandGetDbSchemas"]
CommandGetTables = MESSAGES["CommandGetTables"]
CommandGetTableTypes = MESSAGES["CommandGetTableTypes"]
CommandGetPrimaryKeys = MESSAGES["CommandGetPrimaryKeys"]
CommandStatementQuery = MESSAGES["CommandStatementQuery"]
TicketStatementQuery = MESSAGES["TicketStatementQuery"]
CommandPreparedStatementQuery = MESSAGES["CommandPreparedStatementQuery"]
ActionCreatePreparedStatementRequest = MESSAGES["ActionCreatePreparedStatementRequest"]
ActionCreatePreparedStatementResult = MESSAGES["ActionCreatePreparedStatementResult"]
ActionClosePreparedStatementRequest = MESSAGES["ActionClosePreparedStatementRequest"]
DoPutPreparedStatementResult = MESSAGES["DoPutPreparedStatementResult"]


def pack(message: Any) -> bytes:
    """``message`` in an ``Any``, serialized (a command, a ticket, an action body or result)."""
    wrapper = any_pb2.Any()
    wrapper.Pack(message)
    return bytes(wrapper.SerializeToString())


def unpack(raw: bytes) -> tuple[str, Any] | None:
    """``(name, message)`` of a packed Flight SQL message, ``message`` None for one this module
    does not declare; None if ``raw`` is not a Flight SQL message (a streamkit JSON command or
    ticket, say)."""
    if not raw or raw[:1] in (b"{", b"["):
        return None
    wrapper = any_pb2.Any()
    try:
        wrapper.ParseFromString(raw)
    except (DecodeError, RuntimeError, ValueError):
        return None
    url = wrapper.type_url
    if not url.startswith(TYPE_URL_PREFIX):
        return None
    name = url[len(TYPE_URL_PREFIX) :]
    cls = MESSAGES.get(name)
    if cls is None:
        return name, None
    message = cls()
    try:
        message.ParseFromString(wrapper.value)
    except (DecodeError, RuntimeError, ValueError):
        return name, None
    return name, message


def parse(cls: Any, raw: bytes) -> Any:
    """A message of ``cls`` from its own bytes (e.g. an action body packed by the client)."""
    unpacked = unpack(raw)
    if unpacked is None or unpacked[1] is None or not isinstance(unpacked[1], cls):
        message = cls()
        try:  # some clients send action bodies unpacked
            message.ParseFromString(raw)
        except (DecodeError, RuntimeError, ValueError):
            return None
        return message
    return unpacked[1]


def serialize(message: Any) -> bytes:
    return bytes(message.SerializeToString())


# -- result schemas ------------------------------------------------------------------------

CATALOGS_SCHEMA = pa.schema([pa.field("catalog_name", pa.string(), nullable=False)])
DB_SCHEMAS_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.string()),
        pa.field("db_schema_name", pa.string(), nullable=False),
    ]
)
TABLES_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.string()),
        pa.field("db_schema_name", pa.string()),
        pa.field("table_name", pa.string(), nullable=False),
        pa.field("table_type", pa.string(), nullable=False),
    ]
)
TABLES_WITH_SCHEMA_SCHEMA = TABLES_SCHEMA.append(
    pa.field("table_schema", pa.binary(), nullable=False)
)
TABLE_TYPES_SCHEMA = pa.schema([pa.field("table_type", pa.string(), nullable=False)])
PRIMARY_KEYS_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.string()),
        pa.field("db_schema_name", pa.string()),
        pa.field("table_name", pa.string(), nullable=False),
        pa.field("column_name", pa.string(), nullable=False),
        pa.field("key_sequence", pa.int32(), nullable=False),
        pa.field("key_name", pa.string()),
    ]
)
SQL_INFO_VALUE = pa.dense_union(
    [
        pa.field("string_value", pa.string()),
        pa.field("bool_value", pa.bool_()),
        pa.field("bigint_value", pa.int64()),
        pa.field("int32_bitmask", pa.int32()),
        pa.field("string_list", pa.list_(pa.field("item", pa.string()))),
        pa.field(
            "int32_to_int32_list_map",
            pa.map_(pa.int32(), pa.list_(pa.field("item", pa.int32()))),
        ),
    ],
    type_codes=[0, 1, 2, 3, 4, 5],
)
SQL_INFO_SCHEMA = pa.schema(
    [
        pa.field("info_name", pa.uint32(), nullable=False),
        pa.field("value", SQL_INFO_VALUE, nullable=False),
    ]
)

# SqlInfo codes (FlightSql.proto, enum SqlInfo) that the gateway answers.
SERVER_NAME = 0
SERVER_VERSION = 1
SERVER_ARROW_VERSION = 2
SERVER_READ_ONLY = 3
SERVER_SQL = 4
SERVER_SUBSTRAIT = 5
SERVER_TRANSACTION = 8
SERVER_CANCEL = 9
SERVER_STATEMENT_TIMEOUT = 100
SERVER_TRANSACTION_TIMEOUT = 101
SQL_DDL_CATALOG = 500
SQL_DDL_SCHEMA = 501
SQL_DDL_TABLE = 502
SQL_IDENTIFIER_CASE = 503
SQL_IDENTIFIER_QUOTE_CHAR = 504
SQL_QUOTED_IDENTIFIER_CASE = 505
SQL_ALL_TABLES_ARE_SELECTABLE = 506
SQL_NULL_ORDERING = 507
SQL_KEYWORDS = 508
SQL_NUMERIC_FUNCTIONS = 509
SQL_STRING_FUNCTIONS = 510
SQL_SYSTEM_FUNCTIONS = 511
SQL_DATETIME_FUNCTIONS = 512
SQL_SEARCH_STRING_ESCAPE = 513
SQL_EXTRA_NAME_CHARACTERS = 514
SQL_SUPPORTS_COLUMN_ALIASING = 515
SQL_NULL_PLUS_NULL_IS_NULL = 516
SQL_SUPPORTS_TABLE_CORRELATION_NAMES = 518
SQL_SUPPORTS_DIFFERENT_TABLE_CORRELATION_NAMES = 519
SQL_SUPPORTS_EXPRESSIONS_IN_ORDER_BY = 520
SQL_SUPPORTS_ORDER_BY_UNRELATED = 521
SQL_SUPPORTED_GROUP_BY = 522
SQL_SUPPORTS_LIKE_ESCAPE_CLAUSE = 523
SQL_SUPPORTS_NON_NULLABLE_COLUMNS = 524
SQL_OUTER_JOINS_SUPPORT_LEVEL = 528
SQL_SCHEMA_TERM = 529
SQL_PROCEDURE_TERM = 530
SQL_CATALOG_TERM = 531
SQL_CATALOG_AT_START = 532
SQL_SELECT_FOR_UPDATE_SUPPORTED = 536
SQL_STORED_PROCEDURES_SUPPORTED = 537
SQL_SUPPORTED_SUBQUERIES = 538
SQL_CORRELATED_SUBQUERIES_SUPPORTED = 539
SQL_SUPPORTED_UNIONS = 540
SQL_MAX_STATEMENT_LENGTH = 557
SQL_MAX_TABLES_IN_SELECT = 560
SQL_DEFAULT_TRANSACTION_ISOLATION = 562
SQL_TRANSACTIONS_SUPPORTED = 563
SQL_BATCH_UPDATES_SUPPORTED = 572
SQL_SAVEPOINTS_SUPPORTED = 573
SQL_NAMED_PARAMETERS_SUPPORTED = 574

# Union members of SQL_INFO_VALUE.
STRING_VALUE, BOOL_VALUE, BIGINT_VALUE, INT32_BITMASK, STRING_LIST = 0, 1, 2, 3, 4
