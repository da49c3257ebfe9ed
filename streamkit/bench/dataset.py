"""A synthetic sensor dataset of a requested size, written as an Arrow IPC file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

BATCH_ROWS = 65_536
_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]?I?B?)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``500KB``, ``100MB``, ``2GB`` (powers of 1000), ``1GiB`` (of 1024), or plain bytes."""
    match = _SIZE.match(text)
    unit = match.group(2).upper() if match else ""
    if not match or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size such as 500KB, 100MB or 2GB")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size < 1:
        raise ValueError(f"{text!r} is too small")
    return size


@dataclass(frozen=True)
class Dataset:
    path: Path
    rows: int
    bytes: int  # Arrow in-memory bytes of all batches: what every path delivers
    file_bytes: int
    batches: int

    def to_json(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "bytes": self.bytes,
            "file_bytes": self.file_bytes,
            "batches": self.batches,
        }


def _template(rows: int) -> pa.RecordBatch:
    ids = pa.array(range(rows), pa.int64())
    sensors = pa.array([f"sensor-{i % 500:04d}" for i in range(rows)])
    status = pa.array(["ok", "ok", "ok", "warn", "ok", "fail", "ok", "ok"] * (rows // 8 + 1))
    return pa.record_batch(
        {
            "id": ids,
            "ts": pc.add(pc.multiply(ids, 1_000_000), 1_767_225_600_000_000).cast(
                pa.timestamp("us", "UTC")
            ),
            "sensor": sensors,
            "value": pc.random(rows),
            "reading": pc.multiply(pc.random(rows), 1000.0),
            "status": status.slice(0, rows),
        }
    )


def generate(path: Path, size: int) -> Dataset:
    """Write about ``size`` Arrow bytes (whole rows) to ``path``; memory stays one batch."""
    template = _template(BATCH_ROWS)
    row_bytes = template.nbytes / template.num_rows
    total_rows = max(1, round(size / row_bytes))
    written = nbytes = batches = 0
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, template.schema) as writer:
        while written < total_rows:
            rows = min(BATCH_ROWS, total_rows - written)
            ids = pc.add(template.column(0), written)
            batch = pa.RecordBatch.from_arrays(
                [ids, *template.columns[1:]], schema=template.schema
            ).slice(0, rows)
            writer.write_batch(batch)
            written += rows
            batches += 1
    with pa.memory_map(str(path)) as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            nbytes += reader.get_batch(i).nbytes
    return Dataset(path, total_rows, nbytes, path.stat().st_size, batches)
