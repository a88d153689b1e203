"""Precision variants end to end: built, gated on accuracy, published, served and checked over both protocols."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.integration.conftest import (
    TINY_MODEL_PY,
    TINY_SPEC,
    build,
    run_cli,
    serve,
    tree_hash,
    write_tiny_model,
)

GATED_MODEL_PY = (
    TINY_MODEL_PY
    + """

def _count(name):  # beside the model folder, whose content keys the build's caches
    import json
    from pathlib import Path

    calls = Path(__file__).parent.parent / "data_calls.json"
    counts = json.loads(calls.read_text()) if calls.is_file() else {}
    calls.write_text(json.dumps({**counts, name: counts.get(name, 0) + 1}))


def _rows(seed, count):
    rng = np.random.default_rng(seed)
    return {
        "ids": rng.integers(0, 50, size=(count, 6)).astype(np.int64),
        "features": rng.standard_normal((count, 4)).astype(np.float32),
    }


def calibration():
    _count("calibration")
    return _rows(1, 32)


def evaluation():
    _count("eval")
    return _rows(2, 24)
"""
)


def gated_spec(budget: float) -> str:
    return TINY_SPEC.replace(
        'data: {sample: "model:sample"}',
        'data: {sample: "model:sample", calibration: "model:calibration", eval: "model:evaluation"}\n'
        f"accuracy: {{metric: cosine_min, budget: {budget}, output: pooled}}\n"
        "precision: {variants: [fp32, fp16, bf16, int8]}",  # listed: published whatever their speed
    )


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    folder = write_tiny_model(root / "models", model_py=GATED_MODEL_PY, spec=gated_spec(0.9))
    repository, work_dir = root / "model_repository", root / "build"
    result = build(folder, repository, work_dir)
    return folder, repository, work_dir, result


def test_every_precision_is_published_from_its_fastest_pair_with_a_report(gated):
    _, repository, work_dir, result = gated
    manifest = json.loads((repository / "manifest.json").read_text())
    assert sorted(manifest["models"]) == ["tiny_bf16", "tiny_fp16", "tiny_fp32", "tiny_int8"]
    assert manifest["models"]["tiny_int8"]["precision"] == "int8"
    assert manifest["models"]["tiny_int8"]["tolerances"]["pooled"] == {"atol": 1e-2, "rtol": 5e-2}
    for kind in ("fp16-cpu", "int8-cpu", "int8-ov"):
        assert (work_dir / "tiny" / f"model.{kind}.onnx").is_file()
    for kind in ("fp16", "bf16", "int8"):  # TensorRT's graphs: the cpu target does not serve them
        assert not (work_dir / "tiny" / f"model.{kind}.onnx").exists()
    report = json.loads((repository / "BUILD_REPORT.json").read_text())["models"]["tiny"]
    rows = {(row["artifact"], row["runtime"]): row for row in report["variants"]}
    assert set(rows) == {
        ("fp32", "ort"),
        ("fp32", "ov-f32"),
        ("fp32", "ov-bf16"),
        ("fp16-cpu", "ort"),
        ("int8-cpu", "ort"),
        ("int8-ov", "ov-bf16"),
    }
    assert rows["fp16-cpu", "ort"]["triton_model"] == "tiny_fp16"
    assert rows["fp32", "ov-bf16"]["triton_model"] == "tiny_bf16"  # the FP32 graph at BF16 in OpenVINO
    # each served variant is the pair its choice names, and the served file is that pair's artifact
    for precision, choice in report["choices"].items():
        kind, _, runner = choice["pair"].partition("@")
        row = rows[kind, runner or "ort"]
        assert row["triton_model"] == f"tiny_{precision}" and row["status"] == "published"
        served = (repository / f"tiny_{precision}" / "1" / "model.onnx").read_bytes()
        assert served == (work_dir / "tiny" / row["file"]).read_bytes()
        config = (repository / f"tiny_{precision}" / "config.pbtxt").read_text()
        assert ('"openvino"' in config) == runner.startswith("ov")
    candidates = [row for row in report["variants"] if row["candidate_for"] == "int8"]
    assert {row["artifact"] for row in candidates} == {"int8-cpu", "int8-ov"}
    for row in report["variants"]:
        if row["artifact"] != "fp32" or row["runtime"] != "ort":
            assert 0.9 <= row["accuracy"]["value"] <= 1.0
        assert row["throughput_per_s"] > 0 and row["latency_ms_batch1"] > 0 and row["gflops"] > 0
    assert report["threads"] == 1 and report["cpu"]["instruction_sets"]
    markdown = (repository / "BUILD_REPORT.md").read_text()
    assert "## tiny" in markdown and "| int8-cpu | ort |" in markdown and "Estimated peaks:" in markdown


def test_every_variant_answers_correctly_over_grpc_and_http(gated, tmp_path):
    _, repository, _, _ = gated
    served = serve(repository, tmp_path / "serve")
    try:
        result = run_cli("infer", *served.common_args, *served.port_args)
    finally:
        run_cli("stop", "--work-dir", str(served.work_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    for model in ("tiny_fp32", "tiny_fp16", "tiny_bf16", "tiny_int8"):
        assert result.stdout.count(model) >= 2  # one row per protocol


def test_rebuild_with_nothing_changed_reuses_everything(gated):
    folder, repository, work_dir, _ = gated
    before = tree_hash(repository)
    artifacts = sorted((work_dir / "tiny").glob("model*.onnx"))
    stamps = [path.stat().st_mtime_ns for path in artifacts]
    calls = folder.parent / "data_calls.json"
    data_calls = calls.read_text()
    assert json.loads(data_calls)["eval"] >= 1
    build(folder, repository, work_dir)
    assert [path.stat().st_mtime_ns for path in artifacts] == stamps  # nothing re-exported or re-quantized
    assert tree_hash(repository) == before
    assert calls.read_text() == data_calls  # no calibration or eval row computed: their digests are kept


def test_artifacts_all_adds_tensorrts_graphs_to_the_report_and_serves_the_same(gated):
    folder, repository, work_dir, _ = gated
    served = json.loads((repository / "manifest.json").read_text())["models"]
    common = ["--repository", str(repository), "--work-dir", str(work_dir)]
    run_cli("build", str(folder), *common, "--artifacts", "all", check=True)
    report = json.loads((repository / "BUILD_REPORT.json").read_text())["models"]["tiny"]
    rows = {(row["artifact"], row["runtime"]): row for row in report["variants"]}
    assert {("fp16", "ort"), ("bf16", "ov-f32"), ("int8", "ort")} <= set(rows)
    assert rows["int8", "ort"]["status"] == rows["fp16", "ort"]["status"] == "not served on the cpu target"
    for kind in ("fp16", "bf16", "int8"):
        assert (work_dir / "tiny" / f"model.{kind}.onnx").is_file()
    assert json.loads((repository / "manifest.json").read_text())["models"] == served  # nothing republished
    run_cli("build", str(folder), *common, check=True)  # back to the default, as the other tests expect


def test_a_variant_outside_its_budget_is_refused_and_no_longer_served(gated, tmp_path):
    folder, repository, work_dir, _ = gated
    tight = tmp_path / "models" / "tiny"
    tight.mkdir(parents=True)
    (tight / "model.py").write_text(GATED_MODEL_PY)
    (tight / "model.yaml").write_text(gated_spec(1.0))  # only a bit-identical variant could pass
    result = build(tight, repository, work_dir, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert "variant(s) refused, not published" in error
    assert (
        "tiny_int8: int8-cpu: min cosine" in error and "< 1 (short by" in error
    )  # every candidate's verdict
    assert "REFUSED" in result.stdout
    manifest = json.loads((repository / "manifest.json").read_text())
    assert "tiny_int8" not in manifest["models"] and not (repository / "tiny_int8").exists()
    assert "tiny_bf16" not in manifest["models"]  # BF16 arithmetic is not bit-identical either
    assert "tiny_fp32" in manifest["models"]
    report = json.loads((repository / "BUILD_REPORT.json").read_text())["models"]["tiny"]
    statuses = {(row["artifact"], row["runtime"]): row["status"] for row in report["variants"]}
    assert statuses["int8-cpu", "ort"] == statuses["int8-ov", "ov-bf16"] == "refused: outside budget"
    # put the passing build back for the other tests of this module
    build(folder, repository, work_dir)


def int8_only(spec: str) -> str:
    """A gated spec that builds fp32 and int8 only (what the INT8 debugging tests are about)."""
    return spec.replace("triton:", "precision: {variants: [fp32, int8]}\ntriton:", 1)


def test_debug_int8_ranks_nodes_and_search_writes_a_plan_that_the_build_applies(tmp_path):
    folder = write_tiny_model(tmp_path / "models", model_py=GATED_MODEL_PY, spec=int8_only(gated_spec(0.9)))
    work_dir, repository = tmp_path / "build", tmp_path / "model_repository"
    debug = run_cli(
        "debug-int8", str(folder), "--artifact", "int8-cpu", "--work-dir", str(work_dir), check=True
    )
    assert "Nodes ranked by the error they add" in debug.stdout
    assert "first node where the error jumps" in debug.stderr
    layerwise = json.loads((work_dir / "tiny" / "debug-int8-cpu" / "layerwise.json").read_text())
    assert layerwise["matched"] >= 3 and layerwise["nodes"]
    assert (work_dir / "tiny" / "debug-int8-cpu" / "layerwise.png").stat().st_size > 1000

    # a budget the fully quantized graph misses: the search must keep something and say what
    (folder / "model.yaml").write_text(int8_only(gated_spec(0.9995)))
    search = run_cli("search-precision", str(folder), "--artifact", "int8-cpu", "--work-dir", str(work_dir))
    assert search.returncode == 0, search.stdout + search.stderr
    plan = yaml.safe_load((folder / "precision.yaml").read_text())
    kept = [entry["node"] for entry in plan["int8-cpu"]["keep"]]
    assert kept and all(entry["why"].startswith("rank ") for entry in plan["int8-cpu"]["keep"])
    assert plan["int8-cpu"]["result"]["value"] >= 0.9995 > plan["int8-cpu"]["result"]["default_value"]

    build(folder, repository, work_dir)
    report = json.loads((repository / "BUILD_REPORT.json").read_text())["models"]["tiny"]
    int8_cpu = next(row for row in report["variants"] if row["artifact"] == "int8-cpu")
    assert int8_cpu["kept_nodes"] == kept and int8_cpu["within_budget"]
    assert int8_cpu["accuracy"]["value"] == pytest.approx(plan["int8-cpu"]["result"]["value"], abs=1e-6)


def test_a_plan_naming_a_node_the_graph_lacks_stops_the_build(tmp_path):
    folder = write_tiny_model(tmp_path / "models", model_py=GATED_MODEL_PY, spec=gated_spec(0.9))
    (folder / "precision.yaml").write_text("int8-cpu:\n  keep:\n  - node: /encoder/gone/MatMul\n")
    repository = tmp_path / "model_repository"
    result = build(folder, repository, tmp_path / "build", check=False)
    assert result.returncode == 2
    assert "node '/encoder/gone/MatMul' is not in the FP32 ONNX graph" in result.stderr
    assert not repository.exists()
