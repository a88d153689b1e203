"""A bench run's options: which loads (closed-loop concurrencies or open-loop rates) it sweeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from triton_repo.clients.bench.run import Level
from triton_repo.clients.bench.session import BenchOptions, levels_of
from triton_repo.core.errors import TritonRepoError


def options(**overrides) -> BenchOptions:
    values = {
        "models": [],
        "urls": {"grpc": "127.0.0.1:8001", "http": "127.0.0.1:8000"},
        "floor_python": Path("python3"),
        "protocol": "grpc",
        "concurrency": None,
        "request_rate": None,
        "arrivals": "constant",
        "batch": 1,
        "shape": (),
        "data": "golden",
        "shared_memory": False,
        "window": 2.0,
        "min_requests": 50,
        "max_windows": 10,
        "warmup": 1.0,
        "timeout": 60.0,
        "floor": False,
        "output": Path("results"),
        "repository": Path("model_repository"),
        "work_dir": Path("build"),
    }
    return BenchOptions(**{**values, **overrides})


def test_default_levels_are_concurrency_1_2_4_8_16_32():
    levels = levels_of(options())
    assert levels == [Level(concurrency=c) for c in (1, 2, 4, 8, 16, 32)]
    assert [level.label for level in levels] == ["c=1", "c=2", "c=4", "c=8", "c=16", "c=32"]


def test_concurrency_option_gives_one_closed_loop_level_each():
    assert levels_of(options(concurrency=[3, 5])) == [Level(concurrency=3), Level(concurrency=5)]


@pytest.mark.parametrize(
    ("arrivals", "poisson", "label"), [("constant", False, "50/s"), ("poisson", True, "50/s poisson")]
)
def test_request_rate_option_gives_open_loop_levels_with_the_chosen_arrivals(arrivals, poisson, label):
    levels = levels_of(options(request_rate=[50.0, 100.0], arrivals=arrivals))
    assert levels == [Level(rate=50.0, poisson=poisson), Level(rate=100.0, poisson=poisson)]
    assert all(level.concurrency is None for level in levels)
    assert levels[0].label == label


def test_levels_reject_concurrency_together_with_request_rate():
    with pytest.raises(TritonRepoError, match="--concurrency and --request-rate"):
        levels_of(options(concurrency=[1], request_rate=[50.0]))


def test_levels_reject_shared_memory_with_request_rate():
    with pytest.raises(TritonRepoError, match="--shared-memory"):
        levels_of(options(request_rate=[50.0], shared_memory=True))


def test_shared_memory_is_allowed_with_concurrency():
    assert levels_of(options(concurrency=[2], shared_memory=True)) == [Level(concurrency=2)]
