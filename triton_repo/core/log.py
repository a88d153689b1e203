"""Console output: one rich console on stderr for progress, results tables on stdout; and the command's
log file (progress lines, warnings, and the tracebacks that never reach the terminal).

A build worker process (`build -j N`) writes neither: it forwards every line to the parent
(`forward_lines`), which prints and logs it (`replay`), so the terminal and the log have one writer."""

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
# In a build worker: where its lines go instead of the terminal and the log (the parent replays them).
_forward: Callable[[tuple], None] | None = None


def open_log(path: Path) -> None:
    """Start `path` afresh as this command's log: every progress line and warning, and the traceback of
    anything that failed unexpectedly (the terminal gets one line)."""
    global _log_file
    path.parent.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    path.write_text(f"triton-repo {' '.join(sys.argv[1:])}  ({started})\n")
    _log_file = path


def log_path() -> Path | None:
    """The command's log file, if it keeps one."""
    return _log_file


def forward_lines(log: Path | None, send: Callable[[tuple], None]) -> None:
    """In a worker process: hand every line, step and log record to `send` instead of writing them (the
    parent replays them); `log` is the parent's log file, which error lines name."""
    global _log_file, _forward
    _log_file, _forward = log, send


def replay(event: tuple) -> None:
    """Print and log a line a worker forwarded, as if this process had written it. A step's start
    prints nothing: its line comes when it is done."""
    kind, *rest = event
    shown = {"info": info, "warn": warn, "record": record, "done": step_done}
    if kind in shown:
        shown[kind](*rest)


def record(text: str) -> None:
    """Write a line to the command's log only (the terminal gets its own rendering, if any)."""
    if _forward is not None:
        _forward(("record", text))
    elif _log_file is not None:
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
    if _forward is not None:
        _forward(("info", message))
        return
    console.print(message)
    record(_plain(message))


def warn(message: str) -> None:
    if _forward is not None:
        _forward(("warn", message))
        return
    console.print(f"[yellow]warning:[/yellow] {message}")
    record(f"warning: {_plain(message)}")


def one_line(error: BaseException, limit: int = 300) -> str:
    """`Type: first line of the message`, cut to `limit` characters (some tools put whole graphs in it)."""
    text = str(error).strip().splitlines()
    line = f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def shown_path(path: Path) -> str:
    """A path relative to the working directory when under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def unexpected_line(where: str, error: BaseException, log: Path) -> str:
    """The one line an unexpected failure gets on the terminal (its traceback is in `log`)."""
    return (
        f"{where}: failed unexpectedly: {one_line(error)} (the traceback is in {shown_path(log)}; "
        "please report it with that file)"
    )


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
    """Show a spinner while a long step runs, then one line with its duration (in a worker: tell the
    parent, whose spinner shows every worker's step)."""
    start = time.perf_counter()
    if _forward is not None:
        _forward(("step", title))
    spinner = console.status(f"{title} ...", spinner="dots") if _forward is None else contextlib.nullcontext()
    with failing_as(title), spinner:
        yield
    step_done(title, time.perf_counter() - start)


def step_done(title: str, seconds: float) -> None:
    """A step's closing line: `✓ title (seconds)`, and `ok title (seconds)` in the log."""
    if _forward is not None:
        _forward(("done", title, seconds))
        return
    console.print(f"[green]✓[/green] {title} [dim]({seconds:.1f} s)[/dim]")
    record(f"ok {_plain(title)} ({seconds:.1f} s)")
