"""Engines stage on CPU: profile derivation, the gpu spec section, the reproduce script, the GPU probe."""

from __future__ import annotations

import shlex
import stat

import pytest
from conftest import minimal_spec, spec_error, write_spec

from triton_repo.builders import engines
from triton_repo.builders.engines import (
    EngineRequest,
    GpuStatus,
    plan_filename,
    polygraphy_command,
    request_key,
    timing_cache_path,
    write_reproduce,
)
from triton_repo.core.spec import load_spec
from triton_repo.repo.profiles import derive_profiles, max_batch, preferred_batch_sizes

TWO_PROFILES = [
    {"batch": {"min": 1, "opt": 1, "max": 2}},
    {"batch": {"min": 2, "opt": 6, "max": 8}, "seq": {"min": 8, "opt": 16, "max": 32}},
]


def spec_with(tmp_path, **gpu):
    data = minimal_spec()
    if gpu:
        data["gpu"] = gpu
    return load_spec(write_spec(tmp_path, data)).spec


def test_default_profile_is_the_spec_axes(tmp_path):
    (profile,) = derive_profiles(spec_with(tmp_path))
    assert profile.inputs["input_ids"].min == (1, 2)
    assert profile.inputs["input_ids"].opt == (4, 16)
    assert profile.inputs["input_ids"].max == (8, 32)
    assert set(profile.inputs) == {"input_ids", "attention_mask"}
    assert profile.to_json()["attention_mask"] == {"min": [1, 2], "opt": [4, 16], "max": [8, 32]}


def test_profile_batch_is_capped_at_max_batch_size(tmp_path):
    data = minimal_spec()
    data["max_batch_size"] = 3
    (profile,) = derive_profiles(load_spec(write_spec(tmp_path, data)).spec)
    assert profile.inputs["input_ids"].max == (3, 32)
    assert profile.inputs["input_ids"].opt == (3, 16)
    assert max_batch([profile]) == 3


def test_several_profiles_override_only_the_axes_they_name(tmp_path):
    small, large = derive_profiles(spec_with(tmp_path, profiles=TWO_PROFILES))
    assert (small.inputs["input_ids"].min, small.inputs["input_ids"].max) == ((1, 2), (2, 32))
    assert (large.inputs["input_ids"].min, large.inputs["input_ids"].max) == ((2, 8), (8, 32))
    assert max_batch([small, large]) == 8
    assert preferred_batch_sizes([small, large]) == [1, 6]


def test_profile_points_and_contains(tmp_path):
    (profile,) = derive_profiles(spec_with(tmp_path))
    assert profile.points() == [{"batch": 1, "seq": 2}, {"batch": 4, "seq": 16}, {"batch": 8, "seq": 32}]
    assert profile.contains({"input_ids": (8, 2), "attention_mask": (1, 32)})
    assert not profile.contains({"input_ids": (9, 2), "attention_mask": (1, 32)})
    assert not profile.contains({"input_ids": (1, 2, 3)})


def test_unbatched_spec_has_no_batch_in_profiles(tmp_path):
    data = minimal_spec()
    data["axes"] = {"seq": {"min": 2, "opt": 4, "max": 8}}
    for tensor in data["inputs"]:
        tensor["dims"] = ["seq"]
    data["outputs"][0]["dims"] = [4]
    profiles = derive_profiles(load_spec(write_spec(tmp_path, data)).spec)
    assert max_batch(profiles) == 0 and preferred_batch_sizes(profiles) == []


@pytest.mark.parametrize(
    ("profiles", "fragment"),
    [
        ([{"beam": {"min": 1, "opt": 1, "max": 1}}], "gpu.profiles[0].beam: not a declared axis"),
        ([{"seq": {"min": 1, "opt": 2, "max": 4}}], "gpu.profiles[0].seq: 1..4 is outside axes.seq 2..32"),
        ([{"seq": {"min": 4, "opt": 2, "max": 8}}], "min 4, opt 2, max 8 must satisfy min <= opt <= max"),
        ([{}], "profile 0 is empty"),
    ],
)
def test_spec_rejects_bad_gpu_profiles(tmp_path, profiles, fragment):
    data = minimal_spec()
    data["gpu"] = {"profiles": profiles}
    assert fragment in spec_error(write_spec(tmp_path, data))


def test_spec_rejects_profile_batch_above_max_batch_size(tmp_path):
    data = minimal_spec()
    data["max_batch_size"] = 4
    data["gpu"] = {"profiles": [{"batch": {"min": 1, "opt": 2, "max": 8}}]}
    assert "gpu.profiles[0].batch: max 8 is larger than max_batch_size 4" in spec_error(
        write_spec(tmp_path, data)
    )


@pytest.mark.parametrize(
    ("gpu", "fragment"),
    [
        ({"hardware_compatibility_level": "turing_plus"}, "gpu.hardware_compatibility_level"),
        ({"builder_optimization_level": 6}, "gpu.builder_optimization_level"),
        ({"fp16": True}, "gpu.fp16: unknown key"),
    ],
)
def test_spec_rejects_bad_gpu_settings(tmp_path, gpu, fragment):
    data = minimal_spec()
    data["gpu"] = gpu
    assert fragment in spec_error(write_spec(tmp_path, data))


