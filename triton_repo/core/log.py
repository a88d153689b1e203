"""Console output: one rich console on stderr for progress, results tables on stdout; and the command's
log file (progress lines, warnings, and the tracebacks that never reach the terminal)."""

from __future__ import annotations

import contextlib
import datetime
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from triton_repo.core.errors import TritonRepoError

T = TypeVar("T")

# Not a terminal (make, CI logs): use a wide fixed width so tables are not squeezed to 80 columns.
console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


_log_file: Path | None = None  # set by a command that keeps a log (build: <work-dir>/build.log)
_WHERE = "_triton_repo_where"  # the attribute naming the step an unexpected exception escaped from


def open_log(path: Path) -> None:
    """Start `path` afresh as this command's log: every progress line and warning, and the traceback of
    anything that failed unexpectedly (the terminal gets one line)."""
    global _log_file
    path.parent.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    path.write_text(f"triton-repo {' '.join(sys.argv[1:])}  ({started})\n")
    _log_file = path


def record(text: str) -> None:
    """Write a line to the command's log only (the terminal gets its own rendering, if any)."""
    if _log_file is not None:
        try:
            with _log_file.open("a") as log:
                log.write(text.rstrip("\n") + "\n")
        except OSError:
            pass  # the log is a record, never a reason to fail


def _plain(markup: str) -> str:
    try:
        return Text.from_markup(markup).plain
    except Exception:  # noqa: BLE001 - a message that is not valid markup is logged as it is
        return markup


def info(message: str) -> None:
    console.print(message)
    record(_plain(message))


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {message}")
    record(f"warning: {_plain(message)}")


def one_line(error: BaseException, limit: int = 300) -> str:
    """`Type: first line of the message`, cut to `limit` characters (some tools put whole graphs in it)."""
    text = str(error).strip().splitlines()
    line = f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def log_traceback(error: BaseException, where: str) -> Path:
    """Write `error`'s traceback to the command's log (a temporary file when it keeps none); its path."""
    text = f"--- {where}: {one_line(error, 1000)}\n" + "".join(
        traceback.format_exception(type(error), error, error.__traceback__)
    )
    if _log_file is not None:
        record(text)
        return _log_file
    with tempfile.NamedTemporaryFile("w", prefix="triton-repo-", suffix=".log", delete=False) as log:
        log.write(text)
    return Path(log.name)


def where_failed(error: BaseException) -> str | None:
    """The innermost step (or labelled block) an unexpected exception escaped from, if any."""
    return getattr(error, _WHERE, None)


@contextmanager
def failing_as(where: str) -> Iterator[None]:
    """Label an unexpected exception escaping this block with `where` (the innermost label wins), so the
    command's one-line error can say which model and stage failed. User errors pass untouched."""
    try:
        yield
    except Exception as error:
        if not isinstance(error, TritonRepoError) and where_failed(error) is None:
            with contextlib.suppress(AttributeError, TypeError):  # a type that takes no attributes
                setattr(error, _WHERE, where)
        raise


def diagnostic(what: str, compute: Callable[[], T], default: T) -> T:
    """Run a diagnostic (roofline, FLOP share, CPU report, a report table): it informs, it never decides,
    so a failure costs one warning line and `default`, with the traceback in the log; the build goes on."""
    try:
        return compute()
    except Exception as error:  # noqa: BLE001 - whatever a diagnostic hits, the build must go on
        log_traceback(error, f"{what} skipped")
        warn(f"{escape(what)} skipped: {escape(one_line(error))}")
        return default


@contextmanager
def step(title: str) -> Iterator[None]:
    """Show a spinner while a long step runs, then one line with its duration."""
    start = time.perf_counter()
    with failing_as(title), console.status(f"{title} ...", spinner="dots"):
        yield
    seconds = time.perf_counter() - start
    console.print(f"[green]✓[/green] {title} [dim]({seconds:.1f} s)[/dim]")
    record(f"ok {_plain(title)} ({seconds:.1f} s)")
