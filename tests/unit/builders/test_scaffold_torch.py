"""A PyTorch source for `init`: --input and --factory as the user types them; the child's work
(`torch_run.build_and_export`, run here in-process on tiny factories and the corpus's models): inputs guessed
from the first layer, dynamic dims found by running, outputs named, and one-line refusals of what cannot
be built; then `init_model` end to end on the corpus's checkpoint and its factory."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import onnx
import pytest
import torch
import yaml
from torch import nn

from triton_repo.builders.scaffold import torch_run
from triton_repo.builders.scaffold.init import init_model
from triton_repo.builders.scaffold.torch_source import INPUT_FORM, parse_factory, parse_input
from triton_repo.core.errors import SpecError

CORPUS = Path(__file__).resolve().parents[2] / "corpus"

TWO_HEADS = """
import torch
from torch import nn


class Heads(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        y = self.lin(x)
        return {"scores": y, "best": y.argmax(-1)}


def build():
    return Heads()


def number():
    return 3
"""


@pytest.fixture(autouse=True)
def _own_sys_path(monkeypatch):
    """build_and_export puts the factory's folder on sys.path, as the child does: undone after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def factory_folder(tmp_path: Path, module: str, text: str | None = None, corpus: str | None = None) -> Path:
    """tmp_path/src/<module>.py, written from `text` or copied from the corpus's model.py."""
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    if corpus is not None:
        shutil.copy(CORPUS / corpus / "model.py", folder / f"{module}.py")
    else:
        (folder / f"{module}.py").write_text(text)
    return folder


def export(folder: Path, module: str, function="build", checkpoint=None, inputs=(), output_names=()):
    """build_and_export as export_for_probe's child calls it, with --input texts parsed as the CLI does."""
    given = [[g.name, list(g.shape), g.dtype] for g in map(parse_input, inputs)]
    onnx_path = folder.parent / "probe.onnx"
    return torch_run.build_and_export(
        str(folder),
        module,
        function,
        checkpoint,
        given,
        str(onnx_path),
        ["torchscript", "dynamo"],
        output_names,
    )


def onnx_dims(path: Path, which="input") -> dict[str, list]:
    graph = onnx.load(str(path)).graph
    values = graph.input if which == "input" else graph.output
    return {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in values
        if v.name not in {i.name for i in graph.initializer}
    }


def refusal(call, *args, **kwargs) -> str:
    with pytest.raises(SpecError) as raised:
        call(*args, **kwargs)
    text = str(raised.value)
    assert "\n" not in text, text
    return text


# --input and --factory


@pytest.mark.parametrize(
    ("text", "name", "shape", "dtype"),
    [
        ("image:1x3x224x224", "image", (1, 3, 224, 224), "float32"),
        ("ids:2x16:int64", "ids", (2, 16), "int64"),
        ("sr::int64", "sr", (), "int64"),
        ("sr:scalar:int32", "sr", (), "int32"),
        ("mask:2x16:bool", "mask", (2, 16), "bool"),
    ],
)
def test_parse_input_reads_name_shape_and_dtype_with_float32_by_default(text, name, shape, dtype):
    given = parse_input(text)
    assert (given.name, given.shape, given.dtype) == (name, shape, dtype)


@pytest.mark.parametrize(
    "text",
    [
        "image",
        "1x3x224x224",
        ":1x3x224x224",
        "image:1x3:float32:extra",
        "image:1,3,224,224",
        "image:1x3x",
        "image:-1x3",
        "image:AxB",
        "image:1x0x224",
        "image:0",
    ],
)
def test_parse_input_refuses_malformed_text_and_zero_sizes_naming_the_form(text):
    message = refusal(parse_input, text)
    assert message.startswith(f"--input '{text}'")
    assert INPUT_FORM in message


def test_parse_input_refuses_an_unknown_dtype_listing_the_known_ones():
    message = refusal(parse_input, "ids:2x16:long")
    assert "dtype 'long'" in message and "int64" in message and "float32" in message


def test_parse_factory_returns_the_file_and_function(tmp_path):
    (tmp_path / "net.py").write_text("def build(): pass\n")
    ref = parse_factory(f"{tmp_path / 'net.py'}:build")
    assert (ref.file, ref.function) == (tmp_path / "net.py", "build")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{tmp}/absent.py:build", "no such file"),
        ("{tmp}/weights.pt:build", "is not a Python file (.py)"),
        ("{tmp}/net.py:1build", "give FILE.py:FUNCTION"),
        ("{tmp}/net.py:", "give FILE.py:FUNCTION"),
        ("{tmp}/net.py:build.inner", "give FILE.py:FUNCTION"),
        ("{tmp}/net.py", "give FILE.py:FUNCTION"),
        ("{tmp}/my-net.py:build", "cannot be imported as a module"),
    ],
)
def test_parse_factory_refuses_a_missing_file_a_non_python_file_and_a_bad_function_name(tmp_path, text, says):
    for name in ("net.py", "weights.pt", "my-net.py"):
        (tmp_path / name).write_text("def build(): pass\n")
    text = text.format(tmp=tmp_path)
    message = refusal(parse_factory, text)
    assert message.startswith(f"--factory '{text}'") and says in message


