"""Helpers the test packages share."""

from __future__ import annotations

import functools
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def artifact_runtime():
    """What runs built artifacts in the tests, as in a build: the serving environment's Python when
    `make install` made one, else this Python (its ONNX Runtime)."""
    from triton_repo.runtimes.isolated import Runtime, this_runtime

    serve_python = ROOT / ".venv-serve" / "bin" / "python3"
    return Runtime(serve_python) if serve_python.exists() else this_runtime()


def as_grpc_client_reads(config) -> dict:
    """A model config (model_config_pb2.ModelConfig) as tritonclient's gRPC client returns it with
    `as_json=True`, which PyTriton's ModelClient parses: MessageToJson of the ModelConfigResponse, which
    leaves out every field that holds its default (0, "", false)."""
    from google.protobuf.json_format import MessageToJson
    from tritonclient.grpc import service_pb2

    response = service_pb2.ModelConfigResponse(config=config)
    return json.loads(MessageToJson(response, preserving_proto_field_name=True))["config"]


# What pydantic says in its own messages; none of it may reach a user (triton_repo.core.spec.loader rewrites it).
PYDANTIC_PHRASES = (
    "validation",
    "should match pattern",
    "Input should",
    "should have at least",
    "should have at most",
    "Value error",
    "Field required",
    "valid integer",
    "valid dictionary",
    "valid list",
    "Extra inputs are not permitted",
    "union",
)
