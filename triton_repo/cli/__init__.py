"""The `triton-repo` command line. Heavy imports happen inside command bodies so --help is instant."""

from __future__ import annotations

import sys

import click

from triton_repo import __version__
from triton_repo.cli.bench import bench
from triton_repo.cli.build import build
from triton_repo.cli.debug_int8 import debug_int8
from triton_repo.cli.infer import infer
from triton_repo.cli.init import init
from triton_repo.cli.inspect import inspect
from triton_repo.cli.publish import publish
from triton_repo.cli.qad import qad
from triton_repo.cli.rollback import rollback
from triton_repo.cli.search_precision import search_precision
from triton_repo.cli.serve import serve, stop
from triton_repo.cli.soak import soak
from triton_repo.cli.tune import tune
from triton_repo.core.errors import UNEXPECTED, TritonRepoError

# Exit codes: 0 success, 1 a check failed, 2 a user error, 3 (UNEXPECTED) an unexpected failure (one line
# on the terminal naming the step; the traceback in the command's log).


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="triton-repo")
def cli() -> None:
    """Build PyTorch models into a verified NVIDIA Triton model repository, serve it, check it."""


cli.add_command(init)
cli.add_command(build)
cli.add_command(serve)
cli.add_command(stop)
cli.add_command(publish)
cli.add_command(rollback)
cli.add_command(infer)
cli.add_command(debug_int8)
cli.add_command(search_precision)
cli.add_command(qad)
cli.add_command(bench)
cli.add_command(soak)
cli.add_command(tune)
cli.add_command(inspect)


def main() -> None:
    try:
        code = cli.main(standalone_mode=False)  # a command's ctx.exit(n) comes back as n
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(2)
    except TritonRepoError as error:
        from rich.markup import escape

        from triton_repo.core.log import console, record

        record(f"error: {error}")
        # escaped: messages quote user text and patterns such as '[a-z]', which rich would take as markup
        console.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)
        if error.detail:
            console.print(error.detail, markup=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except Exception as error:  # noqa: BLE001 - no traceback on the terminal: one line, the rest in the log
        from rich.markup import escape

        from triton_repo.core.log import console, log_traceback, unexpected_line, where_failed

        where = where_failed(error) or f"triton-repo {' '.join(sys.argv[1:2])}".strip()
        log = log_traceback(error, where)
        console.print(f"[red]error:[/red] {escape(unexpected_line(where, error, log))}", soft_wrap=True)
        sys.exit(UNEXPECTED)
