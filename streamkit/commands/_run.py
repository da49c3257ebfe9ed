"""What every client command does with a failure: one line on stderr, a distinct exit code
(see ``client.EXIT_CODES_HELP``), never a traceback; a closed pipe ends quietly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from streamkit import errors
from streamkit.client import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    ClientError,
    exit_code_for,
    silence_stdout,
    unexpected,
)


@contextmanager
def reported(interrupted: str | None = "interrupted") -> Iterator[None]:
    """Run a command's body; ``interrupted`` is said on Ctrl-C (None: nothing, e.g. a
    follow, which Ctrl-C ends by design)."""
    try:
        yield
    except typer.Exit:
        raise
    except ClientError as exc:
        typer.echo(f"streamkit: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except errors.StreamkitError as exc:
        typer.echo(f"streamkit: {exc.message}", err=True)
        raise typer.Exit(exit_code_for(exc.code)) from None
    except BrokenPipeError:
        silence_stdout()
        raise typer.Exit(0) from None
    except KeyboardInterrupt:
        if interrupted:
            typer.echo(f"streamkit: {interrupted}", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:  # a bug, but still one line rather than a traceback
        typer.echo(f"streamkit: unexpected error: {unexpected(exc)}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
