"""Ensembles on disk: tensors the step produces, their wiring to the variant, both config.pbtxt files
(through Triton's protobuf schema), staging with golden data, and which variant the ensemble calls."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import TOKENIZE_ENSEMBLE, minimal_spec, write_spec
from onnx import TensorProto, helper
from tokenizers import Tokenizer, models, pre_tokenizers
from tritonclient.grpc import model_config_pb2 as mc

from tests.helpers import artifact_runtime
from triton_repo.core.errors import SpecError
from triton_repo.core.golden import load_raw_golden, save_raw_golden
from triton_repo.core.spec import Tolerance, load_spec
from triton_repo.repo.config import cpu_model_config, parse_config, to_text
from triton_repo.repo.ensemble import (
    Tensor,
    check_wiring,
    ensemble_config,
    preprocess_config,
    raw_samples,
    stage_ensemble,
    step_tensors,
)
from triton_repo.repo.fused import TEMPLATES, is_fused
from triton_repo.repo.staging import StagingRequest
from triton_repo.repo.templates import preprocessing
from triton_repo.repo.variant_choice import choose_variant

IMAGE_STEP = {
    "kind": "image",
    "output": "image",
    "resize": 16,
    "size": 12,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}
W = np.arange(12, dtype=np.float32).reshape(4, 3) / 10  # the tiny pixels model: logits = flat(image) @ W


def tokenize_dict(seq_max: int = 32) -> dict:
    data = minimal_spec()
    data["axes"]["seq"] = {"min": 1, "opt": 8, "max": seq_max}
    data["ensemble"] = copy.deepcopy(TOKENIZE_ENSEMBLE)
    return data


def image_dict(step: dict | None = None, channels_dims: list | None = None, **ensemble) -> dict:
    data = minimal_spec()
    data["axes"] = {"batch": {"min": 1, "opt": 2, "max": 4}}
    data["inputs"] = [
        {"name": "image", "dtype": "float32", "dims": ["batch", *(channels_dims or [3, 12, 12])]}
    ]
    data["outputs"] = [
        {"name": "logits", "dtype": "float32", "dims": ["batch", 10]},
        {"name": "features", "dtype": "float32", "dims": ["batch", 5]},
    ]
    data["ensemble"] = {
        "preprocess": dict(step or IMAGE_STEP),
        "samples": "model:ensemble_samples",
        **ensemble,
    }
    return data


def pixels_dict(**step) -> dict:
    """The tiny pixels model: raw uint8 [2, 2] per row, float32 [batch, 1, 2, 2] in, 3 logits out."""
    data = minimal_spec("tiny")
    data["axes"] = {"batch": {"min": 1, "opt": 2, "max": 4}}
    data["inputs"] = [{"name": "image", "dtype": "float32", "dims": ["batch", 1, 2, 2]}]
    data["outputs"] = [{"name": "logits", "dtype": "float32", "dims": ["batch", 3]}]
    data["ensemble"] = {
        "preprocess": {"kind": "pixels", "output": "image", "dims": [2, 2], "scale": 0.5, **step},
        "labels": "labels.txt",
        "samples": "model:ensemble_samples",
    }
    return data


def load(tmp_path: Path, data: dict):
    return load_spec(write_spec(tmp_path, data))


def variant_config(loaded, precision: str = "fp32") -> mc.ModelConfig:
    """The variant's config as the writer generates it (warm-up rows of zeros at each axis' opt size)."""
    spec = loaded.spec
    sizes = {axis: shape_range.opt for axis, shape_range in spec.axes.items()}
    warmup = {t.name: np.zeros(spec.concrete_shape(t, sizes)[1:], dtype=t.dtype) for t in spec.inputs}
    return cpu_model_config(loaded, f"{spec.name}_{precision}", warmup)


def round_trip(config: mc.ModelConfig, path: Path) -> mc.ModelConfig:
    path.write_text(to_text(config))
    return parse_config(path)


def wiring_error(produced: list[Tensor], variant_inputs: list[tuple[str, str, list[int]]]) -> str:
    variant = mc.ModelConfig(name="toy_fp32")
    for name, data_type, dims in variant_inputs:
        variant.input.add(name=name, data_type=mc.DataType.Value(data_type), dims=dims)
    with pytest.raises(SpecError) as info:
        check_wiring("toy", "toy_preprocess", produced, variant)
    return str(info.value)


def fits(produced: list[Tensor], variant_inputs: list[tuple[str, str, list[int]]]) -> None:
    variant = mc.ModelConfig(name="toy_fp32")
    for name, data_type, dims in variant_inputs:
        variant.input.add(name=name, data_type=mc.DataType.Value(data_type), dims=dims)
    check_wiring("toy", "toy_preprocess", produced, variant)


# ---------------------------------------------------------------------------------------------------------
# step_tensors


def test_tokenize_step_takes_one_string_per_row_and_produces_int64_ids_and_mask(tmp_path):
    raw, produced = step_tensors(load(tmp_path, tokenize_dict()))
    assert raw == Tensor("TEXT", "TYPE_STRING", (1,))
    assert produced == [
        Tensor("input_ids", "TYPE_INT64", (-1,)),
        Tensor("attention_mask", "TYPE_INT64", (-1,)),
    ]


def test_image_step_takes_encoded_bytes_and_produces_float_chw_of_the_crop_size(tmp_path):
    raw, produced = step_tensors(load(tmp_path, image_dict()))
    assert raw == Tensor("IMAGE", "TYPE_STRING", (1,))
    assert produced == [Tensor("image", "TYPE_FP32", (3, 12, 12))]


def test_pixels_step_takes_uint8_of_its_dims_and_produces_float_in_the_model_input_shape(tmp_path):
    raw, produced = step_tensors(load(tmp_path, pixels_dict(input="RAW")))
    assert raw == Tensor("RAW", "TYPE_UINT8", (2, 2))
    assert produced == [Tensor("image", "TYPE_FP32", (1, 2, 2))]


@pytest.mark.parametrize(
    "data", [tokenize_dict(), image_dict(), pixels_dict()], ids=["tokenize", "image", "pixels"]
)
def test_each_step_kind_fits_the_variant_built_from_the_same_spec(tmp_path, data):
    loaded = load(tmp_path, data)
    _, produced = step_tensors(loaded)
    check_wiring(loaded.spec.name, "step", produced, variant_config(loaded))


# ---------------------------------------------------------------------------------------------------------
# check_wiring


@pytest.mark.parametrize(
    ("variant_input", "consumer"),
    [
        (("image", "TYPE_FP16", [3, 12, 12]), "toy_fp32 input 'image' FP16 [3, 12, 12]"),
        (("image", "TYPE_FP32", [3, 144]), "toy_fp32 input 'image' FP32 [3, 144]"),
        (("image", "TYPE_FP32", [3, 12, 12, 1]), "toy_fp32 input 'image' FP32 [3, 12, 12, 1]"),
        (("image", "TYPE_FP32", [3, 12, 13]), "toy_fp32 input 'image' FP32 [3, 12, 13]"),
        (("image", "TYPE_FP32", [1, -1, -1]), "toy_fp32 input 'image' FP32 [1, -1, -1]"),
    ],
    ids=["dtype", "rank_lower", "rank_higher", "fixed_size", "fixed_size_beside_minus_one"],
)
def test_check_wiring_rejects_a_mismatch_naming_step_output_and_variant_input(variant_input, consumer):
    message = wiring_error([Tensor("image", "TYPE_FP32", (3, 12, 12))], [variant_input])
    assert "ensemble toy" in message
    assert "toy_preprocess output 'image' FP32 [3, 12, 12]" in message
    assert consumer in message


@pytest.mark.parametrize(
    ("produced_dims", "variant_dims"),
    [((-1,), [16]), ((16,), [-1]), ((-1,), [-1]), ((3, -1, -1), [3, 12, 12]), ((3, 12, 12), [-1, 12, -1])],
    ids=["produced_dynamic", "variant_dynamic", "both_dynamic", "produced_spatial", "variant_partial"],
)
def test_check_wiring_lets_minus_one_on_either_side_match_any_size(produced_dims, variant_dims):
    fits([Tensor("x", "TYPE_FP32", produced_dims)], [("x", "TYPE_FP32", variant_dims)])


def test_check_wiring_rejects_a_produced_tensor_with_no_variant_input_of_that_name():
    message = wiring_error(
        [Tensor("input_ids", "TYPE_INT64", (-1,)), Tensor("mask", "TYPE_INT64", (-1,))],
        [("input_ids", "TYPE_INT64", [-1]), ("attention_mask", "TYPE_INT64", [-1])],
    )
    assert "toy_preprocess output 'mask' INT64 [-1]" in message
    assert "toy_fp32, which has no such input" in message


def test_check_wiring_checks_every_produced_tensor_not_only_the_first():
    message = wiring_error(
        [Tensor("input_ids", "TYPE_INT64", (-1,)), Tensor("attention_mask", "TYPE_INT64", (-1,))],
        [("input_ids", "TYPE_INT64", [-1]), ("attention_mask", "TYPE_INT32", [-1])],
    )
    assert "output 'attention_mask' INT64 [-1]" in message and "input 'attention_mask' INT32 [-1]" in message


# ---------------------------------------------------------------------------------------------------------
# preprocess_config


def step_config(loaded) -> mc.ModelConfig:
    raw, produced = step_tensors(loaded)
    return preprocess_config(loaded, f"{loaded.spec.name}_preprocess", raw, produced)


def step_parameters(loaded) -> dict:
    return json.loads(step_config(loaded).parameters["step"].string_value)


def test_preprocess_config_is_a_python_model_on_cpu_from_raw_input_to_produced_tensors(tmp_path):
    config = step_config(load(tmp_path, tokenize_dict()))
    assert isinstance(config, mc.ModelConfig)
    assert config.name == "toy_preprocess" and config.backend == "python" and config.platform == ""
    assert config.max_batch_size == 8
    assert [(t.name, mc.DataType.Name(t.data_type), list(t.dims)) for t in config.input] == [
        ("TEXT", "TYPE_STRING", [1])
    ]
    assert [(t.name, mc.DataType.Name(t.data_type), list(t.dims)) for t in config.output] == [
        ("input_ids", "TYPE_INT64", [-1]),
        ("attention_mask", "TYPE_INT64", [-1]),
    ]
    assert [(g.kind, g.count) for g in config.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 1)]


@pytest.mark.parametrize(
    "data", [tokenize_dict(), image_dict(), pixels_dict()], ids=["tokenize", "image", "pixels"]
)
def test_preprocess_config_text_parses_back_to_the_same_proto(tmp_path, data):
    config = step_config(load(tmp_path, data))
    assert round_trip(config, tmp_path / "config.pbtxt") == config


@pytest.mark.parametrize("seq_max", [32, 77])
def test_tokenize_parameters_take_max_length_from_the_seq_axis_of_the_ids_input(tmp_path, seq_max):
    assert step_parameters(load(tmp_path, tokenize_dict(seq_max))) == {
        "kind": "tokenize",
        "ids": "input_ids",
        "mask": "attention_mask",
        "pad_id": 0,
        "max_length": seq_max,
        "tokenizer_file": "tokenizer.json",
    }


def test_tokenize_max_length_ignores_axes_of_other_inputs(tmp_path):
    data = tokenize_dict(seq_max=32)
    data["axes"]["other"] = {"min": 1, "opt": 8, "max": 100}
    data["inputs"][1]["dims"] = ["batch", "other"]
    assert step_parameters(load(tmp_path, data))["max_length"] == 32


def test_image_parameters_carry_the_crop_and_normalisation(tmp_path):
    assert step_parameters(load(tmp_path, image_dict())) == {
        "kind": "image",
        "output": "image",
        "resize": 16,
        "size": 12,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }


def test_pixels_parameters_reshape_to_the_model_input_dims(tmp_path):
    assert step_parameters(load(tmp_path, pixels_dict())) == {
        "kind": "pixels",
        "output": "image",
        "dims": [1, 2, 2],
        "scale": 0.5,
    }


def test_pixels_step_with_a_different_number_of_elements_than_the_model_input_is_rejected(tmp_path):
    loaded = load(tmp_path, pixels_dict(dims=[3, 3]))
    with pytest.raises(SpecError) as info:
        step_config(loaded)
    message = str(info.value)
    assert message.startswith(f"{loaded.path}: ensemble.preprocess.dims [3, 3] has 9 pixels")
    assert "input 'image' takes [1, 2, 2]" in message


def test_tokenize_step_for_a_fixed_length_ids_input_produces_that_length_or_is_rejected(tmp_path):
    data = tokenize_dict()
    data["inputs"] = [{**t, "dims": ["batch", 16]} for t in data["inputs"]]
    try:
        loaded = load(tmp_path, data)
        _, produced = step_tensors(loaded)
        check_wiring("toy", "toy_preprocess", produced, variant_config(loaded))
        parameters = step_parameters(loaded)
    except SpecError:
        return  # rejected with a message: fine
    assert [t.dims for t in produced] == [(16,), (16,)]
    assert parameters["max_length"] == 16


# ---------------------------------------------------------------------------------------------------------
# ensemble_config


def ensemble_of(loaded) -> tuple[mc.ModelConfig, mc.ModelConfig]:
    raw, produced = step_tensors(loaded)
    variant = variant_config(loaded)
    return ensemble_config(loaded, raw, produced, f"{loaded.spec.name}_preprocess", variant), variant


def test_ensemble_config_is_platform_ensemble_named_after_the_model(tmp_path):
    config, variant = ensemble_of(load(tmp_path, tokenize_dict()))
    assert isinstance(config, mc.ModelConfig)
    assert config.name == "toy" and config.platform == "ensemble" and config.backend == ""
    assert config.max_batch_size == variant.max_batch_size == 8
    assert [(t.name, mc.DataType.Name(t.data_type), list(t.dims)) for t in config.input] == [
        ("TEXT", "TYPE_STRING", [1])
    ]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
        (t.name, t.data_type, list(t.dims)) for t in variant.output
    ]


def test_ensemble_config_runs_the_step_then_the_variant_wired_by_tensor_name(tmp_path):
    config, variant = ensemble_of(load(tmp_path, tokenize_dict()))
    first, second = config.ensemble_scheduling.step
    assert (first.model_name, first.model_version) == ("toy_preprocess", -1)
    assert (second.model_name, second.model_version) == ("toy_fp32", -1)
    assert dict(first.input_map) == {"TEXT": "TEXT"}
    assert dict(first.output_map) == {"input_ids": "input_ids", "attention_mask": "attention_mask"}
    assert dict(second.input_map) == {"input_ids": "input_ids", "attention_mask": "attention_mask"}
    assert dict(second.output_map) == {"embedding": "embedding"}
    # every variant input is fed by a tensor the step produces, every ensemble output by the variant
    assert set(second.input_map) == {t.name for t in variant.input}
    assert set(second.input_map.values()) == set(first.output_map.values())
    assert set(second.output_map.values()) == {t.name for t in config.output}
    assert set(first.input_map.values()) == {t.name for t in config.input}


def test_ensemble_config_sets_label_filename_on_the_first_output_only_when_labels_are_set(tmp_path):
    labelled, _ = ensemble_of(load(tmp_path, image_dict(labels="labels.txt")))
    assert [(o.name, o.label_filename) for o in labelled.output] == [
        ("logits", "labels.txt"),
        ("features", ""),
    ]
    unlabelled, _ = ensemble_of(load(tmp_path, image_dict()))
    assert [o.label_filename for o in unlabelled.output] == ["", ""]


@pytest.mark.parametrize(
    "data",
    [tokenize_dict(), image_dict(labels="labels.txt"), pixels_dict()],
    ids=["tokenize", "image_labelled", "pixels"],
)
def test_ensemble_config_text_parses_back_to_the_same_proto(tmp_path, data):
    config, _ = ensemble_of(load(tmp_path, data))
    text = to_text(config)
    assert 'platform: "ensemble"' in text
    assert round_trip(config, tmp_path / "config.pbtxt") == config


# ---------------------------------------------------------------------------------------------------------
# raw_samples


def write_model_py(folder: Path, body: str) -> None:
    (folder / "model.py").write_text("import numpy as np\n\n\n" + body)


def test_raw_samples_encode_text_as_utf8_bytes_one_per_row(tmp_path):
    loaded = load(tmp_path, tokenize_dict())
    write_model_py(loaded.folder, "def ensemble_samples():\n    return ['héllo', b'raw', '']\n")
    samples = raw_samples(loaded, step_tensors(loaded)[0])
    assert samples.shape == (3, 1) and samples.dtype == object
    assert samples[:, 0].tolist() == ["héllo".encode(), b"raw", b""]


def test_raw_samples_pass_uint8_pixels_of_the_step_dims(tmp_path):
    loaded = load(tmp_path, pixels_dict())
    write_model_py(loaded.folder, "def ensemble_samples():\n    return np.ones((5, 2, 2), np.uint8)\n")
    samples = raw_samples(loaded, step_tensors(loaded)[0])
    assert samples.dtype == np.uint8 and samples.shape == (5, 2, 2)


@pytest.mark.parametrize(
    ("expression", "got"),
    [("np.ones((5, 4), np.uint8)", "uint8 [5, 4]"), ("np.ones((5, 2, 2), np.float32)", "float32 [5, 2, 2]")],
    ids=["shape", "dtype"],
)
def test_raw_samples_reject_pixels_of_the_wrong_shape_or_dtype(tmp_path, expression, got):
    loaded = load(tmp_path, pixels_dict())
    write_model_py(loaded.folder, f"def ensemble_samples():\n    return {expression}\n")
    with pytest.raises(SpecError) as info:
        raw_samples(loaded, step_tensors(loaded)[0])
    assert "ensemble.samples must return uint8 [n, 2, 2]" in str(info.value) and got in str(info.value)


# ---------------------------------------------------------------------------------------------------------
# stage_ensemble


def tiny_pixels_onnx(path: Path) -> None:
    """logits = reshape(image, [-1, 4]) @ W, image float32 [batch, 1, 2, 2]."""
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["image", "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 2, 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        initializer=[
            helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 4]),
            helper.make_tensor("w", TensorProto.FLOAT, [4, 3], W.reshape(-1).tolist()),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def token_sum_onnx(path: Path) -> None:
    """total = sum(input_ids * attention_mask) per row, as float32 [batch, 1]."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["input_ids", "attention_mask"], ["kept"]),
            helper.make_node("Cast", ["kept"], ["as_float"], to=TensorProto.FLOAT),
            helper.make_node("ReduceSum", ["as_float", "axes"], ["total"], keepdims=1),
        ],
        "token_sum",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch", 1])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, path)


