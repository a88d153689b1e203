"""A stateful (recurrent, streaming) model in `init`: its states paired with the outputs holding their next
value and its batch axis found through them (`find_states`, on synthetic probes); the spec and the data
stub written for it (sample with zero states, golden streams from .npy files, .wav files or a placeholder);
the child's export (`torch_run`) keeping a state's own dims fixed and naming its next value; then
`init_model` end to end on the corpus's LSTM."""

from __future__ import annotations

import shutil
import sys
import wave
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml

from triton_repo.builders.scaffold import torch_run
from triton_repo.builders.scaffold.init import init_model
from triton_repo.builders.scaffold.propose import propose_metric
from triton_repo.builders.scaffold.record import ModelProbe, ProbedAxis, ProbedTensor
from triton_repo.builders.scaffold.states import MAX_LIVE, States, find_states
from triton_repo.builders.scaffold.torch_source import parse_input
from triton_repo.builders.scaffold.write_spec import SpecExtras, model_py, spec_yaml
from triton_repo.core.golden_streams import check_streams
from triton_repo.core.references import load_arrays
from triton_repo.core.spec import load_spec

CORPUS = Path(__file__).resolve().parents[2] / "corpus"


def tensor(name: str, *dims, dtype="float32", **more) -> ProbedTensor:
    return ProbedTensor(name, dtype, None, tuple(dims), **more)


def lstm_probe(largest=100, output_only=False) -> ModelProbe:
    """As the probe reads an LSTM whose batch is dim 1 of h0 and c0: unbatched, its axis named `a`."""
    axis = ProbedAxis("a", 1, 2, largest, "dim 0 of series", output_only=output_only)
    inputs = (tensor("series", "a", 10, 3), tensor("h0", 2, "a", 16), tensor("c0", 2, "a", 16))
    outputs = (tensor("forecast", "a", 4), tensor("hn", 2, "a", 16), tensor("cn", 2, "a", 16))
    return ModelProbe(Path("m.onnx"), inputs, outputs, {"a": axis}, False, "no axis is dim 0 of every input")


def vad_probe(chunk_name="input") -> ModelProbe:
    """As the probe reads Silero VAD: a chunk, a state [2, a, 128] and a 0-d int64 sample rate."""
    axis = ProbedAxis("a", 1, 2, 32, "dim 0 of input")
    inputs = (
        tensor(chunk_name, "a", 512),
        tensor("state", 2, "a", 128),
        tensor("sr", dtype="int64", value=16000.0, fill="value"),
    )
    outputs = (tensor("output", "a", 1), tensor("stateN", 2, "a", 128))
    return ModelProbe(Path("m.onnx"), inputs, outputs, {"a": axis}, False, "no axis is dim 0 of every input")


def fixed_probe() -> ModelProbe:
    """A GRU step with no batch at all: x [6] and hidden [12] in, y [3] and hidden_out [12] out."""
    inputs = (tensor("x", 6), tensor("hidden", 12))
    outputs = (tensor("y", 3), tensor("hidden_out", 12))
    return ModelProbe(Path("m.onnx"), inputs, outputs, {}, False, "the file fixes every dim")


def probe_of(inputs, outputs, axes=None, batched=False) -> ModelProbe:
    axes = axes if axes is not None else {"a": ProbedAxis("a", 1, 2, 16, "dim 0 of series")}
    return ModelProbe(Path("m.onnx"), tuple(inputs), tuple(outputs), axes, batched)


# find_states


