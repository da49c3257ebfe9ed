"""The live datasets' wire format, in one place: how a connector marks a live dataset in its
FlightInfo, and the JSON metadata of followed batches (``offset``: the dataset row number of
the batch's first row, so followers sharing one upstream follow lose and double nothing;
``skipped``: rows a lagging follower missed before the batch, under ``on_lag: skip``).
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

LIVE_INFO_METADATA = b'{"live": true}'


def is_live_info(info: flight.FlightInfo) -> bool:
    """Whether a connector marked this dataset live (its follows carry row offsets)."""
    return _field(info.app_metadata, "live") is True


def batch_metadata(offset: int | None = None, skipped: int = 0) -> pa.Buffer | None:
    """The metadata of a followed batch; None when there is nothing to say."""
    fields: dict[str, int] = {}
    if offset is not None:
        fields["offset"] = offset
    if skipped:
        fields["skipped"] = skipped
    return pa.py_buffer(json.dumps(fields).encode()) if fields else None


def row_offset(metadata: pa.Buffer | bytes | None) -> int | None:
    offset = _field(metadata, "offset")
    return offset if isinstance(offset, int) and offset >= 0 else None


def skipped_rows(metadata: pa.Buffer | bytes | None) -> int:
    """Rows missed before this batch; 0 when none (or the metadata is not ours)."""
    skipped = _field(metadata, "skipped")
    return skipped if isinstance(skipped, int) and skipped > 0 else 0


def _field(metadata: pa.Buffer | bytes | None, name: str) -> Any:
    if not metadata:
        return None
    raw = metadata.to_pybytes() if isinstance(metadata, pa.Buffer) else metadata
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return value.get(name) if isinstance(value, dict) else None
