"""TensorRT, through Polygraphy's loaders and runner: build a strongly typed plan, and run golden cases on
it. Imported only in the engines stage's child process (builders/engines.py), on a host with a GPU."""

from __future__ import annotations

import time

from triton_repo.core.errors import TritonRepoError
from triton_repo.core.golden import GoldenCase
from triton_repo.core.spec import Tolerance


def build_plan(request, trt) -> float:
    """The loader: a strongly typed plan from `request` (build.engines.EngineRequest: its ONNX, profiles,
    timing cache and builder options), written to request.plan; returns the build's seconds."""
    from polygraphy import util
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath
    from polygraphy.backend.trt import Profile as PolygraphyProfile

    profiles = []
    for profile in request.profiles:
        built = PolygraphyProfile()
        for name, shapes in profile.inputs.items():
            built.add(name, min=shapes.min, opt=shapes.opt, max=shapes.max)
        profiles.append(built)
    options = {"builder_optimization_level": request.builder_optimization_level}
    if request.version_compatible:
        options["version_compatible"] = True
    if request.hardware_compatibility_level != "none":
        level = request.hardware_compatibility_level.upper()
        options["hardware_compatibility_level"] = getattr(trt.HardwareCompatibilityLevel, level)
    config = CreateConfig(profiles=profiles, load_timing_cache=str(request.timing_cache), **options)
    # TensorRT 10: the STRONGLY_TYPED flag; TensorRT 11 dropped weak typing and with it the flag.
    strongly_typed = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    network = NetworkFromOnnxPath(str(request.onnx), strongly_typed=strongly_typed or None)
    start = time.perf_counter()
    plan = EngineBytesFromNetwork(network, config=config, save_timing_cache=str(request.timing_cache))()
    seconds = time.perf_counter() - start
    tmp = request.plan.with_name(request.plan.name + ".tmp")
    util.save_file(plan, str(tmp), description="engine")
    tmp.replace(request.plan)
    return seconds


def check_plan(request, cases: list[GoldenCase], tolerances: dict[str, Tolerance]) -> list[dict]:
    """Every case through Polygraphy's TrtRunner on the first profile that accepts its shapes."""
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    from triton_repo.core.compare import compare

    rows = []
    engine = EngineFromBytes(request.plan.read_bytes())()
    for case in cases:
        shapes = {name: tuple(array.shape) for name, array in case.inputs.items()}
        index = next((i for i, p in enumerate(request.profiles) if p.contains(shapes)), None)
        if index is None:
            raise TritonRepoError(
                f"{request.plan}: golden case {case.label} fits no optimization profile (a bug)"
            )
        with TrtRunner(engine, optimization_profile=index) as runner:
            outputs = runner.infer(feed_dict=case.inputs)
        for name, expected in case.outputs.items():
            diff = compare(outputs[name], expected, tolerances[name])
            tolerance = tolerances[name]
            rows.append(
                {
                    "case": case.label,
                    "profile": index,
                    "output": name,
                    "max_abs": diff.max_abs,
                    "max_rel": diff.max_rel,
                    "atol": tolerance.atol,
                    "rtol": tolerance.rtol,
                    "passed": diff.passed,
                }
            )
    return rows