@pytest.mark.parametrize(("largest", "opt", "most"), [(100, 4, MAX_LIVE), (8, 4, 8), (2, 2, 2)])
def test_an_lstm_whose_states_carry_its_axis_at_dim_1_is_batched_with_at_most_64_live_sequences(
    largest, opt, most
):
    probe, states = find_states(lstm_probe(largest))
    assert probe.batched and probe.unbatched_reason == ""
    assert list(probe.axes) == ["batch"]
    batch = probe.axes["batch"]
    assert (batch.name, batch.min, batch.opt, batch.max) == ("batch", 1, opt, most)
    assert [(t.name, t.dims) for t in probe.inputs] == [
        ("series", ("batch", 10, 3)),
        ("h0", (2, "batch", 16)),
        ("c0", (2, "batch", 16)),
    ]
    assert [(t.name, t.dims) for t in probe.outputs] == [
        ("forecast", ("batch", 4)),
        ("hn", (2, "batch", 16)),
        ("cn", (2, "batch", 16)),
    ]
    assert states.pairs == (("h0", "hn"), ("c0", "cn"))
    assert states.batch_index == {"h0": 1, "c0": 1}
    assert "h0 -> hn, c0 -> cn" in states.note and "batch is dim 1 of h0" in states.note
    assert any(note.startswith("a is the batch") for note in probe.notes)


def test_a_vad_with_a_0_d_sample_rate_is_batched_through_its_state_and_the_rate_keeps_no_dims():
    probe, states = find_states(vad_probe())
    assert probe.batched and list(probe.axes) == ["batch"]
    assert [(t.name, t.dims) for t in probe.inputs] == [
        ("input", ("batch", 512)),
        ("state", (2, "batch", 128)),
        ("sr", ()),
    ]
    assert [t.dims for t in probe.outputs] == [("batch", 1), (2, "batch", 128)]
    assert states.pairs == (("state", "stateN"),)
    assert states.batch_index == {"state": 1}


def test_an_unbatched_fixed_model_stays_unbatched_with_its_pair_and_no_batch_index():
    given = fixed_probe()
    probe, states = find_states(given)
    assert probe == given and not probe.batched
    assert states.pairs == (("hidden", "hidden_out"),)
    assert states.batch_index == {}
    assert "hidden -> hidden_out" in states.note and "batch is dim" not in states.note


def test_a_model_without_a_state_pair_is_returned_unchanged_with_no_states():
    inputs = (tensor("series", "a", 10, 3), tensor("h0", 2, "a", 16))
    outputs = (tensor("forecast", "a", 4), tensor("h_final", 2, "a", 8))  # not named nor shaped as hn
    given = probe_of(inputs, outputs)
    assert find_states(given) == (given, None)
    plain = probe_of((tensor("x", 6),), (tensor("y", 3),), axes={})
    assert find_states(plain) == (plain, None)


def varying_state_probe() -> ModelProbe:
    """h0 [2, a, t]: besides the batch, its last dim varies, which Triton's one state shape cannot keep."""
    axes = {
        "a": ProbedAxis("a", 1, 2, 16, "dim 0 of series"),
        "t": ProbedAxis("t", 1, 8, 32, "dim 2 of h0"),
    }
    inputs = (tensor("series", "a", 10, 3), tensor("h0", 2, "a", "t"))
    outputs = (tensor("forecast", "a", 4), tensor("hn", 2, "a", "t"))
    return probe_of(inputs, outputs, axes)


def test_a_state_with_a_second_varying_dim_is_not_stateful():
    assert find_states(varying_state_probe())[1] is None
    batch = ProbedAxis("batch", 1, 4, 8, "dim 0 of every input")
    seq = ProbedAxis("seq", 1, 16, 64, "dim 1 of cache")
    batched = probe_of(
        (tensor("ids", "batch", "seq", dtype="int64"), tensor("cache", "batch", "seq", 16)),
        (tensor("logits", "batch", 10), tensor("cache_out", "batch", "seq", 16)),
        {"batch": batch, "seq": seq},
        batched=True,
    )
    assert find_states(batched) == (batched, None)


def test_a_state_with_a_second_varying_dim_leaves_the_probe_as_given_so_its_spec_loads(tmp_path):
    given = varying_state_probe()
    probe, states = find_states(given)
    assert states is None
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"not read by these tests")
    (folder / "model.yaml").write_text(
        spec_yaml("tiny", {"onnx": "model.onnx"}, probe, propose_metric(probe), "m.onnx")
    )
    (folder / "model.py").write_text(model_py("tiny", "m.onnx", probe))
    load_spec(folder / "model.yaml")
    assert probe == given