PIXEL_SAMPLES = "np.arange(12, dtype=np.uint8).reshape(3, 2, 2)"


@pytest.fixture
def pixels_model(tmp_path):
    """(loaded tiny pixels spec with model.py and labels.txt, variant dir, onnx path, staging dir)."""
    loaded = load(tmp_path / "models", pixels_dict())
    write_model_py(loaded.folder, f"def ensemble_samples():\n    return {PIXEL_SAMPLES}\n")
    (loaded.folder / "labels.txt").write_text("zero\none\ntwo\n")
    staging = tmp_path / "staging"
    variant_dir = staging / "tiny_fp32"
    variant_dir.mkdir(parents=True)
    (variant_dir / "config.pbtxt").write_text(to_text(variant_config(loaded)))
    onnx_path = tmp_path / "tiny.onnx"
    tiny_pixels_onnx(onnx_path)
    return loaded, variant_dir, onnx_path, staging


def request(loaded, onnx_path, tolerances, staging) -> StagingRequest:
    """Staging the ensemble of the variant whose ONNX file is `onnx_path` (no golden sample needed)."""
    return StagingRequest(loaded, "fp32", onnx_path, None, tolerances, staging, artifact_runtime())


def stage(pixels_model):
    loaded, variant_dir, onnx_path, staging = pixels_model
    tolerances = {"logits": Tolerance(atol=1e-5, rtol=0)}
    return stage_ensemble(request(loaded, onnx_path, tolerances, staging), variant_dir)


