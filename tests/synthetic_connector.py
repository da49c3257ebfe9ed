"""A tiny purpose-built upstream for gateway tests: one synthetic dataset of N equal batches,
counting what it produced and noticing when its stream ends (finished or cancelled)."""

from __future__ import annotations

import threading

import pyarrow as pa
import pyarrow.flight as flight

from streamkit.query import Query

BATCH = pa.record_batch({f"c{i}": pa.array([float(i)] * 50_000) for i in range(8)})  # 3.2 MB


class SyntheticConnector(flight.FlightServerBase):
    def __init__(self, batches: int = 1000, stall_after: int | None = None) -> None:
        self.batches = batches
        self.stall_after = stall_after
        self.release = threading.Event()  # a stalled stream goes on once this is set
        self.produced = 0
        self.finished = threading.Event()
        super().__init__("grpc://127.0.0.1:0")

    def _info(self, name: str) -> flight.FlightInfo:
        ticket = Query(dataset=name).to_ticket()
        return flight.FlightInfo(
            BATCH.schema,
            flight.FlightDescriptor.for_path(name),
            [flight.FlightEndpoint(ticket, [])],
            self.batches * BATCH.num_rows,
            -1,
        )

    def list_flights(self, context, criteria):
        yield self._info("synthetic")

    def get_flight_info(self, context, descriptor):
        return self._info("synthetic")

    def shutdown(self) -> None:
        self.release.set()
        super().shutdown()

    def do_get(self, context, ticket):
        self.finished.clear()
        self.produced = 0

        def batches():
            try:
                for _ in range(self.batches):
                    if context.is_cancelled():
                        return
                    if self.produced == self.stall_after:
                        while not self.release.wait(0.05) and not context.is_cancelled():
                            pass
                    self.produced += 1
                    yield BATCH
            finally:
                self.finished.set()

        return flight.GeneratorStream(BATCH.schema, batches())
