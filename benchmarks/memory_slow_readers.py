"""Connector memory with slow Flight readers: peak RSS of a real connector process per case.

Generates (once, in --data, default a folder under the system temp dir) an ~800 MB and a
~400 MB Parquet file written with ``pq.write_table`` defaults, the 800 MB one again as a
single row group, Arrow IPC files (``feather.write_feather`` defaults, and one with 1Mi-row
batches) and CSV/JSON Lines of similar size; then starts
``python -m streamkit connector serve DATA --port 0`` per case and reads with pyarrow Flight
clients that sleep 2 ms after every ``read_chunk()`` (none in the throughput case), sampling
the connector's RSS every 50 ms. Cases with a required bound say whether they are within it.

    .venv/bin/python benchmarks/memory_slow_readers.py [--cases parquet_800,...] [--json]
    .venv/bin/python benchmarks/memory_slow_readers.py --in-process   # pyarrow pool, too
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from memory_helpers import ReadResult, RssSampler, read_slowly, sample_table  # noqa: E402

CHUNK_ROWS = 1 << 20  # generation chunk; = pq.write_table's default row group (1Mi rows)
MB = 1 << 20


@dataclass(frozen=True)
class Case:
    dataset: str
    readers: int = 1
    pause: float = 0.002
    limit_mb: int | None = None  # the required bound on the connector's peak RSS


CASES = {
    "parquet_800": Case("p800", limit_mb=500),
    "parquet_800_one_group": Case("p800_one_group", limit_mb=500),
    "parquet_400_x20": Case("p400", readers=20, limit_mb=600),
    "parquet_400_one_group_x20": Case("p400_one_group", readers=20, limit_mb=600),
    "arrow_800": Case("a800"),
    "arrow_800_big_batches": Case("a800_big_batches"),
    "csv_800": Case("c800"),
    "jsonl_800": Case("j800"),
    "throughput_parquet_800": Case("p800", pause=0.0),
}


# -- data ----------------------------------------------------------------------------


def make_data(folder: Path) -> None:
    """Write every file a case needs, unless it is already there."""
    folder.mkdir(parents=True, exist_ok=True)
    rows_800 = 13_000_000  # ~65 MB of Parquet per 1Mi rows
    _ensure(
        folder,
        rows_800,
        {
            "p800.parquet": pq.write_table,
            "p800_one_group.parquet": lambda t, p: pq.write_table(t, p, row_group_size=len(t)),
            "a800.arrow": feather.write_feather,
            "a800_big_batches.arrow": _write_ipc,
        },
    )
    _ensure(
        folder,
        rows_800 // 2,
        {
            "p400.parquet": pq.write_table,
            "p400_one_group.parquet": lambda t, p: pq.write_table(t, p, row_group_size=len(t)),
        },
    )
    text_rows = 7_000_000  # ~110 bytes a row as CSV, ~170 as JSON
    for name, kind, rows in (
        ("c800.csv", "csv", text_rows),
        ("j800.jsonl", "jsonl", text_rows // 2),
    ):
        if not (folder / name).exists():
            _write_text(folder / name, rows, kind)


def _ensure(folder: Path, rows: int, writers: dict[str, Callable[[pa.Table, Path], None]]) -> None:
    missing = {name: w for name, w in writers.items() if not (folder / name).exists()}
    if not missing:
        return
    table = pa.concat_tables(
        sample_table(min(CHUNK_ROWS, rows - s), seed=s) for s in range(0, rows, CHUNK_ROWS)
    )
    for name, write in missing.items():
        started = time.perf_counter()
        partial = folder / f".partial-{name}"  # dot files are not datasets
        write(table, partial)
        partial.rename(folder / name)
        print(
            f"wrote {name}: {(folder / name).stat().st_size / MB:.0f} MB in "
            f"{time.perf_counter() - started:.0f}s",
            file=sys.stderr,
        )


def _write_ipc(table: pa.Table, path: Path) -> None:
    """An IPC file as ``pa.ipc.new_file(...).write_table(t)`` makes it: 1Mi-row batches."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _write_text(path: Path, rows: int, kind: str) -> None:
    partial = path.with_name(f".partial-{path.name}")
    with open(partial, "wb") as out:
        writer = pcsv.CSVWriter(out, sample_table(1).schema) if kind == "csv" else None
        for start in range(0, rows, CHUNK_ROWS):
            chunk = sample_table(min(CHUNK_ROWS, rows - start), seed=start)
            if writer is not None:
                writer.write_table(chunk)
            else:
                _write_jsonl(out, chunk)
        if writer is not None:
            writer.close()
    partial.rename(path)


