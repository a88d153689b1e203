"""The gpu target's config.pbtxt, through Triton's protobuf schema, and the preflight that checks it.

`<name>_<prec>_trt`: platform tensorrt_plan on KIND_GPU; max_batch_size and preferred batch sizes from the
optimization profiles, every profile offered to the instances, one plan per compute capability
(cc_model_filenames), warmup at the min/opt/max shapes of every profile.
`<name>_<prec>_onnx`: the onnxruntime backend on KIND_GPU, optionally with ONNX Runtime's TensorRT
execution accelerator at the variant's precision and an engine cache outside the read-only repository.
The preflight refuses a plan whose TensorRT cannot load on the pinned release, and a config that asks for
shapes or profiles the engine was not built for.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2 as mc

from triton_repo.core.errors import PreflightError
from triton_repo.core.releases import Release, plan_runs_on
from triton_repo.core.spec import BATCH_AXIS, LoadedSpec
from triton_repo.repo.config import (
    add_dynamic_batching,
    add_sequence_batching,
    add_tensors,
    add_warmup,
    data_type,
    new_config,
    warmup_file,
)
from triton_repo.repo.profiles import Profile, max_batch, preferred_batch_sizes

ONNX_FILE = "model.onnx"
DEFAULT_PLAN = "model.plan"
TRT_CACHE_ROOT = "/trt-cache"  # a writable volume of the triton service (the repository is read-only)
# The TensorRT accelerator's precision_mode (FP32, FP16, INT8 are what Triton's onnxruntime backend takes):
# a BF16 graph carries its precision in its own types, so the accelerator adds no lowering (FP32).
ACCELERATOR_PRECISION = {"fp32": "FP32", "fp16": "FP16", "bf16": "FP32", "int8": "INT8"}


@dataclass(frozen=True)
class WarmupPoint:
    """One warmup request: a profile's min, opt or max sizes; one row file per input (batch repeats it)."""

    name: str
    batch_size: int
    sizes: dict[str, int]
    files: dict[str, str]  # input name -> file under warmup/
    dims: dict[str, tuple[int, ...]]  # input name -> dims without the batch dim


def warmup_points(loaded: LoadedSpec, profiles: list[Profile]) -> list[WarmupPoint]:
    """min/opt/max of every profile, so every kernel the server can pick is loaded before the first request."""
    spec = loaded.spec
    points: list[WarmupPoint] = []
    seen: list[dict[str, int]] = []
    for index, profile in enumerate(profiles):
        for level, sizes in zip(("min", "opt", "max"), _levels(profile), strict=True):
            if sizes in seen:
                continue
            seen.append(sizes)
            row_sizes = {axis: size for axis, size in sizes.items() if axis != BATCH_AXIS}
            suffix = "_".join(f"{axis}{size}" for axis, size in row_sizes.items()) or "static"
            files, dims = {}, {}
            for tensor in spec.inputs:
                shape = spec.concrete_shape(tensor, sizes)
                dims[tensor.name] = shape[1:] if spec.batched else shape
                files[tensor.name] = warmup_file(tensor.name, suffix)
            batch = sizes.get(BATCH_AXIS, 1) if spec.batched else 1
            points.append(WarmupPoint(f"profile{index}_{level}", batch, sizes, files, dims))
    return points


def _levels(profile: Profile) -> list[dict[str, int]]:
    return [{axis: getattr(r, level) for axis, r in profile.axes.items()} for level in ("min", "opt", "max")]


def _common(
    config: mc.ModelConfig, loaded: LoadedSpec, preferred: list[int], warmup: list[WarmupPoint]
) -> None:
    """Inputs, outputs, dynamic batching and warmup: the parts both gpu models share."""
    add_tensors(config, loaded)
    if loaded.spec.sequence is not None:
        add_sequence_batching(config, loaded)
        add_implicit_state(config, loaded)
    elif not loaded.spec.per_request_inputs:  # else requests with different values must never be joined
        add_dynamic_batching(config, loaded, [p for p in preferred if p <= config.max_batch_size])
    for point in warmup:
        add_warmup(config, loaded, point.name, point.batch_size, point.dims, point.files)


INITIAL_STATE_DIR = "initial_state"  # where Triton reads an initial state's data_file


def raw_initial_state_file(input_name: str) -> str:
    """The data_file under initial_state/: one sequence's state as raw row-major bytes, as Triton reads it."""
    return warmup_file(input_name, "raw")