# inputs guessed from the first layer, dynamic dims found by running


def test_a_conv2d_model_gets_an_image_input_with_batch_height_and_width_dynamic(tmp_path):
    folder = factory_folder(tmp_path, "net", corpus="pretrained_classifier")
    found = export(folder, "net")
    assert (found["inputs"], found["outputs"]) == (["image"], ["output"])
    assert found["places"] == [["image", 0], ["image", 2], ["image", 3]]
    assert (found["exporter"], found["opset"]) == ("torchscript", 17)
    assert "image: float32 [2, 3, 224, 224], guessed from its first layer (Conv2d) and run" in found["notes"]
    assert "height: dim 2 of image ran at 224 and 448" in found["notes"]
    assert onnx_dims(tmp_path / "probe.onnx") == {"image": ["batch", 3, "height", "width"]}
    assert onnx_dims(tmp_path / "probe.onnx", "output") == {"output": ["batch", 6]}


def test_an_embedding_model_gets_int64_ids_with_batch_and_seq_dynamic(tmp_path):
    folder = factory_folder(tmp_path, "net", corpus="decoder_block")
    found = export(folder, "net")
    assert found["inputs"] == ["ids"] and found["places"] == [["ids", 0], ["ids", 1]]
    assert "ids: int64 [2, 16], guessed from its first layer (Embedding) and run" in found["notes"]
    graph = onnx.load(str(tmp_path / "probe.onnx")).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert onnx_dims(tmp_path / "probe.onnx") == {"ids": ["batch", "seq"]}


def test_a_batch_first_lstm_gets_a_series_of_its_input_size_and_its_two_outputs_are_numbered(tmp_path):
    folder = factory_folder(tmp_path, "net", corpus="lstm_forecaster")
    found = export(folder, "net")
    assert found["inputs"] == ["series"] and found["places"] == [["series", 0], ["series", 1]]
    assert "series: float32 [2, 16, 3], guessed from its first layer (LSTM) and run" in found["notes"]
    assert found["outputs"] == ["output_0", "output_1"]
    assert onnx_dims(tmp_path / "probe.onnx", "output") == {
        "output_0": ["batch", "seq", 16],
        "output_1": ["batch", 1],
    }


def test_a_dict_output_is_named_by_its_keys_and_a_linear_input_keeps_its_feature_dim_fixed(tmp_path):
    folder = factory_folder(tmp_path, "heads", TWO_HEADS)
    found = export(folder, "heads")
    assert found["outputs"] == ["scores", "best"]
    assert found["places"] == [["x", 0]]  # 4 features: the Linear refuses 8
    assert onnx_dims(tmp_path / "probe.onnx") == {"x": ["batch", 4]}
    assert onnx_dims(tmp_path / "probe.onnx", "output") == {"scores": ["batch", 3], "best": ["batch"]}


def test_output_names_given_replace_the_found_ones_only_when_their_count_matches(tmp_path):
    folder = factory_folder(tmp_path, "heads", TWO_HEADS)
    assert export(folder, "heads", output_names=("logits", "top"))["outputs"] == ["logits", "top"]
    assert export(folder, "heads", output_names=("logits",))["outputs"] == ["scores", "best"]