def request(tmp_path, spec, **overrides):
    gpu = GpuStatus(True, "", "NVIDIA A10G", "8.6")
    values = dict(
        onnx=tmp_path / "model.onnx",
        plan=tmp_path / "engines" / plan_filename("8.6"),
        profiles=derive_profiles(spec),
        timing_cache=timing_cache_path(tmp_path / "cache", gpu, "10.11.0.33"),
        expected_tensorrt="10.11.0.33",
        gpu=gpu,
    )
    values.update(overrides)
    return EngineRequest(**values)


def test_polygraphy_command_builds_strongly_typed_with_every_profile(tmp_path):
    spec = spec_with(tmp_path, profiles=TWO_PROFILES)
    command = polygraphy_command(
        request(
            tmp_path,
            spec,
            builder_optimization_level=5,
            version_compatible=True,
            hardware_compatibility_level="ampere_plus",
        )
    )
    assert command[:6] == [
        "polygraphy",
        "convert",
        str(tmp_path / "model.onnx"),
        "--convert-to",
        "trt",
        "--strongly-typed",
    ]
    mins = [i for i, part in enumerate(command) if part == "--trt-min-shapes"]
    assert len(mins) == 2  # once per profile, in order
    assert command[mins[0] + 1 : mins[0] + 3] == ["input_ids:[1,2]", "attention_mask:[1,2]"]
    assert command[mins[1] + 1] == "input_ids:[2,8]"
    maxes = [command[i + 1] for i, part in enumerate(command) if part == "--trt-max-shapes"]
    assert maxes == ["input_ids:[2,32]", "input_ids:[8,32]"]
    cache = str(tmp_path / "cache" / "nvidia-a10g-sm86-trt10.11.0.33.cache")
    assert command[command.index("--load-timing-cache") + 1] == cache
    assert command[command.index("--save-timing-cache") + 1] == cache
    assert command[command.index("--builder-optimization-level") + 1] == "5"
    assert "--version-compatible" in command
    assert command[command.index("--hardware-compatibility-level") + 1] == "ampere_plus"
    assert command[-2:] == ["-o", str(tmp_path / "engines" / "model.sm86.plan")]


def test_polygraphy_command_leaves_defaults_out(tmp_path):
    command = polygraphy_command(request(tmp_path, spec_with(tmp_path)))
    assert "--version-compatible" not in command and "--hardware-compatibility-level" not in command
    assert command[command.index("--builder-optimization-level") + 1] == "3"


def test_reproduce_script_runs_the_same_command(tmp_path):
    built = request(tmp_path, spec_with(tmp_path))
    built.plan.parent.mkdir(parents=True)
    path = write_reproduce(built)
    text = path.read_text()
    assert path.name == "reproduce.sh" and path.parent == built.plan.parent
    assert path.stat().st_mode & stat.S_IXUSR
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    assert "TensorRT 10.11.0.33" in text and "docker compose run --rm engines" in text
    command_text = text.split("set -euo pipefail\n", 1)[1].replace("\\\n", " ")
    assert shlex.split(command_text) == polygraphy_command(built)


def test_request_key_changes_with_what_the_plan_depends_on(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"graph")
    spec = spec_with(tmp_path)
    base = request_key(request(tmp_path, spec))
    assert request_key(request(tmp_path, spec)) == base
    assert request_key(request(tmp_path, spec, builder_optimization_level=4)) != base
    assert request_key(request(tmp_path, spec, expected_tensorrt="10.8.0.43")) != base
    assert request_key(request(tmp_path, spec, gpu=GpuStatus(True, "", "NVIDIA L4", "8.9"))) != base
    (tmp_path / "model.onnx").write_bytes(b"other graph")
    assert request_key(request(tmp_path, spec)) != base


def test_plan_and_cache_names():
    assert plan_filename("9.0") == "model.sm90.plan"
    gpu = GpuStatus(True, "", "NVIDIA GeForce RTX 4090", "8.9")
    assert (
        timing_cache_path(engines.Path("/c"), gpu, "10.8.0.43").name
        == "nvidia-geforce-rtx-4090-sm89-trt10.8.0.43.cache"
    )


def test_gpu_probe_without_nvidia_smi(monkeypatch):
    monkeypatch.setattr(engines.shutil, "which", lambda name: None)
    status = engines.gpu_available()
    assert not status.available and "nvidia-smi not found" in status.reason


def test_gpu_probe_reads_nvidia_smi_then_needs_tensorrt(monkeypatch, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA A10G, 8.6'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setattr(engines.importlib.util, "find_spec", lambda name: None)
    status = engines.gpu_available()
    assert not status.available and "TensorRT is not installed" in status.reason and "A10G" in status.reason
    monkeypatch.setattr(engines.importlib.util, "find_spec", lambda name: object())
    assert engines.gpu_available() == GpuStatus(True, "", "NVIDIA A10G", "8.6")


def test_gpu_probe_refuses_a_failing_nvidia_smi(monkeypatch, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'No devices were found' >&2\nexit 6\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    status = engines.gpu_available()
    assert not status.available and "no usable GPU" in status.reason
