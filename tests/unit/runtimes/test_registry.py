"""The runtime registry is the one list of CPU runtimes: each entry's module implements the interface and
every file it ships exists; the build's runners and labels come from it."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from triton_repo.runtimes import registry
from triton_repo.runtimes.interface import CpuRuntime, runtime_module
from triton_repo.runtimes.isolated import ORT, OV_BF16, OV_F32, RUNNERS

RUNTIMES_DIR = Path(registry.__file__).parent


def test_registry_lists_onnxruntime_and_openvino_with_the_files_they_ship():
    assert registry.RUNTIMES["onnxruntime"].files == ("registry.py", "onnxruntime_cpu.py")
    assert registry.RUNTIMES["openvino"].files == ("registry.py", "openvino_cpu.py")


@pytest.mark.parametrize("name", sorted(registry.RUNTIMES))
def test_every_file_a_runtime_ships_exists_and_its_module_is_the_first(name):
    entry = registry.RUNTIMES[name]
    assert entry.ships[0] == f"{entry.module}.py"
    for file_name in entry.files:
        assert (RUNTIMES_DIR / file_name).is_file(), file_name


@pytest.mark.parametrize("name", sorted(registry.RUNTIMES))
def test_every_runtime_module_implements_the_interface(name):
    module = runtime_module(name)
    for method in ("load", "load_measured", "version"):
        wanted = list(inspect.signature(getattr(CpuRuntime, method)).parameters)[1:]  # without self
        assert list(inspect.signature(getattr(module, method)).parameters) == wanted, method


@pytest.mark.parametrize("name", sorted(registry.RUNTIMES))
def test_a_shipped_file_imports_only_the_standard_library_numpy_and_its_runtime(name):
    """Copied into version folders, imported where the package is not installed: at module level only
    the standard library and numpy; the runtime, and the build's own package (relative), inside the
    functions that need them."""
    allowed = {"__future__", "dataclasses", "os", "tempfile", "pathlib", "numpy", "importlib"}
    for file_name in registry.RUNTIMES[name].files:
        tree = ast.parse((RUNTIMES_DIR / file_name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0 or node not in tree.body, f"{file_name}: module-level relative import"
                assert node.level or not node.module.startswith("triton_repo"), f"{file_name}: {node.module}"
        top = {
            alias.name.split(".")[0]
            for node in tree.body
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in tree.body
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert top <= allowed, f"{file_name} imports {sorted(top - allowed)} at module level"


def test_the_builds_runners_and_labels_come_from_the_registry():
    assert {name: (r.runtime, r.precision) for name, r in RUNNERS.items()}.items() >= {
        "ort": ("onnxruntime", ""),
        "ov-f32": ("openvino", "f32"),
        "ov-bf16": ("openvino", "bf16"),
    }.items()
    assert set(RUNNERS) == {name for entry in registry.RUNTIMES.values() for name, _ in entry.runners}
    assert (ORT.runtime_name, OV_F32.runtime_name, OV_BF16.runtime_name) == (
        "ONNX Runtime",
        "OpenVINO",
        "OpenVINO",
    )


def test_an_unknown_runtime_is_refused_naming_the_known_ones():
    known = ", ".join(sorted(registry.RUNTIMES))
    with pytest.raises(ValueError, match=f"unknown runtime 'tvm': the runtimes are {known}$"):
        registry.entry_of("tvm")
