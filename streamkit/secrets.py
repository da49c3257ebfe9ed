"""Secrets in configuration and flags: ``env:NAME``, ``file:PATH`` or (discouraged) a literal."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class SecretError(ValueError):
    """A secret that cannot be read; the message names where it was looked for, not its value."""


@dataclass(frozen=True)
class Secret:
    value: str
    literal: bool  # written in the clear in a file or on a command line

    def __repr__(self) -> str:  # never print the value by accident
        return "Secret(***)"


def resolve_secret(spec: str, base: Path | None = None) -> Secret:
    if spec.startswith("env:"):
        name = spec[4:]
        value = os.environ.get(name)
        if not value:
            raise SecretError(f"environment variable {name} is not set")
        return Secret(value, literal=False)
    if spec.startswith("file:"):
        path = Path(spec[5:])
        if base is not None and not path.is_absolute():
            path = base / path
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretError(f"cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise SecretError(f"{path} is not UTF-8 text") from None
        except ValueError:  # a NUL byte in the path
            raise SecretError(f"cannot read {path!r}: not a valid path") from None
        if not value:
            raise SecretError(f"{path} is empty")
        return Secret(value, literal=False)
    if not spec:
        raise SecretError("empty secret")
    return Secret(spec, literal=True)
