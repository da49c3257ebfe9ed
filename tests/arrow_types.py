"""Tables holding every Arrow type, for tests of every path that carries or prints data.

- :func:`every_type_table`: one column per type pyarrow can build, nulls in each (where the
  type allows), several record batches; the dictionaries of ``dict_int16_changing`` differ
  from batch to batch (as Parquet row groups and pandas categoricals produce).
- :func:`parquet_table` / :func:`parquet_incapable`: the columns that Parquet round-trips
  exactly, and why the others do not, found by writing and reading each column.
- :func:`random_tables`: a hypothesis strategy of random schemas and data.
- :func:`ipc_round_trip` and :func:`tables_equal`: the reference check (``Table.equals`` is
  False for any table holding a NaN, so floats are compared by their bits).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import math
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from hypothesis import strategies as st

ZONES = ("UTC", "Europe/Madrid", "+05:30", "America/New_York")
UNITS = ("s", "ms", "us", "ns")
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


class TaggedType(pa.ExtensionType):
    """A user-defined extension type: int32 storage under the name ``streamkit.tagged``."""

    def __init__(self) -> None:
        super().__init__(pa.int32(), "streamkit.tagged")

    def __arrow_ext_serialize__(self) -> bytes:
        return b""

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type: pa.DataType, serialized: bytes) -> TaggedType:
        return cls()


with contextlib.suppress(pa.ArrowKeyError):  # already registered: imported twice
    pa.register_extension_type(TaggedType())


STRINGS = [
    "",
    "plain",
    None,
    "ünïcødé ñ",
    "emoji 🎉👍🏽",
    'comma, "quote" and\nnewline',
    "tab\tback\\slash\r\ncrlf",
    "a string longer than twelve bytes (out of line in a view)",
    "\x01 control",
]
BINARIES = [b"", b"\x00\xff\xfe", None, b"abc", b"binary value longer than twelve bytes", b'\n,"']
UUIDS = [
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    None,
    uuid.UUID(int=0),
    uuid.UUID(int=2**128 - 1),
    uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
]
FLOATS = [0.0, None, 1.5, float("nan"), float("inf"), float("-inf"), -0.0, 0.1, 1e300, -2.5e-300]
FLOAT16S = [0.0, None, 1.5, float("nan"), float("inf"), float("-inf"), 65504.0, 0.1, -2.0]
DECIMAL128 = [
    Decimal("0.0000000000"),
    None,
    Decimal("-1.5000000000"),
    Decimal("9" * 28 + "." + "9" * 10),
    Decimal("-" + "9" * 28 + "." + "9" * 10),
    Decimal("0.0000000001"),
    Decimal("123.4560000000"),
]
DECIMAL256 = [
    Decimal("0"),
    None,
    Decimal("9" * 56 + "." + "9" * 20),
    Decimal("-" + "9" * 56 + "." + "9" * 20),
    Decimal("-0.00000000000000000001"),
    Decimal("42.5"),
]
# Seconds since the epoch: before 1970 and 1900, the Madrid and New York DST changes, far dates.
SECONDS = [
    *(0, None, -1, 1_711_846_800, 1_710_054_000, 1_700_000_000, -2_208_988_800, 4_102_444_799),
    2_540_376_000,  # 2050-07-02T12:00:00Z: summer time past the zone files' tables
]
FRACTIONS = {"s": 0, "ms": 123, "us": 123_456, "ns": 123_456_789}
DURATIONS = [0, None, 1, -1, 1_500, -86_400_123, 9_000_000_000_000]
TIMES = {"s": 86_399, "ms": 45_296_789, "us": 45_296_789_012, "ns": 45_296_789_012_345}


def _cycle(samples: list[Any], rows: int, batch: int) -> list[Any]:
    """``rows`` values of ``samples``, starting further along for each batch."""
    return [samples[(batch * rows + i) % len(samples)] for i in range(rows)]


def _timestamps(unit: str) -> list[int | None]:
    frac = FRACTIONS[unit]
    return [
        None if s is None else s * _PER_SECOND[unit] + (frac if i % 2 else 0)
        for i, s in enumerate(SECONDS)
    ]


def _dictionary(
    index: pa.DataType, values: list[Any], dictionary: list[str], *, ordered: bool = False
) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(
        pa.array(values, index), pa.array(dictionary), ordered=ordered
    )


def _changing_dictionary(rows: int, batch: int) -> pa.DictionaryArray:
    dictionary = [["red", "green", "blue"], ["blue", "yellow"], ["green", "", "ñandú", "red"]]
    words = dictionary[batch % len(dictionary)]
    indices = [None if i % 4 == 3 else i % len(words) for i in range(rows)]
    return _dictionary(pa.int16(), indices, words)


def _sparse_union(rows: int, batch: int) -> pa.UnionArray:
    codes = [(5, 10, 5)[(batch + i) % 3] for i in range(rows)]
    ints = _cycle([1, None, -7, 2**63 - 1], rows, batch)
    texts = _cycle(["x", None, 'y, "z"', "w"], rows, batch)
    return pa.UnionArray.from_sparse(
        pa.array(codes, pa.int8()),
        [pa.array(ints, pa.int64()), pa.array(texts, pa.string())],
        ["int", "text"],
        [5, 10],
    )


def _dense_union(rows: int, batch: int) -> pa.UnionArray:
    children: list[list[Any]] = [[], [], []]
    samples = [
        (0, 1.5), (1, "u"), (2, dt.date(2024, 2, 29)), (0, None), (1, None), (0, float("nan"))
    ]  # fmt: skip
    codes, offsets = [], []
    for child, value in _cycle(samples, rows, batch):
        codes.append(child)
        offsets.append(len(children[child]))
        children[child].append(value)
    return pa.UnionArray.from_dense(
        pa.array(codes, pa.int8()),
        pa.array(offsets, pa.int32()),
        [
            pa.array(children[0], pa.float64()),
            pa.array(children[1], pa.string()),
            pa.array(children[2], pa.date32()),
        ],
        ["float", "text", "day"],
    )


NESTED_STRUCT = pa.struct(
    [
        ("id", pa.int32()),
        ("name", pa.string()),
        ("inner", pa.struct([("x", pa.float64()), ("when", pa.timestamp("us", "UTC"))])),
    ]
)
SCALARS_STRUCT = pa.struct(
    [
        ("ts", pa.timestamp("ms", "Europe/Madrid")),
        ("naive", pa.timestamp("s")),
        ("day", pa.date32()),
        ("time", pa.time64("us")),
        ("dur", pa.duration("ms")),
        ("dec", pa.decimal128(12, 3)),
        ("bin", pa.binary()),
        ("f", pa.float32()),
        ("flag", pa.bool_()),
        ("u", pa.uint64()),
    ]
)
TENSOR = pa.fixed_shape_tensor(pa.int32(), [2, 2])


def _columns() -> dict[str, Callable[[int, int], pa.Array]]:
    """Column name → ``make(rows, batch)``."""
    cols: dict[str, Callable[[int, int], pa.Array]] = {}

    def simple(name: str, kind: pa.DataType, samples: list[Any]) -> None:
        cols[name] = lambda n, b: pa.array(_cycle(samples, n, b), kind)

    for bits in (8, 16, 32, 64):
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        simple(f"int{bits}", getattr(pa, f"int{bits}")(), [0, None, lo, hi, -1, 1])
        simple(f"uint{bits}", getattr(pa, f"uint{bits}")(), [0, None, 2**bits - 1, 1, 7])
    simple("float16", pa.float16(), FLOAT16S)
    simple("float32", pa.float32(), [0.0, None, 1.5, float("nan"), float("inf"), -3.25, 0.1])
    simple("float64", pa.float64(), FLOATS)
    simple("bool", pa.bool_(), [True, None, False])
    simple("string", pa.string(), STRINGS)
    simple("large_string", pa.large_string(), STRINGS)
    simple("string_view", pa.string_view(), STRINGS)
    simple("binary", pa.binary(), BINARIES)
    simple("large_binary", pa.large_binary(), BINARIES)
    simple("binary_view", pa.binary_view(), BINARIES)
    simple("fixed_size_binary", pa.binary(3), [b"abc", None, b"\x00\x01\x02", b"\xff,\n"])
    words = ["alpha", "beta", "gamma, δ", ""]
    for index in (pa.int8(), pa.int32(), pa.int64()):
        cols[f"dict_{index}"] = lambda n, b, index=index: _dictionary(
            index, _cycle([0, 1, None, 2, 3, 1], n, b), words
        )
    cols["dict_int16_changing"] = _changing_dictionary
    cols["dict_int32_ordered"] = lambda n, b: _dictionary(
        pa.int32(), _cycle([2, 0, None, 1], n, b), ["low", "mid", "high"], ordered=True
    )
    simple("decimal32", pa.decimal32(9, 2), [Decimal("-9999999.99"), None, Decimal("0.05")])
    simple("decimal64", pa.decimal64(18, 4), [Decimal("99999999999999.9999"), None, Decimal(0)])
    simple("decimal128", pa.decimal128(38, 10), DECIMAL128)
    simple("decimal256", pa.decimal256(76, 20), DECIMAL256)
    days = [0, None, -1, 19_782, 2_932_896, -719_162]
    simple("date32", pa.date32(), days)
    simple("date64", pa.date64(), [None if d is None else d * 86_400_000 for d in days])
    for unit in UNITS:
        kind = pa.time32(unit) if unit in ("s", "ms") else pa.time64(unit)
        simple(f"time_{unit}", kind, [0, None, TIMES[unit], 1])
    for unit in UNITS:
        simple(f"timestamp_{unit}", pa.timestamp(unit), _timestamps(unit))
        for zone in ZONES:
            simple(f"timestamp_{unit}_{zone}", pa.timestamp(unit, zone), _timestamps(unit))
    for unit in UNITS:
        simple(f"duration_{unit}", pa.duration(unit), DURATIONS)
    simple(
        "interval_month_day_nano",
        pa.month_day_nano_interval(),
        [pa.MonthDayNano([1, 2, 3]), None, pa.MonthDayNano([-1, -15, -1_500_000_000]),
         pa.MonthDayNano([0, 0, 0])],
    )  # fmt: skip
    simple("list", pa.list_(pa.int64()), [[1, 2, None], None, [], [2**62]])
    simple("large_list", pa.large_list(pa.string()), [["a", None, 'b,"c"'], [], None])
    simple("fixed_size_list", pa.list_(pa.int32(), 3), [[1, 2, 3], None, [None, 5, -6]])
    simple("list_view", pa.list_view(pa.int64()), [[1, None], None, [], [3, 4, 5]])
    simple("large_list_view", pa.large_list_view(pa.string()), [["x"], [], None, ["ü", None]])
    simple("list_of_lists", pa.list_(pa.list_(pa.int8())), [[[1], [], None], None, [[2, 3]]])
    simple(
        "map",
        pa.map_(pa.string(), pa.int64()),
        [[("a", 1), ("b", None)], None, [], [('key, "q"', -5)]],
    )
    simple("map_int_keys", pa.map_(pa.int32(), pa.string()), [[(1, "one"), (-2, None)], None])
    simple(
        "struct",
        NESTED_STRUCT,
        [
            {"id": 1, "name": "n", "inner": {"x": 0.5, "when": 1_700_000_000_123_456}},
            None,
            {"id": None, "name": None, "inner": None},
            {"id": 3, "name": "ü\n", "inner": {"x": float("inf"), "when": None}},
        ],
    )
    simple(
        "struct_with_list",
        pa.struct([("tags", pa.list_(pa.string())), ("n", pa.int64())]),
        [{"tags": ["a", "b"], "n": 1}, None, {"tags": None, "n": None}, {"tags": [], "n": 2}],
    )
    simple(
        "struct_of_scalars",
        SCALARS_STRUCT,
        [
            {"ts": 1_711_846_800_123, "naive": -1, "day": dt.date(1969, 12, 31),
             "time": dt.time(23, 59, 59, 999_999), "dur": dt.timedelta(milliseconds=-1_500),
             "dec": Decimal("-123456789.125"), "bin": b"\x00\xff", "f": float("nan"),
             "flag": False, "u": 2**64 - 1},
            None,
            {"ts": None, "naive": None, "day": None, "time": None, "dur": None, "dec": None,
             "bin": None, "f": None, "flag": None, "u": None},
        ],
    )  # fmt: skip
    cols["sparse_union"] = _sparse_union
    cols["dense_union"] = _dense_union
    cols["run_end_encoded"] = lambda n, b: pc.run_end_encode(
        pa.array(_cycle(["a", "a", None, None, "b", "ccc", "ccc"], n, b))
    )
    cols["uuid"] = lambda n, b: pa.array(
        [None if u is None else u.bytes for u in _cycle(UUIDS, n, b)], pa.uuid()
    )
    cols["tagged_extension"] = lambda n, b: pa.ExtensionArray.from_storage(
        TaggedType(), pa.array(_cycle([7, None, -3], n, b), pa.int32())
    )
    simple("bool8", pa.bool8(), [1, None, 0])
    simple("json_extension", pa.json_(), ['{"a": [1, 2]}', None, "null", '"text"'])
    cols["tensor_extension"] = lambda n, b: pa.ExtensionArray.from_storage(
        TENSOR,
        pa.array(_cycle([[1, 2, 3, 4], None, [0, -1, None, 5]], n, b), TENSOR.storage_type),
    )
    dict_list = pa.list_(pa.dictionary(pa.int8(), pa.string()))
    simple("list_of_dictionary", dict_list, [["a", "b", "a"], None, [], ["c", None]])
    simple(
        "struct_with_dictionary",
        pa.struct([("label", pa.dictionary(pa.int32(), pa.string())), ("n", pa.int8())]),
        [{"label": "x", "n": 1}, None, {"label": None, "n": 2}, {"label": "y", "n": None}],
    )
    cols["null"] = lambda n, b: pa.nulls(n)
    return cols


def every_type_table(rows_per_batch: int = 7, batches: int = 3) -> pa.Table:
    """One column per Arrow type (named after it), ``batches`` record batches."""
    makers = _columns()
    made = [
        pa.record_batch([make(rows_per_batch, b) for make in makers.values()], list(makers))
        for b in range(batches)
    ]
    return pa.Table.from_batches(made)


def every_type_column(name: str, rows_per_batch: int = 7, batches: int = 3) -> pa.ChunkedArray:
    return every_type_table(rows_per_batch, batches).column(name)


# --- equality and round trips ----------------------------------------------------------------


def _has_floats(kind: pa.DataType) -> bool:
    if pa.types.is_floating(kind):
        return True
    if isinstance(kind, pa.BaseExtensionType):
        return _has_floats(kind.storage_type)
    if pa.types.is_dictionary(kind):
        return _has_floats(kind.value_type)
    if pa.types.is_run_end_encoded(kind):
        return _has_floats(kind.value_type)
    return any(_has_floats(kind.field(i).type) for i in range(kind.num_fields))


def arrays_equal(a: pa.Array, b: pa.Array) -> bool:
    """``a.equals(b)``, but NaN equals NaN (compared by bits, so 0.0 and -0.0 differ)."""
    if a.type != b.type or len(a) != len(b):
        return False
    if a.equals(b):
        return True
    kind = a.type
    if not _has_floats(kind):
        return False
    if pa.types.is_floating(kind):
        bits = pa.int16() if pa.types.is_float16(kind) else pa.int32()
        bits = pa.int64() if pa.types.is_float64(kind) else bits
        return a.view(bits).equals(b.view(bits))
    if isinstance(kind, pa.BaseExtensionType):
        return arrays_equal(a.storage, b.storage)
    if pa.types.is_dictionary(kind) or pa.types.is_run_end_encoded(kind):
        decode = pc.run_end_decode if pa.types.is_run_end_encoded(kind) else _decode
        return arrays_equal(decode(a), decode(b))
    if not a.is_null().equals(b.is_null()):
        return False
    if pa.types.is_struct(kind):
        return all(arrays_equal(x, y) for x, y in zip(a.flatten(), b.flatten(), strict=True))
    if pa.types.is_union(kind):  # NaN in a union: value by value
        return [_nan_free(v) for v in a.to_pylist()] == [_nan_free(v) for v in b.to_pylist()]
    if pa.types.is_map(kind):  # the same layout as a list of its entries
        entry = pa.struct([kind.key_field, kind.item_field])
        entries = pa.list_(pa.field("entries", entry, nullable=False))
        return arrays_equal(a.view(entries), b.view(entries))
    same_lengths = pc.list_value_length(a).equals(pc.list_value_length(b))  # every list type
    return same_lengths and arrays_equal(a.flatten(), b.flatten())


def _nan_free(value: Any) -> Any:
    return "NaN" if isinstance(value, float) and math.isnan(value) else value


def _decode(array: pa.DictionaryArray) -> pa.Array:
    return array.dictionary_decode()


def chunked_equal(a: pa.ChunkedArray, b: pa.ChunkedArray) -> bool:
    if a.type != b.type or len(a) != len(b):
        return False
    if a.equals(b):
        return True
    if not _has_floats(a.type):
        return False
    if [len(c) for c in a.chunks] != [len(c) for c in b.chunks]:
        a, b = (
            pa.chunked_array([pa.concat_arrays(a.chunks)]),
            pa.chunked_array([pa.concat_arrays(b.chunks)]),
        )
    return all(arrays_equal(x, y) for x, y in zip(a.chunks, b.chunks, strict=True))


def tables_equal(a: pa.Table, b: pa.Table, *, check_metadata: bool = True) -> bool:
    """Same schema and the same values, NaN equal to NaN. ``check_metadata`` also compares
    schema and field metadata and the names of list items and map entries (which Arrow's
    type equality ignores and Parquet renames: ``item`` → ``element``)."""
    if not a.schema.equals(b.schema, check_metadata=check_metadata):
        return False
    return all(chunked_equal(x, y) for x, y in zip(a.columns, b.columns, strict=True))


def ipc_round_trip(table: pa.Table) -> pa.Table:
    """``table`` written as an Arrow IPC stream, batch by batch, and read back."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches():
            writer.write_batch(batch)
    return pa.ipc.open_stream(sink.getvalue()).read_all()


