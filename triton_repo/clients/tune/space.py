"""The search space of a model's served configuration: which published variant (within the accuracy
budget), instances x threads per instance (no more threads than cores unless asked), and the dynamic
batcher (off, or on with a queue delay and preferred batch sizes within the batch axis)."""

from __future__ import annotations

from dataclasses import dataclass

QUEUE_DELAYS_US = (100, 500, 2000)  # besides the committed one


@dataclass(frozen=True)
class Batching:
    """Triton's dynamic batcher for a candidate: None delay means off."""

    delay_us: int | None
    preferred: tuple[int, ...] = ()
    sequence: bool = False  # a stateful model's sequence batcher, as the spec sets it (not tuned)

    @property
    def label(self) -> str:
        if self.sequence:
            return "sequence batcher"
        if self.delay_us is None:
            return "off"
        sizes = f", preferred {list(self.preferred)}" if self.preferred else ""
        return f"{self.delay_us} us{sizes}"


@dataclass(frozen=True)
class Candidate:
    variant: str  # the published Triton model the candidate runs, e.g. minilm_int8
    precision: str
    instances: int
    threads: int  # per instance
    batching: Batching

    @property
    def label(self) -> str:
        return f"{self.variant} · {self.instances} inst x {self.threads} thr · batching {self.batching.label}"

    def triton_settings(self) -> dict:
        """The spec's triton section for this candidate (what tuning.yaml records)."""
        batching = (
            None
            if self.batching.delay_us is None
            else {
                "max_queue_delay_microseconds": self.batching.delay_us,
                "preferred_batch_sizes": list(self.batching.preferred),
            }
        )
        return {
            "instance_count": self.instances,
            "intra_op_threads": self.threads,
            "dynamic_batching": batching,
        }


@dataclass(frozen=True)
class Committed:
    """What the spec serves today, for the baseline candidate of each variant."""

    instances: int
    threads: int
    batching: Batching


def threading_options(cores: int, oversubscribe: bool = False) -> list[tuple[int, int]]:
    """(instances, threads per instance) pairs; their product stays within `cores` unless oversubscribed."""
    limit = cores * 2 if oversubscribe else cores
    return [(i, t) for i in range(1, limit + 1) for t in range(1, limit + 1) if i * t <= limit]


def batching_options(max_batch: int, opt_batch: int, committed: Batching) -> list[Batching]:
    """Off, and on at a few queue delays with no preferred size or the batch axis' opt size (within max)."""
    if max_batch == 0:  # unbatched (no batcher), or stateful (its sequence batcher, as committed)
        return [committed]
    preferred = [()] + ([(opt_batch,)] if 1 < opt_batch <= max_batch else [])
    delays = sorted(
        set(QUEUE_DELAYS_US) | ({committed.delay_us} if committed.delay_us is not None else set())
    )
    options = [Batching(None)] + [Batching(d, p) for d in delays for p in preferred]
    return list(dict.fromkeys([committed, *options]))


def search_space(
    variants: dict[str, str],
    cores: int,
    max_batch: int,
    opt_batch: int,
    committed: Committed,
    oversubscribe: bool = False,
) -> list[Candidate]:
    """Every candidate: each variant (name -> precision) x threading x batching, the committed settings first."""
    threading = threading_options(cores, oversubscribe)
    mine = (committed.instances, committed.threads)  # first, whatever it is (threads 0: all cores)
    threading = [mine, *(option for option in threading if option != mine)]
    batching = batching_options(max_batch, opt_batch, committed.batching)
    return [
        Candidate(name, precision, instances, threads, option)
        for name, precision in variants.items()
        for instances, threads in threading
        for option in batching
    ]


def committed_candidates(variants: dict[str, str], committed: Committed) -> list[Candidate]:
    return [
        Candidate(name, precision, committed.instances, committed.threads, committed.batching)
        for name, precision in variants.items()
    ]
