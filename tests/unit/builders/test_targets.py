"""The targets: one type each, found by name in one registry, resolved from `--target` on this machine."""

from __future__ import annotations

import shutil

import pytest

from triton_repo.builders.targets import AUTO, CHOICES, TARGETS, CpuTarget, GpuTarget, resolve_target
from triton_repo.core import targets as names
from triton_repo.core.errors import SpecError, TritonRepoError
from triton_repo.core.spec import PRECISIONS


@pytest.fixture
def pin(tmp_path):
    path = tmp_path / ".env"
    path.write_text("TRITON_RELEASE=25.06\n")
    return path


def test_every_target_name_has_one_type_and_the_cli_offers_them_all():
    assert set(TARGETS) == set(names.NAMES)
    assert (AUTO, *names.NAMES) == CHOICES
    for name, kind in TARGETS.items():
        assert kind.name == name
        assert set(kind.candidates) <= set(PRECISIONS)
        assert kind().serves >= {pair for pairs in kind.candidates.values() for pair in pairs}


def test_a_targets_models_are_the_names_the_floors_below_know(pin):
    assert CpuTarget().variant_names("digits", "int8") == ("digits_int8",)
    assert GpuTarget().variant_names("digits", "fp16") == ("digits_fp16_trt", "digits_fp16_onnx")
    assert names.local_server_serves(CpuTarget.name) and not names.local_server_serves(GpuTarget.name)
    assert "digits_fp16_onnx" in names.every_variant_name("digits", PRECISIONS)


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has an NVIDIA GPU")
def test_auto_is_cpu_without_a_gpu_and_says_why(pin):
    target = resolve_target("auto", "served", pin)
    assert isinstance(target, CpuTarget) and "no NVIDIA GPU" in target.note()
    assert resolve_target("cpu", "all", pin) == CpuTarget("all", "")  # no probe: nothing to say


def test_gpu_reads_the_pinned_release_before_any_work(pin, tmp_path):
    target = resolve_target("gpu", "served", pin)
    assert isinstance(target, GpuTarget) and target.release.name == "25.06"
    with pytest.raises(TritonRepoError, match="pins the NGC release"):
        resolve_target("gpu", "served", tmp_path / "missing.env")


def test_an_unknown_target_is_refused_with_the_choices():
    with pytest.raises(SpecError, match="choose one of auto, cpu, gpu"):
        resolve_target("tpu", "served", None)
