"""Messages from the TUI's workers to the app: small, past tense, safe to post from a thread."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from streamkit.tui.flight_data import DatasetEntry, Failure
from streamkit.tui.series import StreamAccumulator


@dataclass
class DatasetsListed(Message):
    entries: list[DatasetEntry]


@dataclass
class ListingFailed(Message):
    error: Failure


@dataclass
class StreamStarted(Message):
    """The stream is open; its batches will be summarised in ``accumulator``."""

    stream_id: int
    accumulator: StreamAccumulator


@dataclass
class BatchesReceived(Message):
    """New batches wait in the stream's accumulator; one stands for any number of batches."""

    stream_id: int

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, BatchesReceived) and message.stream_id == self.stream_id


@dataclass
class StreamEnded(Message):
    stream_id: int
    cancelled: bool


@dataclass
class StreamFailed(Message):
    stream_id: int
    error: Failure
