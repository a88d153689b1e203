"""One publisher of the chaos test (tests/integration/test_store_chaos.py), run as a child process that
the test kills at random: ROUNDS publishes of its models into one object-storage repository.

Each round stages the models from a built local repository, writes a new `1/chaos.bin` into each (so
each is a new version), calls `publish_to_store` and, only after it returned, appends one JSON line per
published model to its log ({publisher, round, model, version}, and when the call started and returned;
flushed and fsynced in one write): a publisher killed mid-publish never logs a publish it did not finish. A refused publish (TritonRepoError)
is logged as {publisher, round, error} and the next round goes on; anything else is a crash (exit 1).

On stderr, each line carries the seconds since the process started, and every S3 write, upload and
delete the publish makes is traced, so the test can say where a kill landed.

    python -m tests.chaos_publisher --url s3://http://127.0.0.1:PORT/models/chaos --repository BUILT \
        --model own0_fp32 --shared shared_fp32 --shared-rounds 1,3 --rounds 3 --name p0 --log p0.jsonl \
        --staging DIR --server http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import os
import sys
import threading
import time
from pathlib import Path

STARTED = time.monotonic()
PAYLOAD = "chaos.bin"  # the file each round changes, in the staged version directory


def say(text: str) -> None:
    sys.stderr.write(f"[{time.monotonic() - STARTED:7.3f}] {text}\n")
    sys.stderr.flush()


def append_lines(log: Path, records: list[dict]) -> None:
    """One write of whole lines, flushed and fsynced: a kill leaves at most a torn last line, which
    the reader ignores."""
    data = "".join(json.dumps(record, sort_keys=True) + "\n" for record in records).encode()
    descriptor = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def payload(seed: str, size: int) -> bytes:
    """`size` bytes that differ for every (publisher, round, model): a new version each round."""
    import numpy as np

    digest = hashlib.sha256(seed.encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little")).bytes(size)


def stage_round(built: Path, staging: Path, name: str, seed: str, size: int):
    """The model `name` of the built repository, staged as a build stages it, with a new payload."""
    from triton_repo.repo.store.from_local import stage_from_repository
    from triton_repo.repo.writer import VERSION, file_hashes

    (staged,) = stage_from_repository(built, staging, [name])  # hard links: never write into them
    (staged.path / VERSION / PAYLOAD).write_bytes(payload(seed, size))  # a new file, not a link
    entry = {**staged.manifest_entry, "files": file_hashes(staged.path)}
    return dataclasses.replace(staged, manifest_entry=entry)


def trace_store_calls() -> None:
    """Print every S3 write (begun, and done), upload and delete the publish makes, timestamped (their
    behaviour is unchanged; the write an upload makes inside is not printed again)."""
    from triton_repo.repo.store.client import Store

    inside = threading.local()

    def traced(method, describe):
        @functools.wraps(method)
        def call(self, *args, **kwargs):
            outermost = getattr(inside, "depth", 0) == 0
            if outermost:
                say(f"s3 {method.__name__} {describe(args)}")
            inside.depth = getattr(inside, "depth", 0) + 1
            try:
                answer = method(self, *args, **kwargs)
            finally:
                inside.depth -= 1
            if outermost and method.__name__ == "write":  # a kill between the two: it may have landed
                say(f"s3 wrote {describe(args)}")
            return answer

        return call

    for name, describe in (
        ("write", lambda args: args[0]),
        ("upload_new", lambda args: args[1]),
        ("delete", lambda args: f"{len(args[0])} keys, first {args[0][0] if args[0] else '-'}"),
    ):
        if hasattr(Store, name):
            setattr(Store, name, traced(getattr(Store, name), describe))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the repository, s3://http://host:port/bucket/prefix")
    parser.add_argument("--repository", type=Path, required=True, help="the built local repository")
    parser.add_argument(
        "--model", action="append", required=True, help="a model to publish each round (repeat)"
    )
    parser.add_argument(
        "--shared", help="a model to publish too in --shared-rounds (one all publishers share)"
    )
    parser.add_argument("--shared-rounds", default="", help="the rounds that publish --shared: 1,3")
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--name", required=True, help="this publisher's name in its log lines")
    parser.add_argument("--log", type=Path, required=True, help="JSON lines, one per finished publish")
    parser.add_argument("--staging", type=Path, required=True, help="this publisher's own staging folder")
    parser.add_argument("--server", action="append", default=[], help="HTTP URL of a server to load")
    parser.add_argument("--payload-bytes", type=int, default=1 << 20)
    args = parser.parse_args(argv)

    from triton_repo.core.errors import TritonRepoError
    from triton_repo.core.storage import parse_s3_url
    from triton_repo.repo.publish import read_manifest
    from triton_repo.repo.store.publishing import StoreTarget, publish_to_store

    trace_store_calls()
    target = StoreTarget(parse_s3_url(args.url), servers=tuple(args.server))
    tools = read_manifest(args.repository).get("tools", {})
    args.staging.mkdir(parents=True, exist_ok=True)
    shared_rounds = {int(r) for r in args.shared_rounds.split(",") if r.strip()}
    for round_number in range(1, args.rounds + 1):
        models = args.model + ([args.shared] if args.shared and round_number in shared_rounds else [])
        staged = [
            stage_round(
                args.repository, args.staging, name, f"{args.name}/{round_number}/{name}", args.payload_bytes
            )
            for name in models
        ]
        say(f"round {round_number}: publishing {', '.join(models)}")
        started = time.time()  # wall clock: the publishers' logs are compared with each other
        try:
            published = publish_to_store(staged, target, tools)
        except TritonRepoError as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            append_lines(args.log, [{"publisher": args.name, "round": round_number, "error": first}])
            say(f"round {round_number}: refused: {first}")
            continue
        returned = time.time()
        records = [
            {"publisher": args.name, "round": round_number, "model": model, "version": version}
            | {"started": started, "returned": returned}
            for model, version in sorted(published.versions.items())
        ]
        append_lines(args.log, records)
        say(f"round {round_number}: done {dict(sorted(published.versions.items()))}")
    say("all rounds done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
