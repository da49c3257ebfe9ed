"""Reads of a tenant whose datasets are split over several shards (DESIGN.md "Scale-out").

A Flight client gets one endpoint per shard and reads them in parallel. A client that
takes one stream (WebSocket, HTTP, a ticket that names no shard) gets the shards merged by
:class:`~streamkit.merged.MergedReader`.

SQL is answered shard by shard only where the union of the answers is the answer: one
table, projections, filters, and a LIMIT (which the gateway cuts again); a statement that
reads no table is answered by one shard. Anything that
aggregates, sorts, joins, removes duplicates, skips rows or uses a subquery is ``invalid``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.flight as flight

from streamkit import errors

SHARD_SAFE_PLANS = {"Projection", "Filter", "TableScan", "SubqueryAlias", "EmptyRelation"}
_MISSING_TABLE = re.compile(r"table '(?:datafusion\.public\.)?(.+)' not found")


def combined_info(
    infos: Sequence[flight.FlightInfo], label: str, descriptor: flight.FlightDescriptor
) -> flight.FlightInfo:
    """One dataset's FlightInfo over its shards: their schema (which must agree), summed
    rows and bytes (unknown if any shard does not know)."""
    schema = infos[0].schema
    for info in infos[1:]:
        if not info.schema.equals(schema):
            raise errors.invalid(f"the shards of {label!r} disagree on its schema")
    rows = [i.total_records for i in infos]
    sizes = [i.total_bytes for i in infos]
    return flight.FlightInfo(
        schema,
        descriptor,
        [],
        sum(rows) if min(rows) >= 0 else -1,
        sum(sizes) if min(sizes) >= 0 else -1,
    )


@dataclass(frozen=True)
class ShardPlan:
    limit: int | None
    """The statement's LIMIT, which the merged answer is cut to."""
    one_shard: bool
    """It reads no dataset (``SELECT 1``, a tool's connection test, a table function):
    one shard answers it, as every shard would give the same rows."""


def shard_plan(sql: str, schema_of: Callable[[str], pa.Schema]) -> ShardPlan:
    """Check that ``sql`` may be answered shard by shard, and how. ``schema_of`` gives a
    table's schema (the planner asks for the tables it needs, as at the connector)."""
    from datafusion import SessionContext, SQLOptions, Table

    from streamkit.sql import check_select

    check_select(sql)  # planned here too, so refused here as at the connector
    options = SQLOptions().with_allow_ddl(False).with_allow_dml(False).with_allow_statements(False)
    if len(re.findall(r"\bselect\b", _without_literals(sql), re.IGNORECASE)) > 1:
        raise _not_by_shard("it has more than one SELECT: a subquery or a union")
    context = SessionContext()
    for _ in range(32):
        try:
            plan = context.sql_with_options(sql, options).logical_plan()
            break
        except Exception as exc:
            found = _MISSING_TABLE.search(str(exc))
            if found is None:
                raise errors.invalid(f"sql: {errors.clean_message(exc)}") from None
            name = found.group(1)
            empty = ds.InMemoryDataset([], schema=schema_of(name))  # empty_table() fails on unions
            context.catalog().schema("public").register_table(name, Table(empty))
    else:
        raise errors.invalid("sql: too many tables")
    limit: int | None = None
    kind = type(plan.to_variant()).__name__
    if kind == "Limit":
        node = plan.to_variant()
        skip, fetch = node.skip(), node.fetch()
        try:  # a literal, or an expression (LIMIT 2+1) which python_value() refuses
            skipped = skip.python_value() if skip is not None else None
            value = fetch.python_value() if fetch is not None else None
        except Exception:
            raise _not_by_shard("its LIMIT or OFFSET is not a plain number") from None
        if (skipped.as_py() if isinstance(skipped, pa.Scalar) else skipped):
            raise _not_by_shard("it has an OFFSET")
        limit = value.as_py() if isinstance(value, pa.Scalar) else value
        if limit is not None and not isinstance(limit, int):
            raise _not_by_shard("its LIMIT is not a number")
        plan = plan.inputs()[0]
    scans = 0
    pending = [plan]
    while pending:
        node = pending.pop()
        kind = type(node.to_variant()).__name__
        if kind not in SHARD_SAFE_PLANS:
            raise _not_by_shard(f"its plan has {kind}")
        if kind == "TableScan":
            # A table function (generate_series(), range()) gives every shard the same rows;
            # a dataset may be named with its schema (public.events).
            scans += not node.to_variant().table_name().endswith("()")
        pending.extend(node.inputs())
    if scans > 1:
        raise _not_by_shard("it reads more than one table")
    return ShardPlan(limit, one_shard=scans == 0)


def _not_by_shard(why: str) -> errors.StreamkitError:
    return errors.invalid(
        f"this SQL cannot be answered shard by shard ({why}): only filters, projections "
        "and a LIMIT over one table are; read the shards' endpoints and combine them yourself"
    )


def _without_literals(sql: str) -> str:
    """``sql`` without its string literals, quoted names and comments."""
    return re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", " ", sql, flags=re.S)
