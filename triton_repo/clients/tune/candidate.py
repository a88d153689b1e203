"""A candidate configuration as a model of its own on the running server: the published variant's config
with the candidate's instances, threads and batcher, under a new name, loaded through the model control
API with a config override. Its only file is the python backend template; the ONNX file is the published
version's own (an absolute path in the config), so nothing is copied and nothing is written into the
repository."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc

from triton_repo.clients.tune.space import Candidate
from triton_repo.core.errors import ServerError
from triton_repo.repo.config import parse_config


def candidate_name(candidate: Candidate, index: int) -> str:
    return f"{candidate.variant}__tune{index}"


def candidate_config(published_dir: Path, version: int, candidate: Candidate, name: str) -> mc.ModelConfig:
    """The published config, renamed, with the candidate's settings; warmup and labels left out (the tuner
    warms up with requests, and measures no classification)."""
    config = parse_config(published_dir / "config.pbtxt")
    config.name = name
    config.version_policy.Clear()
    del config.model_warmup[:]
    for output in config.output:
        output.label_filename = ""
    del config.instance_group[:]
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=candidate.instances)
    config.parameters["intra_op_threads"].string_value = str(candidate.threads)
    onnx = published_dir / str(version) / config.parameters["onnx_file"].string_value
    config.parameters["onnx_file"].string_value = str(onnx.resolve())
    if candidate.batching.delay_us is None:
        config.ClearField("dynamic_batching")
    else:
        config.dynamic_batching.max_queue_delay_microseconds = candidate.batching.delay_us
        del config.dynamic_batching.preferred_batch_size[:]
        config.dynamic_batching.preferred_batch_size.extend(candidate.batching.preferred)
    return config


def load_candidate(control, published_dir: Path, version: int, candidate: Candidate, name: str) -> str | None:
    """Load the candidate as model `name`; None when loaded, else the server's reason (one line)."""
    config = candidate_config(published_dir, version, candidate, name)
    files = {"1/model.py": (published_dir / str(version) / "model.py").read_bytes()}
    try:
        control.load(
            name, json.dumps(json_format.MessageToDict(config, preserving_proto_field_name=True)), files
        )
    except ServerError as error:
        return str(error)
    return None


def unload_candidate(control, name: str) -> None:
    # a candidate that never loaded, or a server that went away: nothing left to free
    with contextlib.suppress(ServerError):
        control.unload(name)
