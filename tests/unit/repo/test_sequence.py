"""Stateful models: the spec's sequence section, the configs it gives on both targets, and the adapter that
serves a state batch first on Triton's own backends."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import spec_error, write_spec

from triton_repo.core.spec import load_spec
from triton_repo.repo.config import cpu_model_config, to_text
from triton_repo.repo.gpu_config import onnx_gpu_model_config
from triton_repo.repo.profiles import derive_profiles

CORPUS = Path(__file__).resolve().parents[3] / "tests" / "corpus"


def vad_spec() -> dict:
    """The corpus' Silero-VAD-shaped spec: a state [2, batch, 128] paired with stateN, a scalar sr."""
    return {
        "name": "vad",
        "source": {"onnx": "model.onnx"},
        "axes": {"batch": {"min": 1, "opt": 8, "max": 64}},
        "inputs": [
            {"name": "input", "dtype": "float32", "dims": ["batch", 512]},
            {"name": "state", "dtype": "float32", "dims": [2, "batch", 128]},
            {"name": "sr", "dtype": "int64", "dims": []},
        ],
        "outputs": [
            {"name": "output", "dtype": "float32", "dims": ["batch", 1]},
            {"name": "stateN", "dtype": "float32", "dims": [2, "batch", 128]},
        ],
        "data": {"sample": "sample.npz", "sequence": "sequence.npz"},
        "sequence": {},
    }


def test_states_pair_by_name_and_shape_and_keep_their_batch_axis_where_it_is(tmp_path):
    spec = load_spec(write_spec(tmp_path, vad_spec())).spec
    assert [(p.input, p.output, p.initial) for p in spec.state_pairs] == [("state", "stateN", "zeros")]
    assert [t.name for t in spec.served_inputs] == ["input", "sr"]
    assert [t.name for t in spec.served_outputs] == ["output"]
    assert spec.batch_axis(spec.inputs[1]) == 1 and spec.triton_dims(spec.inputs[1]) == [2, 128]
    assert spec.precisions == ["fp32"]  # no accuracy gate
    gated = vad_spec() | {"accuracy": {"metric": "binary", "output": "output"}}
    gated["data"] = gated["data"] | {"eval": "eval.npz"}
    assert load_spec(write_spec(tmp_path / "gated", gated)).spec.precisions == ["fp32", "fp16", "bf16"]
    lstm = load_spec(CORPUS / "lstm_state" / "model.yaml").spec
    assert [(p.input, p.output) for p in lstm.state_pairs] == [("h0", "hn"), ("c0", "cn")]


def _break(change):
    data = vad_spec()
    change(data)
    return data


BAD = [
    (
        "no_pair_found",
        lambda d: d["outputs"][1].update(name="carry"),
        "sequence: no state input pairs with an output by name (state -> stateN, h0 -> hn) and shape; "
        "name them under sequence.state",
    ),
    (
        "named_pair_of_other_shape",
        lambda d: d["sequence"].update(state=[{"input": "input", "output": "stateN"}]),
        "sequence.state[0]: 'input' is float32 ['batch', 512] but 'stateN' is float32 [2, 'batch', 128]; a "
        "state and its next value have one dtype and shape",
    ),
    (
        "named_pair_unknown_output",
        lambda d: d["sequence"].update(state=[{"input": "state", "output": "state_next"}]),
        "sequence.state[0]: output 'state_next' is not an output (outputs: ['output', 'stateN'])",
    ),
    (
        "initial_not_a_file",
        lambda d: d["sequence"].update(state=[{"input": "state", "output": "stateN", "initial": "ones"}]),
        "initial 'ones' must be 'zeros' or a .npy file in the model folder",
    ),
    (
        "no_streams",
        lambda d: d["data"].pop("sequence"),
        "a stateful model is checked on streams: set data.sequence",
    ),
    (
        "streams_without_sequence",
        lambda d: d.pop("sequence"),
        "data.sequence is read only by a stateful model: add 'sequence:' or remove it",
    ),
    (
        "lower_precisions_without_a_gate",
        lambda d: d.update(precision={"variants": ["fp32", "fp16"]}),
        "precision.variants ['fp16'] are gated on accuracy",
    ),
    (
        "int8",
        lambda d: [
            d.update(precision={"variants": ["fp32", "int8"]}, accuracy={"metric": "cosine_min"}),
            d["data"].update(eval="eval.npz", calibration="calibration.npz"),
        ],
        "int8 and data.calibration: a stateful model's calibration would need the states its FP32 model "
        "reaches",
    ),
    (
        "behind_an_ensemble",
        lambda d: d.update(
            ensemble={"preprocess": {"kind": "pixels", "output": "input", "dims": [512]}, "samples": "m:s"}
        ),
        "ensemble: a stateful model is not served behind an ensemble yet",
    ),
    (
        "unknown_strategy",
        lambda d: d["sequence"].update(strategy="newest"),
        "sequence.strategy",
    ),
    (
        "an_ordinary_input_still_needs_batch_first",
        lambda d: d["inputs"][0].update(dims=[512, "batch"]),
        "inputs[0] 'input': the first dim must be 'batch'",
    ),
    (
        "a_state_without_a_sequence_section",
        lambda d: [d.pop("sequence"), d["data"].pop("sequence")],
        "inputs[1] 'state': the first dim must be 'batch' when max_batch_size > 0; only a state may have it "
        "elsewhere: pair it with its next value under 'sequence:'",
    ),
]


