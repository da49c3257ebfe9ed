"""Memory follows the stream, not the dataset: a real connector process streams a Parquet file
written as one big row group, and its RSS stays far below what decoding that row group takes."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
from conftest import Process
from memory_helpers import RssSampler, read_slowly, sample_table

from streamkit.catalog import Catalog
from streamkit.readers import Readers

MB = 1 << 20
ROWS = 3_000_000  # ~190 MB of Parquet, ~260 MB in memory
STREAM_BUDGET = 160 * MB  # growth of the connector's RSS allowed for one stream


def test_one_row_group_streams_in_bounded_memory(tmp_path):
    table = sample_table(ROWS)
    pq.write_table(table, tmp_path / "big.parquet", row_group_size=ROWS)
    decoded = table.nbytes
    del table
    proc = Process("connector", "serve", str(tmp_path), "--port", "0")
    try:
        port = proc.wait_for_stderr(r"at grpc://127\.0\.0\.1:(\d+)").group(1)
        url = f"grpc://127.0.0.1:{port}"
        with RssSampler(proc.proc.pid, interval=0.02) as rss:
            # Sampling after every chunk paces the reader and sees every step of the stream.
            result = read_slowly(url, "big", on_batch=rss.sample)
    finally:
        proc.stop()
    assert result.rows == ROWS
    growth = rss.peak - rss.baseline
    assert growth < STREAM_BUDGET, (
        f"connector RSS grew by {growth // MB} MB (peak {rss.peak // MB} MB) streaming a "
        f"{decoded // MB} MB row group"
    )


def test_batches_are_sized_by_bytes_for_wide_rows(tmp_path):
    """2 KB rows: far fewer than ``batch_rows`` a batch, for Parquet and for Arrow IPC."""
    rows = 20_000
    wide = pa.table({"id": range(rows), "text": ["x" * 2000] * rows})
    pq.write_table(wide, tmp_path / "wide.parquet", use_dictionary=False)
    feather.write_feather(wide, tmp_path / "wide.arrow", chunksize=rows)  # one 40 MB batch
    catalog = Catalog(str(tmp_path))
    readers = Readers(str(catalog.root), batch_bytes=MB)
    for name in ("wide.parquet", "wide.arrow"):
        batches = list(readers.open(catalog.resolve(name)).batches)
        assert sum(b.num_rows for b in batches) == rows, name
        assert max(b.nbytes for b in batches) <= 2 * MB, name
        assert len(batches) >= wide.nbytes // (2 * MB), name
    stream = readers.open(catalog.resolve("wide.parquet"), ("id",), limit=15_000)
    projected = pa.Table.from_batches(list(stream.batches), stream.schema)
    assert projected.column_names == ["id"]
    assert projected.column("id").to_pylist() == list(range(15_000))


def test_folder_files_read_one_by_one_match_the_scanner(tmp_path):
    """Each file of a folder dataset is read on its own: a column it lacks comes as nulls,
    another type is cast to the dataset's, partition keys fill their column."""
    folder = tmp_path / "events" / "day=1"
    folder.mkdir(parents=True)
    pq.write_table(
        pa.table({"a": pa.array([1, 2], pa.int64()), "b": ["x", "y"]}), folder / "1.parquet"
    )
    pq.write_table(pa.table({"a": pa.array([3], pa.int32())}), folder / "2.parquet")
    catalog = Catalog(str(tmp_path))
    stream = Readers(str(catalog.root)).open(catalog.resolve("events"), ("day", "b", "a"))
    table = pa.Table.from_batches(list(stream.batches), stream.schema)
    assert table.schema.types == [pa.int32(), pa.string(), pa.int64()]
    assert table.to_pydict() == {"day": [1, 1, 1], "b": ["x", "y", None], "a": [1, 2, 3]}
