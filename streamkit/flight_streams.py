"""Flight ``DoGet`` streams from Python iterators that carry every Arrow type, dictionaries too.

pyarrow's ``GeneratorStream`` writes each batch without its dictionaries (apache/arrow#38480):
a client of a dictionary-encoded column (pandas categoricals, Parquet dictionary pages)
fails with "IPC stream did not have the expected number (1) of dictionaries". A generator
may also yield a ``RecordBatchStream``, which does send dictionaries; so whenever a batch's
dictionaries differ from those last sent, a zero-row slice of it goes out as such a
sub-stream first (dictionaries as replacements, then an empty batch), and the batch itself
follows with its metadata. Unchanged dictionaries cost nothing extra.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeAlias

import pyarrow as pa
import pyarrow.flight as flight

from streamkit import errors
from streamkit.batches import dictionaries, has_dictionaries

Item: TypeAlias = pa.RecordBatch | tuple[pa.RecordBatch, pa.Buffer | bytes | None]


@dataclass
class Chunk:
    """What ``read_chunk`` returns, like a FlightStreamChunk, for streams read in-process."""

    data: pa.RecordBatch
    app_metadata: pa.Buffer | None = None


def generator_stream(schema: pa.Schema, items: Iterable[Item]) -> flight.FlightDataStream:
    """A Flight stream of ``items`` (batches, or ``(batch, app_metadata)`` pairs); a typed
    error raised while iterating reaches the client as its Flight error."""
    checked = _flight_errors(items)
    if not has_dictionaries(schema):
        return flight.GeneratorStream(schema, checked)
    return flight.GeneratorStream(schema, _with_dictionaries(schema, checked))


def _flight_errors(items: Iterable[Item]) -> Iterator[Item]:
    try:
        yield from items
    except errors.StreamkitError as exc:
        raise errors.to_flight(exc) from None


def _with_dictionaries(schema: pa.Schema, items: Iterable[Item]) -> Iterator[object]:
    sent: list[pa.Array] | None = None
    for item in items:
        batch = item[0] if isinstance(item, tuple) else item
        current = dictionaries(batch)
        if sent is None or not _same(sent, current):
            head = pa.RecordBatchReader.from_batches(schema, [batch.slice(0, 0)])
            yield flight.RecordBatchStream(head)
            sent = current
        yield item


def _same(old: list[pa.Array], new: list[pa.Array]) -> bool:
    return len(old) == len(new) and all(
        _buffers(a) == _buffers(b) or a.equals(b) for a, b in zip(old, new, strict=True)
    )


def _buffers(array: pa.Array) -> tuple[object, ...]:
    """Cheap identity: the same memory (most batches of one reader share a dictionary)."""
    buffers = ((b.address, b.size) if b else None for b in array.buffers())
    return (array.offset, len(array), *buffers)
