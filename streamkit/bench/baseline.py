"""The yardstick: a bare pyarrow Flight server over one Arrow file, nothing else.

Run as ``python -m streamkit.bench.baseline FILE [--port 0]``; it prints
``baseline serving FILE at grpc://HOST:PORT`` on stderr and serves every ticket with the
whole file (``RecordBatchStream`` over a ``pyarrow.dataset`` scanner, all in C++).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

import pyarrow.dataset as ds
import pyarrow.flight as flight

from streamkit.readers import DEFAULT_BATCH_ROWS


class BaselineServer(flight.FlightServerBase):  # type: ignore[misc]  # pyarrow: no stubs
    def __init__(self, path: str, location: str | None = None, **kwargs: Any) -> None:
        super().__init__(location, **kwargs)
        self.dataset = ds.dataset(path, format="ipc")

    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        endpoint = flight.FlightEndpoint(flight.Ticket(b"all"), [])
        return flight.FlightInfo(
            self.dataset.schema, descriptor, [endpoint], self.dataset.count_rows(), -1
        )

    def do_get(
        self, context: flight.ServerCallContext, ticket: flight.Ticket
    ) -> flight.FlightDataStream:
        scanner = self.dataset.scanner(batch_size=DEFAULT_BATCH_ROWS)
        return flight.RecordBatchStream(scanner.to_reader())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = BaselineServer(args.file, f"grpc://{args.host}:{args.port}")
    print(f"baseline serving {args.file} at grpc://{args.host}:{server.port}", file=sys.stderr)
    sys.stderr.flush()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    threading.Thread(target=server.shutdown, daemon=True).start()


if __name__ == "__main__":
    main()