def test_given_inputs_are_used_as_given_and_their_shared_dims_are_found_together(tmp_path):
    folder = factory_folder(tmp_path, "net", corpus="gru_tagger")
    found = export(folder, "net", inputs=("ids:2x12:int64", "feats:2x12x4"))
    assert found["inputs"] == ["ids", "feats"]
    assert "inputs ids [2, 12], feats [2, 12, 4], as given" in found["notes"]
    assert sorted(map(tuple, found["places"])) == [("feats", 0), ("feats", 1), ("ids", 0), ("ids", 1)]
    assert "batch: dim 0 of ids, dim 0 of feats ran at 2 and 3" in found["notes"]
    assert onnx_dims(tmp_path / "probe.onnx") == {"ids": ["batch", "seq"], "feats": ["batch", "seq", 4]}
    assert found["outputs"] == ["output_0", "output_1"]


def test_a_0_d_input_given_as_sr_colon_colon_int64_is_exported_without_dims(tmp_path):
    folder = factory_folder(tmp_path, "net", corpus="scalar_rate")
    found = export(folder, "net", inputs=("audio:2x256", "sr::int64"))
    assert found["inputs"] == ["audio", "sr"]
    assert found["places"] == [["audio", 0], ["audio", 1]]
    dims = onnx_dims(tmp_path / "probe.onnx")
    assert dims["sr"] == [] and dims["audio"][0] == "batch" and isinstance(dims["audio"][1], str)


# refusals


def test_a_forward_with_two_inputs_is_refused_without_input_naming_both_input_flags(tmp_path):
    folder = factory_folder(tmp_path, "net", corpus="gru_tagger")
    message = refusal(export, folder, "net")
    assert "forward(ids, feats) takes 2 inputs, too many to guess" in message
    assert "--input ids:SHAPE[:DTYPE] --input feats:SHAPE[:DTYPE]" in message
    assert not (tmp_path / "probe.onnx").exists()


def test_a_forward_with_two_inputs_and_one_given_asks_only_for_the_other(tmp_path):
    folder = factory_folder(tmp_path, "net", corpus="gru_tagger")
    message = refusal(export, folder, "net", inputs=("ids:2x12:int64",))
    assert message.endswith("give --input feats:SHAPE[:DTYPE]") and "ids:SHAPE" not in message


def test_an_input_forward_does_not_take_is_refused_by_name(tmp_path):
    folder = factory_folder(tmp_path, "net", corpus="decoder_block")
    message = refusal(export, folder, "net", inputs=("tokens:2x16:int64",))
    assert message == "net.py:build: forward(ids) has no input 'tokens' (--input)"


def test_a_factory_returning_something_other_than_a_module_is_refused(tmp_path):
    folder = factory_folder(tmp_path, "heads", TWO_HEADS)
    message = refusal(export, folder, "heads", "number")
    assert message == "heads.py:number() returned int, not a torch.nn.Module"


def test_a_factory_function_the_file_lacks_is_refused(tmp_path):
    folder = factory_folder(tmp_path, "heads", TWO_HEADS)
    message = refusal(export, folder, "heads", "make")
    assert message == "heads.py has no function or class 'make' (--factory FILE.py:FUNCTION)"


def test_a_factory_file_importing_a_missing_sibling_module_says_so_in_one_line(tmp_path):
    folder = factory_folder(tmp_path, "net", "import layers_beside_it\n\n\ndef build():\n    pass\n")
    message = refusal(export, folder, "net")
    assert message.startswith("net.py imports 'layers_beside_it', which is neither installed nor beside it")
    assert "copy layers_beside_it.py into src/" in message


def test_a_checkpoint_with_other_keys_is_refused_naming_the_missing_and_unexpected_keys(tmp_path):
    folder = factory_folder(tmp_path, "net", corpus="pretrained_classifier")
    torch.save({"head.weight": torch.zeros(6, 32), "head.bias": torch.zeros(6)}, folder / "other.pt")
    message = refusal(export, folder, "net", checkpoint="other.pt")
    assert message.startswith("other.pt does not fit the factory's model: missing keys ")
    assert "classifier.weight" in message and "unexpected keys " in message and "head.bias" in message


def test_a_checkpoint_with_a_tensor_of_another_shape_is_refused_naming_it(tmp_path):
    folder = factory_folder(tmp_path, "heads", TWO_HEADS)
    torch.save(nn.Linear(5, 3).state_dict(), folder / "wide.pt")
    state = {f"lin.{key}": value for key, value in torch.load(folder / "wide.pt").items()}
    torch.save(state, folder / "wide.pt")
    message = refusal(export, folder, "heads", checkpoint="wide.pt")
    assert message == "wide.pt: 'lin.weight' has shape [3, 5], the factory's model has [3, 4]"


