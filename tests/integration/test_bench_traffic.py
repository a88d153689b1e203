"""`triton-repo bench --traffic` on the served zoo: text, images and tensors from files written here, the
ensembles' step breakdown, and traffic that does not fit refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.integration.conftest import run_cli

# Short windows: these tests check what is sent and reported, not speed.
FAST = [
    "--window",
    "0.3",
    "--max-windows",
    "3",
    "--warmup",
    "0.2",
    "--concurrency",
    "2",
    "--min-requests",
    "5",
]


def bench(served, output: Path, *args: str):
    return run_cli("bench", *args, *FAST, "--output", str(output), *served.common_args, *served.port_args)


def only_point(output: Path, source: str) -> dict:
    (folder,) = output.glob(f"*-{source}")
    (point,) = json.loads((folder / "results.json").read_text())["points"]
    return point


def manifest_entry(served, model: str) -> dict:
    return json.loads((served.repository / "manifest.json").read_text())["models"][model]


def assert_steps_reported(point: dict, entry: dict) -> None:
    """Every composing model over the same windows; a model served as one process reports its stages."""
    assert [s["model"] for s in point["steps"] or []] == entry["steps"]
    for step in point["steps"] or []:
        assert step["requests"] > 0 and step["compute_ms"] > 0 and step["average_batch"] >= 1
    if not entry["steps"]:
        assert {s["stage"] for s in point["stages"]} >= {"runtime"}


def test_text_lines_drive_the_text_ensemble_with_its_steps_broken_down(zoo_served, tmp_path):
    sentences = tmp_path / "sentences.txt"
    sentences.write_text(
        "\n".join(
            ["A short one.", "Two words", "A somewhat longer sentence about serving models on CPUs."] * 3
        )
    )
    result = bench(zoo_served, tmp_path / "out", "minilm", "--traffic", str(sentences), "--batch", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    point = only_point(tmp_path / "out", "minilm")
    assert point["model"] == "minilm" and point["errors"] == 0 and point["client_requests"] > 0
    assert point["shape"].startswith("traffic=sentences.txt (9 rows")
    assert_steps_reported(point, manifest_entry(zoo_served, "minilm"))
    # the in-process pipeline on the same requests: the served tokenizer, then the served ONNX file
    assert point["floor_inferences_per_s"] > 0 and point["served_vs_floor"] > 0
    assert "after the served pre-processing" in (result.stdout + result.stderr).replace("\n", " ")


def test_a_folder_of_jpegs_drives_the_image_ensemble(zoo_served, tmp_path):
    import skimage.data
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea", "coffee", "astronaut"):
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(photos / f"{name}.jpg")
    result = bench(zoo_served, tmp_path / "out", "mobilenet_v2", "--traffic", str(photos), "--batch", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    point = only_point(tmp_path / "out", "mobilenet_v2")
    assert point["model"] == "mobilenet_v2" and point["errors"] == 0
    assert point["shape"].startswith("traffic=photos (3 rows")
    assert_steps_reported(point, manifest_entry(zoo_served, "mobilenet_v2"))
    assert point["floor_inferences_per_s"] > 0  # decode, resize and the variant, in-process
    assert "Ensemble steps" in result.stdout


def test_an_npz_drives_a_variant_and_its_in_process_floor(zoo_served, tmp_path):
    rows = np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32)
    np.savez(tmp_path / "digits.npz", image=rows)
    result = bench(
        zoo_served, tmp_path / "out", "digits_fp32", "--traffic", str(tmp_path / "digits.npz"), "--batch", "8"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    point = only_point(tmp_path / "out", "digits")
    assert point["model"] == "digits_fp32" and point["errors"] == 0
    assert point["shape"] == "traffic=digits.npz (20 rows)" and point["steps"] is None
    assert point["floor_inferences_per_s"] > 0


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"image": np.zeros((4, 1, 8, 8), np.float64)},
            "input 'image' of digits_fp32: expected float32 [rows, 1, 8, 8], bad.npz has float64 [4, 1, 8, 8]",
        ),
        (
            {"pixels": np.zeros((4, 1, 8, 8), np.float32)},
            "bad.npz: array 'pixels' is no input of digits_fp32",
        ),
    ],
)
def test_traffic_of_the_wrong_dtype_or_name_exits_2_with_one_line(zoo_served, tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    result = bench(zoo_served, tmp_path / "out", "digits_fp32", "--traffic", str(tmp_path / "bad.npz"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
