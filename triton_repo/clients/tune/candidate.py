"""A candidate configuration as a model of its own on the running server: the published variant's config
with the candidate's instances, threads and batcher, under a new name, loaded through the model control
API with a config override. Its only file is the python backend template; the ONNX file is the published
version's own (an absolute path in the config), so nothing is copied and nothing is written into the
repository.

Tuned on raw traffic (texts, images), a candidate is called the way clients call the model: through a
fused-model candidate (the published fused model's config and files, running the candidate variant's
ONNX file with its runtime and settings), or through a candidate ensemble (the published pre-processing
step, then the candidate variant)."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc

from triton_repo.clients.tune.space import Candidate
from triton_repo.core.errors import ServerError, TritonRepoError
from triton_repo.repo.config import parse_config
from triton_repo.runtimes.registry import RUNTIMES, entry_of

FUSED_OWN = ("step", "pad_values")  # the fused model's own parameters; the rest are its variant's
NOT_SENT = ("golden.npz",)  # version files a candidate does not need (besides ONNX files)


@dataclass(frozen=True)
class Form:
    """How candidates are called: `variant` (tensors, to the candidate itself), `fused` (raw data, to a
    fused model running the candidate variant) or `steps` (raw data, to a candidate ensemble)."""

    kind: str = "variant"
    ensemble_dir: Path | None = None  # the published ensemble's (or fused model's) folder
    variant: str = ""  # the variant the published ensemble calls (the step a candidate replaces)


@dataclass(frozen=True)
class Deployed:
    """A candidate on the server: the model requests go to, every model loaded for it (unloaded in this
    order), or why the server refused it (one line)."""

    called: str
    loaded: tuple[str, ...] = ()
    failure: str = ""


def candidate_name(candidate: Candidate, index: int) -> str:
    return f"{candidate.variant}__tune{index}"


def _apply(config: mc.ModelConfig, candidate: Candidate, name: str, onnx: Path) -> mc.ModelConfig:
    """Rename, the candidate's instances, threads and batcher, the ONNX file by absolute path; warmup and
    labels left out (the tuner warms up with requests, and measures no classification)."""
    config.name = name
    config.ClearField("version_policy")
    del config.model_warmup[:]
    for output in config.output:
        output.label_filename = ""
    del config.instance_group[:]
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=candidate.instances)
    config.parameters["intra_op_threads"].string_value = str(candidate.threads)
    config.parameters["onnx_file"].string_value = str(onnx.resolve())
    if candidate.batching.delay_us is None:
        config.ClearField("dynamic_batching")
    else:
        config.dynamic_batching.max_queue_delay_microseconds = candidate.batching.delay_us
        del config.dynamic_batching.preferred_batch_size[:]
        config.dynamic_batching.preferred_batch_size.extend(candidate.batching.preferred)
    return config


def _onnx_of(published_dir: Path, version: int, config: mc.ModelConfig) -> Path:
    return published_dir / str(version) / config.parameters["onnx_file"].string_value


def candidate_config(published_dir: Path, version: int, candidate: Candidate, name: str) -> mc.ModelConfig:
    """The published variant's config, renamed, with the candidate's settings."""
    config = parse_config(published_dir / "config.pbtxt")
    return _apply(config, candidate, name, _onnx_of(published_dir, version, config))


def fused_candidate_config(
    fused_dir: Path, variant_dir: Path, version: int, candidate: Candidate, name: str
) -> mc.ModelConfig:
    """The published fused model's config, renamed, running the candidate variant: that variant's runtime
    parameters and ONNX file (as the build's fused config copies them), with the candidate's settings."""
    config = parse_config(fused_dir / "config.pbtxt")
    variant = parse_config(variant_dir / "config.pbtxt")
    own = {key: config.parameters[key].string_value for key in FUSED_OWN if key in config.parameters}
    config.ClearField("parameters")
    for key, value in variant.parameters.items():
        if key != "shape_ranges":  # as the build's fused config: the step's outputs fit them
            config.parameters[key].CopyFrom(value)
    for key, value in own.items():
        config.parameters[key].string_value = value
    return _apply(config, candidate, name, _onnx_of(variant_dir, version, variant))


def fused_candidate_files(fused_version: Path, variant_version: Path, runtime: str) -> dict[str, bytes]:
    """What a fused candidate's version folder holds: the fused model's own small files (its model.py,
    onnx_model.py, preprocessing.py, tokenizer) and the candidate variant's runtime files (registry.py and
    its runtime module); no ONNX file (the config names the variant's by absolute path)."""
    shipped = {name for entry in RUNTIMES.values() for name in entry.files}
    files = {
        f"1/{path.name}": path.read_bytes()
        for path in sorted(fused_version.iterdir())
        if path.is_file() and path.name not in shipped | set(NOT_SENT) and ".onnx" not in path.name
    }
    for name in entry_of(runtime).files:
        files[f"1/{name}"] = (variant_version / name).read_bytes()
    return files


def ensemble_candidate_config(
    ensemble_dir: Path, published_variant: str, called: str, name: str
) -> mc.ModelConfig:
    """The published ensemble's config, renamed, its variant's step calling `called` (the candidate)."""
    config = parse_config(ensemble_dir / "config.pbtxt")
    config.name = name
    config.ClearField("version_policy")
    for output in config.output:
        output.label_filename = ""  # a config-only model has no labels file
    steps = [s for s in config.ensemble_scheduling.step if s.model_name == published_variant]
    if not steps:
        raise TritonRepoError(
            f"{ensemble_dir / 'config.pbtxt'}: no step calls {published_variant}; rebuild the repository"
        )
    for step in steps:
        step.model_name, step.model_version = called, -1
    return config


def deploy(
    control, form: Form, variant_dir: Path, version: int, candidate: Candidate, index: int
) -> Deployed:
    """Load what `form` calls for the candidate; whatever was loaded is unloaded again when one fails."""
    name = candidate_name(candidate, index)
    if form.kind == "fused":
        fused = f"{name}_fused"
        try:
            config = fused_candidate_config(form.ensemble_dir, variant_dir, version, candidate, fused)
            version_dir = _newest_version(form.ensemble_dir)
            runtime = config.parameters["runtime"].string_value or "onnxruntime"
            files = fused_candidate_files(version_dir, variant_dir / str(version), runtime)
        except (OSError, ValueError) as error:
            return Deployed(fused, failure=f"{form.ensemble_dir.name}: {error}")
        return Deployed(fused, (fused,), _load(control, fused, config, files))
    failure = load_candidate(control, variant_dir, version, candidate, name)
    if failure or form.kind == "variant":
        return Deployed(name, (name,), failure)
    ensemble = f"{name}_ens"
    config = ensemble_candidate_config(form.ensemble_dir, form.variant, name, ensemble)
    # An ensemble needs a version folder: one empty file makes Triton build the model in its own directory.
    failure = _load(control, ensemble, config, {"1/.candidate": b""}, ensemble=True)
    if failure:
        unload_candidate(control, name)
        return Deployed(ensemble, (), failure)
    return Deployed(ensemble, (ensemble, name))


def _newest_version(model_dir: Path) -> Path:
    versions = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        raise FileNotFoundError(f"no version folder in {model_dir}")
    return max(versions, key=lambda p: int(p.name))


def _load(control, name: str, config: mc.ModelConfig, files: dict, ensemble: bool = False) -> str:
    """'' when `name` loaded, else the server's reason."""
    text = json.dumps(json_format.MessageToDict(config, preserving_proto_field_name=True))
    try:
        control.load(name, text, files)
    except ServerError as error:
        # Loading an ensemble polls its steps from the repository, where a candidate (loaded with an
        # override) is not: Triton says so, and loads the ensemble all the same.
        if ensemble and "failed to poll from model repository" in str(error) and _ready(control, name):
            return ""
        return str(error)
    return ""


def _ready(control, name: str) -> bool:
    request = urllib.request.Request(f"{control.http_url}/v2/models/{name}/ready", headers=control.headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status == 200
    except OSError:
        return False


def load_candidate(control, published_dir: Path, version: int, candidate: Candidate, name: str) -> str | None:
    """Load the candidate as model `name`; None when loaded, else the server's reason (one line)."""
    config = candidate_config(published_dir, version, candidate, name)
    files = {"1/model.py": (published_dir / str(version) / "model.py").read_bytes()}
    return _load(control, name, config, files) or None


def unload_candidate(control, name: str) -> None:
    # a candidate that never loaded, or a server that went away: nothing left to free
    with contextlib.suppress(ServerError):
        control.unload(name)
