"""One client API over Triton's gRPC and HTTP protocols; the protocol quirks live here and only here."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import numpy as np

from triton_repo.errors import ServerError

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
        top classes as 'score:index[:label]' bytes instead of the tensor."""
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
            result = self._call(self._client.infer, model, request_inputs, outputs=requested)
        else:
            requested = [self._module.InferRequestedOutput(name, class_count=class_count) for name in outputs]
            result = self._call(
                self._client.infer, model, request_inputs, outputs=requested, client_timeout=self.timeout_s
            )
        return {name: result.as_numpy(name) for name in outputs}

    def close(self) -> None:
        self._client.close()
