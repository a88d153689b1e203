"""`triton-repo infer`: golden inputs to every served model over gRPC and HTTP, outputs checked."""

from __future__ import annotations

from pathlib import Path

import click

from triton_repo.cli.option_groups import GivenPorts, port_options
from triton_repo.cli.options import (
    host_option,
    protocol_option,
    repository_option,
    request_timeout_option,
    work_dir_option,
)


@click.command()
@click.option(
    "--model",
    "models",
    multiple=True,
    help="Triton model to check (repeatable) [default: every model in the manifest]",
)
@protocol_option(default=None, help_text="Only this protocol [default: both]")
@host_option
@port_options
@request_timeout_option
@click.option(
    "--last",
    is_flag=True,
    help="Send nothing: exit 0 if the last check (<work-dir>/infer.json) passed on the repository as it "
    "is now, 1 if not (`make build-repo` checks only a changed repository this way).",
)
@repository_option
@work_dir_option
def infer(
    models,
    protocol,
    host,
    ports: GivenPorts,
    timeout,
    last,
    repository: Path,
    work_dir: Path,
) -> None:
    """Send each model's golden inputs and check the outputs within the spec's tolerances. Exit 1 on a mismatch."""
    from triton_repo.clients.infer import check_model, last_check, save_checks
    from triton_repo.clients.triton_client import PROTOCOLS, TritonClient
    from triton_repo.core.errors import CheckFailed, TritonRepoError
    from triton_repo.core.log import info, out
    from triton_repo.repo.publish import read_manifest
    from triton_repo.serve import server

    manifest = read_manifest(repository)
    available = manifest["models"]
    selected = list(models) or sorted(available)
    unknown = [m for m in selected if m not in available]
    if unknown:
        raise TritonRepoError(
            f"--model {unknown[0]}: not in {repository}/manifest.json; known models: {sorted(available)}"
        )
    protocols = [protocol] if protocol else list(PROTOCOLS)
    if last:
        passed, line = last_check(work_dir, repository, selected, protocols)
        info(line)
        click.get_current_context().exit(0 if passed else 1)
    state = server.running_state(work_dir / "server")
    running = state.ports if state is not None else server.Ports()
    chosen = ports.filled_from(running)
    urls = {"grpc": f"{host}:{chosen.grpc}", "http": f"{host}:{chosen.http}"}
    checks = []
    for proto in protocols:
        client = TritonClient(proto, urls[proto], timeout)
        try:
            for model in selected:
                checks.extend(check_model(client, model, available[model], repository))
        finally:
            client.close()
    _print_table(checks, out)
    record = save_checks(work_dir, repository, selected, urls, checks)
    failed = [c for c in checks if not c.passed]
    if failed:
        first = failed[0]
        raise CheckFailed(
            f"{len(failed)} of {len(checks)} checks failed; first: {first.model} over {first.protocol}, "
            f"output '{first.output}': {first.error or f'max abs diff {first.max_abs:.3g} > atol {first.tolerance.atol:g}'}"
        )
    info(
        f"[green]all {len(checks)} checks passed[/green] ({', '.join(sorted({c.protocol for c in checks}))}); results: {record}"
    )


def _print_table(checks, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Served models vs golden outputs")
    for column in ("model", "protocol", "output", "max abs diff", "max rel diff", "atol / rtol", "result"):
        table.add_column(column)
    for c in checks:
        result = "[green]pass[/green]" if c.passed else f"[red]FAIL[/red] {escape(c.error)}"
        table.add_row(
            c.model,
            c.protocol,
            c.output,
            f"{c.max_abs:.2e}",
            f"{c.max_rel:.2e}",
            f"{c.tolerance.atol:g} / {c.tolerance.rtol:g}",
            result,
        )
    console.print(table)