def add_implicit_state(config: mc.ModelConfig, loaded: LoadedSpec) -> None:
    """Triton's implicit state: each state input fed from the output that carries its next value, zeros
    (or the spec's file, raw bytes under initial_state/) at START; dims without the batch axis."""
    spec = loaded.spec
    for pair in spec.state_pairs:
        tensor = next(t for t in spec.inputs if t.name == pair.input)
        dims = spec.triton_dims(tensor)
        state = config.sequence_batching.state.add(
            input_name=pair.input, output_name=pair.output, data_type=data_type(tensor.dtype)
        )
        state.dims.extend(dims)
        initial = state.initial_state.add(data_type=data_type(tensor.dtype), name=f"{pair.input} at START")
        initial.dims.extend(dims)
        if pair.initial == "zeros":
            initial.zero_data = True
        else:
            initial.data_file = raw_initial_state_file(pair.input)


def trt_model_config(
    loaded: LoadedSpec,
    name: str,
    profiles: list[Profile],
    warmup: list[WarmupPoint],
    plans: dict[str, str],
) -> mc.ModelConfig:
    """`<name>_<prec>_trt`; `plans` maps compute capability ("8.6") to plan file name (empty before a build)."""
    spec = loaded.spec
    config = new_config(loaded, name, max_batch_size=max_batch(profiles), platform="tensorrt_plan")
    _common(config, loaded, preferred_batch_sizes(profiles), warmup)
    group = config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU, count=spec.gpu.instance_count)
    if len(profiles) > 1:  # without it Triton uses profile 0 only; with all, it picks one that fits
        group.profile.extend(str(index) for index in range(len(profiles)))
    for capability, filename in sorted(plans.items()):
        config.cc_model_filenames[capability] = filename
    if plans and spec.gpu.hardware_compatibility_level != "none":
        config.default_model_filename = sorted(plans.values())[0]  # one plan serves several architectures
    else:
        config.default_model_filename = DEFAULT_PLAN
    return config


def onnx_gpu_model_config(
    loaded: LoadedSpec, name: str, precision: str, profiles: list[Profile], warmup: list[WarmupPoint]
) -> mc.ModelConfig:
    """`<name>_<prec>_onnx`: ONNX Runtime on the GPU, through its TensorRT EP when the spec asks for it."""
    spec = loaded.spec
    config = new_config(loaded, name, backend="onnxruntime", default_model_filename=ONNX_FILE)
    _common(config, loaded, preferred_batch_sizes(profiles), warmup)
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU, count=spec.gpu.instance_count)
    if spec.gpu.onnx_trt_accelerator:
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(
            name="tensorrt"
        )
        parameters = accelerator.parameters
        parameters["precision_mode"] = ACCELERATOR_PRECISION[precision]
        parameters["trt_engine_cache_enable"] = "true"
        parameters["trt_engine_cache_path"] = f"{TRT_CACHE_ROOT}/{name}"
        parameters["trt_builder_optimization_level"] = str(spec.gpu.builder_optimization_level)
        # One ORT-TensorRT profile spanning every optimization profile, so no shape forces a rebuild.
        for level, pick in (("min", min), ("opt", None), ("max", max)):
            parameters[f"trt_profile_{level}_shapes"] = _envelope(profiles, level, pick)
    return config


def _envelope(profiles: list[Profile], level: str, pick) -> str:
    parts = []
    for name in profiles[0].inputs:
        if pick is None:
            shape = profiles[0].inputs[name].opt
        else:
            shape = tuple(
                pick(dims) for dims in zip(*(getattr(p.inputs[name], level) for p in profiles), strict=True)
            )
        parts.append(f"{name}:{'x'.join(str(d) for d in shape)}")
    return ",".join(parts)


