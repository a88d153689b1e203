"""The bad-input catalogue: every way a user can hand the tool something wrong, one case each.

Every CLI case runs the real `triton-repo` in a child process against a repository that was already
built, and every client case sends a request to the real tritonserver serving it. Each must fail with
exactly one error line that names the file/field/model/tensor and says what is wrong, exit 2 (an
exception for the client library), and leave the repository byte for byte as it was.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import PYDANTIC_PHRASES
from tests.integration.conftest import (
    TINY_MODEL_PY,
    TINY_SPEC,
    run_cli,
    tree_hash,
    write_tiny_model,
)

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Setup:
    """One case's sandbox: a fresh models folder holding `tiny`, a folder outside it, the shared repository."""

    models: Path
    outside: Path
    repository: Path
    work_dir: Path
    built_work_dir: Path  # the module build's work dir (its model.onnx is reused as an ONNX source)

    @property
    def tiny(self) -> Path:
        return self.models / "tiny"

    def spec(self, *replacements: tuple[str, str]) -> None:
        """Rewrite tiny's model.yaml with each (old, new) replacement, which must apply."""
        text = TINY_SPEC
        for old, new in replacements:
            assert old in text, old
            text = text.replace(old, new)
        (self.tiny / "model.yaml").write_text(text)

    def build_args(self, *models: str) -> list[str]:
        return [
            "build",
            *(models or [str(self.tiny)]),
            "--repository",
            str(self.repository),
            "--work-dir",
            str(self.work_dir),
        ]


@pytest.fixture()
def setup(tiny_served, tmp_path) -> Setup:
    models = tmp_path / "models"
    write_tiny_model(models)
    outside = tmp_path / "outside"
    outside.mkdir()
    return Setup(models, outside, tiny_served.repository, tmp_path / "build", tiny_served.work_dir)


def _error_line(stderr: str) -> str:
    """The one error line; progress lines ('✓ step') may precede it, nothing else may appear."""
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("✓")]
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    return lines[0]


# --- helpers that make bad files -------------------------------------------------------------------


def _tiny_state_dict() -> dict:
    namespace: dict = {}
    exec(compile(TINY_MODEL_PY, "tiny_model", "exec"), namespace)  # noqa: S102 - the test's own model
    return {key: value.clone() for key, value in namespace["build"]().state_dict().items()}


def _save_checkpoint(path: Path, state: dict) -> None:
    import torch

    torch.save(state, path)