def files_of(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_stage_ensemble_writes_the_step_model_and_the_ensemble(pixels_model):
    step, ensemble = stage(pixels_model)
    staging = pixels_model[3]
    assert (step.name, step.source_model, step.precision, step.path) == (
        "tiny_preprocess",
        "tiny",
        "-",
        staging / "tiny_preprocess",
    )
    assert (ensemble.name, ensemble.precision, ensemble.path) == ("tiny", "fp32", staging / "tiny")
    assert files_of(step.path) == ["1/model.py", "1/preprocessing.py", "config.pbtxt"]
    assert files_of(ensemble.path) == ["1/golden.npz", "config.pbtxt", "labels.txt"]
    assert (step.path / "1" / "preprocessing.py").read_text() == Path(preprocessing.__file__).read_text()
    assert "class TritonPythonModel" in (step.path / "1" / "model.py").read_text()
    assert (ensemble.path / "labels.txt").read_text() == "zero\none\ntwo\n"
    assert parse_config(ensemble.path / "config.pbtxt").platform == "ensemble"
    assert parse_config(step.path / "config.pbtxt").backend == "python"


def test_stage_ensemble_golden_holds_raw_samples_and_the_variant_outputs_for_them(pixels_model):
    _, ensemble = stage(pixels_model)
    golden = load_raw_golden(ensemble.path / "1" / "golden.npz")
    samples = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    assert list(golden.inputs) == ["PIXELS"]
    assert golden.inputs["PIXELS"].dtype == np.uint8
    np.testing.assert_array_equal(golden.inputs["PIXELS"], samples)
    expected = (samples.astype(np.float32) * 0.5).reshape(3, 4) @ W
    np.testing.assert_allclose(golden.outputs["logits"], expected, rtol=1e-6)


def test_stage_ensemble_manifest_entries_name_kind_steps_golden_labels_and_tolerances(pixels_model):
    step, ensemble = stage(pixels_model)
    assert step.manifest_entry["kind"] == "preprocess" and step.manifest_entry["precision"] == "-"
    assert sorted(step.manifest_entry["files"]) == files_of(step.path)
    entry = ensemble.manifest_entry
    assert entry["kind"] == "ensemble" and entry["source_model"] == "tiny" and entry["version"] == 1
    assert entry["variant"] == "tiny_fp32" and entry["steps"] == ["tiny_preprocess", "tiny_fp32"]
    assert entry["golden"] == "1/golden.npz" and entry["labels"] == {"logits": "labels.txt"}
    assert entry["tolerances"] == {"logits": {"atol": 1e-5, "rtol": 0}}
    assert sorted(entry["files"]) == files_of(ensemble.path)


@pytest.mark.parametrize("labels", ["zero\none\n", "zero\none\ntwo\nthree\n"], ids=["too_few", "too_many"])
def test_stage_ensemble_rejects_a_labels_file_with_the_wrong_number_of_lines(pixels_model, labels):
    loaded = pixels_model[0]
    (loaded.folder / "labels.txt").write_text(labels)
    lines = labels.count("\n")
    with pytest.raises(SpecError) as info:
        stage(pixels_model)
    message = str(info.value)
    assert message.startswith(f"{loaded.path}: ensemble.labels: labels.txt has {lines} lines")
    assert "output 'logits' has 3 classes" in message


def test_stage_ensemble_rejects_a_missing_labels_file(pixels_model):
    (pixels_model[0].folder / "labels.txt").unlink()
    with pytest.raises(SpecError, match=r"ensemble\.labels: file 'labels\.txt' does not exist"):
        stage(pixels_model)


def test_stage_ensemble_checks_wiring_before_writing_anything(pixels_model):
    loaded, variant_dir, _, staging = pixels_model
    config = variant_config(loaded)
    config.input[0].data_type = mc.TYPE_FP16
    (variant_dir / "config.pbtxt").write_text(to_text(config))
    with pytest.raises(SpecError, match=r"tiny_preprocess output 'image' FP32 \[1, 2, 2\].*FP16"):
        stage(pixels_model)
    assert sorted(p.name for p in staging.iterdir()) == ["tiny_fp32"]


def write_word_tokenizer(path: Path) -> None:
    vocab = {"[PAD]": 0, "[UNK]": 1, "a": 2, "b": 3, "c": 4, "d": 5}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(path))