def _write_jsonl(out, chunk: pa.Table) -> None:
    columns = {name: chunk.column(name).to_pylist() for name in chunk.column_names}
    columns["ts"] = [t.isoformat() for t in columns["ts"]]
    names = list(columns)
    for values in zip(*columns.values(), strict=True):
        out.write(json.dumps(dict(zip(names, values, strict=True))).encode() + b"\n")


# -- runs ----------------------------------------------------------------------------


@dataclass
class Outcome:
    case: str
    file_mb: float
    readers: int
    baseline_rss_mb: float
    peak_rss_mb: float
    rows: int
    seconds: float
    file_mb_per_s: float
    limit_mb: int | None


def start_connector(root: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamkit", "connector", "serve", str(root), "--port", "0"],
        cwd=REPO,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"at (grpc://127\.0\.0\.1:\d+)", line)
        if found:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining
            return proc, found.group(1)
    raise RuntimeError(f"connector exited with {proc.wait()}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_case(name: str, data: Path) -> Outcome:
    case = CASES[name]
    [file] = [p for p in data.iterdir() if p.stem == case.dataset]
    proc, url = start_connector(data)
    try:
        results: list[ReadResult] = []
        with RssSampler(proc.pid) as rss:
            started = time.perf_counter()
            threads = [
                threading.Thread(
                    target=lambda: results.append(read_slowly(url, case.dataset, case.pause))
                )
                for _ in range(case.readers)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - started
    finally:
        stop(proc)
    assert len(results) == case.readers, "a reader failed"
    size = file.stat().st_size / MB
    return Outcome(
        name,
        round(size),
        case.readers,
        round(rss.baseline / MB),
        round(rss.peak / MB),
        sum(r.rows for r in results),
        round(seconds, 2),
        round(size * case.readers / seconds, 1),
        case.limit_mb,
    )


def run_in_process(name: str, data: Path) -> dict[str, float]:
    """The same case against a ConnectorServer in this process: pyarrow's pool as well."""
    from streamkit.connector import ConnectorServer

    case = CASES[name]
    pool = pa.default_memory_pool()
    server = ConnectorServer(str(data))
    peak_pool = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_pool
        while not done.wait(0.05):
            peak_pool = max(peak_pool, pa.total_allocated_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        with RssSampler(os.getpid()) as rss:
            sampler.start()
            threads = [
                threading.Thread(target=read_slowly, args=(server.url, case.dataset, case.pause))
                for _ in range(case.readers)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            done.set()
            sampler.join()
    finally:
        server.stop()
        server.shutdown()
    return {
        "case": name,
        "pool": pool.backend_name,
        "peak_pool_mb": round(peak_pool / MB),
        "pool_max_memory_mb": round(pool.max_memory() / MB),
        "peak_rss_mb_server_and_client": round(rss.peak / MB),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "streamkit-mem")
    parser.add_argument("--cases", default=",".join(CASES), help=",".join(CASES))
    parser.add_argument("--in-process", action="store_true", help="measure pyarrow's pool")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    make_data(args.data)
    for name in args.cases.split(","):
        if args.in_process:
            print(json.dumps(run_in_process(name, args.data)), flush=True)
            continue
        outcome = run_case(name, args.data)
        if args.json:
            print(json.dumps(asdict(outcome)), flush=True)
        else:
            verdict = ""
            if outcome.limit_mb is not None:
                within = outcome.peak_rss_mb < outcome.limit_mb
                verdict = f"  {'ok' if within else 'OVER'} (< {outcome.limit_mb} MB)"
            print(
                f"{outcome.case:28} {outcome.file_mb:6.0f} MB x{outcome.readers:<3} "
                f"peak RSS {outcome.peak_rss_mb:5.0f} MB (idle {outcome.baseline_rss_mb:.0f})"
                f"  {outcome.seconds:6.2f}s  {outcome.file_mb_per_s:7.1f} file MB/s{verdict}",
                flush=True,
            )


if __name__ == "__main__":
    main()
