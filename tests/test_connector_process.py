"""The connector as a real process: start, serve, stop on signals even with stalled clients,
and bounded memory on a large file."""

from __future__ import annotations

import signal
import threading
import time

import psutil
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest

STOP_LIMIT_SECONDS = 2.0
SLACK_SECONDS = 1.0  # shared CI machines: allow for scheduling noise on top of the limit


def start_connector(process, root, *extra):
    proc = process("connector", "serve", str(root), "--port", "0", *extra)
    port = int(proc.wait_for_stderr(r"at grpc://127\.0\.0\.1:(\d+)").group(1))
    return proc, flight.connect(f"grpc://127.0.0.1:{port}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stops_quickly_with_a_stalled_stream(tmp_path, process, signum):
    table = pa.table({"id": range(3_000_000), "x": [1.5] * 3_000_000})
    pq.write_table(table, tmp_path / "big.parquet", row_group_size=50_000)
    proc, client = start_connector(process, tmp_path, "--batch-rows", "10000")
    with client:
        info = client.get_flight_info(flight.FlightDescriptor.for_path("big"))
        reader = client.do_get(info.endpoints[0].ticket)
        reader.read_chunk()  # then stop reading: the server's writes block on flow control
        started = time.monotonic()
        proc.signal(signum)
        proc.proc.wait(STOP_LIMIT_SECONDS + SLACK_SECONDS)
        elapsed = time.monotonic() - started
    assert proc.proc.returncode == 0, proc.stderr
    assert elapsed < STOP_LIMIT_SECONDS + SLACK_SECONDS
    assert "Traceback" not in proc.stderr


def test_bad_root_and_busy_port_are_one_line_errors(tmp_path, process):
    missing = process("connector", "serve", str(tmp_path / "nope"))
    assert missing.proc.wait(20) == 1
    missing.stop()
    assert "not a folder" in missing.stderr and "Traceback" not in missing.stderr

    first, client = start_connector(process, tmp_path)
    client.close()
    port = first.stderr.rsplit(":", 1)[1].strip()
    second = process("connector", "serve", str(tmp_path), "--port", port)
    assert second.proc.wait(20) == 1
    second.stop()
    assert "cannot listen" in second.stderr and "Traceback" not in second.stderr


def test_large_csv_streams_in_bounded_memory(tmp_path, process):
    """~300 MB of CSV streamed whole: the connector's RSS stays far below the file size."""
    rows = 1_000_000
    chunk = pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "name": pa.array([f"customer-{i % 5000:05d}" for i in range(rows)]),
            "amount": pa.array([i * 0.01 for i in range(rows)]),
            "comment": pa.array(["lorem ipsum dolor sit amet " * 6] * rows),
        }
    )
    target = tmp_path / "large.csv"
    with pcsv.CSVWriter(str(target), chunk.schema) as writer:
        for _ in range(2):
            writer.write_table(chunk)
    size = target.stat().st_size
    proc, client = start_connector(process, tmp_path)
    connector = psutil.Process(proc.proc.pid)
    peak = 0
    total = 0
    with client:
        info = client.get_flight_info(flight.FlightDescriptor.for_path("large"))
        for chunk_read in client.do_get(info.endpoints[0].ticket):
            total += chunk_read.data.num_rows
            peak = max(peak, connector.memory_info().rss)
    assert total == 2 * rows
    assert size > 250 * 2**20
    assert peak < size * 0.8, f"peak RSS {peak >> 20} MB for a {size >> 20} MB file"


def test_many_first_requests_for_one_file_at_once(tmp_path, process):
    """pyarrow.dataset's row counting, run by 20 threads at once on a ~50 MB IPC file,
    deadlocked Arrow's thread pool and with it every later request."""
    chunk = pa.table({"a": pa.array(range(1 << 16)), "s": [f"x{i}" for i in range(1 << 16)]})
    with pa.OSFile(str(tmp_path / "big.arrow"), "wb") as sink, pa.ipc.new_file(
        sink, chunk.schema
    ) as writer:
        for _ in range(40):
            writer.write_table(chunk)
    proc, first = start_connector(process, tmp_path)
    first.close()
    port = int(proc.wait_for_stderr(r"at grpc://127\.0\.0\.1:(\d+)").group(1))
    answers: list[int] = []
    start = threading.Barrier(20)

    def ask() -> None:
        with flight.connect(f"grpc://127.0.0.1:{port}") as client:
            start.wait()
            descriptor = flight.FlightDescriptor.for_path("big")
            options = flight.FlightCallOptions(timeout=30)
            answers.append(client.get_flight_info(descriptor, options).total_records)

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert answers == [40 << 16] * 20


def test_batch_bytes_sets_the_size_of_streamed_batches(tmp_path, process):
    table = pa.table({"a": pa.array(range(200_000)), "b": pa.array(range(200_000), pa.float64())})
    pq.write_table(table, tmp_path / "nums.parquet")
    _, client = start_connector(process, tmp_path, "--batch-bytes", "65536")
    batches = client.do_get(flight.Ticket(b'{"dataset": "nums"}')).read_all().to_batches()
    assert sum(b.num_rows for b in batches) == 200_000
    assert max(b.nbytes for b in batches) <= 2 * 65536 < table.nbytes / 10