@pytest.mark.parametrize("change, expected", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_sequence_section_fails_with_one_line(tmp_path, change, expected):
    assert expected in spec_error(write_spec(tmp_path, _break(change)))


def test_a_state_with_a_dynamic_axis_other_than_the_batch_is_refused(tmp_path):
    def change(d):
        d["axes"]["hidden"] = {"min": 64, "opt": 128, "max": 128}
        for tensor in (d["inputs"][1], d["outputs"][1]):
            tensor["dims"] = [2, "batch", "hidden"]

    message = spec_error(write_spec(tmp_path, _break(change)))
    assert "sequence.state[0]: 'state' dims [2, 'batch', 'hidden']: a state's dims are fixed sizes" in message


def test_the_cpu_config_batches_sequences_and_keeps_the_state_out_of_the_wire(tmp_path):
    loaded = load_spec(write_spec(tmp_path, vad_spec()))
    warmup = {"input": np.zeros(512, np.float32), "sr": np.array(16000)}
    config = cpu_model_config(loaded, "vad_fp32", warmup)
    assert parse_config_text(to_text(config)) == config
    assert [t.name for t in config.input] == ["input", "sr"] and [t.name for t in config.output] == ["output"]
    assert not config.HasField("dynamic_batching")
    batching = config.sequence_batching
    assert batching.max_sequence_idle_microseconds == 5_000_000
    assert batching.oldest.max_candidate_sequences == 64 and not batching.state  # the model keeps it
    assert json.loads(config.parameters["sequence_state"].string_value) == [
        {
            "input": "state",
            "output": "stateN",
            "axis": 1,
            "dims": [2, 1, 128],
            "dtype": "float32",
            "initial_file": None,
        }
    ]
    assert {name for w in config.model_warmup for name in w.inputs} == {"input", "sr"}


def test_the_gpu_config_feeds_each_state_batch_first_from_implicit_state(tmp_path):
    data = vad_spec()
    data["sequence"] = {"strategy": "direct"}
    loaded = load_spec(write_spec(tmp_path, data))
    profiles = derive_profiles(loaded.spec)
    assert profiles[0].inputs["state"].max == (64, 2, 128)  # the engine's state input, batch first
    config = onnx_gpu_model_config(loaded, "vad_fp32_onnx", "fp32", profiles, [])
    (state,) = config.sequence_batching.state
    assert (state.input_name, state.output_name, list(state.dims)) == ("state", "stateN", [2, 128])
    (initial,) = state.initial_state
    assert initial.zero_data and list(initial.dims) == [2, 128]
    assert config.sequence_batching.HasField("direct") and not config.HasField("dynamic_batching")
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.parameters["trt_profile_max_shapes"] == "input:64x512,state:64x2x128,sr:64"


def test_the_state_adapter_serves_the_state_batch_first_and_computes_the_same(tmp_path):
    """A graph with its state [2, batch, 4]: adapted, it takes and gives [batch, 2, 4], same numbers."""
    import onnx
    from onnx import TensorProto, helper

    from triton_repo.core.golden import GoldenCase
    from triton_repo.repo.states import adapt_states, state_view
    from triton_repo.runtimes.onnxruntime_cpu import cpu_session

    data = vad_spec()
    data["inputs"] = [
        {"name": "x", "dtype": "float32", "dims": ["batch", 4]},
        {"name": "state", "dtype": "float32", "dims": [2, "batch", 4]},
    ]
    data["outputs"] = [
        {"name": "y", "dtype": "float32", "dims": ["batch", 4]},
        {"name": "stateN", "dtype": "float32", "dims": [2, "batch", 4]},
    ]
    loaded = load_spec(write_spec(tmp_path, data))
    weights = helper.make_tensor(
        "w", TensorProto.FLOAT, [2, 1, 4], np.array([[[1, 2, 3, 4]], [[-1, 0, 1, 2]]]).ravel()
    )
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["state", "w"], ["scaled"]),
            helper.make_node("Add", ["scaled", "x"], ["stateN"]),  # [2, B, 4] + [B, 4]
            helper.make_node("ReduceSum", ["stateN", "axes"], ["y"], keepdims=0),
        ],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", 4]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "batch", 4]),
        ],
        [weights, helper.make_tensor("axes", TensorProto.INT64, [1], [0])],
    )
    source = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(source))
    adapted = adapt_states(loaded, source, tmp_path / "model.states.onnx")
    rng = np.random.default_rng(0)
    feed = {
        "x": rng.normal(size=(3, 4)).astype(np.float32),
        "state": rng.normal(size=(2, 3, 4)).astype(np.float32),
    }
    original = dict(zip(["y", "stateN"], cpu_session(source).run(["y", "stateN"], feed), strict=True))
    served = state_view(loaded, GoldenCase("", feed, original))
    assert served.inputs["state"].shape == (3, 2, 4)
    session = cpu_session(adapted)
    assert [list(i.shape) for i in session.get_inputs()] == [["batch", 4], ["batch", 2, 4]]
    got = dict(zip(["y", "stateN"], session.run(["y", "stateN"], served.inputs), strict=True))
    np.testing.assert_array_equal(got["stateN"], served.outputs["stateN"])  # batch first, same numbers
    np.testing.assert_array_equal(got["y"], original["y"])


