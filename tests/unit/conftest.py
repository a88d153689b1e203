"""Shared helpers for the unit tests: a valid minimal spec that each test mutates, and a writer for it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.helpers import PYDANTIC_PHRASES


def minimal_spec(name: str = "toy") -> dict:
    """A valid spec: batched, one dynamic 'seq' axis, an existing-ONNX source and an .npz sample."""
    return {
        "name": name,
        "source": {"onnx": "model.onnx"},
        "axes": {"batch": {"min": 1, "opt": 4, "max": 8}, "seq": {"min": 2, "opt": 16, "max": 32}},
        "inputs": [
            {"name": "input_ids", "dtype": "int64", "dims": ["batch", "seq"]},
            {"name": "attention_mask", "dtype": "int64", "dims": ["batch", "seq"]},
        ],
        "outputs": [{"name": "embedding", "dtype": "float32", "dims": ["batch", 4]}],
        "data": {"sample": "sample.npz"},
    }


TOKENIZE_ENSEMBLE = {
    "preprocess": {
        "kind": "tokenize",
        "tokenizer": "tokenizer.json",
        "ids": "input_ids",
        "mask": "attention_mask",
    },
    "samples": "model:ensemble_samples",
}


def spec_error(path: Path) -> str:
    """The one-line SpecError that loading `path` raises; it must start with the path."""
    from triton_repo.core.errors import SpecError
    from triton_repo.core.spec import load_spec

    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    for phrase in PYDANTIC_PHRASES:  # every spec error of the catalogue speaks the spec's language
        assert phrase not in message, f"pydantic's wording {phrase!r} reached the user: {message}"
    return message


def write_spec(root: Path, data: dict | str, folder: str | None = None) -> Path:
    """Write data (a dict, dumped as YAML, or raw text) to root/<folder or name>/model.yaml."""
    folder = folder or (data["name"] if isinstance(data, dict) else "toy")
    path = root / folder / "model.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def spec_dict() -> dict:
    return minimal_spec()


@pytest.fixture
def spec_file(tmp_path: Path) -> Callable[..., Path]:
    def write(data: dict | str, folder: str | None = None) -> Path:
        return write_spec(tmp_path, data, folder)

    return write


@pytest.fixture(autouse=True)
def _forget_zoo_modules():
    """references.load_callable caches model-folder modules in sys.modules; keep tests independent."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("triton_repo_zoo."):
            del sys.modules[name]
