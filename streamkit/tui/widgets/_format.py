"""Number and size formatting shared by the widgets."""

from __future__ import annotations

import datetime as dt


def count(value: int) -> str:
    """``10,080``; ``?`` when unknown (-1)."""
    return "?" if value < 0 else f"{value:,}"


def size(value: int) -> str:
    """``172.6 kB``; ``?`` when unknown (-1)."""
    if value < 0:
        return "?"
    amount = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if amount < 1000 or unit == "TB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    raise AssertionError("unreachable")


def number(value: float | None) -> str:
    """A column value for a chart's caption: short, aligned, never scientific below 1e6."""
    if value is None:
        return "-"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 1e6 or abs(value) < 1e-2:
        return f"{value:.3g}"
    return f"{value:,.2f}"


def cell(value: object, width: int = 24) -> str:
    """A table cell: ``None`` as empty, floats trimmed, long text cut with an ellipsis."""
    if value is None:
        text = ""
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, dt.datetime):
        text = value.isoformat(sep=" ", timespec="seconds")
    elif isinstance(value, bytes):
        text = value[:16].hex() + ("…" if len(value) > 16 else "")
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{rest:02}" if hours else f"{minutes}:{rest:02}"
