"""One client API over Triton's gRPC and HTTP protocols; the protocol quirks live here and only here."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import numpy as np

from triton_repo.core.errors import ServerError, TritonRepoError

PROTOCOLS = ("grpc", "http")

# numpy dtype -> Triton wire datatype (the same for both protocols)
WIRE_TYPES = {
    "float32": "FP32",
    "float16": "FP16",
    "float64": "FP64",
    "int64": "INT64",
    "int32": "INT32",
    "int16": "INT16",
    "int8": "INT8",
    "uint8": "UINT8",
    "bool": "BOOL",
    "object": "BYTES",  # numpy object arrays of bytes or str: text, encoded images
}


@dataclass(frozen=True)
class RetryPolicy:
    """Only UNAVAILABLE is retried (server starting, overloaded queue, connection refused), at most
    `attempts` times in all, with exponential backoff and jitter; every other error fails at once."""

    attempts: int = 4
    first_delay_s: float = 0.05
    max_delay_s: float = 1.0

    def delay(self, retry: int) -> float:
        return min(self.max_delay_s, self.first_delay_s * 2**retry) * random.uniform(0.5, 1.5)


def status_code(error: BaseException) -> str:
    """The status an error from Triton carries: a gRPC code name (UNAVAILABLE, NOT_FOUND, ...) or an
    HTTP status ("503"), from tritonclient's exception or a raw grpc RpcError; "" when it has none."""
    code = getattr(error, "code", None)  # grpc.RpcError
    if callable(code) and getattr(code(), "name", None):
        return code().name
    status = getattr(error, "status", None)  # tritonclient's InferenceServerException
    return str((status() if callable(status) else None) or "").removeprefix("StatusCode.")


def is_unavailable(error: BaseException) -> bool:
    """gRPC UNAVAILABLE, HTTP 503, or a refused/reset connection (the HTTP client's way of saying it)."""
    return isinstance(error, ConnectionError) or status_code(error) in ("UNAVAILABLE", "503")


# Statuses that mean the request itself was wrong (gRPC codes, HTTP statuses): unknown model, bad input.
_REQUEST_ERRORS = ("INVALID_ARGUMENT", "NOT_FOUND", "400", "404")


class RequestRefused(TritonRepoError):
    """The request was wrong (unknown model or input, shape, dtype, batch size): one line naming the
    model, what the server said and the tensors sent. `status()` is the server's status, as tritonclient's."""

    def __init__(self, message: str, status: str = "") -> None:
        super().__init__(message)
        self._status = status

    def status(self) -> str:
        return self._status


def _request_summary(inputs: dict[str, np.ndarray]) -> str:
    return ", ".join(
        f"{name} {WIRE_TYPES.get(array.dtype.name, array.dtype.name)} {list(array.shape)}"
        for name, array in inputs.items()
    )


def _check_request(model: str, inputs: dict[str, np.ndarray]) -> None:
    """What the wire cannot express is refused before sending: a model name that would change the
    HTTP path, and numpy dtypes with no Triton datatype."""
    if not model or "/" in model or model in (".", ".."):
        raise RequestRefused(f"model '{model}': not a Triton model name (no '/', not '.' or '..')")
    for name, array in inputs.items():
        if array.dtype.name not in WIRE_TYPES:
            raise RequestRefused(
                f"{model}: input '{name}' is numpy {array.dtype.name}, which Triton's protocol cannot carry; "
                f"send one of {', '.join(WIRE_TYPES)}"
            )


@dataclass(frozen=True)
class Chunk:
    """Where a request stands in its sequence: the sequence's ID, whether it starts or ends it, and the
    model version the sequence started on (its later requests must go there: the state lives there)."""

    sequence_id: int
    start: bool = False
    end: bool = False
    version: str = ""


