"""A detector's ensemble: an encoded image letterboxed into the model, its raw head decoded into labelled
boxes on the client's image by `<name>_postprocess`, which runs the accuracy gate's own decode.py."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import minimal_spec, write_spec
from onnx import TensorProto, helper
from PIL import Image

from tests.helpers import artifact_runtime
from triton_repo.core import decode
from triton_repo.core.errors import SpecError
from triton_repo.core.golden import load_raw_golden
from triton_repo.core.spec import Tolerance, load_spec
from triton_repo.repo.config import cpu_model_config, parse_config, to_text
from triton_repo.repo.ensemble import stage_ensemble
from triton_repo.repo.staging import StagingRequest
from triton_repo.repo.templates import preprocessing

# The tiny detector's head, whatever the image: [1, 4 + 2 classes, 4 anchors], cx, cy, w, h in the 32 x 32
# input's pixels. Anchor 0: class 1 at 0.9; anchor 1 overlaps it (suppressed); anchor 2: class 0 at 0.6;
# anchor 3: under the threshold.
HEAD = np.array(
    [
        [16, 17, 6, 28],  # cx
        [16, 16, 24, 4],  # cy
        [8, 8, 4, 4],  # w
        [8, 8, 4, 4],  # h
        [0.0, 0.0, 0.6, 0.1],  # class 0
        [0.9, 0.8, 0.0, 0.0],  # class 1
    ],
    np.float32,
)[None]


def tiny_detector_onnx(path: Path) -> None:
    """output0 = HEAD + 0 * mean(images): the same head for every image, one per batch row."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=1, axes=[1, 2, 3]),
            helper.make_node("Reshape", ["mean", "shape"], ["per_row"]),
            helper.make_node("Mul", ["per_row", "zero"], ["nothing"]),
            helper.make_node("Add", ["nothing", "head"], ["output0"]),
        ],
        "tiny_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 6, 4])],
        initializer=[
            helper.make_tensor("shape", TensorProto.INT64, [3], [-1, 1, 1]),
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("head", TensorProto.FLOAT, [1, 6, 4], HEAD.reshape(-1).tolist()),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def detector_dict(**ensemble) -> dict:
    data = minimal_spec("det")
    data["axes"] = {"batch": {"min": 1, "opt": 2, "max": 4}}
    data["inputs"] = [{"name": "images", "dtype": "float32", "dims": ["batch", 3, 32, 32], "format": "NCHW"}]
    data["outputs"] = [{"name": "output0", "dtype": "float32", "dims": ["batch", 6, 4]}]
    data["data"] |= {"eval": "eval.npz"}
    data["accuracy"] = {"metric": "detection", "detection": {"layout": "channels_first"}}
    data["ensemble"] = {
        "preprocess": {"kind": "letterbox", "output": "images", "size": 32},
        "postprocess": {"kind": "detections", "labels": "labels.txt"},
        "samples": "model:ensemble_samples",
        **ensemble,
    }
    return data


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def detector(tmp_path):
    loaded = load_spec(write_spec(tmp_path / "models", detector_dict()))
    (loaded.folder / "model.py").write_text(
        "import io\nfrom PIL import Image\n"
        "def ensemble_samples():\n"
        "    out = []\n"
        "    for size in ((64, 32), (32, 32)):\n"
        "        buffer = io.BytesIO()\n"
        "        Image.new('RGB', size, (10, 200, 30)).save(buffer, format='PNG')\n"
        "        out.append(buffer.getvalue())\n"
        "    return out\n"
    )
    (loaded.folder / "labels.txt").write_text("cat\ndog\n")
    staging = tmp_path / "staging"
    variant_dir = staging / "det_fp32"
    variant_dir.mkdir(parents=True)
    spec = loaded.spec
    warmup = {t.name: np.zeros(spec.concrete_shape(t, {"batch": 2})[1:], dtype=t.dtype) for t in spec.inputs}
    (variant_dir / "config.pbtxt").write_text(to_text(cpu_model_config(loaded, "det_fp32", warmup)))
    onnx_path = tmp_path / "det.onnx"
    tiny_detector_onnx(onnx_path)
    return loaded, variant_dir, onnx_path, staging


def stage(detector):
    loaded, variant_dir, onnx_path, staging = detector
    tolerances = {"output0": Tolerance(atol=1e-4, rtol=1e-3)}
    request = StagingRequest(loaded, "fp32", onnx_path, None, tolerances, staging, artifact_runtime())
    return stage_ensemble(request, variant_dir)


def test_letterbox_fits_the_image_keeping_its_aspect_ratio_and_reports_the_geometry():
    tensor, geometry = preprocessing.letterbox(png(64, 32), size=32, pad=114, scale=1 / 255)
    assert tensor.shape == (3, 32, 32) and tensor.dtype == np.float32
    assert geometry.tolist() == [0.5, 0.0, 8.0, 64.0, 32.0]  # half size, 8 rows of padding above
    assert tensor[:, 0, 0] == pytest.approx([114 / 255] * 3)  # the padding
    assert tensor[:, 16, 16] == pytest.approx([10 / 255, 200 / 255, 30 / 255])  # the image


def test_the_ensemble_returns_labelled_boxes_on_the_clients_image(detector):
    pre, post, ensemble = stage(detector)
    assert (pre.name, post.name, ensemble.name) == ("det_preprocess", "det_postprocess", "det")
    config = parse_config(ensemble.path / "config.pbtxt")
    assert [s.model_name for s in config.ensemble_scheduling.step] == [
        "det_preprocess",
        "det_fp32",
        "det_postprocess",
    ]
    assert [o.name for o in config.output] == ["COUNT", "BOXES", "SCORES", "CLASSES", "LABELS"]
    golden = load_raw_golden(ensemble.path / "1" / "golden.npz")
    assert golden.outputs["COUNT"].tolist() == [[2], [2]]
    # the 64 x 32 image: letterboxed at half size with 8 rows above; class 1's box 12..20 maps to 24..40, 8..24;
    # class 0's 22..26 to 28..36, clipped to the image's 32 rows
    assert golden.outputs["BOXES"][0].tolist() == [[24, 8, 40, 24], [8, 28, 16, 32]]
    assert golden.outputs["BOXES"][1].tolist() == [[12, 12, 20, 20], [4, 22, 8, 26]]
    assert golden.outputs["SCORES"][0] == pytest.approx([0.9, 0.6])
    assert golden.outputs["CLASSES"].tolist() == [[1, 0], [1, 0]]
    assert golden.outputs["LABELS"].tolist() == [[b"dog", b"cat"], [b"dog", b"cat"]]
    assert ensemble.manifest_entry["steps"] == ["det_preprocess", "det_fp32", "det_postprocess"]
    assert ensemble.manifest_entry["tolerances"]["COUNT"] == {"atol": 0.0, "rtol": 0.0}


def test_the_served_step_ships_the_gates_own_decode(detector):
    _, post, _ = stage(detector)
    version = post.path / "1"
    assert (version / "decode.py").read_text() == Path(decode.__file__).read_text()
    assert sorted(p.name for p in version.iterdir()) == [
        "decode.py",
        "labels.txt",
        "model.py",
        "postprocessing.py",
    ]
    source = (version / "decode.py").read_text()
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert all("triton_repo" not in line for line in imports), imports  # runs inside tritonserver alone
    config = parse_config(post.path / "config.pbtxt")
    assert [i.name for i in config.input] == ["output0", "LETTERBOX"] and config.backend == "python"


def test_labels_that_do_not_fit_the_heads_classes_are_refused(detector):
    loaded = detector[0]
    (loaded.folder / "labels.txt").write_text("cat\ndog\nbird\n")
    with pytest.raises(SpecError, match="labels has 3 lines, but the head 'output0' has 2 classes"):
        stage(detector)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"accuracy": {"metric": "cosine_min"}}, "decodes the raw head as the accuracy gate does"),
        (
            {"preprocess": {"kind": "pixels", "output": "images", "dims": [3, 32, 32]}},
            "use ensemble.preprocess kind letterbox",
        ),
    ],
)
def test_a_postprocess_step_needs_the_detection_metric_and_a_letterbox(tmp_path, change, message):
    data = detector_dict()
    if "accuracy" in change:
        data["accuracy"] = change["accuracy"]
    else:
        data["ensemble"]["preprocess"] = change["preprocess"]
    with pytest.raises(SpecError, match=message):
        load_spec(write_spec(tmp_path, data))