def staged_text(tmp_path, form: str):
    data = minimal_spec("words")
    data["outputs"] = [{"name": "total", "dtype": "float32", "dims": ["batch", 1]}]
    data["ensemble"] = {**tokenize_dict()["ensemble"], "form": form}
    loaded = load(tmp_path / "models", data)
    write_model_py(loaded.folder, "def ensemble_samples():\n    return ['a b', 'c', 'd d zz d']\n")
    write_word_tokenizer(loaded.folder / "tokenizer.json")
    staging = tmp_path / "staging"
    variant_dir = staging / "words_fp32"
    (variant_dir / "1").mkdir(parents=True)
    (variant_dir / "config.pbtxt").write_text(to_text(variant_config(loaded)))
    token_sum_onnx(variant_dir / "1" / "model.onnx")
    staged = stage_ensemble(
        request(loaded, variant_dir / "1" / "model.onnx", {"total": Tolerance()}, staging), variant_dir
    )
    return loaded, variant_dir, staged


def test_stage_ensemble_for_text_ships_the_tokenizer_and_tokenizes_the_golden_samples(tmp_path):
    loaded, _, (step, ensemble) = staged_text(tmp_path, "steps")
    shipped = step.path / "1" / "tokenizer.json"
    assert shipped.read_bytes() == (loaded.folder / "tokenizer.json").read_bytes()
    step_json = json.loads(parse_config(step.path / "config.pbtxt").parameters["step"].string_value)
    assert step_json["tokenizer_file"] == "tokenizer.json"  # relative: the server resolves it
    golden = load_raw_golden(ensemble.path / "1" / "golden.npz")
    assert golden.inputs["TEXT"][:, 0].tolist() == [b"a b", b"c", b"d d zz d"]
    np.testing.assert_array_equal(golden.outputs["total"], [[5.0], [4.0], [16.0]])  # zz is [UNK], id 1
    assert ensemble.manifest_entry["labels"] is None
    assert ensemble.manifest_entry["form"] == "steps"
    assert files_of(ensemble.path) == ["1/golden.npz", "config.pbtxt"]