@dataclass
class TritonClient:
    """infer() with numpy in and numpy out, whichever protocol is underneath.

    Every call has a timeout (`timeout_s`); UNAVAILABLE is retried per `retry`; NOT_FOUND,
    INVALID_ARGUMENT and the rest raise at once with the server's message. `retries` counts the
    retries made, for callers that report them.
    """

    protocol: str
    url: str
    timeout_s: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    retries: int = 0

    def __post_init__(self) -> None:
        if self.protocol == "grpc":
            import tritonclient.grpc as module
        elif self.protocol == "http":
            import tritonclient.http as module
        else:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        self._module = module
        if self.protocol == "http":
            # The HTTP client takes timeouts at construction; gRPC takes one per call (client_timeout).
            self._client = module.InferenceServerClient(
                self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s
            )
        else:
            self._client = module.InferenceServerClient(self.url)

    def _call(self, function, *args, **kwargs):
        for attempt in range(self.retry.attempts):
            try:
                return function(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - both clients raise their own exception types
                if not is_unavailable(error) or attempt == self.retry.attempts - 1:
                    raise
                self.retries += 1
                time.sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")

    def is_model_ready(self, model: str) -> bool:
        timeout = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        try:
            return bool(self._call(self._client.is_model_ready, model, **timeout))
        except Exception as error:  # noqa: BLE001 - both clients raise their own exception types
            raise ServerError(f"cannot reach Triton at {self.url} over {self.protocol}: {error}") from None

    def infer(
        self, model: str, inputs: dict[str, np.ndarray], outputs: list[str], class_count: int = 0
    ) -> dict[str, np.ndarray]:
        """Outputs as numpy; with `class_count`, Triton's classification extension returns, per row, the
        top classes as 'score:index[:label]' bytes instead of the tensor. A request the server refuses
        (or that cannot be sent) raises RequestRefused, naming the model and the tensors sent."""
        _check_request(model, inputs)
        try:
            return self._infer(model, inputs, outputs, class_count)
        except Exception as error:  # noqa: BLE001 - both clients raise their own exception types
            status = status_code(error)
            if status not in _REQUEST_ERRORS:  # overload, timeouts, server faults: the caller's to handle
                raise
            raise self._refused(model, inputs, status, error) from error

    def infer_step(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        outputs: list[str],
        sequence: Chunk,
    ) -> tuple[dict[str, np.ndarray], str]:
        """One request of a sequence (a stateful model): its outputs and the model version that ran it.
        `sequence.version` pins the request to the version the sequence started on ("" = the latest)."""
        _check_request(model, inputs)
        try:
            result = self._send(model, inputs, outputs, 0, sequence)
        except Exception as error:  # noqa: BLE001 - both clients raise their own exception types
            status = status_code(error)
            if status not in _REQUEST_ERRORS:
                raise
            raise self._refused(model, inputs, status, error) from error
        response = result.get_response()
        version = response.model_version if self.protocol == "grpc" else response.get("model_version", "")
        return {name: result.as_numpy(name) for name in outputs}, str(version)

    def _refused(
        self, model: str, inputs: dict[str, np.ndarray], status: str, error: Exception
    ) -> RequestRefused:
        """The server's message on one line, without its boilerplate, then what was sent and (when the
        server can say) what the model takes: Triton's own message omits the tensor at fault for some
        errors (an unknown input name, a batch too large)."""
        message = getattr(error, "message", None)
        text = (message() if callable(message) else None) or str(error)
        text = (
            " ".join(text.replace("[request id: <id_unknown>]", "").split())
            .split(" NOTE: ", 1)[0]
            .rstrip(".")
        )
        parts = [f"{model} ({self.protocol}): {status}: {text}"]
        expected = self._model_inputs(model) if status in ("INVALID_ARGUMENT", "400") else None
        if expected is not None:
            unknown = [name for name in inputs if name not in expected]
            if unknown:
                parts.append(f"unknown input {', '.join(repr(name) for name in unknown)}")
        parts.append(f"the request sent {_request_summary(inputs)}")
        if expected is not None:
            takes = ", ".join(f"{name} {datatype} {shape}" for name, (datatype, shape) in expected.items())
            parts.append(f"the model takes {takes}")
        return RequestRefused("; ".join(parts), status)

    def _model_inputs(self, model: str) -> dict[str, tuple[str, list[int]]] | None:
        """name -> (datatype, shape with -1 for any size, batch included) from the model's metadata."""
        try:
            if self.protocol == "grpc":
                metadata = self._client.get_model_metadata(model, as_json=True, client_timeout=self.timeout_s)
            else:
                metadata = self._client.get_model_metadata(model)
        except Exception:  # noqa: BLE001 - an unknown model has no metadata; the server's message says so
            return None
        return {i["name"]: (i["datatype"], [int(d) for d in i["shape"]]) for i in metadata.get("inputs", [])}

    def _infer(
        self, model: str, inputs: dict[str, np.ndarray], outputs: list[str], class_count: int
    ) -> dict[str, np.ndarray]:
        result = self._send(model, inputs, outputs, class_count, None)
        return {name: result.as_numpy(name) for name in outputs}

    def _send(self, model, inputs, outputs, class_count: int, sequence: Chunk | None):
        request_inputs = []
        for name, array in inputs.items():
            tensor = self._module.InferInput(name, list(array.shape), WIRE_TYPES[array.dtype.name])
            if self.protocol == "http":
                tensor.set_data_from_numpy(array, binary_data=True)  # JSON would round floats
            else:
                tensor.set_data_from_numpy(array)
            request_inputs.append(tensor)
        if self.protocol == "http":
            requested = [
                self._module.InferRequestedOutput(name, binary_data=True, class_count=class_count)
                for name in outputs
            ]
        else:
            requested = [self._module.InferRequestedOutput(name, class_count=class_count) for name in outputs]
        options = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        if sequence is not None:
            options |= {
                "sequence_id": sequence.sequence_id,
                "sequence_start": sequence.start,
                "sequence_end": sequence.end,
                "model_version": sequence.version,
            }
            # a sequence's request is not retried: a second START or a repeated chunk would move its state
            return self._client.infer(model, request_inputs, outputs=requested, **options)
        return self._call(self._client.infer, model, request_inputs, outputs=requested, **options)

    def close(self) -> None:
        self._client.close()
