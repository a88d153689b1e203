"""Built artifacts run in a worker process of the serving runtime: a crash there is a refusal, not the end."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.helpers import artifact_runtime
from triton_repo.builders.precision.lowered import describe_lowered, lowered_op_types
from triton_repo.core.errors import TritonRepoError
from triton_repo.runtimes.isolated import ArtifactRunFailed, IsolatedSession, Runtime, call_in_child


def double_onnx(path: Path, dtype: int = TensorProto.FLOAT) -> Path:
    """y = x * 2 with a dynamic batch."""
    two = numpy_helper.from_array(
        np.array([2.0], dtype=np.float16 if dtype == TensorProto.FLOAT16 else np.float32), "two"
    )
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"], name="double")],
        "g",
        [helper.make_tensor_value_info("x", dtype, ["batch", 3])],
        [helper.make_tensor_value_info("y", dtype, ["batch", 3])],
        [two],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_worker_runs_all_rows_in_batches_and_reports_its_runtime(tmp_path):
    runtime = artifact_runtime()
    assert runtime.label.startswith("ONNX Runtime ")
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    with IsolatedSession(runtime, double_onnx(tmp_path / "m.onnx"), threads=1) as session:
        assert (session.input_names, session.output_names) == (["x"], ["y"])
        np.testing.assert_array_equal(session.run({"x": x}, batch=4)["y"], x * 2)
        session.store("feed", {"x": x})
        times = session.time("feed", 3)
    assert len(times) == 3 and all(t > 0 for t in times)


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL], ids=["SIGSEGV", "SIGKILL (out of memory)"])
def test_a_worker_that_dies_is_a_refusal_naming_runtime_signal_and_file(tmp_path, sig):
    runtime = artifact_runtime()
    session = IsolatedSession(runtime, double_onnx(tmp_path / "model.fp16.onnx"))
    os.kill(session._process.pid, sig)  # what a runtime crash or the kernel's OOM killer does to it
    with pytest.raises(ArtifactRunFailed) as info:
        session.run({"x": np.ones((2, 3), np.float32)})
    session.close()
    assert info.value.crashed and info.value.reason == f"crashed ({sig.name})"
    assert str(info.value).startswith(f"{runtime.label} crashed ({sig.name}) running model.fp16.onnx")


def test_a_runtime_error_is_a_refusal_and_the_worker_keeps_serving(tmp_path):
    with IsolatedSession(artifact_runtime(), double_onnx(tmp_path / "m.onnx")) as session:
        with pytest.raises(ArtifactRunFailed) as info:
            session.run({"x": np.ones((2, 5), np.float32)})  # wrong width
        assert not info.value.crashed and info.value.reason.startswith("failed: ")
        assert "\n" not in str(info.value)
        np.testing.assert_array_equal(session.run({"x": np.ones((1, 3), np.float32)})["y"], [[2, 2, 2]])


def test_a_graph_the_runtime_cannot_load_fails_when_opened(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not an onnx file")
    with pytest.raises(ArtifactRunFailed, match=r"failed: .*broken\.onnx"):
        IsolatedSession(artifact_runtime(), path)


def test_a_runtime_environment_that_does_not_start_is_named(tmp_path):
    with pytest.raises(TritonRepoError, match="the inference runtime does not start"):
        _ = Runtime(tmp_path / "no-such-python").label


def _segfault() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def test_call_in_child_turns_a_crash_into_a_refusal():
    with pytest.raises(ArtifactRunFailed, match=r"crashed \(SIGSEGV\) comparing it"):
        call_in_child("comparing it", _segfault)
    assert call_in_child("adding", max, 2, 5) == 5


def test_lowered_op_types_name_what_an_fp16_artifact_computes_in_fp16(tmp_path):
    half = double_onnx(tmp_path / "half.onnx", TensorProto.FLOAT16)
    assert lowered_op_types(half) == ("FP16", {"Mul": 1})
    assert describe_lowered(half) == "it has Mul in FP16"
    assert describe_lowered(double_onnx(tmp_path / "full.onnx")) == "it computes nothing in lower precision"


@pytest.mark.parametrize("runner", ["ov-f32", "ov-bf16"])
def test_openvino_runs_an_artifact_at_its_inference_precision(tmp_path, runner):
    from triton_repo.runtimes.isolated import RUNNERS

    runtime = artifact_runtime()
    if not runtime.has(RUNNERS[runner]):
        pytest.skip("OpenVINO is not installed in the serving environment")
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    with IsolatedSession(runtime, double_onnx(tmp_path / "m.onnx"), 1, RUNNERS[runner]) as session:
        np.testing.assert_allclose(session.run({"x": x})["y"], x * 2, rtol=1e-2)
    assert runtime.label_of(RUNNERS[runner]).startswith("OpenVINO ") and runner[3:] in runtime.label_of(
        RUNNERS[runner]
    )