def test_an_axis_only_outputs_have_is_not_taken_for_the_batch():
    given = lstm_probe(output_only=True)
    probe, states = find_states(given)
    assert probe == given and not probe.batched and "batch" not in probe.axes
    assert states is None  # the states then carry a named axis that is not the batch


def test_an_axis_that_is_not_dim_0_of_every_other_tensor_is_not_taken_for_the_batch():
    axes = {"a": ProbedAxis("a", 1, 2, 16, "dim 0 of series"), "b": ProbedAxis("b", 1, 2, 16, "dim 0 of x")}
    inputs = (tensor("series", "a", 10), tensor("x", "b", 3), tensor("h0", 2, "a", 16))
    outputs = (tensor("y", "a", 4), tensor("hn", 2, "a", 16))
    given = probe_of(inputs, outputs, axes)
    probe, states = find_states(given)
    assert probe == given and states is None


# the spec and the data stub


def write_folder(folder: Path, probe: ModelProbe, states: States, factory: str | None = None) -> Path:
    """folder/model.yaml and model.py as init writes them; the network beside them when `factory` names a
    corpus model (served through its factory), else a model.onnx the spec's loading does not read."""
    folder.mkdir(parents=True)
    if factory is not None:
        shutil.copy(CORPUS / factory / "model.py", folder / "network.py")
        source = {"factory": "network:build"}
    else:
        (folder / "model.onnx").write_bytes(b"not read by these tests")
        source = {"onnx": "model.onnx"}
    extras = SpecExtras(states=states)
    text = spec_yaml(folder.name, source, probe, propose_metric(probe), "m.onnx", extras)
    (folder / "model.yaml").write_text(text)
    (folder / "model.py").write_text(model_py(folder.name, "m.onnx", probe, None, states))
    return folder


def test_a_batched_stateful_spec_reads_sample_and_sequence_under_the_oldest_strategy(tmp_path):
    probe, states = find_states(lstm_probe())
    folder = write_folder(tmp_path / "lstm", probe, states, factory="lstm_state")
    written = yaml.safe_load((folder / "model.yaml").read_text())
    assert written["data"] == {"sample": "model:sample", "sequence": "model:sequence"}
    assert written["sequence"]["strategy"] == "oldest"
    assert "accuracy" not in written and "max_batch_size" not in written
    assert written["precision"] == {"variants": ["fp32"]}
    loaded = load_spec(folder / "model.yaml")
    assert [(p.input, p.output) for p in loaded.spec.state_pairs] == [("h0", "hn"), ("c0", "cn")]
    assert loaded.spec.batched and loaded.spec.sequence.strategy == "oldest"


def test_an_unbatched_stateful_spec_is_served_direct_with_max_batch_size_0(tmp_path):
    probe, states = find_states(fixed_probe())
    folder = write_folder(tmp_path / "step", probe, states, factory="unbatched_state")
    text = (folder / "model.yaml").read_text()
    written = yaml.safe_load(text)
    assert written["max_batch_size"] == 0
    assert written["data"] == {"sample": "model:sample", "sequence": "model:sequence"}
    assert written["sequence"]["strategy"] == "direct" and "accuracy" not in written
    loaded = load_spec(folder / "model.yaml")
    assert not loaded.spec.batched
    sample = load_arrays(loaded, "sample")
    assert sample["x"].shape == (6,) and sample["hidden"].shape == (12,) and not sample["hidden"].any()
    streams = check_streams(loaded, load_arrays(loaded, "sequence", check=False))
    assert list(streams) == ["x"] and streams["x"].shape == (20, 6)


def test_the_stub_s_sample_starts_each_state_at_zeros_along_its_batch_axis(tmp_path):
    probe, states = find_states(lstm_probe())
    loaded = load_spec(write_folder(tmp_path / "lstm", probe, states, factory="lstm_state"))
    sample = load_arrays(loaded, "sample")
    assert sorted(sample) == ["c0", "h0", "series"]
    assert sample["series"].shape == (2, 10, 3) and sample["series"].dtype == np.float32
    for state in ("h0", "c0"):
        assert sample[state].shape == (2, 2, 16) and sample[state].dtype == np.float32
        assert not sample[state].any()