def test_a_tokenize_ensemble_is_served_by_default_as_one_model_running_the_variants_onnx(tmp_path):
    loaded, variant_dir, staged = staged_text(tmp_path, "auto")
    assert [m.name for m in staged] == ["words"]  # no words_preprocess
    fused = staged[0]
    entry = fused.manifest_entry
    assert (entry["kind"], entry["form"], entry["variant"], entry["steps"]) == (
        "ensemble",
        "fused",
        "words_fp32",
        [],
    )
    config = parse_config(fused.path / "config.pbtxt")
    variant = parse_config(variant_dir / "config.pbtxt")
    assert config.backend == "python" and not config.platform
    assert [(t.name, list(t.dims)) for t in config.input] == [("TEXT", [1])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("total", [1])]
    assert config.dynamic_batching == variant.dynamic_batching
    assert config.instance_group == variant.instance_group
    parameters = {k: v.string_value for k, v in config.parameters.items()}
    assert "shape_ranges" not in parameters
    assert parameters["runtime"] == variant.parameters["runtime"].string_value
    assert json.loads(parameters["pad_values"]) == {"input_ids": 0, "attention_mask": 0}
    assert json.loads(parameters["step"])["kind"] == "tokenize"
    version = fused.path / "1"
    assert (version / "model.onnx").samefile(variant_dir / "1" / "model.onnx")  # hard-linked, not copied
    assert (version / "model.py").read_text() == (TEMPLATES / "fused_model.py").read_text()
    assert (version / "onnx_model.py").read_text() == (TEMPLATES / "onnx_model.py").read_text()
    assert {"preprocessing.py", "tokenizer.json", "registry.py", "golden.npz"} <= {
        p.name for p in version.iterdir()
    }
    golden = load_raw_golden(version / "golden.npz")
    np.testing.assert_array_equal(golden.outputs["total"], [[5.0], [4.0], [16.0]])


