"""`triton-repo bench`: load the served models, measure them like perf_analyzer, explain where time goes."""

from __future__ import annotations

from pathlib import Path

import click

from triton_repo.cli.option_groups import port_options
from triton_repo.cli.options import (
    default_serve_env,
    host_option,
    protocol_option,
    repository_option,
    request_timeout_option,
    results_option,
    serve_env_option,
    work_dir_option,
)

DEFAULT_CONCURRENCY = "1,2,4,8,16,32"


def _numbers(kind: type, label: str):
    def convert(_ctx, _param, value: str | None):
        if value is None:
            return None
        try:
            numbers = [kind(part) for part in value.split(",") if part.strip()]
        except ValueError:
            raise click.BadParameter(f"{value!r}: expected comma-separated {label}, e.g. 1,2,4") from None
        if not numbers or any(n <= 0 for n in numbers):
            raise click.BadParameter(f"{value!r}: expected comma-separated {label} > 0, e.g. 1,2,4")
        return numbers

    return convert


@click.command()
@click.argument("models", nargs=-1)
@protocol_option()
@click.option(
    "--concurrency",
    callback=_numbers(int, "integers"),
    default=None,
    help=f"Closed loop: requests in flight, one point each [default: {DEFAULT_CONCURRENCY}]",
)
@click.option(
    "--request-rate",
    callback=_numbers(float, "requests per second"),
    default=None,
    help="Open loop instead: requests per second, one point each (e.g. 50,100,200)",
)
@click.option(
    "--arrivals",
    type=click.Choice(["constant", "poisson"]),
    default="constant",
    show_default=True,
    help="Gaps between open-loop requests.",
)
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True, help="Batch size per request.")
@click.option(
    "--shape",
    multiple=True,
    metavar="AXIS=SIZE",
    help="Size of a named axis for every request, e.g. seq=64 [default: the axis' opt size]",
)
@click.option(
    "--data",
    type=click.Choice(["golden", "random"]),
    default="golden",
    show_default=True,
    help="golden: the golden sample resized to the shape; random: values within the golden inputs' range.",
)
@click.option(
    "--traffic",
    type=click.Path(path_type=Path),
    default=None,
    help="Your inputs instead of the golden request: .txt (texts, or image paths), a folder of images, "
    ".npy or .npz (rows on axis 0); each request is --batch consecutive rows; an ensemble can be named.",
)
@click.option(
    "--sequence-length",
    type=click.IntRange(1),
    default=None,
    help="A stateful model: chunks per sequence, START to END; --concurrency is the live sequences "
    "[default: the golden streams' length]",
)
@click.option("--shared-memory", is_flag=True, help="Pass inputs and outputs through system shared memory.")
@click.option(
    "--window", type=click.FloatRange(0.1), default=2.0, show_default=True, help="Seconds per window."
)
@click.option(
    "--min-requests",
    type=click.IntRange(1),
    default=50,
    show_default=True,
    help="A window lasts until at least this many requests completed (up to 10 windows' time).",
)
@click.option(
    "--max-windows",
    type=click.IntRange(3),
    default=10,
    show_default=True,
    help="Windows per point before it is reported unstable.",
)
@click.option(
    "--warmup", type=click.FloatRange(0), default=1.0, show_default=True, help="Seconds of warm-up."
)
@request_timeout_option
@click.option(
    "--floor/--no-floor",
    default=True,
    show_default=True,
    help="Measure the in-process floor (the served ONNX file in the server's ONNX Runtime).",
)
@results_option("bench/results", "TRITON_REPO_BENCH_OUTPUT")
@host_option
@port_options
@repository_option
@work_dir_option
@serve_env_option("Environment whose Python runs the in-process floor (the server's ONNX Runtime).")
def bench(models, **options) -> None:
    """Benchmark MODELS (a source model means all its published variants; none: the whole repository).

    Per point: warm-up, then fixed windows until throughput and p99 over the last 3 windows are within
    10% (else the point is reported unstable). Exit 1 if any request failed.
    """
    from triton_repo.clients.bench.session import BenchOptions, run_bench
    from triton_repo.serve.server import Ports, running_state

    state = running_state(options["work_dir"] / "server")
    ports = options.pop("ports").filled_from(state.ports if state else Ports())
    local = state is not None and state.ports == ports and options["host"] in ("127.0.0.1", "localhost")
    serve_env = options.pop("serve_env") or default_serve_env()
    run_bench(
        BenchOptions(
            models=list(models),
            urls={
                "grpc": f"{options['host']}:{ports.grpc}",
                "http": f"{options['host']}:{ports.http}",
                "metrics": f"http://{options['host']}:{ports.metrics}/metrics",
            },
            floor_python=serve_env / "bin" / "python3",
            server_pid=state.pid if local else None,
            **{k: v for k, v in options.items() if k not in ("host",)},
        )
    )
