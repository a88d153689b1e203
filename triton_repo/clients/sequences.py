"""A stateful model checked as clients use it: its golden streams sent chunk by chunk, each stream its own
sequence (START on the first chunk, END on the last), several clients at once so that the sequences
interleave in the server; every chunk's outputs compared with the same stream run in-process with
explicit state."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from pathlib import Path

from triton_repo.clients.triton_client import Chunk, TritonClient
from triton_repo.clients.wire import wire_inputs
from triton_repo.core.compare import compare
from triton_repo.core.golden_streams import Streams, load_streams
from triton_repo.core.spec import Tolerance

CLIENTS = 4


@dataclass
class Worst:
    max_abs: float = 0.0
    max_rel: float = 0.0
    passed: bool = True
    error: str = ""


def new_sequence_ids(count: int) -> list[int]:
    """IDs no other client is likely to hold open: a random 40-bit base (Triton's IDs are uint64)."""
    base = random.randrange(1, 2**40) << 16
    return [base + i for i in range(count)]


def live_sequence_limit(config) -> tuple[int, str, str]:
    """How many sequences a model's sequence batcher holds at once, the config field that says so, and
    the spec field that raises it."""
    batching = config.sequence_batching
    if batching.WhichOneof("strategy_choice") == "direct":
        instances = sum(group.count or 1 for group in config.instance_group) or 1
        slots = max(config.max_batch_size, 1) * instances
        return (
            slots,
            f"direct: max_batch_size x instances = {slots}",
            "max_batch_size or triton.instance_count",
        )
    return (
        batching.oldest.max_candidate_sequences,
        "oldest.max_candidate_sequences",
        "sequence.max_candidate_sequences",
    )


def stream_check(
    client: TritonClient,
    model: str,
    repository: Path,
    entry: dict,
    tolerances: dict[str, Tolerance],
    clients: int = CLIENTS,
):
    """Every golden stream sent by `clients` clients of `client`'s protocol: per output, its name, what
    was sent, and the worst it saw (max abs and rel diff, passed, the first failure)."""
    from triton_repo.repo.config import parse_config

    streams = load_streams(repository / model / Path(entry["golden"]).parent / entry["sequence"]["file"])
    config = parse_config(repository / model / "config.pbtxt")
    worst = {name: Worst() for name in tolerances}
    ids = new_sequence_ids(streams.streams)
    lock = threading.Lock()

    def run(owned: list[int]) -> None:
        own = TritonClient(client.protocol, client.url, client.timeout_s)
        try:
            versions = {}
            for step in range(streams.steps):
                for stream in owned:
                    chunk = Chunk(ids[stream], step == 0, step == streams.steps - 1, versions.get(stream, ""))
                    try:
                        outputs, version = own.infer_step(
                            model, wire_inputs(config, streams.chunk(step, stream)), list(tolerances), chunk
                        )
                    except Exception as error:  # noqa: BLE001 - a failed request is a failed check
                        with lock:
                            for name in worst:
                                _fail(worst[name], f"stream {stream} step {step}: {_line(error)}")
                        return
                    versions[stream] = version
                    with lock:
                        _compare(worst, outputs, streams, step, stream, tolerances)
        finally:
            own.close()

    threads = [
        threading.Thread(target=run, args=(list(range(k, streams.streams, clients)),))
        for k in range(min(clients, streams.streams))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    plural = "s" if streams.streams != 1 else ""
    label = f"{streams.streams} stream{plural} x {streams.steps} chunks, {len(threads)} clients"
    return [(name, label, w) for name, w in worst.items()]


def _compare(worst, outputs, streams: Streams, step: int, stream: int, tolerances) -> None:
    expected = streams.expected(step, stream)
    for name, tolerance in tolerances.items():
        actual = outputs.get(name)
        want = expected[name]
        if actual is None or actual.shape != want.shape:
            shape = None if actual is None else list(actual.shape)
            _fail(worst[name], f"stream {stream} step {step}: shape {shape} vs golden {list(want.shape)}")
            continue
        diff = compare(actual, want, tolerance)
        entry = worst[name]
        entry.max_abs, entry.max_rel = max(entry.max_abs, diff.max_abs), max(entry.max_rel, diff.max_rel)
        if not diff.passed and entry.passed:
            _fail(entry, f"first outside tolerance at stream {stream} step {step}")
            entry.max_abs = max(entry.max_abs, diff.max_abs)


def _fail(entry: Worst, error: str) -> None:
    if entry.passed:
        entry.passed, entry.error = False, error
    if not entry.max_abs:
        entry.max_abs = entry.max_rel = float("inf")


def _line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else repr(error)
