"""What triton_repo/builders/model_files accepts from a model folder: ONNX external data beside the file, weights-only checkpoints.

The refusals are in tests/integration/test_bad_input.py (the real CLI); these show the same checks let
good input through.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from conftest import minimal_spec, write_spec
from onnx import TensorProto, helper, numpy_helper

from triton_repo.builders.model_files import checked_source_onnx, load_checkpoint
from triton_repo.core.errors import SpecError
from triton_repo.core.spec import load_spec


def _onnx_with_weights(path, location: str) -> None:
    """y = x @ W with W stored as external data at `location`, relative to the ONNX file's folder."""
    weight = numpy_helper.from_array(np.arange(16, dtype=np.float32).reshape(4, 4), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [weight],
    )
    onnx.save_model(
        helper.make_model(graph),
        str(path),
        save_as_external_data=True,
        location=location,
        size_threshold=0,
    )


@pytest.mark.parametrize("location", ["weights.bin", "data/weights.bin"])
def test_onnx_external_data_inside_its_folder_is_accepted(tmp_path, location):
    spec = minimal_spec()
    path = write_spec(tmp_path / "models", spec)
    (path.parent / "data").mkdir()
    _onnx_with_weights(path.parent / "model.onnx", location)
    loaded = load_spec(path)
    assert checked_source_onnx(loaded) == (path.parent / "model.onnx").resolve()


def test_onnx_external_data_in_a_sibling_folder_is_refused_before_loading(tmp_path):
    spec = {**minimal_spec(), "source": {"onnx": "graphs/model.onnx"}}
    path = write_spec(tmp_path / "models", spec)
    (path.parent / "graphs").mkdir()
    (path.parent / "weights").mkdir()
    graph_path = path.parent / "graphs" / "model.onnx"
    _onnx_with_weights(graph_path, "weights.bin")
    (path.parent / "graphs" / "weights.bin").rename(path.parent / "weights" / "weights.bin")
    model = onnx.load(str(graph_path), load_external_data=False)  # onnx.save refuses '..': edit it in
    model.graph.initializer[0].external_data[0].value = "../weights/weights.bin"
    assert model.graph.initializer[0].external_data[0].key == "location"
    onnx.save_model(model, str(graph_path))
    with pytest.raises(SpecError, match=r"tensor 'W' has its external data at '\.\./weights/weights\.bin'"):
        checked_source_onnx(load_spec(path))


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 3)
        self.register_buffer("scale", torch.ones(3))


def _loaded_with_checkpoint(tmp_path):
    spec = {**minimal_spec(), "source": {"factory": "model:build", "checkpoint": "weights.pt"}}
    return load_spec(write_spec(tmp_path / "models", spec))


def test_checkpoint_state_dict_is_loaded_into_the_factory_model(tmp_path):
    loaded = _loaded_with_checkpoint(tmp_path)
    trained = _Net()
    torch.nn.init.constant_(trained.linear.weight, 0.5)
    trained.scale.fill_(2.0)
    torch.save(trained.state_dict(), loaded.folder / "weights.pt")
    fresh = _Net()
    load_checkpoint(loaded, fresh)
    assert torch.equal(fresh.linear.weight, torch.full((3, 2), 0.5))
    assert torch.equal(fresh.scale, torch.full((3,), 2.0))


def test_checkpoint_key_lists_are_shortened_in_the_one_line_error(tmp_path):
    loaded = _loaded_with_checkpoint(tmp_path)
    torch.save(
        {f"extra{i}": torch.zeros(1) for i in range(8)} | _Net().state_dict(), loaded.folder / "weights.pt"
    )
    with pytest.raises(SpecError) as raised:
        load_checkpoint(loaded, _Net())
    message = str(raised.value)
    assert "\n" not in message
    assert "unexpected keys 'extra0', 'extra1', 'extra2', 'extra3', 'extra4' and 3 more" in message


def _trained() -> _Net:
    trained = _Net()
    torch.nn.init.constant_(trained.linear.weight, 0.25)
    return trained


def test_a_training_checkpoint_with_dataparallel_keys_is_loaded_and_says_how(tmp_path):
    loaded = _loaded_with_checkpoint(tmp_path)
    wrapped = {f"module.{k}": v for k, v in _trained().state_dict().items()}
    optimizer = torch.optim.SGD(_Net().parameters(), lr=0.1, momentum=0.9).state_dict()
    torch.save({"epoch": 3, "state_dict": wrapped, "optimizer": optimizer}, loaded.folder / "weights.pt")
    fresh = _Net()
    how = load_checkpoint(loaded, fresh)
    assert torch.equal(fresh.linear.weight, torch.full((3, 2), 0.25))
    assert (
        how == "torch.load(weights_only=True), the state_dict under 'state_dict', 'module.' prefixes removed"
    )


def test_a_safetensors_checkpoint_is_loaded(tmp_path):
    from safetensors.torch import save_file

    spec = {**minimal_spec(), "source": {"factory": "model:build", "checkpoint": "model.safetensors"}}
    loaded = load_spec(write_spec(tmp_path / "models", spec))
    save_file(_trained().state_dict(), str(loaded.folder / "model.safetensors"))
    fresh = _Net()
    assert load_checkpoint(loaded, fresh) == "safetensors"
    assert torch.equal(fresh.linear.weight, torch.full((3, 2), 0.25))


def test_a_checkpoint_without_a_state_dict_anywhere_is_refused(tmp_path):
    loaded = _loaded_with_checkpoint(tmp_path)
    torch.save({"epoch": 3, "notes": "no weights"}, loaded.folder / "weights.pt")
    with pytest.raises(SpecError, match=r"is not a state_dict .*its entry 'epoch' is int"):
        load_checkpoint(loaded, _Net())


def test_a_corrupt_safetensors_file_is_one_line(tmp_path):
    spec = {**minimal_spec(), "source": {"factory": "model:build", "checkpoint": "model.safetensors"}}
    loaded = load_spec(write_spec(tmp_path / "models", spec))
    (loaded.folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!")
    with pytest.raises(
        SpecError, match=r"source.checkpoint: 'model.safetensors' cannot be read as safetensors"
    ):
        load_checkpoint(loaded, _Net())
