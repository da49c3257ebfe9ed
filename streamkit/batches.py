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
