"""Console output: one rich console on stderr for progress, results tables on stdout."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

# Not a terminal (make, CI logs): use a wide fixed width so tables are not squeezed to 80 columns.
console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def info(message: str) -> None:
    console.print(message)


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {message}")


@contextmanager
def step(title: str) -> Iterator[None]:
    """Show a spinner while a long step runs, then one line with its duration."""
    start = time.perf_counter()
    with console.status(f"{title} ...", spinner="dots"):
        yield
    console.print(f"[green]✓[/green] {title} [dim]({time.perf_counter() - start:.1f} s)[/dim]")