# --- Parquet -----------------------------------------------------------------------------


def parquet_round_trip(table: pa.Table) -> pa.Table:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return pq.read_table(pa.BufferReader(sink.getvalue()))


@functools.cache
def _parquet_experiment() -> tuple[tuple[str, ...], dict[str, str]]:
    """Write each column of :func:`every_type_table` to Parquet alone and read it back."""
    table = every_type_table()
    exact, refused = [], {}
    for name in table.column_names:
        column = table.select([name])
        try:
            back = parquet_round_trip(column)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            refused[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            continue
        original = column.schema.field(0).type
        if back.schema.field(0).type != original:
            refused[name] = f"{original} reads back as {back.schema.field(0).type}"
        elif not chunked_equal(back.column(0), column.column(0)):
            same = back.column(0).to_pylist() == column.column(0).to_pylist()
            how = "the same values in another dictionary encoding" if same else "other values"
            refused[name] = f"{original} reads back with {how}"
        else:
            exact.append(name)
    return tuple(exact), refused


def parquet_incapable() -> dict[str, str]:
    """Column of :func:`every_type_table` → why Parquet does not give it back exactly."""
    return dict(_parquet_experiment()[1])


def parquet_table(rows_per_batch: int = 7, batches: int = 3) -> pa.Table:
    """The columns of :func:`every_type_table` that Parquet round-trips exactly: the same
    types and values (compare with ``tables_equal(..., check_metadata=False)``: Parquet
    names list items ``element`` and map entries after the column)."""
    return every_type_table(rows_per_batch, batches).select(list(_parquet_experiment()[0]))


# --- hypothesis --------------------------------------------------------------------------

_INTS = {
    pa.int8(): 8, pa.int16(): 16, pa.int32(): 32, pa.int64(): 64,
    pa.uint8(): -8, pa.uint16(): -16, pa.uint32(): -32, pa.uint64(): -64,
}  # fmt: skip
PRIMITIVES: list[pa.DataType] = [
    *_INTS,
    pa.float16(),
    pa.float32(),
    pa.float64(),
    pa.bool_(),
    pa.string(),
    pa.large_string(),
    pa.string_view(),
    pa.binary(),
    pa.large_binary(),
    pa.binary_view(),
    pa.binary(4),
    pa.decimal128(10, 3),
    pa.decimal256(40, 5),
    pa.date32(),
    pa.date64(),
    pa.time32("s"),
    pa.time32("ms"),
    pa.time64("us"),
    pa.time64("ns"),
    *(pa.timestamp(unit) for unit in UNITS),
    *(pa.timestamp(unit, zone) for unit in UNITS for zone in ZONES),
    *(pa.duration(unit) for unit in UNITS),
    pa.month_day_nano_interval(),
    pa.uuid(),
    pa.null(),
]
_DICTIONARY_VALUES = [pa.string(), pa.large_string(), pa.binary()]
_YEARS_1900_2200 = (-2_208_988_800, 7_258_118_400)  # seconds since the epoch


def values_of(kind: pa.DataType) -> st.SearchStrategy[Any]:
    """Python values that ``pa.array(..., kind)`` accepts (never None: see :func:`arrays`)."""
    if kind in _INTS:
        bits = _INTS[kind]
        if bits < 0:
            return st.integers(0, 2**-bits - 1)
        return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if pa.types.is_floating(kind):
        return st.floats(width=kind.bit_width)
    if pa.types.is_boolean(kind):
        return st.booleans()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or kind == pa.string_view():
        return st.text(max_size=12)
    if pa.types.is_fixed_size_binary(kind):
        return st.binary(min_size=kind.byte_width, max_size=kind.byte_width)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or kind == pa.binary_view():
        return st.binary(max_size=12)
    if pa.types.is_decimal(kind):
        digits = min(kind.precision, 28) - kind.scale  # 28: Python's decimal precision
        limit = Decimal(10) ** digits - 1
        return st.decimals(-limit, limit, places=kind.scale, allow_nan=False, allow_infinity=False)
    if pa.types.is_date(kind):
        return st.dates()
    if pa.types.is_time(kind):
        return st.integers(0, 86_400 * _PER_SECOND[kind.unit] - 1)
    if pa.types.is_timestamp(kind):
        lo, hi = _YEARS_1900_2200
        return st.integers(lo * _PER_SECOND[kind.unit], hi * _PER_SECOND[kind.unit])
    if pa.types.is_duration(kind):
        return st.integers(-(10**15), 10**15)
    if pa.types.is_interval(kind):
        i32 = st.integers(-(2**31), 2**31 - 1)
        return st.builds(
            lambda m, d, n: pa.MonthDayNano([m, d, n]), i32, i32, st.integers(-(2**63), 2**63 - 1)
        )
    if kind == pa.uuid():
        return st.binary(min_size=16, max_size=16)
    if pa.types.is_dictionary(kind):
        return values_of(kind.value_type)
    if pa.types.is_map(kind):
        pairs = st.tuples(values_of(kind.key_type), nullable(kind.item_type))
        return st.lists(pairs, max_size=3, unique_by=lambda pair: pair[0])
    if pa.types.is_struct(kind):
        return st.fixed_dictionaries({f.name: nullable(f.type) for f in kind})
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return st.lists(nullable(kind.value_type), max_size=4)
    raise AssertionError(f"no values for {kind}")


def nullable(kind: pa.DataType) -> st.SearchStrategy[Any]:
    if pa.types.is_null(kind):
        return st.none()
    return st.one_of(st.none(), values_of(kind))


def data_types(depth: int = 2) -> st.SearchStrategy[pa.DataType]:
    """A primitive type, or up to ``depth`` levels of list, struct, map and dictionary.

    The null type only at the top: ``pa.array`` builds invalid lists and structs of it."""
    return st.one_of(st.just(pa.null()), _data_types(depth))


def _data_types(depth: int) -> st.SearchStrategy[pa.DataType]:
    leaf = st.sampled_from([kind for kind in PRIMITIVES if kind != pa.null()])
    dictionary = st.builds(
        pa.dictionary,
        st.sampled_from([pa.int8(), pa.int16(), pa.int32(), pa.int64()]),
        st.sampled_from(_DICTIONARY_VALUES),
    )
    if depth == 0:
        return st.one_of(leaf, dictionary)
    inner = _data_types(depth - 1)
    keys = st.sampled_from([pa.string(), pa.int32(), pa.date32()])
    struct = st.lists(inner, min_size=1, max_size=3).map(
        lambda kinds: pa.struct([(f"f{i}", k) for i, k in enumerate(kinds)])
    )
    return st.one_of(
        leaf,
        dictionary,
        inner.map(pa.list_),
        inner.map(pa.large_list),
        struct,
        st.builds(pa.map_, keys, inner),
    )


@st.composite
def arrays(draw: st.DrawFn, kind: pa.DataType, rows: int) -> pa.Array:
    values = draw(st.lists(nullable(kind), min_size=rows, max_size=rows))
    if pa.types.is_null(kind):
        return pa.nulls(rows)
    return pa.array(values, _plain(kind)).cast(kind)


def _plain(kind: pa.DataType) -> pa.DataType:
    """``kind`` without uuids and dictionaries, which ``pa.array`` cannot build (a uuid) or
    builds invalid (a null struct holding a dictionary)."""
    if kind == pa.uuid():
        return pa.binary(16)
    if pa.types.is_dictionary(kind):
        return kind.value_type
    if pa.types.is_struct(kind):
        return pa.struct([f.with_type(_plain(f.type)) for f in kind])
    if pa.types.is_map(kind):
        return pa.map_(_plain(kind.key_type), _plain(kind.item_type))
    if pa.types.is_large_list(kind):
        return pa.large_list(_plain(kind.value_type))
    if pa.types.is_list(kind):
        return pa.list_(_plain(kind.value_type))
    return kind


@st.composite
def random_tables(draw: st.DrawFn, max_rows: int = 16, max_batches: int = 3) -> pa.Table:
    """A table of 1 to 5 random columns in 1 to 3 batches of at most 16 rows each."""
    kinds = draw(st.lists(data_types(), min_size=1, max_size=5))
    schema = pa.schema([(f"c{i}", kind) for i, kind in enumerate(kinds)])
    batches = []
    for _ in range(draw(st.integers(1, max_batches))):
        rows = draw(st.integers(0, max_rows))
        batches.append(pa.record_batch([draw(arrays(kind, rows)) for kind in kinds], schema=schema))
    return pa.Table.from_batches(batches, schema)