def test_a_training_checkpoint_that_fits_is_loaded_and_said_how(tmp_path):
    folder = factory_folder(tmp_path, "net", corpus="pretrained_classifier")
    shutil.copy(CORPUS / "pretrained_classifier" / "checkpoint.pt", folder / "checkpoint.pt")
    found = export(folder, "net", checkpoint="checkpoint.pt")
    weights = next(note for note in found["notes"] if note.startswith("weights from checkpoint.pt"))
    assert "the state_dict under 'state_dict'" in weights and "'module.' prefixes removed" in weights


# init_model


def user_files(tmp_path: Path) -> Path:
    """The corpus classifier as a user holds it: model.py (the factory) beside checkpoint.pt."""
    user = tmp_path / "shapes"
    user.mkdir()
    for name in ("model.py", "checkpoint.pt"):
        shutil.copy(CORPUS / "pretrained_classifier" / name, user / name)
    return user


def test_init_from_a_checkpoint_and_factory_writes_the_spec_the_network_and_the_checkpoint(tmp_path):
    user = user_files(tmp_path)
    done = init_model(
        user / "checkpoint.pt", None, tmp_path / "models", seconds=20, factory=f"{user / 'model.py'}:build"
    )
    folder = tmp_path / "models" / "shapes"
    assert (done.folder, done.name) == (folder, "shapes")
    assert sorted(p.name for p in done.files) == ["checkpoint.pt", "model.py", "model.yaml", "network.py"]
    spec = yaml.safe_load((folder / "model.yaml").read_text())
    assert spec["source"] == {"factory": "network:build", "checkpoint": "checkpoint.pt"}
    assert [(i["name"], i["dims"]) for i in spec["inputs"]] == [("image", ["batch", 3, "height", "width"])]
    assert (folder / "network.py").read_text() == (user / "model.py").read_text()
    assert (folder / "checkpoint.pt").read_bytes() == (user / "checkpoint.pt").read_bytes()
    assert any("the state_dict under 'state_dict'" in note for note in done.notes)
    assert not [p for p in (tmp_path / "models").iterdir() if p.name != "shapes"]  # no scratch left


def test_init_never_overwrites_an_existing_model_yaml(tmp_path):
    user = user_files(tmp_path)
    folder = tmp_path / "models" / "shapes"
    folder.mkdir(parents=True)
    (folder / "model.yaml").write_text("name: mine\n")
    message = refusal(
        init_model,
        user / "checkpoint.pt",
        folder,
        tmp_path / "models",
        factory=f"{user / 'model.py'}:build",
    )
    assert "init never overwrites your files" in message
    assert (folder / "model.yaml").read_text() == "name: mine\n"
    assert sorted(p.name for p in folder.iterdir()) == ["model.yaml"]


def test_init_refuses_a_checkpoint_without_a_factory_in_one_line(tmp_path):
    user = user_files(tmp_path)
    message = refusal(init_model, user / "checkpoint.pt", None, tmp_path / "models")
    assert "holds weights, not the network" in message and "--factory FILE.py:FUNCTION" in message
    assert not (tmp_path / "models").exists()


def test_two_dims_of_different_sizes_that_both_run_get_two_axis_names(tmp_path):
    text = (
        "import torch\n\n\nclass Two(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.scale = torch.nn.Parameter(torch.ones(4))\n\n    def forward(self, words, feats):\n"
        "        return words.float().sum(1, keepdim=True) + (feats * self.scale).sum(1)\n\n\n"
        "def build():\n    return Two()\n"
    )
    folder = factory_folder(tmp_path, "net", text=text)
    result = export(folder, "net", inputs=("words:2x16:int64", "feats:2x8x4"))
    assert result["examples"] == {"batch": 2, "seq": 8, "words_seq": 16}  # the first found keeps the name


def test_an_audio_input_s_samples_axis_is_named_and_its_example_size_kept_for_the_probe(tmp_path):
    folder = factory_folder(tmp_path, "net", corpus="scalar_rate")
    result = export(folder, "net", inputs=("audio:2x16000", "sr::int64"))
    assert result["examples"] == {"batch": 2, "samples": 16000}