def test_fused_form_is_refused_for_a_variant_not_served_from_onnx_by_the_python_backend(tmp_path):
    data = minimal_spec("words")
    data["ensemble"] = {**tokenize_dict()["ensemble"], "form": "fused"}
    loaded = load(tmp_path / "models", data)
    with pytest.raises(SpecError, match="ensemble.form fused: words_fp32_trt is not an ONNX file"):
        is_fused(loaded, mc.ModelConfig(name="words_fp32_trt", backend="tensorrt"))
    assert not is_fused(
        load(tmp_path / "auto", tokenize_dict()), mc.ModelConfig(name="x", platform="tensorrt_plan")
    )


# ---------------------------------------------------------------------------------------------------------
# choose_variant


def report(**throughput: float | None) -> dict:
    rows = [{"triton_model": name, "throughput_per_s": value} for name, value in throughput.items()]
    rows.append({"triton_model": None, "throughput_per_s": 1e9})  # an artifact not served on cpu
    return {"variants": rows}


def test_choose_variant_auto_picks_the_highest_throughput_among_staged_variants(tmp_path):
    loaded = load(tmp_path, tokenize_dict())
    measured = report(toy_fp32=100.0, toy_fp16=300.0, toy_int8=900.0)
    name, why = choose_variant(loaded, measured, ["toy_fp32", "toy_fp16"])
    assert name == "toy_fp16"
    assert "300 inf/s" in why


