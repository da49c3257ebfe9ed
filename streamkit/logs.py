"""Server logs on stderr: ``text`` for people, ``json`` (one object per line) for log shippers."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from enum import StrEnum
from typing import Any


class LogFormat(StrEnum):
    text = "text"
    json = "json"


TEXT_FORMAT = "%(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """``ts`` (ISO 8601 UTC), ``level``, ``logger``, ``message``, ``exception`` when there is
    one, and the keys of a record's ``request`` dict (``extra={"request": {...}}``)."""

    def format(self, record: logging.LogRecord) -> str:
        ts = dt.datetime.fromtimestamp(record.created, dt.UTC)
        fields: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        request = getattr(record, "request", None)
        if isinstance(request, dict):
            for key, value in request.items():
                # The fixed fields win: a request field cannot pass for the level or the time.
                fields.setdefault(str(key), value)
        return json.dumps(fields, default=str, ensure_ascii=False)


_json_logs = False  # configure_logging's choice, for say()


def configure_logging(fmt: str) -> None:
    """Log INFO and above to stderr in ``fmt`` (``text`` or ``json``)."""
    global _json_logs
    handler = logging.StreamHandler(sys.stderr)
    _json_logs = LogFormat(fmt) is LogFormat.json
    if _json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler])


def say(text: str, level: int = logging.INFO) -> None:
    """A line for the operator on stderr (start-up, warnings, stopping): as written with
    text logs; with JSON logs, a record of the ``streamkit`` logger like every other line."""
    if not _json_logs:
        print(text, file=sys.stderr, flush=True)
        return
    message = text.strip().removeprefix("streamkit: ").removeprefix("warning: ")
    logging.getLogger("streamkit").log(level, "%s", message)