def test_the_stub_s_placeholder_sequence_gives_20_steps_of_4_streams_and_no_state(tmp_path):
    probe, states = find_states(lstm_probe())
    loaded = load_spec(write_folder(tmp_path / "lstm", probe, states, factory="lstm_state"))
    arrays = load_arrays(loaded, "sequence", check=False)
    assert list(arrays) == ["series"]
    assert arrays["series"].shape == (20, 4, 10, 3) and arrays["series"].dtype == np.float32
    assert check_streams(loaded, arrays)["series"].shape == (20, 4, 10, 3)


def test_the_stub_reads_streams_given_as_data_input_streams_npy(tmp_path):
    probe, states = find_states(lstm_probe())
    folder = write_folder(tmp_path / "lstm", probe, states, factory="lstm_state")
    (folder / "data").mkdir()
    given = np.random.default_rng(0).normal(size=(7, 3, 10, 3))  # float64: the stub casts it
    np.save(folder / "data" / "series_streams.npy", given)
    loaded = load_spec(folder / "model.yaml")
    arrays = load_arrays(loaded, "sequence", check=False)
    assert list(arrays) == ["series"] and arrays["series"].dtype == np.float32
    assert np.allclose(arrays["series"], given)
    assert check_streams(loaded, arrays)["series"].shape == (7, 3, 10, 3)


def write_wav(path: Path, samples: np.ndarray, channels=1) -> None:
    with wave.open(str(path), "wb") as sound:
        sound.setnchannels(channels)
        sound.setsampwidth(2)
        sound.setframerate(16000)
        sound.writeframes(samples.astype("<i2").tobytes())


def test_wav_files_become_one_stream_each_cut_into_chunks_with_the_rate_given_per_step(tmp_path):
    probe, states = find_states(vad_probe(chunk_name="audio"))
    folder = write_folder(tmp_path / "vad", probe, states)
    assert "sequence: {strategy: oldest" in (folder / "model.yaml").read_text()
    (folder / "data").mkdir()
    rng = np.random.default_rng(1)
    clips = [rng.integers(-20000, 20000, size) for size in (512 * 5 + 100, 512 * 7, 512 * 6)]
    for index, clip in enumerate(clips):
        write_wav(folder / "data" / f"{index}.wav", clip)
    loaded = load_spec(folder / "model.yaml")
    arrays = check_streams(loaded, load_arrays(loaded, "sequence", check=False))
    assert sorted(arrays) == ["audio", "sr"]
    assert arrays["audio"].shape == (5, 3, 512) and arrays["audio"].dtype == np.float32  # the shortest: 5
    for stream, clip in enumerate(clips):
        expected = (clip[: 5 * 512] / 32768.0).reshape(5, 512)
        assert np.allclose(arrays["audio"][:, stream], expected)
    assert arrays["sr"].dtype == np.int64 and arrays["sr"].tolist() == [16000] * 5

    sample = load_arrays(loaded, "sample")  # the first chunk of the first two files, zero states
    assert sample["audio"].shape == (2, 512)
    assert np.allclose(sample["audio"][1], clips[1][:512] / 32768.0)
    assert sample["state"].shape == (2, 2, 128) and not sample["state"].any()
    assert sample["sr"].shape == () and int(sample["sr"]) == 16000


def test_a_stereo_wav_is_mixed_down_and_a_clip_shorter_than_a_chunk_is_refused(tmp_path):
    probe, states = find_states(vad_probe(chunk_name="speech"))
    folder = write_folder(tmp_path / "vad", probe, states)
    (folder / "data").mkdir()
    left, right = np.full(1024, 1000), np.full(1024, 3000)
    write_wav(folder / "data" / "a.wav", np.stack([left, right], axis=1).reshape(-1), channels=2)
    loaded = load_spec(folder / "model.yaml")
    arrays = load_arrays(loaded, "sequence", check=False)
    assert arrays["speech"].shape == (2, 1, 512)
    assert np.allclose(arrays["speech"], 2000 / 32768.0)

    write_wav(folder / "data" / "b.wav", np.zeros(100))
    with pytest.raises(ValueError, match="a clip is shorter than one chunk of 512 samples"):
        load_arrays(loaded, "sequence", check=False)


