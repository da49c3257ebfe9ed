"""Datasets under a root folder: naming, listing and safe resolution (DESIGN.md "Datasets").

A dataset is a data file, or a folder of Parquet files (plain or hive-partitioned). Other
folders are namespaces. Names are root-relative, ``/``-separated, without the extension;
files whose names would collide keep their extensions. Nothing outside the root is ever
listed or resolved, and a refused name looks exactly like a missing one.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from streamkit import errors

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".arrows": "arrows",
}
# Text formats pyarrow reads through a decompressing stream.
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}
COMPRESSIBLE = {"csv", "tsv", "json", "jsonl"}
_PARTITION_DIR = re.compile(r"^[^=/]+=[^/]*$")


@dataclass(frozen=True)
class Entry:
    """One dataset: its public name and where it lives (never shown to clients)."""

    name: str
    path: Path
    format: str
    compression: str | None = None

    @property
    def is_folder(self) -> bool:
        return self.path.is_dir()

    def stat(self) -> tuple[int, int]:
        """``(bytes, newest mtime_ns)``: of the file, or of a folder's Parquet files (one walk)."""
        if not self.is_folder:
            st = self.path.stat()
            return st.st_size, st.st_mtime_ns
        size = mtime = 0
        for path in self.path.rglob("*"):
            st = path.stat()
            mtime = max(mtime, st.st_mtime_ns)
            if path.suffix == ".parquet" and path.is_file():
                size += st.st_size
        return size, mtime


def file_format(filename: str) -> tuple[str, str | None, str] | None:
    """``(format, compression, stem)`` of a data file name, or None if not a data file."""
    stem, ext = os.path.splitext(filename)
    compression = COMPRESSIONS.get(ext.lower())
    if compression:
        stem, ext = os.path.splitext(stem)
    fmt = FORMATS.get(ext.lower())
    if fmt is None or not stem or (compression and fmt not in COMPRESSIBLE):
        return None
    return fmt, compression, stem


def _hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def safe_name(name: str) -> bool:
    """A name that stays inside the root: no ``..``, absolute paths, NUL, backslashes."""
    parts = name.split("/")
    return (
        "\\" not in name
        and "\x00" not in name
        and len(name) <= 1024
        and not any(p in ("", ".", "..") or _hidden(p) for p in parts)
    )


class Catalog:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve(strict=True)
        if not self.root.is_dir():
            raise NotADirectoryError(f"{root} is not a folder")

    def _inside(self, path: Path) -> bool:
        try:
            return path.resolve().is_relative_to(self.root)
        except (OSError, RuntimeError):  # broken or looping symlinks
            return False

    def _is_parquet_folder(self, folder: Path) -> bool:
        """Only Parquet files below (hidden files aside), and Parquet or partitions at the top."""
        found = False
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
            dirnames[:] = [d for d in dirnames if not _hidden(d)]
            if (
                Path(dirpath) == folder
                and dirnames
                and not all(_PARTITION_DIR.match(d) for d in dirnames)
            ):
                return False
            for name in filenames:
                if _hidden(name):
                    continue
                if not name.endswith(".parquet"):
                    return False
                found = True
        return found

    def _entries_in(self, folder: Path, prefix: str) -> tuple[list[Entry], list[Path]]:
        """Datasets directly in ``folder``, and its namespace subfolders."""
        candidates: list[tuple[str, Path, str, str | None]] = []
        namespaces: list[Path] = []
        try:
            children = sorted(folder.iterdir())
        except OSError:
            return [], []
        for child in children:
            if _hidden(child.name) or not self._inside(child):
                continue
            if child.is_dir():
                if self._is_parquet_folder(child):
                    candidates.append((child.name, child, "parquet", None))
                else:
                    namespaces.append(child)
            elif child.is_file() and (parsed := file_format(child.name)):
                fmt, compression, stem = parsed
                candidates.append((stem, child, fmt, compression))
        stems = [c[0] for c in candidates]
        entries = [
            Entry(
                name=prefix + (stem if stems.count(stem) == 1 else path.name),
                path=path,
                format=fmt,
                compression=compression,
            )
            for stem, path, fmt, compression in candidates
        ]
        return entries, namespaces

    def scan(self) -> list[Entry]:
        """Every dataset under the root, read from disk now (new files show up at once)."""
        found: list[Entry] = []
        pending = [(self.root, "")]
        while pending:
            folder, prefix = pending.pop()
            entries, namespaces = self._entries_in(folder, prefix)
            found.extend(entries)
            pending.extend((ns, f"{prefix}{ns.name}/") for ns in namespaces)
        return sorted(found, key=lambda e: e.name)

    def resolve(self, name: str) -> Entry:
        """The dataset called ``name``, or a ``not found`` error (also for unsafe names)."""
        missing = errors.not_found(f"dataset {name!r}")
        if not safe_name(name):
            raise missing
        parts = name.split("/")
        folder = self.root.joinpath(*parts[:-1])
        if not folder.is_dir() or not self._inside(folder):
            raise missing
        # Every folder on the way must stay inside (no symlink out and back in) and be a
        # namespace, not part of a Parquet dataset.
        for depth in range(1, len(parts)):
            ancestor = self.root.joinpath(*parts[:depth])
            if not self._inside(ancestor) or self._is_parquet_folder(ancestor):
                raise missing
        prefix = "".join(p + "/" for p in parts[:-1])
        entries, _ = self._entries_in(folder, prefix)
        for entry in entries:
            if entry.name == name:
                return entry
        raise missing