def preflight(
    config: mc.ModelConfig,
    profiles: list[dict],
    engines: list[dict],
    release: Release,
    batched: bool,
    allow_version_compatible: bool = False,
) -> None:
    """Refuse, with one line, what the pinned server would fail on or serve wrongly.

    `profiles` are the engine's (engine.json's `profiles`: input -> min/opt/max shapes); `engines` the
    engine.json summaries of the plans in the model (none before a GPU build); `allow_version_compatible`
    says the server runs with --backend-config=tensorrt,version-compatible=true.
    """
    name = config.name
    for engine in engines:
        why = plan_runs_on(
            engine["tensorrt_version"], release.tensorrt, bool(engine.get("version_compatible"))
        )
        if why:
            raise PreflightError(f"{name}: {engine['plan']}: {why} (TRITON_RELEASE={release.name} in .env)")
        if engine.get("version_compatible") and not allow_version_compatible:
            raise PreflightError(
                f"{name}: {engine['plan']} is version-compatible, which the server loads only with "
                "--backend-config=tensorrt,version-compatible=true (add it to docker-compose.yml's triton command)"
            )
        if engine["profiles"] != profiles:
            raise PreflightError(
                f"{name}: {engine['plan']} was built with other profiles than the config's; rebuild it"
            )
        if config.cc_model_filenames.get(engine["compute_capability"]) != engine["plan"]:
            raise PreflightError(
                f"{name}: cc_model_filenames does not map compute capability {engine['compute_capability']} "
                f"to {engine['plan']}"
            )
    built = {engine["plan"] for engine in engines}
    for capability, filename in config.cc_model_filenames.items():
        if filename not in built:
            raise PreflightError(
                f"{name}: cc_model_filenames[{capability}] names {filename}, which no engine built"
            )
    _check_inputs(config, profiles, batched)
    _check_batches(config, profiles, batched)
    for group in config.instance_group:
        for index in group.profile:
            if not index.isdigit() or int(index) >= len(profiles):
                raise PreflightError(
                    f"{name}: instance_group profile '{index}' but the engine has {len(profiles)} profile(s)"
                )
        if len(profiles) > 1 and not group.profile:
            raise PreflightError(
                f"{name}: the engine has {len(profiles)} profiles but instance_group lists none: Triton would use profile 0 only"
            )
    reshaped = {t.name: tuple(t.reshape.shape) for t in config.input if t.HasField("reshape")}
    for warmup in config.model_warmup:
        shapes = {  # what the engine sees: the reshape when there is one
            input_name: ((warmup.batch_size,) if batched else ()) + reshaped.get(input_name, tuple(data.dims))
            for input_name, data in warmup.inputs.items()
        }
        if not any(_fits(shapes, profile) for profile in profiles):
            raise PreflightError(
                f"{name}: warmup '{warmup.name}' shapes {shapes} fit no optimization profile"
            )


def _fits(shapes: dict[str, tuple[int, ...]], profile: dict) -> bool:
    for input_name, shape in shapes.items():
        bounds = profile.get(input_name)
        if bounds is None or len(bounds["min"]) != len(shape):
            return False
        if not all(lo <= s <= hi for lo, s, hi in zip(bounds["min"], shape, bounds["max"], strict=True)):
            return False
    return True


def _check_inputs(config: mc.ModelConfig, profiles: list[dict], batched: bool) -> None:
    """Config inputs are the engine's, and a fixed config dim is fixed to the same size in every profile."""
    offset = 1 if batched else 0
    # what the engine sees: the reshape when there is one ([batch] tensors are dims [1], reshape []), and
    # the implicit states Triton feeds from sequence_batching.state
    seen = {
        tensor.name: list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)
        for tensor in config.input
    } | {state.input_name: list(state.dims) for state in config.sequence_batching.state}
    names = sorted(seen)
    for index, profile in enumerate(profiles):
        if sorted(profile) != names:
            raise PreflightError(
                f"{config.name}: config inputs {names} but engine profile {index} has {sorted(profile)}"
            )
        for name, dims in seen.items():
            bounds = profile[name]
            if len(bounds["min"]) != len(dims) + offset:
                raise PreflightError(
                    f"{config.name}: input '{name}' has {len(dims)} dims in the config "
                    f"(+batch: {batched}) but {len(bounds['min'])} in engine profile {index}"
                )
            for axis, dim in enumerate(dims, start=offset):
                low, high = bounds["min"][axis], bounds["max"][axis]
                if dim != -1 and not low == high == dim:
                    raise PreflightError(
                        f"{config.name}: input '{name}' dim {axis} is {dim} in the config but "
                        f"{low}..{high} in engine profile {index}"
                    )


def _check_batches(config: mc.ModelConfig, profiles: list[dict], batched: bool) -> None:
    """Every batch size from 1 to max_batch_size (and every preferred size) runs on some profile."""
    if not batched:
        if config.max_batch_size:
            raise PreflightError(
                f"{config.name}: max_batch_size {config.max_batch_size} but the engine has no batch axis"
            )
        return
    ranges = sorted({(p[next(iter(p))]["min"][0], p[next(iter(p))]["max"][0]) for p in profiles})
    largest = max(high for _, high in ranges)
    if config.max_batch_size > largest:
        raise PreflightError(
            f"{config.name}: max_batch_size {config.max_batch_size} but the engine's profiles stop at batch {largest}"
        )
    covered = 0
    for low, high in ranges:
        if low > covered + 1:
            break
        covered = max(covered, high)
    if covered < config.max_batch_size:
        raise PreflightError(
            f"{config.name}: batch {covered + 1} (<= max_batch_size {config.max_batch_size}) fits no engine "
            f"profile (batch ranges {', '.join(f'{lo}..{hi}' for lo, hi in ranges)})"
        )
    for size in config.dynamic_batching.preferred_batch_size:
        if size > config.max_batch_size:
            raise PreflightError(
                f"{config.name}: preferred_batch_size {size} is larger than max_batch_size {config.max_batch_size}"
            )