def test_choose_variant_auto_picks_fp32_when_it_is_fastest(tmp_path):
    loaded = load(tmp_path, tokenize_dict())
    measured = report(toy_fp32=500.0, toy_fp16=300.0, toy_int8=200.0)
    assert choose_variant(loaded, measured, ["toy_fp32", "toy_fp16", "toy_int8"])[0] == "toy_fp32"


def test_choose_variant_follows_the_speed_at_the_eval_sets_shapes_when_measured(tmp_path):
    loaded = load(tmp_path, tokenize_dict())
    measured = report(toy_fp32=100.0, toy_fp16=300.0)  # at the opt size, fp16 is faster
    for row, real in zip(measured["variants"], (250.0, 120.0, None), strict=True):
        row["throughput_real_per_s"] = real  # at real lengths, fp32 is
    measured["speed_real_shapes"] = "seq 11..55, median 19 over 8 batches of 8 eval rows"
    name, why = choose_variant(loaded, measured, ["toy_fp32", "toy_fp16"])
    assert name == "toy_fp32" and "250 inf/s in-process, batch 8 on the eval set's shapes" in why
    measured["variants"][1]["throughput_real_per_s"] = None  # not measured for every variant: opt decides
    assert choose_variant(loaded, measured, ["toy_fp32", "toy_fp16"])[0] == "toy_fp16"


def lower_precision_dict(variant: str) -> dict:
    data = tokenize_dict()
    data["accuracy"] = {"metric": "cosine_min"}
    data["data"].update(eval="eval.npz", calibration="calibration.npz")
    data["ensemble"]["variant"] = variant
    return data


def test_choose_variant_keeps_the_variant_named_in_the_spec_even_when_slower(tmp_path):
    loaded = load(tmp_path, lower_precision_dict("int8"))
    measured = report(toy_fp32=500.0, toy_fp16=300.0, toy_int8=200.0)
    assert choose_variant(loaded, measured, ["toy_fp32", "toy_fp16", "toy_int8"]) == (
        "toy_int8",
        "chosen in the spec",
    )


def timed(rows: dict[str, tuple[float, float | None]], floor: float = 0.05, noise: float = 0.01) -> dict:
    """A report whose published variants have (throughput, accuracy bound); bound None: FP32 itself."""
    variants = [
        {
            "triton_model": name,
            "throughput_per_s": rate,
            "throughput_noise": noise,
            "accuracy": None if bound is None else {"value": bound, "bound": bound, "higher_is_better": None},
        }
        for name, (rate, bound) in rows.items()
    ]
    return {"variants": variants, "noise_floor": floor, "higher_is_better": True}


def test_choose_variant_calls_the_more_accurate_of_variants_within_the_noise(tmp_path):
    loaded = load(tmp_path, tokenize_dict())
    measured = timed({"toy_fp32": (100.0, None), "toy_bf16": (103.0, 0.99), "toy_int8": (104.0, 0.97)})
    name, why = choose_variant(loaded, measured, ["toy_fp32", "toy_bf16", "toy_int8"])
    assert name == "toy_fp32"
    assert why == (
        "the most accurate published variant within the noise of the fastest, toy_int8 "
        "(100 vs 104 inf/s in-process at batch 8, noise 5%)"
    )
    del measured["variants"][0]  # without FP32: the larger bound
    assert choose_variant(loaded, measured, ["toy_bf16", "toy_int8"])[0] == "toy_bf16"


def test_choose_variant_reads_the_metrics_direction_from_the_report(tmp_path):
    loaded = load(tmp_path, tokenize_dict())
    measured = timed({"toy_bf16": (103.0, 0.8), "toy_int8": (100.0, 0.2)})  # top-1 drops: lower is better
    measured["higher_is_better"] = False
    assert choose_variant(loaded, measured, ["toy_bf16", "toy_int8"])[0] == "toy_int8"


