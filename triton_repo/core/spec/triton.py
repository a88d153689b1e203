"""The served model's Triton settings: dynamic batching with its overload policy, instances, threads,
versions kept."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from triton_repo.core.spec.base import _Strict


class DynamicBatching(_Strict):
    """Triton's dynamic batcher; the two queue fields are its overload policy (0 leaves Triton's default).

    max_queue_size: requests beyond this many queued are rejected at once with UNAVAILABLE (0 = unbounded);
    queue_timeout_microseconds: a request queued longer than this is rejected (0 = no timeout).
    The upper bounds are the widths of Triton's ModelQueuePolicy fields (uint32, uint64).
    """

    preferred_batch_sizes: list[Annotated[int, Field(ge=1)]] = []
    max_queue_delay_microseconds: Annotated[int, Field(ge=0, le=10_000_000)] = 100
    max_queue_size: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    queue_timeout_microseconds: Annotated[int, Field(ge=0, le=2**64 - 1)] = 0

    @property
    def has_queue_policy(self) -> bool:
        return self.max_queue_size > 0 or self.queue_timeout_microseconds > 0


class TritonSettings(_Strict):
    dynamic_batching: DynamicBatching | None = DynamicBatching()
    instance_count: Annotated[int, Field(ge=1, le=64)] = 1
    intra_op_threads: Annotated[int, Field(ge=0, le=256)] = (
        0  # ONNX Runtime threads per instance; 0 = all cores
    )
    # Versions of each model kept in the repository and served (config.pbtxt version_policy latest K);
    # the previous ones are what `triton-repo rollback` returns to. 1 keeps no rollback.
    keep_versions: Annotated[int, Field(ge=1, le=16)] = 2
