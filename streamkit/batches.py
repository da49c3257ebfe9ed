"""Record batch facts that pyarrow lacks or gets wrong for some types."""

from __future__ import annotations

import pyarrow as pa


def batch_bytes(batch: pa.RecordBatch) -> int:
    """``batch.nbytes``, but 0 for an empty batch: pyarrow 26 crashes (SIGSEGV) computing
    ``nbytes`` of a zero-row dense union read from IPC, whose offsets buffer is absent."""
    return batch.nbytes if batch.num_rows else 0


def empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    """A batch of no rows (``from_pylist([])`` fails for unions, among others)."""
    return pa.RecordBatch.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)


def has_dictionaries(schema: pa.Schema) -> bool:
    return any(_type_has_dictionary(field.type) for field in schema)


def _type_has_dictionary(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return True
    if isinstance(kind, pa.ExtensionType):
        return _type_has_dictionary(kind.storage_type)
    return any(_type_has_dictionary(kind.field(i).type) for i in range(kind.num_fields))


def dictionaries(batch: pa.RecordBatch) -> list[pa.Array]:
    """Every dictionary in ``batch``, nested ones included, in a fixed order."""
    found: list[pa.Array] = []
    for column in batch.columns:
        _collect(column, found)
    return found


def _collect(array: pa.Array, found: list[pa.Array]) -> None:
    kind = array.type
    if isinstance(array, pa.ExtensionArray):
        _collect(array.storage, found)
    elif pa.types.is_dictionary(kind):
        found.append(array.dictionary)
        _collect(array.dictionary, found)
    elif isinstance(array, pa.StructArray | pa.UnionArray):
        for i in range(kind.num_fields):
            _collect(array.field(i), found)
    elif isinstance(array, pa.MapArray):
        _collect(array.keys, found)
        _collect(array.items, found)
    elif hasattr(array, "values") and kind.num_fields:  # lists of every kind, run-end encoded
        _collect(array.values, found)