def parse_config_text(text: str):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    return text_format.Parse(text, mc.ModelConfig())


def test_an_initial_state_from_a_file_is_checked_and_repeated_per_sequence(tmp_path):
    from triton_repo.core.errors import SpecError
    from triton_repo.core.golden_streams import initial_states

    data = vad_spec()
    data["sequence"] = {"state": [{"input": "state", "output": "stateN", "initial": "start.npy"}]}
    path = write_spec(tmp_path, data)
    start = np.arange(256, dtype=np.float32).reshape(2, 128)
    np.save(path.parent / "start.npy", start)
    loaded = load_spec(path)
    states = initial_states(loaded, 3)["state"]
    assert states.shape == (2, 3, 128) and all((states[:, row] == start).all() for row in range(3))
    cpu = cpu_model_config(loaded, "vad_fp32", {"input": np.zeros(512, np.float32), "sr": np.array(16000)})
    assert json.loads(cpu.parameters["sequence_state"].string_value)[0]["initial_file"] == "initial.state.npy"
    gpu = onnx_gpu_model_config(loaded, "vad_fp32_onnx", "fp32", derive_profiles(loaded.spec), [])
    (initial,) = gpu.sequence_batching.state[0].initial_state
    assert initial.data_file == "state.raw" and not initial.zero_data
    np.save(path.parent / "start.npy", start[:1])
    with pytest.raises(SpecError, match=r"start\.npy is float32 \[1, 128\], expected float32 \[2, 128\]"):
        initial_states(loaded, 1)


def test_a_gate_on_the_state_output_is_refused_when_the_spec_is_loaded(tmp_path):
    """The state never reaches clients: gating it was accepted and then ended the build with exit 3."""
    gated = vad_spec() | {"accuracy": {"metric": "cosine_min", "output": "stateN"}}
    gated["data"] = gated["data"] | {"eval": "eval.npz"}
    message = spec_error(write_spec(tmp_path, gated))
    assert "accuracy reads 'stateN', the state a stateful model carries to its next step" in message
    assert "gate an output clients receive (['output'])" in message
