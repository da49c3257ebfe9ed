"""A read-only stream that refuses hostile input before pyarrow's readers see it.

pyarrow's JSON reader crashes the process on documents nested ~20,000 levels deep, and a
small compressed file can expand without end. Reading through this wrapper turns both into
a clear error for the one request. It sees data in the reader's blocks (about 1 MB), so the
cost is a few C-level bytes operations per block, not per row.
"""

from __future__ import annotations

import io
from array import array
from itertools import accumulate

import pyarrow as pa

MAX_DEPTH = 512
MAX_EXPANSION = 200  # decompressed bytes per compressed byte
MIN_EXPANSION_BYTES = 256 * 1024 * 1024

_BRACKETS = b"[]{}\n"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKETS)


class HostileInput(ValueError):
    """The input is built to exhaust the reader; the message says how."""


class GuardedStream(io.RawIOBase):
    def __init__(
        self,
        source: pa.NativeFile,
        *,
        compressed_size: int | None = None,
        check_json_depth: bool = False,
    ) -> None:
        super().__init__()
        self._source = source
        self._max_bytes = (
            max(compressed_size * MAX_EXPANSION, MIN_EXPANSION_BYTES)
            if compressed_size is not None
            else None
        )
        self._check_depth = check_json_depth
        self._total = 0
        self._line_depth = 0  # JSON nesting depth at the end of the unfinished line

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._source.read() if size is None or size < 0 else self._source.read(size)
        self._total += len(data)
        if self._max_bytes is not None and self._total > self._max_bytes:
            raise HostileInput(f"decompressed data exceeds {MAX_EXPANSION}x the compressed size")
        if self._check_depth:
            self._scan_depth(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _scan_depth(self, data: bytes) -> None:
        """Track bracket depth per JSON line (brackets inside strings count too: conservative)."""
        lines = data.translate(None, _NOT_BRACKETS).split(b"\n")
        for index, segment in enumerate(lines):
            start = self._line_depth if index == 0 else 0
            opens = segment.count(b"[") + segment.count(b"{")
            if start + opens > MAX_DEPTH:
                _scan_exactly(segment, start)
            self._line_depth = start + opens - (segment.count(b"]") + segment.count(b"}"))

    def close(self) -> None:
        self._source.close()
        super().close()


def _scan_exactly(segment: bytes, depth: int) -> None:
    for char in segment:
        depth += 1 if char in b"[{" else -1
        if depth > MAX_DEPTH:
            raise HostileInput(f"JSON is nested more than {MAX_DEPTH} levels deep")


_OPEN_CLOSE = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_OPEN_CLOSE = bytes(b for b in range(256) if b not in b"[]{}")


def check_document_depth(document: bytes) -> None:
    """Refuse a whole JSON document nested deeper than ``MAX_DEPTH`` (brackets in strings
    count too). C-level loops only: Python's own parser would hit its recursion limit."""
    steps = document.translate(_OPEN_CLOSE, _NOT_OPEN_CLOSE)
    if steps.count(1) <= MAX_DEPTH:
        return
    if max(accumulate(array("b", steps)), default=0) > MAX_DEPTH:
        raise HostileInput(f"JSON is nested more than {MAX_DEPTH} levels deep")
