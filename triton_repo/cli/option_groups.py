"""Blocks of related options, each handed to its command as ONE frozen record instead of a parameter per
option: the server's ports, object storage, and single commands' blocks (declared with their command)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

import click

from triton_repo.cli.store_options import store_options
from triton_repo.serve.server import Ports


def option_group(parameter: str, record: type, *options: Callable) -> Callable:
    """A decorator: `options` (click.option decorators, in --help order) declare a block of related
    options, and the command gets them as ONE value, `record(**their values)`, as its `parameter`.
    `record` is a frozen dataclass with a field named as each option's parameter."""

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def grouped(*args, **kwargs):
            values = {name: kwargs.pop(name) for name in names}
            return command(*args, **kwargs, **{parameter: record(**values)})

        before = len(getattr(grouped, "__click_params__", []))
        for option in reversed(options):
            grouped = option(grouped)
        names = [param.name for param in grouped.__click_params__[before:]]
        unknown = set(names) - {field.name for field in dataclasses.fields(record)}
        if unknown:
            raise TypeError(f"{record.__name__} has no field for the option(s) {sorted(unknown)}")
        return grouped

    return decorate


@dataclass(frozen=True)
class GivenPorts:
    """--http-port, --grpc-port, --metrics-port as given; None where not (the caller picks the default)."""

    http: int | None = None
    grpc: int | None = None
    metrics: int | None = None

    def filled_from(self, fallback: Ports) -> Ports:
        """The ports given on the command line, the rest from `fallback`."""
        return Ports(
            http=self.http or fallback.http,
            grpc=self.grpc or fallback.grpc,
            metrics=self.metrics or fallback.metrics,
        )


port_options = option_group(
    "ports",
    GivenPorts,
    *(
        click.option(
            f"--{label}-port",
            label,
            type=click.IntRange(1, 65535),
            default=None,
            envvar=f"TRITON_REPO_{label.upper()}_PORT",
            show_envvar=True,
            help=f"{label.upper()} port on 127.0.0.1 [default: the running server's, else {default}]",
        )
        for label, default in dataclasses.asdict(Ports()).items()
    ),
)


@dataclass(frozen=True)
class StoreOptions:
    """--aws-profile, --server (repeatable) and --admin-header: publishing into object storage."""

    aws_profile: str | None
    servers: tuple[str, ...]
    admin_header: str | None


store_option_group = option_group("store", StoreOptions, store_options)


@dataclass(frozen=True)
class TargetChoice:
    """build's --target and --artifacts: what the repository is built for, which pairs are measured."""

    target: str
    artifacts: str


@dataclass(frozen=True)
class BuildPace:
    """build's --speed-seconds (each model's timing) and --jobs (how many models build at once)."""

    speed_seconds: float
    jobs: int


@dataclass(frozen=True)
class ServerWaits:
    """serve's --timeout (seconds until ready) and --exit-timeout (for in-flight requests when stopped)."""

    timeout: float
    exit_timeout: int


@dataclass(frozen=True)
class SoakLoad:
    """soak's steady load: for how many --minutes, --concurrency requests in flight, over --protocol."""

    minutes: float
    concurrency: int
    protocol: str


@dataclass(frozen=True)
class SearchLimits:
    """How search-precision searches each artifact: at most --max-trials and --max-minutes, the eval
    --rows the ranking runs, --qad-steps per trial."""

    max_trials: int
    max_minutes: float
    rows: int
    qad_steps: int


@dataclass(frozen=True)
class TuneSearch:
    """What tune looks for, within what, sent what: SLO, objective, search, clients, cores, traffic."""

    slo_p99_ms: float
    objective: str
    protocol: str
    search: str
    max_minutes: float
    min_accuracy: float | None
    max_concurrency: int
    cores: int | None
    oversubscribe: bool
    traffic: str | None = None
    batch: int = 1

    def recorded(self) -> dict:
        """The settings the results (and tuning.yaml) record: all but the cores."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "cores"}