class _RunsCode:
    """A pickled object whose unpickling calls a function: what weights_only=True must refuse."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/triton_repo_pwned",))


def _onnx_with_external_data(setup: Setup, location: str, data_file: Path) -> None:
    """tiny's exported graph saved as tiny.onnx in the model folder, its weights in `data_file`,
    every tensor's external_data location rewritten to `location`."""
    import onnx

    model = onnx.load(str(setup.built_work_dir / "tiny" / "model.onnx"))
    scratch = setup.outside / "scratch"
    scratch.mkdir(exist_ok=True)
    onnx.save_model(
        model,
        str(scratch / "tiny.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    model = onnx.load(str(scratch / "tiny.onnx"), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(model, str(setup.tiny / "tiny.onnx"))
    data_file.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(scratch / "weights.bin", data_file)
    shutil.rmtree(scratch)


def _onnx_source(setup: Setup) -> None:
    setup.spec(('source: {factory: "model:build"}', "source: {onnx: tiny.onnx}"))


def _discovered_symlink_folder(setup: Setup) -> list[str]:
    """`build --models-dir models` where models/evil is a symlink to a model folder elsewhere."""
    evil = write_tiny_model(setup.outside, name="evil")
    (setup.models / "evil").symlink_to(evil, target_is_directory=True)
    return ["build", "--models-dir", str(setup.models), *setup.build_args()[2:]]


# --- the CLI catalogue ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CliCase:
    id: str
    prepare: Callable[[Setup], list[str]]  # writes the bad input, returns the CLI arguments
    expected: tuple[str, ...]  # substrings of the one error line


def _spec_case(id: str, expected: tuple[str, ...], *replacements: tuple[str, str]) -> CliCase:
    def prepare(setup: Setup) -> list[str]:
        setup.spec(*replacements)
        return setup.build_args()

    return CliCase(id, prepare, ("tiny/model.yaml", *expected))


def _files_case(id: str, expected: tuple[str, ...], make: Callable[[Setup], None]) -> CliCase:
    def prepare(setup: Setup) -> list[str]:
        make(setup)
        return setup.build_args()

    return CliCase(id, prepare, expected)


def _checkpoint_spec(setup: Setup, name: str = "weights.pt") -> None:
    setup.spec(
        ('source: {factory: "model:build"}', f'source: {{factory: "model:build", checkpoint: {name}}}')
    )


def _bad_checkpoint(state: Callable[[], object]) -> Callable[[Setup], None]:
    def make(setup: Setup) -> None:
        _checkpoint_spec(setup)
        _save_checkpoint(setup.tiny / "weights.pt", state())

    return make


def _truncated_checkpoint(setup: Setup) -> None:
    _checkpoint_spec(setup)
    _save_checkpoint(setup.outside / "full.pt", _tiny_state_dict())
    (setup.tiny / "weights.pt").write_bytes((setup.outside / "full.pt").read_bytes()[:300])


def _without_head_bias() -> dict:
    state = _tiny_state_dict()
    del state["head.bias"]
    return state


def _with_extra_key() -> dict:
    import torch

    return {**_tiny_state_dict(), "head.scale": torch.ones(1)}


def _with_wrong_shape() -> dict:
    import torch

    return {**_tiny_state_dict(), "embed.weight": torch.zeros(49, 8)}


def _symlink_in_folder(name: str, target_name: str, content: str | None = None):
    """tiny/<name> becomes a symlink to a file of the same content outside the models folder."""

    def make(setup: Setup) -> None:
        original = setup.tiny / name
        target = setup.outside / target_name
        target.write_text(content if content is not None else original.read_text())
        original.unlink(missing_ok=True)
        original.symlink_to(target)

    return make


def _sample_npz_symlink(setup: Setup) -> None:
    np.savez(
        setup.outside / "sample.npz", ids=np.zeros((2, 3), np.int64), features=np.zeros((2, 4), np.float32)
    )
    (setup.tiny / "sample.npz").symlink_to(setup.outside / "sample.npz")
    setup.spec(('data: {sample: "model:sample"}', "data: {sample: sample.npz}"))


def _onnx_symlink(setup: Setup) -> None:
    shutil.copyfile(setup.built_work_dir / "tiny" / "model.onnx", setup.outside / "tiny.onnx")
    (setup.tiny / "tiny.onnx").symlink_to(setup.outside / "tiny.onnx")
    _onnx_source(setup)


def _onnx_external(location: Callable[[Setup], str], data_file: Callable[[Setup], Path]):
    def make(setup: Setup) -> None:
        _onnx_with_external_data(setup, location(setup), data_file(setup))
        _onnx_source(setup)

    return make


def _onnx_external_symlink(setup: Setup) -> None:
    """The location is a plain file name, but that file is a symlink to weights outside the folder."""
    _onnx_with_external_data(setup, "weights.bin", setup.outside / "weights.bin")
    (setup.tiny / "weights.bin").symlink_to(setup.outside / "weights.bin")
    _onnx_source(setup)


def _not_onnx(setup: Setup) -> None:
    (setup.tiny / "tiny.onnx").write_bytes(b"this is not a protobuf \x00\xff\xfe")
    _onnx_source(setup)


def _model_yaml_list(setup: Setup) -> None:
    (setup.tiny / "model.yaml").write_text("- name: tiny\n- source: x\n")


def _model_reference(
    reference: Callable[[Setup], str], command: str = "build"
) -> Callable[[Setup], list[str]]:
    def prepare(setup: Setup) -> list[str]:
        ref = reference(setup)
        if command == "build":
            return setup.build_args(ref)
        return [command, ref, "--work-dir", str(setup.work_dir)]

    return prepare


def _served_cli(command: str, *args: str) -> Callable[[Setup], list[str]]:
    def prepare(setup: Setup) -> list[str]:
        return [
            command,
            *args,
            "--repository",
            str(setup.repository),
            "--work-dir",
            str(setup.built_work_dir),
        ]

    return prepare


def _outside_named_folder(setup: Setup) -> str:
    """An absolute path to a real model folder that the models folder reaches only through a symlink."""
    evil = write_tiny_model(setup.outside, name="evil")
    (setup.models / "evil").symlink_to(evil, target_is_directory=True)
    return str(setup.models / "evil")


CLI_CASES = [
    # --- the spec file itself
    _spec_case(
        "malformed_yaml",
        ("malformed YAML at line",),
        ("inputs:\n", "inputs:\n  - {name: ids, dtype: int64, dims: [batch, seq]\n"),
    ),
    CliCase(
        "top_level_not_a_mapping",
        lambda s: (_model_yaml_list(s), s.build_args())[1],
        ("tiny/model.yaml", "expected a mapping", "got list"),
    ),
    _spec_case(
        "wrong_type_string_for_int",
        ("triton.instance_count", "'many' is not allowed: give a whole number"),
        ("instance_count: 1", "instance_count: many"),
    ),
    _spec_case(
        "wrong_type_bool_for_dim",
        ("inputs[1].dims[1]", "True is not allowed: a dim is a positive whole number or the name of an axis"),
        ("dims: [batch, 4]}", "dims: [batch, true]}"),
    ),
    _spec_case(
        "wrong_type_list_for_dtype",
        ("inputs[0].dtype",),
        ("dtype: int64", "dtype: [int64]"),
    ),
    _spec_case(
        "unknown_dtype", ("inputs[1].dtype", "'float8' is not allowed"), ("dtype: float32", "dtype: float8")
    ),
    _spec_case("unknown_top_level_key", ("bogus: unknown key",), ("name: tiny", "name: tiny\nbogus: 1")),
    _spec_case(
        "unknown_nested_key",
        ("triton.dynamic_batching.max_queue_delay: unknown key",),
        ("max_queue_delay_microseconds: 2000", "max_queue_delay: 2000"),
    ),
    _spec_case(
        "missing_required_field", ("data: required field is missing",), ('data: {sample: "model:sample"}', "")
    ),
    _spec_case(
        "zero_dim", ("inputs[1].dims", "dim 0 is not allowed"), ("dims: [batch, 4]}", "dims: [batch, 0]}")
    ),
    _spec_case(
        "negative_dim",
        ("inputs[1].dims", "dim -4 is not allowed"),
        ("dims: [batch, 4]}", "dims: [batch, -4]}"),
    ),
    _spec_case("zero_axis_max", ("axes.batch.max: 0 is not allowed",), ("max: 16}", "max: 0}")),
    _spec_case(
        "negative_axis_min", ("axes.seq.min: -1 is not allowed",), ("seq: {min: 1,", "seq: {min: -1,")
    ),
    _spec_case(
        "min_greater_than_opt",
        ("axes.batch", "min 8, opt 4, max 16 must satisfy min <= opt <= max"),
        ("batch: {min: 1, opt: 4", "batch: {min: 8, opt: 4"),
    ),
    _spec_case(
        "opt_greater_than_max",
        ("axes.seq", "min 1, opt 64, max 32 must satisfy min <= opt <= max"),
        ("opt: 6, max: 32", "opt: 64, max: 32"),
    ),
    _spec_case(
        "max_batch_larger_than_profile",
        ("max_batch_size 64 is larger than axes.batch.max 16",),
        ("name: tiny", "name: tiny\nmax_batch_size: 64"),
    ),
    _spec_case(
        "preferred_batch_larger_than_max_batch",
        ("preferred_batch_sizes: 32 is larger than max_batch_size 16",),
        ("preferred_batch_sizes: [4, 8]", "preferred_batch_sizes: [4, 32]"),
    ),
    _spec_case(
        "undeclared_axis",
        ("inputs[1] 'features': dim 'width' is not a declared axis",),
        ("dims: [batch, 4]", "dims: [batch, width]"),
    ),
    _spec_case(
        "name_with_dotdot",
        ("name: '../tiny' is not allowed", "use lower case letters, digits and '_', starting with a letter"),
        ("name: tiny", "name: ../tiny"),
    ),
    _spec_case(
        "name_not_the_folder",
        ("name: 'other' must equal the model folder name 'tiny'",),
        ("name: tiny", "name: other"),
    ),
    # --- files the spec names
    _spec_case(
        "missing_factory_function",
        ("source.factory", "'model' has no function 'nothing'"),
        ('factory: "model:build"', 'factory: "model:nothing"'),
    ),
    _spec_case(
        "missing_factory_module",
        ("source.factory", "module 'nomodule' not found"),
        ('factory: "model:build"', 'factory: "nomodule:build"'),
    ),
    _spec_case(
        "missing_data_function",
        ("data.sample", "'model' has no function 'nothing'"),
        ('data: {sample: "model:sample"}', 'data: {sample: "model:nothing"}'),
    ),
    _spec_case(
        "missing_data_file",
        ("data.sample", "file 'sample.npz' does not exist"),
        ('data: {sample: "model:sample"}', "data: {sample: sample.npz}"),
    ),
    _spec_case(
        "data_file_outside_with_dotdot",
        ("data.sample", "'../other/sample.npz' points outside the model folder"),
        ('data: {sample: "model:sample"}', "data: {sample: ../other/sample.npz}"),
    ),
    _spec_case(
        "data_file_absolute_path",
        ("data.sample", "'/etc/sample.npz' points outside the model folder"),
        ('data: {sample: "model:sample"}', "data: {sample: /etc/sample.npz}"),
    ),
    _files_case(
        "data_file_symlink_outside",
        ("tiny/model.yaml", "data.sample", "'sample.npz' points outside the model folder"),
        _sample_npz_symlink,
    ),
    _files_case(
        "factory_module_symlink_outside",
        ("tiny/model.yaml", "model.py is a symlink to", "outside the model folder"),
        _symlink_in_folder("model.py", "model.py"),
    ),
    _files_case(
        "model_yaml_symlink_outside",
        ("tiny/model.yaml", "outside the model folder"),
        _symlink_in_folder("model.yaml", "model.yaml", TINY_SPEC),
    ),
    CliCase(
        "model_folder_symlink_outside_models_dir",
        _discovered_symlink_folder,
        ("models/evil", "symlink", "outside the models folder"),
    ),
    CliCase(
        "model_folder_symlink_named_on_command_line",
        _model_reference(_outside_named_folder),
        ("models/evil", "symlink", "outside the models folder"),
    ),
    CliCase(
        "model_name_with_dotdot",
        _model_reference(lambda s: "../../tiny", command="debug-int8"),
        ("../../tiny", "not a model folder"),
    ),
    CliCase(
        "model_name_with_slash",
        _model_reference(lambda s: "tiny/extra", command="search-precision"),
        ("tiny/extra", "not a model folder"),
    ),
    CliCase(
        "model_absolute_path_without_spec",
        _model_reference(lambda s: str(s.outside), command="debug-int8"),
        ("no such spec file",),
    ),
    # --- ONNX sources
    _files_case(
        "onnx_source_symlink_outside",
        ("tiny/model.yaml", "source.onnx", "'tiny.onnx' points outside the model folder"),
        _onnx_symlink,
    ),
    _files_case(
        "onnx_source_not_onnx", ("tiny/model.yaml", "source.onnx", "not a valid ONNX file"), _not_onnx
    ),
    _files_case(
        "onnx_external_data_absolute",
        ("tiny/model.yaml", "source.onnx", "external data", "outside", "weights.bin"),
        _onnx_external(lambda s: str(s.outside / "weights.bin"), lambda s: s.outside / "weights.bin"),
    ),
    _files_case(
        "onnx_external_data_dotdot",
        ("tiny/model.yaml", "source.onnx", "external data", "'../weights.bin'", "outside"),
        _onnx_external(lambda s: "../weights.bin", lambda s: s.models / "weights.bin"),
    ),
    _files_case(
        "onnx_external_data_symlink_outside",
        ("tiny/model.yaml", "source.onnx", "external data", "'weights.bin'", "outside"),
        _onnx_external_symlink,
    ),
    _files_case(
        "onnx_external_data_missing",
        ("tiny/model.yaml", "source.onnx", "external data", "'weights.bin'", "does not exist"),
        _onnx_external(lambda s: "weights.bin", lambda s: s.outside / "unused.bin"),
    ),
    # --- checkpoints
    _files_case(
        "checkpoint_with_pickled_code",
        ("tiny/model.yaml", "source.checkpoint", "'weights.pt'", "not a weights-only checkpoint", "system"),
        _bad_checkpoint(lambda: {"head.weight": _RunsCode()}),
    ),
    _files_case(
        "checkpoint_not_a_torch_file",
        ("tiny/model.yaml", "source.checkpoint", "'weights.pt'", "not a weights-only checkpoint"),
        lambda s: (_checkpoint_spec(s), (s.tiny / "weights.pt").write_bytes(b"garbage")),
    ),
    _files_case(
        "checkpoint_truncated",
        ("tiny/model.yaml", "source.checkpoint", "'weights.pt'", "cannot be loaded by torch.load"),
        _truncated_checkpoint,
    ),
    _files_case(
        "checkpoint_missing_key",
        ("tiny/model.yaml", "source.checkpoint", "missing", "head.bias"),
        _bad_checkpoint(_without_head_bias),
    ),
    _files_case(
        "checkpoint_unexpected_key",
        ("tiny/model.yaml", "source.checkpoint", "unexpected", "head.scale"),
        _bad_checkpoint(_with_extra_key),
    ),
    _files_case(
        "checkpoint_wrong_shape",
        ("tiny/model.yaml", "source.checkpoint", "embed.weight", "[49, 8]", "[50, 8]"),
        _bad_checkpoint(_with_wrong_shape),
    ),
    _files_case(
        "checkpoint_not_a_state_dict",
        ("tiny/model.yaml", "source.checkpoint", "not a state_dict"),
        _bad_checkpoint(lambda: [1, 2, 3]),
    ),
    _files_case(
        "checkpoint_missing_file",
        ("tiny/model.yaml", "source.checkpoint", "file 'weights.pt' does not exist"),
        _checkpoint_spec,
    ),
    _spec_case(
        "checkpoint_outside_folder",
        ("source.checkpoint", "'../weights.pt' points outside the model folder"),
        ('source: {factory: "model:build"}', 'source: {factory: "model:build", checkpoint: ../weights.pt}'),
    ),
    _spec_case(
        "checkpoint_with_onnx_source",
        ("source", "checkpoint", "factory"),
        ('source: {factory: "model:build"}', "source: {onnx: tiny.onnx, checkpoint: weights.pt}"),
    ),
    # --- model names given to the commands that talk to the served repository
    CliCase(
        "infer_model_name_with_dotdot",
        _served_cli("infer", "--model", "../tiny_fp32"),
        ("--model ../tiny_fp32", "not in", "manifest.json"),
    ),
    CliCase(
        "bench_model_name_absolute",
        _served_cli("bench", "/etc/passwd"),
        ("'/etc/passwd' is neither a published model nor a source model",),
    ),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[case.id for case in CLI_CASES])
def test_bad_input_exits_2_with_one_line_naming_it_and_leaves_the_repository_unchanged(setup, case):
    before = tree_hash(setup.repository)
    manifest_before = (setup.repository / "manifest.json").read_text()
    args = case.prepare(setup)
    result = run_cli(*args)
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    line = _error_line(result.stderr)
    for expected in case.expected:
        assert expected in line, f"{expected!r} not in {line!r}"
    for phrase in PYDANTIC_PHRASES:  # the spec's language, never pydantic's
        assert phrase not in line, f"pydantic's wording {phrase!r} reached the user: {line}"
    assert tree_hash(setup.repository) == before
    assert (setup.repository / "manifest.json").read_text() == manifest_before
    assert not Path("/tmp/triton_repo_pwned").exists(), "a checkpoint ran code while loading"


# --- clients against the real server ----------------------------------------------------------------


def _good_inputs(batch: int = 2, seq: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "ids": rng.integers(0, 50, size=(batch, seq)).astype(np.int64),
        "features": rng.standard_normal((batch, 4)).astype(np.float32),
    }


CLIENT_CASES = {
    "wrong_shape": (
        lambda: {**_good_inputs(), "features": np.zeros((2, 5), np.float32)},
        ("tiny_fp32", "features", "Expected [-1,4], got [2,5]", "features FP32 [2, 5]"),
    ),
    "wrong_rank": (
        lambda: {**_good_inputs(), "ids": np.zeros((2,), np.int64)},
        ("tiny_fp32", "unexpected shape for input 'ids'", "ids INT64 [2]"),
    ),
    "wrong_dtype": (
        lambda: {**_good_inputs(), "features": np.zeros((2, 4), np.int32)},
        ("tiny_fp32", "features", "INT32", "FP32"),
    ),
    "dtype_the_protocol_cannot_carry": (
        lambda: {**_good_inputs(), "features": np.zeros((2, 4), np.complex64)},
        ("tiny_fp32", "features", "complex64"),
    ),
    "unknown_input_name": (
        lambda: {**_good_inputs(), "feature": np.zeros((2, 4), np.float32)},
        ("tiny_fp32", "unknown input 'feature'", "the model takes ids INT64 [-1, -1], features FP32 [-1, 4]"),
    ),
    "missing_input": (
        lambda: {"ids": _good_inputs()["ids"]},
        ("tiny_fp32", "missing required input(s) ['features']"),
    ),
    "batch_larger_than_max_batch_size": (
        lambda: _good_inputs(batch=17),
        ("tiny_fp32", "batch-size must be <= 16", "ids INT64 [17, 3]"),
    ),
    "different_batch_sizes": (
        lambda: {**_good_inputs(batch=2), "features": np.zeros((3, 4), np.float32)},
        ("tiny_fp32", "batch size does not match", "features FP32 [3, 4]"),
    ),
}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("case", list(CLIENT_CASES))
def test_bad_request_fails_at_once_with_one_line_naming_model_and_tensor(tiny_served, protocol, case):
    from triton_repo.clients.triton_client import RequestRefused, TritonClient

    make_inputs, expected = CLIENT_CASES[case]
    before = tree_hash(tiny_served.repository)
    port = tiny_served.grpc_port if protocol == "grpc" else tiny_served.http_port
    client = TritonClient(protocol, f"127.0.0.1:{port}", timeout_s=10)
    try:
        with pytest.raises(RequestRefused) as raised:
            client.infer("tiny_fp32", make_inputs(), ["pooled", "scores"])
        assert client.retries == 0  # a bad request is never retried
    finally:
        client.close()
    message = str(raised.value)
    assert "\n" not in message.strip(), message
    assert raised.value.exit_code == 2  # a user error, as the CLI reports it
    for text in expected:
        assert text in message, f"{text!r} not in {message!r}"
    assert tree_hash(tiny_served.repository) == before


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("tiny_fp64", "unknown model: 'tiny_fp64'"),
        ("../tiny_fp32", "model '../tiny_fp32': not a Triton model name"),
    ],
    ids=["unknown_model", "model_name_with_dotdot"],
)
def test_unknown_model_fails_at_once_naming_it(tiny_served, protocol, model, expected):
    from triton_repo.clients.triton_client import RequestRefused, TritonClient

    port = tiny_served.grpc_port if protocol == "grpc" else tiny_served.http_port
    client = TritonClient(protocol, f"127.0.0.1:{port}", timeout_s=10)
    try:
        with pytest.raises(RequestRefused) as raised:
            client.infer(model, _good_inputs(), ["pooled"])
        assert client.retries == 0
    finally:
        client.close()
    message = str(raised.value)
    assert "\n" not in message.strip(), message
    assert expected in message, message


def test_the_served_model_still_answers_after_the_bad_requests(tiny_served):
    """The catalogue's requests left the server healthy: a good request still gets its answer."""
    from triton_repo.clients.triton_client import TritonClient

    client = TritonClient("grpc", f"127.0.0.1:{tiny_served.grpc_port}", timeout_s=10)
    try:
        answer = client.infer("tiny_fp32", _good_inputs(), ["pooled", "scores"])
    finally:
        client.close()
    assert answer["pooled"].shape == (2, 8) and answer["scores"].shape == (2, 3)
    assert json.loads((tiny_served.repository / "manifest.json").read_text())["models"].keys() == {
        "tiny_fp32"
    }
