"""The pinned NGC release: reading .env, the release table, and which plans a release's TensorRT loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from triton_repo.core.errors import TritonRepoError
from triton_repo.core.releases import RELEASES, plan_runs_on, read_pinned_release, release

ROOT = Path(__file__).resolve().parents[3]


def write_env(tmp_path, text: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(text)
    return path


def test_repository_env_pins_a_known_release():
    pinned = read_pinned_release(ROOT / ".env")
    assert pinned.name in RELEASES
    assert pinned.tritonserver_image == f"nvcr.io/nvidia/tritonserver:{pinned.name}-py3"
    assert pinned.tensorrt_image == f"nvcr.io/nvidia/tensorrt:{pinned.name}-py3"


def test_env_with_comments_and_quotes(tmp_path):
    assert (
        read_pinned_release(write_env(tmp_path, "# pinned\n\nTRITON_RELEASE='25.01'\n")).tensorrt
        == "10.8.0.43"
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "expected exactly one TRITON_RELEASE=YY.MM line, found no"),
        ("TRITON_RELEASE=25.01\nTRITON_RELEASE=25.06\n", "found 2 (lines 1, 2)"),
        ("TRITON_RELEASE=latest\n", ".env:1: TRITON_RELEASE='latest' is not an NGC release tag"),
        ("TRITON_RELEASE=19.01\n", "NGC release '19.01' is not in triton_repo/core/releases.py"),
    ],
)
def test_env_refusals(tmp_path, text, fragment):
    with pytest.raises(TritonRepoError) as info:
        read_pinned_release(write_env(tmp_path, text))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_missing_env(tmp_path):
    with pytest.raises(TritonRepoError, match="missing; it pins the NGC release"):
        read_pinned_release(tmp_path / ".env")


def test_table_rows_are_consistent():
    for name, row in RELEASES.items():
        assert row.name == name
        assert len(row.tensorrt.split(".")) == 4 and row.triton.startswith("2.")
    with pytest.raises(TritonRepoError, match="known: "):
        release("99.99")


def test_plan_loads_only_on_the_tensorrt_that_built_it():
    assert plan_runs_on("10.11.0.33", "10.11.0.33", version_compatible=False) is None
    assert "a plan loads only on the TensorRT that built it" in plan_runs_on("10.8.0.43", "10.11.0.33", False)
    assert "built with TensorRT 10.11.0.32" in plan_runs_on("10.11.0.32", "10.11.0.33", False)


def test_version_compatible_plan_loads_on_later_tensorrt_only():
    assert plan_runs_on("10.8.0.43", "10.11.0.33", version_compatible=True) is None
    assert "cannot run on the older" in plan_runs_on("10.11.0.33", "10.8.0.43", True)
    assert "needs TensorRT 8.6" in plan_runs_on("8.5.3.1", "10.11.0.33", True)
