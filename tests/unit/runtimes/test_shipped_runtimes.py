"""The served model runs the runtime modules shipped beside it: model.py, run by the serving environment's
Python with only the version folder and that environment's packages on sys.path (no triton_repo, no
pydantic, no click, no torch; no onnx either, in the serving environment), opens its session through the shipped loader and serves requests;
the template itself sets up no session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from triton_repo.repo.python_model import python_model_files, write_python_model
from triton_repo.runtimes import registry

ROOT = Path(__file__).resolve().parents[3]
SERVE_PYTHON = ROOT / ".venv-serve" / "bin" / "python3"
TEMPLATE = ROOT / "triton_repo" / "repo" / "templates" / "onnx_model.py"

# Runs in the serving environment: a stand-in for triton_python_backend_utils (the stub's module), then
# model.py loaded from the version folder as the python backend loads it, initialized and sent requests.
SERVE_SCRIPT = r"""
import importlib.util, json, os, sys, types

version_dir, site_packages, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.extend([version_dir, site_packages])
import numpy as np
pb = types.ModuleType("triton_python_backend_utils")
class Tensor:
    def __init__(self, name, array): self.name, self.array = name, array
    def as_numpy(self): return self.array
class InferenceResponse:
    def __init__(self, output_tensors, error=None): self.output_tensors, self.error = output_tensors, error
class TritonError:
    INVALID_ARG = 3
    def __init__(self, message, code=None): self.message, self.code = message, code
class Request:
    def __init__(self, x): self.inputs = {"x": Tensor("x", x)}
    def correlation_id(self): return 0
    def flags(self): return 0
pb.Tensor, pb.InferenceResponse, pb.TritonError = Tensor, InferenceResponse, TritonError
pb.get_input_tensor_by_name = lambda request, name: request.inputs.get(name)
pb.triton_string_to_numpy = lambda name: {"TYPE_FP32": np.float32}[name]
sys.modules["triton_python_backend_utils"] = pb

spec = importlib.util.spec_from_file_location("model", os.path.join(version_dir, "model.py"))
model_py = importlib.util.module_from_spec(spec)
spec.loader.exec_module(model_py)
model = model_py.TritonPythonModel()
try:
    model.initialize(args)
except Exception as error:
    print(json.dumps({"initialize": f"{type(error).__name__}: {error}"}))
    sys.exit(0)
x = np.arange(12, dtype=np.float32).reshape(3, 4)
responses = model.execute([Request(x[:1]), Request(x[1:]), Request(np.zeros((5, 4), np.float32))])
session = model.session
report = {
    "outputs": [
        {t.name: [str(t.array.dtype), t.array.tolist()] for t in r.output_tensors} for r in responses[:2]
    ],
    "refused": [responses[2].error.code, responses[2].error.message],
    "session": type(session).__module__,
    "package_importable": importlib.util.find_spec("triton_repo") is not None,
    "forbidden_loaded": sorted(
        {m.split(".")[0] for m in sys.modules} & {"triton_repo", "pydantic", "click", "torch"}
    ),
}
runtime = json.loads(args["model_config"])["parameters"]["runtime"]["string_value"]
if runtime == "onnxruntime":  # the options the served model has always had
    options = session.session.get_session_options()
    report["threads"] = [options.intra_op_num_threads, options.inter_op_num_threads]
    report["log_severity"] = options.log_severity_level
elif runtime == "openvino":
    report["precision"] = session.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    report["threads"] = [int(session.compiled.get_property("INFERENCE_NUM_THREADS"))]