def test_choose_variant_calls_a_variant_faster_beyond_the_noise_whatever_its_accuracy(tmp_path):
    loaded = load(tmp_path, tokenize_dict())
    measured = timed({"toy_fp32": (100.0, None), "toy_int8": (120.0, 0.97)})
    assert choose_variant(loaded, measured, ["toy_fp32", "toy_int8"])[0] == "toy_int8"
    wide = timed({"toy_fp32": (100.0, None), "toy_int8": (120.0, 0.97)}, noise=0.25)  # measured noise
    assert choose_variant(loaded, wide, ["toy_fp32", "toy_int8"])[0] == "toy_fp32"


def test_choose_variant_keeps_the_variant_called_before_while_the_fastest_is_within_the_noise(tmp_path):
    loaded = load(tmp_path, tokenize_dict())
    measured = timed({"toy_bf16": (300.0, 0.95), "toy_int8": (307.0, 0.99)})  # faster and more accurate
    name, why = choose_variant(loaded, measured, ["toy_bf16", "toy_int8"], "toy_bf16")
    assert name == "toy_bf16"
    assert (
        why
        == "kept: within the noise of toy_int8 (300 vs 307 inf/s in-process at batch 8, noise 5%), called before"
    )


def test_choose_variant_replaces_the_variant_called_before_when_beaten_beyond_the_noise(tmp_path):
    loaded = load(tmp_path, tokenize_dict())
    measured = timed({"toy_bf16": (300.0, 0.99), "toy_int8": (340.0, 0.95)})
    name, why = choose_variant(loaded, measured, ["toy_bf16", "toy_int8"], "toy_bf16")
    assert name == "toy_int8"
    assert why.endswith("; replaces toy_bf16, called before: toy_int8 is faster by 13% (noise 5%)")


def test_choose_variant_ignores_a_variant_called_before_that_is_no_longer_published(tmp_path):
    loaded = load(tmp_path, tokenize_dict())
    measured = timed({"toy_fp32": (300.0, None), "toy_fp16": (305.0, 0.99)})
    assert choose_variant(loaded, measured, ["toy_fp32"], "toy_fp16") == (
        "toy_fp32",
        "fastest published variant within budget (300 inf/s in-process, batch 8); toy_fp16, called before, "
        "is not published now",
    )


def test_choose_variant_rejects_a_spec_variant_that_was_not_staged(tmp_path):
    loaded = load(tmp_path, lower_precision_dict("int8"))
    with pytest.raises(SpecError) as info:
        choose_variant(loaded, report(toy_fp32=1.0, toy_int8=2.0), ["toy_fp32", "toy_fp16"])
    assert str(info.value).startswith(f"{loaded.path}: ensemble.variant int8: toy_int8 was not published")


# ---------------------------------------------------------------------------------------------------------
# save_raw_golden / load_raw_golden

TRICKY_BYTES = [b"plain", b"", b"ends in nul\x00", b"\x00\x00", "naïve ✓".encode(), b"\xff\xfe binary"]


def test_raw_golden_round_trips_bytes_exactly_with_shape_n_by_1(tmp_path):
    text = np.empty((len(TRICKY_BYTES), 1), dtype=object)
    text[:, 0] = TRICKY_BYTES
    logits = np.linspace(-1, 1, len(TRICKY_BYTES) * 3, dtype=np.float32).reshape(-1, 3)
    save_raw_golden({"TEXT": text}, {"logits": logits}, tmp_path / "golden.npz")
    golden = load_raw_golden(tmp_path / "golden.npz")
    loaded = golden.inputs["TEXT"]
    assert loaded.shape == (len(TRICKY_BYTES), 1) and loaded.dtype == object
    assert loaded[:, 0].tolist() == TRICKY_BYTES
    assert all(type(item) is bytes for item in loaded[:, 0])
    np.testing.assert_array_equal(golden.outputs["logits"], logits)
    assert golden.outputs["logits"].dtype == np.float32


def test_raw_golden_round_trips_all_empty_bytes(tmp_path):
    text = np.empty((2, 1), dtype=object)
    text[:, 0] = [b"", b""]
    save_raw_golden({"TEXT": text}, {}, tmp_path / "golden.npz")
    assert load_raw_golden(tmp_path / "golden.npz").inputs["TEXT"].tolist() == [[b""], [b""]]


def test_raw_golden_round_trips_uint8_arrays(tmp_path):
    pixels = np.arange(3 * 8 * 8, dtype=np.uint8).reshape(3, 8, 8)
    save_raw_golden({"PIXELS": pixels}, {"logits": np.ones((3, 10), np.float32)}, tmp_path / "golden.npz")
    loaded = load_raw_golden(tmp_path / "golden.npz").inputs["PIXELS"]
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, pixels)


def test_raw_golden_file_loads_without_pickle(tmp_path):
    text = np.empty((3, 1), dtype=object)
    text[:, 0] = [b"a", b"", b"c\x00"]
    save_raw_golden({"TEXT": text}, {"y": np.zeros((3, 2), np.float32)}, tmp_path / "golden.npz")
    with np.load(tmp_path / "golden.npz", allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}  # an object array would raise here
    assert arrays and all(array.dtype != object for array in arrays.values())
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically through a temporary file
