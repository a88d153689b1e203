"""`triton-repo build` on good and bad input: a failed build publishes nothing and says why in one line."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import TINY_MODEL_PY, TINY_SPEC, build, tree_hash, write_tiny_model

pytestmark = pytest.mark.integration

BAKED_BATCH_MODEL = TINY_MODEL_PY.replace(
    "pooled = tokens.mean(dim=1) + self.head(features)",
    "pooled = (tokens.mean(dim=1) + self.head(features)).reshape(int(ids.shape[0]), -1)",
)
assert BAKED_BATCH_MODEL != TINY_MODEL_PY


@pytest.fixture()
def built(tmp_path):
    models, repository, work_dir = tmp_path / "models", tmp_path / "repo", tmp_path / "build"
    write_tiny_model(models)
    build(models / "tiny", repository, work_dir)
    return models, repository, work_dir


def test_build_publishes_config_onnx_template_golden_and_manifest(built):
    _, repository, work_dir = built
    model_dir = repository / "tiny_fp32"
    for relative in (
        "config.pbtxt",
        "1/model.onnx",
        "1/model.py",
        "1/golden.npz",
        "warmup/ids",
        "warmup/features",
    ):
        assert (model_dir / relative).is_file(), relative
    manifest = json.loads((repository / "manifest.json").read_text())
    entry = manifest["models"]["tiny_fp32"]
    assert set(entry["files"]) == {str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file()}
    assert entry["tolerances"]["scores"] == {"atol": 1e-5, "rtol": 1e-4}
    result = json.loads((work_dir / "build.json").read_text())
    # the sample plus every min/opt/max combination of batch {1,4,16} and seq {1,6,32}
    assert result["models"][0]["verified_cases"] == 1 + 9
    assert not list(repository.parent.glob(".*.staging"))


def test_export_that_bakes_the_batch_into_a_reshape_fails_and_publishes_nothing(built, tmp_path):
    models, repository, work_dir = built
    before = tree_hash(repository)
    write_tiny_model(models, model_py=BAKED_BATCH_MODEL)
    result = build(models / "tiny", repository, work_dir, check=False)
    assert result.returncode == 1, result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1
    assert "at batch=1" in error[0] and "where PyTorch gives [1, 8]" in error[0]
    assert tree_hash(repository) == before


def test_output_outside_tolerance_reports_the_numbers_and_shape(built):
    """float() of a tensor is baked into the trace: the ONNX graph keeps the sample's value at every shape."""
    models, repository, work_dir = built
    before = tree_hash(repository)
    baked_scalar = TINY_MODEL_PY.replace(
        "return pooled, scores", "return pooled * float(features[-1, 0]), scores"
    )
    assert baked_scalar != TINY_MODEL_PY
    write_tiny_model(models, model_py=baked_scalar)
    result = build(models / "tiny", repository, work_dir, check=False)
    assert result.returncode == 1, result.stderr
    error = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert "output 'pooled' differs from PyTorch at batch=1" in error
    assert "max abs diff" in error and "shape [1, 8]" in error and "atol=1e-05 rtol=0.0001" in error
    assert tree_hash(repository) == before


def test_dynamo_exporter_gives_one_self_contained_onnx_that_verifies(tmp_path):
    """The dynamo exporter writes weights as external data; the build must still publish one model.onnx."""
    models, repository, work_dir = tmp_path / "models", tmp_path / "repo", tmp_path / "build"
    dynamo_spec = TINY_SPEC.replace(
        'source: {factory: "model:build"}', 'source: {factory: "model:build", exporter: dynamo, opset: 18}'
    )
    assert dynamo_spec != TINY_SPEC
    write_tiny_model(models, spec=dynamo_spec)
    build(models / "tiny", repository, work_dir)
    assert sorted(p.name for p in (repository / "tiny_fp32" / "1").iterdir()) == [
        "golden.npz",
        "model.onnx",
        "model.py",
        "onnxruntime_cpu.py",
        "registry.py",
    ]
    assert json.loads((work_dir / "build.json").read_text())["models"][0]["verified_cases"] == 10


def test_onnx_source_is_built_without_pytorch_and_checked_at_every_shape(built, tmp_path):
    """source.onnx: the golden outputs come from ONNX Runtime on the given file, at every min/opt/max shape."""
    _, _, work_dir = built
    models = tmp_path / "onnx_models"
    folder = write_tiny_model(models, name="fromonnx")
    (folder / "tiny.onnx").write_bytes((work_dir / "tiny" / "model.onnx").read_bytes())
    spec = (
        (folder / "model.yaml")
        .read_text()
        .replace('source: {factory: "model:build"}', "source: {onnx: tiny.onnx}")
    )
    (folder / "model.yaml").write_text(spec)
    repository = tmp_path / "onnx_repo"
    build(folder, repository, tmp_path / "onnx_build")
    assert (repository / "fromonnx_fp32" / "1" / "model.onnx").read_bytes() == (
        folder / "tiny.onnx"
    ).read_bytes()
    assert (
        json.loads((tmp_path / "onnx_build" / "build.json").read_text())["models"][0]["verified_cases"] == 10
    )


def test_checkpoint_weights_are_what_the_model_is_exported_with(tmp_path):
    """source.checkpoint: a state_dict loaded (weights_only) into the factory's module before export."""
    import torch

    from triton_repo.core.golden import load_golden, sample_case

    models, repository, work_dir = tmp_path / "models", tmp_path / "repo", tmp_path / "build"
    spec = TINY_SPEC.replace(
        'source: {factory: "model:build"}', 'source: {factory: "model:build", checkpoint: weights.pt}'
    )
    assert spec != TINY_SPEC
    folder = write_tiny_model(models, spec=spec)
    # zero weights and a head bias of 1: every pooled value is then 1, every score 0
    state = {"embed.weight": torch.zeros(50, 8), "head.weight": torch.zeros(8, 4), "head.bias": torch.ones(8)}
    torch.save(state, folder / "weights.pt")
    build(folder, repository, work_dir)
    golden = sample_case(load_golden(repository / "tiny_fp32" / "1" / "golden.npz"))
    assert (golden.outputs["pooled"] == 1).all() and (golden.outputs["scores"] == 0).all()