print(json.dumps(report))
"""


def tiny_onnx(path: Path) -> Path:
    """y = x * 2 + 1, x float32 [batch, 4]."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "two"], ["doubled"]),
            helper.make_node("Add", ["doubled", "one"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def serve_args(model_dir: Path, runtime: str, onnx_file: str = "model.onnx") -> dict:
    """What the python backend hands initialize(): the model directory, the version and config.pbtxt as
    JSON, with the parameters the cpu writer sets."""
    parameters = {
        "runtime": runtime,
        "intra_op_threads": "2",
        "onnx_file": onnx_file,
        "shape_ranges": json.dumps({"x": [["batch", 1, 4], None]}),
        **({"inference_precision": "f32"} if runtime == "openvino" else {}),
    }
    config = {
        "max_batch_size": 4,
        "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [4]}],
        "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [4]}],
        "parameters": {key: {"string_value": value} for key, value in parameters.items()},
    }
    return {
        "model_config": json.dumps(config),
        "model_repository": str(model_dir),
        "model_version": "1",
        "model_name": model_dir.name,
    }


def serving_python() -> tuple[Path, str]:
    if not SERVE_PYTHON.exists():
        pytest.skip("no serving environment (.venv-serve): run `make install`")
    purelib = subprocess.run(
        [str(SERVE_PYTHON), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return SERVE_PYTHON, purelib


def serve(version_dir: Path, args: dict, env: dict[str, str] | None = None) -> dict:
    """model.py of `version_dir` run as the python backend runs it, in the serving environment with
    only the version folder and its packages on sys.path (-I -S: no site, no cwd, no PYTHONPATH)."""
    python, purelib = serving_python()
    result = subprocess.run(
        [str(python), "-I", "-S", "-c", SERVE_SCRIPT, str(version_dir), purelib, json.dumps(args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def version_folder(tmp_path: Path, runtime: str) -> Path:
    version_dir = tmp_path / "tiny_fp32" / "1"
    version_dir.mkdir(parents=True)
    tiny_onnx(version_dir / "model.onnx")
    write_python_model(version_dir, runtime)
    return version_dir


@pytest.mark.parametrize("runtime", sorted(registry.RUNTIMES))
def test_the_served_model_runs_its_shipped_runtime_without_the_package(tmp_path, runtime):
    version_dir = version_folder(tmp_path, runtime)
    cache = tmp_path / "ov-cache"
    report = serve(
        version_dir, serve_args(version_dir.parent, runtime), env={"TRITON_REPO_OV_CACHE": str(cache)}
    )
    assert "initialize" not in report, f"the served model does not load: {report.get('initialize')}"
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert report["outputs"] == [
        {"y": ["float32", (x[:1] * 2 + 1).tolist()]},
        {"y": ["float32", (x[1:] * 2 + 1).tolist()]},
    ]
    assert report["refused"][0] == 3 and "dim 0 (axis 'batch') is 5, outside 1..4" in report["refused"][1]
    assert report["session"] == f"triton_repo_shipped_{registry.RUNTIMES[runtime].module}"
    assert report["package_importable"] is False and report["forbidden_loaded"] == []
    if runtime == "onnxruntime":
        assert report["threads"] == [2, 1]
        assert report["log_severity"] != 4  # the served model keeps ONNX Runtime's warnings in the log
    elif runtime == "openvino":
        assert report["precision"] == "f32" and report["threads"] == [2]
        assert any(cache.iterdir()), "OpenVINO keeps its compiled model in TRITON_REPO_OV_CACHE"


def test_a_tune_candidate_loads_the_runtime_beside_the_published_onnx_file(tmp_path):
    """tune sends model.py alone and names the published ONNX file by its absolute path."""
    published = version_folder(tmp_path / "published", "onnxruntime")
    candidate = tmp_path / "candidate" / "tiny_fp32__tune0" / "1"
    candidate.mkdir(parents=True)
    (candidate / "model.py").write_bytes((published / "model.py").read_bytes())
    args = serve_args(candidate.parent, "onnxruntime", onnx_file=str(published / "model.onnx"))
    assert serve(candidate, args)["outputs"][0] == {"y": ["float32", [[1.0, 3.0, 5.0, 7.0]]]}


def test_a_version_folder_without_its_runtime_file_fails_to_load_naming_it(tmp_path):
    version_dir = version_folder(tmp_path, "openvino")
    (version_dir / "openvino_cpu.py").unlink()
    report = serve(version_dir, serve_args(version_dir.parent, "openvino"))
    assert report["initialize"].startswith(f"FileNotFoundError: {version_dir / 'openvino_cpu.py'} is missing")


def test_a_runtime_the_registry_does_not_know_fails_to_load_naming_the_known_ones(tmp_path):
    version_dir = version_folder(tmp_path, "onnxruntime")
    report = serve(version_dir, serve_args(version_dir.parent, "tvm"))
    known = ", ".join(sorted(registry.RUNTIMES))
    assert report["initialize"] == f"ValueError: unknown runtime 'tvm': the runtimes are {known}"


def test_the_template_sets_up_no_session_of_its_own():
    source = TEMPLATE.read_text()
    for setup in ("InferenceSession(", "SessionOptions(", "Core()", "compile_model(", "CACHE_DIR"):
        assert setup not in source, setup
    assert "import onnxruntime" not in source and "import openvino" not in source


@pytest.mark.parametrize("runtime", sorted(registry.RUNTIMES))
def test_a_version_folder_gets_model_py_and_exactly_its_runtimes_files_byte_for_byte(runtime):
    files = python_model_files(runtime)
    assert list(files) == ["model.py", *registry.RUNTIMES[runtime].files]
    assert files["model.py"] == TEMPLATE.read_bytes()
    for name in registry.RUNTIMES[runtime].files:
        assert files[name] == (Path(registry.__file__).parent / name).read_bytes()


def test_the_builds_onnxruntime_loader_is_the_served_one_with_quiet_logs(tmp_path):
    from triton_repo.runtimes import onnxruntime_cpu

    path = str(tiny_onnx(tmp_path / "m.onnx"))
    measured, served = onnxruntime_cpu.load_measured(path, 1), onnxruntime_cpu.load(path, 1)
    assert measured.session.get_session_options().log_severity_level == 4
    assert served.session.get_session_options().log_severity_level != 4
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(measured.run(None, {"x": x})[0], served.run(["y"], {"x": x})[0])


OPENVINO_LOADERS = """
import json, os, sys
from triton_repo.runtimes import openvino_cpu

path, cache = sys.argv[1], os.environ["TRITON_REPO_OV_CACHE"]
measured = openvino_cpu.load_measured(path, 1, "bf16")
cached_by_build = os.path.isdir(cache)
served = openvino_cpu.load(path, 1, "f32")
x = {"x": __import__("numpy").ones((2, 4), "float32")}
print(json.dumps({
    "measured_precision": measured.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
    "cached_by_build": cached_by_build,
    "cached_by_served": bool(os.listdir(cache)),
    "same": measured.run(None, x)[0].tolist() == served.run(["y"], x)[0].tolist(),
}))
"""


def test_the_builds_openvino_loader_caps_the_precision_and_keeps_no_cache(tmp_path):
    """The served model compiles at the precision its config names, into the cache; the build measures at
    the precision the CPU can give (bf16 is f32 under an AVX2-only ONEDNN_MAX_CPU_ISA) and caches nothing.
    In a child process: OpenVINO loaded into the test process crashes a later test's Go library (helm)."""
    path = tiny_onnx(tmp_path / "m.onnx")
    env = {**os.environ, "TRITON_REPO_OV_CACHE": str(tmp_path / "cache"), "ONEDNN_MAX_CPU_ISA": "AVX2"}
    result = subprocess.run(
        [sys.executable, "-c", OPENVINO_LOADERS, str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "measured_precision": "f32",
        "cached_by_build": False,
        "cached_by_served": True,
        "same": True,
    }
