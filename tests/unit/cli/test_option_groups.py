"""Blocks of options reach a command as one record, every command takes at most 8 parameters, and the
options shared by several commands are declared once."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import click
import pytest
from click.testing import CliRunner

from triton_repo.cli import cli
from triton_repo.cli.option_groups import (
    BuildPace,
    GivenPorts,
    SearchLimits,
    ServerWaits,
    StoreOptions,
    TargetChoice,
    TuneSearch,
    option_group,
    port_options,
)
from triton_repo.serve.server import ModelControlMode, Ports


@dataclass(frozen=True)
class Window:
    seconds: float
    rounds: int


def _toy(seen: list):
    @click.command()
    @click.argument("name")
    @option_group(
        "window",
        Window,
        click.option("--seconds", type=float, default=2.0),
        click.option("--rounds", type=int, default=3, envvar="TOY_ROUNDS"),
    )
    @port_options
    @click.option("--last", is_flag=True)
    def toy(name, window, ports, last):
        seen.append((name, window, ports, last))

    return toy


def test_a_group_hands_its_options_to_the_command_as_one_record():
    seen = []
    result = CliRunner().invoke(
        _toy(seen),
        ["x", "--rounds", "5", "--grpc-port", "9001", "--last"],
        env={"TRITON_REPO_HTTP_PORT": "9000"},
    )
    assert result.exit_code == 0, result.output
    assert seen == [("x", Window(2.0, 5), GivenPorts(http=9000, grpc=9001), True)]


def test_a_group_keeps_its_options_in_help_order_and_their_environment_variables():
    toy = _toy([])
    assert [p.name for p in toy.params] == ["name", "seconds", "rounds", "http", "grpc", "metrics", "last"]
    seen = []
    assert CliRunner().invoke(_toy(seen), ["x"], env={"TOY_ROUNDS": "7"}).exit_code == 0
    assert seen[0][1] == Window(2.0, 7)


def test_a_group_refuses_an_option_its_record_has_no_field_for():
    with pytest.raises(TypeError, match=r"Window has no field for the option\(s\) \['speed'\]"):
        option_group("window", Window, click.option("--speed"))(lambda window: None)


def test_ports_not_given_come_from_the_fallback():
    running = Ports(http=18000, grpc=18001, metrics=18002)
    assert GivenPorts().filled_from(running) == running
    assert GivenPorts(grpc=9001).filled_from(running) == Ports(http=18000, grpc=9001, metrics=18002)


def test_tune_records_its_settings_without_the_cores():
    settings = TuneSearch(100.0, "throughput", "grpc", "quick", 20.0, None, 32, 4, False)
    recorded = settings.recorded()
    assert "cores" not in recorded and recorded["slo_p99_ms"] == 100.0 and recorded["oversubscribe"] is False


def _unwrapped(command: click.Command):
    return inspect.unwrap(command.callback)


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_takes_at_most_eight_parameters(name):
    assert len(inspect.signature(_unwrapped(cli.commands[name])).parameters) <= 8


@pytest.mark.parametrize(
    ("command", "parameter", "record"),
    [
        ("build", "targeting", TargetChoice),
        ("build", "pace", BuildPace),
        ("build", "store", StoreOptions),
        ("serve", "ports", GivenPorts),
        ("serve", "waits", ServerWaits),
        ("serve", "control", ModelControlMode),
        ("search-precision", "limits", SearchLimits),
        ("tune", "settings", TuneSearch),
    ],
)
def test_grouped_options_arrive_as_their_record(command, parameter, record):
    signature = inspect.signature(_unwrapped(cli.commands[command]))
    assert parameter in signature.parameters
    annotation = signature.parameters[parameter].annotation
    assert annotation in (record.__name__, record)


def _option(command: str, flag: str) -> click.Option:
    return next(p for p in cli.commands[command].params if flag in p.opts)


@pytest.mark.parametrize(
    ("flag", "commands"),
    [
        ("--host", ["bench", "infer", "soak"]),
        ("--http-port", ["bench", "infer", "serve", "soak", "tune"]),
        ("--timeout", ["bench", "infer"]),
        ("--work-dir", ["bench", "build", "debug-int8", "infer", "qad", "search-precision", "serve", "soak"]),
    ],
)
def test_a_shared_option_means_the_same_everywhere(flag, commands):
    shown = {(str(o.type), repr(o.default), o.envvar, o.help) for o in (_option(c, flag) for c in commands)}
    assert len(shown) == 1, shown
