"""One log line per finished request: transport, tenant, dataset, rows, bytes, seconds, outcome."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from streamkit.gateway.metrics import StreamMeter

log = logging.getLogger("streamkit.requests")


@dataclass
class RequestRecord:
    transport: str
    tenant: str | None
    dataset: str
    rows: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.perf_counter)
    outcome: str = "error"
    meter: StreamMeter | None = None

    def add(self, rows: int, nbytes: int) -> None:
        self.rows += rows
        self.bytes += nbytes
        if self.meter is not None:
            self.meter.add(rows, nbytes)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def finish(self, outcome: str | None = None) -> None:
        if outcome is not None:
            self.outcome = outcome
        if self.meter is not None:
            self.meter.finish(self.outcome)
        seconds = self.seconds
        fields = {
            "transport": self.transport,
            "tenant": self.tenant,
            "dataset": self.dataset,
            "rows": self.rows,
            "bytes": self.bytes,
            "seconds": round(seconds, 3),
            "outcome": self.outcome,
        }
        log.info(
            "%s tenant=%s dataset=%s rows=%d bytes=%d seconds=%.3f outcome=%s",
            self.transport,
            self.tenant,
            self.dataset,
            self.rows,
            self.bytes,
            seconds,
            self.outcome,
            extra={"request": fields},
        )
