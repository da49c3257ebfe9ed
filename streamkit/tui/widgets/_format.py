"""Number and size formatting shared by the widgets."""

from __future__ import annotations

import datetime as dt
import decimal
import json


def count(value: int) -> str:
    """``10,080``; ``?`` when unknown (-1)."""
    return "?" if value < 0 else f"{value:,}"


def short_count(value: int) -> str:
    """``2,000``, ``10.1k``, ``3.5M``: at most six characters; ``?`` when unknown."""
    if value < 0:
        return "?"
    if value < 10_000:
        return f"{value:,}"
    return _three_digits(value, ("", "k", "M", "G", "T"))


def size(value: int) -> str:
    """``173 kB``, ``20.5 kB``, ``1.2 GB`` (three significant digits); ``?`` when unknown."""
    if value < 0:
        return "?"
    if value < 1000:
        return f"{value} B"
    return _three_digits(value, ("B", " kB", " MB", " GB", " TB"))


def _three_digits(value: float, units: tuple[str, ...]) -> str:
    amount, index = float(value), 0
    while round(amount, 1) >= 1000 and index < len(units) - 1:
        amount, index = amount / 1000, index + 1
    return f"{amount:.0f}{units[index]}" if amount >= 100 else f"{amount:.1f}{units[index]}"


def number(value: float | None, integer: bool = False) -> str:
    """A column value for a chart's caption: short, never scientific below 1e6."""
    if value is None:
        return "-"
    if integer and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 1e6 or (abs(value) < 1e-2 and value != 0):
        return f"{value:.3g}"
    return f"{value:,.2f}"


def cell(value: object, width: int = 24, today: dt.date | None = None) -> str:
    """A table cell: ``None`` as empty, floats trimmed, decimals without an exponent,
    durations in seconds, nested values (lists, structs, maps) as JSON, long text cut with
    an ellipsis."""
    if value is None:
        text = ""
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, dt.datetime):
        text = timestamp(value, today)
    elif isinstance(value, bytes):
        text = value[:16].hex() + ("…" if len(value) > 16 else "")
    elif isinstance(value, decimal.Decimal):
        text = format(value, "f")  # str() spells 0E-10 and -1E-20 with an exponent
    elif isinstance(value, dt.timedelta):
        text = f"{_seconds(value)} s"
    elif isinstance(value, dict | list | tuple):
        text = json.dumps(value, ensure_ascii=False, default=_json_default)
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _seconds(value: dt.timedelta) -> str:
    """Exact seconds: ``-1.5``, not ``-1 day, 23:59:58.500000``."""
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    return format(decimal.Decimal(micros).scaleb(-6).normalize(), "f")


def _json_default(value: object) -> object:
    """Nested values JSON cannot hold: as their cell text (bytes in hex)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | dt.timedelta):
        return cell(value, width=1_000)
    return str(value)


def timestamp(value: dt.datetime, today: dt.date | None = None) -> str:
    """``2025-03-01 12:00:00``; only ``12:00:00.250`` for today's (live rows), so a narrow
    table keeps room for the values. Milliseconds only when there are any."""
    spec = "milliseconds" if value.microsecond else "seconds"
    if today is None:
        today = dt.datetime.now(value.tzinfo).date()
    if value.date() == today:
        return value.time().isoformat(timespec=spec)
    return value.isoformat(sep=" ", timespec=spec).removesuffix("+00:00")


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{rest:02}" if hours else f"{minutes}:{rest:02}"
