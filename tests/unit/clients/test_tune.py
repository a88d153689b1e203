"""`triton-repo tune`'s search space, SLO filter, candidate configs and tuning.yaml (the server side is in
tests/integration/test_tune.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import minimal_spec, write_spec

from triton_repo.clients.bench.method import Latency
from triton_repo.clients.bench.run import Level, Point
from triton_repo.clients.tune.search import concurrency_ladder, past_the_knee, within_slo
from triton_repo.clients.tune.space import Batching, Candidate, Committed, search_space, threading_options
from triton_repo.core.errors import SpecError
from triton_repo.core.spec import load_spec
from triton_repo.core.spec.tuning import TUNING_FILE, write_tuning

COMMITTED = Committed(1, 2, Batching(500, (8,)))


@pytest.mark.parametrize(("cores", "expected"), [(1, [(1, 1)]), (2, [(1, 1), (1, 2), (2, 1)])])
def test_threads_of_all_instances_never_exceed_the_cores(cores, expected):
    assert threading_options(cores) == expected
    assert all(i * t <= 2 * cores for i, t in threading_options(cores, oversubscribe=True))
    assert (2, 2) in threading_options(2, oversubscribe=True)


def test_the_space_crosses_variants_threading_and_batching_within_the_batch_axis():
    space = search_space(
        {"m_fp32": "fp32", "m_int8": "int8"}, 2, max_batch=16, opt_batch=8, committed=COMMITTED
    )
    assert space[0] == Candidate("m_fp32", "fp32", 1, 2, COMMITTED.batching)  # the committed settings first
    assert {c.variant for c in space} == {"m_fp32", "m_int8"}
    assert all(c.instances * c.threads <= 2 for c in space)
    assert all(size <= 16 for c in space for size in c.batching.preferred)
    assert Batching(None) in {c.batching for c in space}
    assert len(space) == len(set(space))


def test_an_unbatched_model_has_no_batcher_to_tune():
    space = search_space(
        {"m_fp32": "fp32"}, 2, max_batch=0, opt_batch=0, committed=Committed(1, 1, Batching(None))
    )
    assert {c.batching for c in space} == {Batching(None)}


def point(concurrency: int, rate: float, p99: float, errors: dict | None = None) -> Point:
    latency = Latency(p50=p99 / 2, p90=p99, p95=p99, p99=p99, max=p99, mean=p99 / 2)
    return Point(
        "m",
        "grpc",
        Level(concurrency=concurrency),
        1,
        "",
        True,
        3,
        (0, 0),
        1.0,
        100,
        rate,
        latency,
        errors or {},
        None,
        0.1,
    )


def test_the_slo_keeps_the_fastest_point_whose_p99_meets_it_and_saw_no_errors():
    points = [
        point(1, 10, 5),
        point(2, 18, 9),
        point(4, 30, 14),
        point(8, 35, 30),
        point(16, 40, 12, {"UNAVAILABLE": 1}),
    ]
    assert within_slo(points, 15.0).level.concurrency == 4
    assert within_slo(points, 4.0) is None
    assert concurrency_ladder(32) == [1, 2, 4, 8, 16, 32]


def test_the_ladder_stops_after_two_levels_in_a_row_that_add_under_5_percent():
    assert not past_the_knee([50.0])
    assert not past_the_knee([50.0, 51.0])  # one flat level: a batcher may still be filling up
    assert not past_the_knee([50.0, 51.0, 90.0])  # ... and here it did (preferred batch reached)
    assert past_the_knee([50.0, 51.0, 52.0])
    assert past_the_knee([50.0, 100.0, 101.0, 99.0])
    assert not past_the_knee([50.0, 100.0, 101.0, 107.0])  # 5% over the best before it


def test_a_candidate_config_runs_the_published_files_under_its_own_name(tmp_path):
    from tests.unit.repo.test_config import batched_spec, batched_warmup
    from triton_repo.clients.tune.candidate import candidate_config
    from triton_repo.repo.config import to_text

    loaded = batched_spec(tmp_path)
    from triton_repo.repo.config import cpu_model_config

    published = tmp_path / "repo" / "toy_fp32"
    (published / "3").mkdir(parents=True)
    (published / "config.pbtxt").write_text(
        to_text(cpu_model_config(loaded, "toy_fp32", batched_warmup(loaded)))
    )
    candidate = Candidate("toy_fp32", "fp32", 2, 1, Batching(None))
    config = candidate_config(published, 3, candidate, "toy_fp32__tune1")
    assert config.name == "toy_fp32__tune1" and config.instance_group[0].count == 2
    assert config.parameters["intra_op_threads"].string_value == "1"
    assert config.parameters["onnx_file"].string_value == str((published / "3" / "model.onnx").resolve())
    assert not config.HasField("dynamic_batching") and not config.model_warmup
    batched = candidate_config(published, 3, Candidate("toy_fp32", "fp32", 1, 2, Batching(2000, (4,))), "x")
    assert batched.dynamic_batching.max_queue_delay_microseconds == 2000
    assert list(batched.dynamic_batching.preferred_batch_size) == [4]


def test_tuning_yaml_round_trips_and_every_build_applies_it(tmp_path):
    spec = minimal_spec()
    spec["triton"] = {"instance_count": 1, "intra_op_threads": 0, "keep_versions": 3}
    path = write_spec(tmp_path / "models", spec)
    settings = {
        "instance_count": 2,
        "intra_op_threads": 1,
        "dynamic_batching": {"max_queue_delay_microseconds": 2000, "preferred_batch_sizes": [4]},
    }
    written = write_tuning(path.parent, settings, None, {"gain": 1.5, "slo_p99_ms": 50})
    assert written == path.parent / TUNING_FILE
    data = yaml.safe_load(written.read_text())
    assert data["triton"] == settings and data["measured"]["gain"] == 1.5
    triton = load_spec(path).spec.triton
    assert (triton.instance_count, triton.intra_op_threads, triton.keep_versions) == (2, 1, 3)
    assert triton.dynamic_batching.max_queue_delay_microseconds == 2000
    assert json.loads(json.dumps(data))  # plain data, readable by anything


def test_a_tuning_yaml_with_settings_the_tuner_does_not_write_is_refused(tmp_path):
    path = write_spec(tmp_path / "models", minimal_spec())
    (path.parent / TUNING_FILE).write_text("triton: {keep_versions: 5}\n")
    with pytest.raises(
        SpecError,
        match=r"tuning.yaml: triton: only \['dynamic_batching', 'instance_count', 'intra_op_threads'\] can be tuned",
    ):
        load_spec(path)
    (path.parent / TUNING_FILE).write_text("triton: {dynamic_batching: {preferred_batch_sizes: [64]}}\n")
    with pytest.raises(SpecError, match=r"preferred_batch_sizes: 64 is larger than max_batch_size 8"):
        load_spec(path)


def test_the_tuned_variant_is_the_ensembles_when_it_is_auto(tmp_path):
    from conftest import TOKENIZE_ENSEMBLE

    spec = minimal_spec()
    spec["ensemble"] = dict(TOKENIZE_ENSEMBLE)
    spec["accuracy"] = {"metric": "cosine_min"}
    spec["data"] |= {"eval": "eval.npz", "calibration": "calib.npz"}
    path = write_spec(tmp_path / "models", spec)
    write_tuning(path.parent, {"instance_count": 1}, "int8", {})
    assert load_spec(path).spec.ensemble.variant == "int8"
    assert Path(path.parent / TUNING_FILE).is_file()