def test_the_placeholder_sequence_gives_a_scalar_one_value_per_step(tmp_path):
    probe, states = find_states(vad_probe())
    loaded = load_spec(write_folder(tmp_path / "vad", probe, states))
    arrays = check_streams(loaded, load_arrays(loaded, "sequence", check=False))
    assert sorted(arrays) == ["input", "sr"]
    assert arrays["input"].shape == (20, 4, 512)
    assert arrays["sr"].tolist() == [16000] * 20


# the child's export: torch_run


@pytest.fixture
def own_sys_path(monkeypatch):
    """build_and_export puts the factory's folder on sys.path, as the child does: undone after the test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def factory_folder(tmp_path: Path, corpus: str) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    shutil.copy(CORPUS / corpus / "model.py", folder / "net.py")
    return folder


def export(folder: Path, *inputs: str) -> dict:
    """build_and_export as the child calls it, with --input texts parsed as the CLI does."""
    given = [[g.name, list(g.shape), g.dtype] for g in map(parse_input, inputs)]
    onnx_path = folder.parent / "probe.onnx"
    return torch_run.build_and_export(
        str(folder), "net", "build", None, given, str(onnx_path), ["torchscript", "dynamo"]
    )


def onnx_dims(path: Path, which="input") -> dict[str, list]:
    graph = onnx.load(str(path)).graph
    values = graph.input if which == "input" else graph.output
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}


@pytest.mark.usefixtures("own_sys_path")
def test_an_lstm_s_batch_is_dim_0_of_the_series_and_dim_1_of_h0_and_c0_whose_other_dims_stay_fixed(
    tmp_path,
):
    folder = factory_folder(tmp_path, "lstm_state")
    found = export(folder, "series:3x10x3", "h0:2x3x16", "c0:2x3x16")
    places = {tuple(place) for place in found["places"]}
    assert {("series", 0), ("h0", 1), ("c0", 1)} <= places
    assert {index for name, index in places if name in ("h0", "c0")} == {1}
    assert found["examples"]["batch"] == 3
    assert "batch: dim 0 of series, dim 1 of h0, dim 1 of c0 ran at 3 and 6" in found["notes"]
    assert found["outputs"] == ["output_0", "h_out", "c_out"]
    dims = onnx_dims(tmp_path / "probe.onnx")
    assert dims["h0"] == [2, "batch", 16] and dims["c0"] == [2, "batch", 16] and dims["series"][0] == "batch"
    h_out = onnx_dims(tmp_path / "probe.onnx", "output")["h_out"]
    assert h_out[0] == 2 and isinstance(h_out[1], str) and h_out[2] == 16


@pytest.mark.usefixtures("own_sys_path")
def test_a_vad_keeps_its_state_s_first_dim_fixed_and_names_its_next_value_state_out(tmp_path):
    folder = factory_folder(tmp_path, "vad_stream")
    found = export(folder, "input:3x512", "state:2x3x128", "sr::int64")
    assert sorted(map(tuple, found["places"])) == [("input", 0), ("state", 1)]
    assert found["outputs"] == ["output_0", "state_out"]
    dims = onnx_dims(tmp_path / "probe.onnx")
    assert dims == {"input": ["batch", 512], "state": [2, "batch", 128], "sr": []}


def corpus_net(corpus: str) -> torch.nn.Module:
    folder = CORPUS / corpus
    scope: dict = {"__name__": f"corpus_{corpus}"}
    exec(compile((folder / "model.py").read_text(), str(folder / "model.py"), "exec"), scope)
    return scope["build"]().eval()


def examples(**shapes) -> dict[str, torch.Tensor]:
    return {
        name: torch.zeros(shape, dtype=torch.int64) if shape == () else torch.randn(shape)
        for name, shape in shapes.items()
    }


def test_an_lstm_s_batch_is_found_when_the_example_batch_equals_its_layer_count():
    net = corpus_net("lstm_state")
    found, _ = torch_run._dynamic_dims(net, examples(series=(2, 10, 3), h0=(2, 2, 16), c0=(2, 2, 16)))
    assert found["h0"] == {1: "batch"} and found["c0"] == {1: "batch"}
    assert found["series"][0] == "batch"


def test_a_vad_state_s_first_dim_stays_fixed_when_the_example_batch_equals_it():
    net = corpus_net("vad_stream")
    found, _ = torch_run._dynamic_dims(net, examples(input=(2, 512), state=(2, 2, 128), sr=()))
    assert found["state"] == {1: "batch"}


def test_dim_0_is_named_batch_only_when_it_is_dim_0_of_every_input_that_is_not_a_state():
    class Two(torch.nn.Module):
        def forward(self, x, y):
            return x.sum(1), y.sum(1)

    found, _ = torch_run._dynamic_dims(Two(), examples(x=(2, 4), y=(5, 4)))
    assert found["x"][0] == "x_0" and found["y"][0] == "y_0"
    assert "batch" not in {axis for dims in found.values() for axis in dims.values()}


def test_output_names_flatten_nested_tuples_and_name_a_state_s_next_value_after_its_stem():
    state = torch.zeros(2, 3, 16)
    given = examples(series=(3, 10, 3))
    given.update(h0=state, c0=state.clone())
    outputs = (torch.zeros(3, 4), (state.clone(), state.clone()))
    assert torch_run._output_names(outputs, given) == ["output_0", "h_out", "c_out"]
    for name, named in [("state", "state_out"), ("hidden_prev", "hidden_out"), ("cache_in", "cache_out")]:
        assert torch_run._output_names((torch.zeros(3, 1), state), {"x": torch.zeros(3, 1), name: state}) == [
            "output_0",
            named,
        ]
    other = torch.zeros(2, 3, 8)  # not the state's shape: not its next value
    assert torch_run._output_names((torch.zeros(3, 1), other), {"h0": state}) == ["output_0", "output_1"]
    assert torch_run._output_names((torch.zeros(3, 1), state), {"x0": state}) == ["output_0", "output_1"]


# init_model end to end


def test_init_from_the_lstm_factory_writes_a_stateful_spec_whose_stub_gives_sample_and_streams(tmp_path):
    user = tmp_path / "lstm_state"
    user.mkdir()
    shutil.copy(CORPUS / "lstm_state" / "model.py", user / "model.py")
    given = tuple(map(parse_input, ("series:3x10x3", "h0:2x3x16", "c0:2x3x16")))
    done = init_model(Path(f"{user / 'model.py'}:build"), None, tmp_path / "models", seconds=10, inputs=given)
    assert done.stateful and done.name == "lstm_state"
    assert any(note.startswith("stateful: h0 -> h_out, c0 -> c_out") for note in done.notes)
    written = yaml.safe_load((done.folder / "model.yaml").read_text())
    assert written["source"] == {"factory": "network:build"}
    assert written["data"] == {"sample": "model:sample", "sequence": "model:sequence"}
    assert written["sequence"]["strategy"] == "oldest" and "accuracy" not in written
    assert [(t["name"], t["dims"][:2]) for t in written["inputs"]] == [
        ("series", ["batch", "seq"]),
        ("h0", [2, "batch"]),
        ("c0", [2, "batch"]),
    ]
    assert written["axes"]["batch"]["max"] <= MAX_LIVE
    loaded = load_spec(done.folder / "model.yaml")
    assert [(p.input, p.output) for p in loaded.spec.state_pairs] == [("h0", "h_out"), ("c0", "c_out")]
    sample = load_arrays(loaded, "sample")
    assert sample["h0"].shape == (2, 2, 16) and sample["series"].shape == (2, 10, 3)
    streams = check_streams(loaded, load_arrays(loaded, "sequence", check=False))
    assert list(streams) == ["series"] and streams["series"].shape == (20, 4, 10, 3)
