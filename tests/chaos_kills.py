"""The publisher processes of the chaos test, seen from the test: started, killed at seeded random
points, supervised against hanging, and read back (their logs of finished publishes, and the S3 calls
tests/chaos_publisher.py traces on stderr, which tell where a kill landed)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

TRACED = re.compile(r"^\[\s*[\d.]+\] (.*)$")
ROUND = re.compile(r"^round (\d+): (publishing|done|refused)")


@dataclass
class Publisher:
    name: str
    models: list[str]
    log: Path
    stderr: Path
    process: subprocess.Popen
    started: float
    deadline: float
    killed_after: float | None = None  # seconds after its start, when the test killed it
    hung: bool = False

    def lines(self) -> list[str]:
        """Its stderr, without the timestamps: the progress lines and the traced S3 calls."""
        if not self.stderr.exists():
            return []
        return [
            (m.group(1) if (m := TRACED.match(line)) else line.strip())
            for line in self.stderr.read_text(errors="replace").splitlines()
        ]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def outcome(self) -> str:
        if self.hung:
            return "hung (killed at its deadline)"
        if self.killed_after is not None:
            return f"killed at {self.killed_after:.1f} s"
        return f"exit {self.process.returncode}"


def launch(
    name: str,
    models: list[str],
    rounds: int,
    shared: tuple[str, list[int]] | None,
    url: str,
    built: Path,
    server: str,
    folder: Path,
    env: dict[str, str],
    payload_bytes: int,
    deadline: float,
    root: Path,
) -> Publisher:
    """`python -m tests.chaos_publisher` for `models` (each round) and `shared` (the model and the rounds
    it is published in too), its log and stderr in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    log, stderr = folder / f"{name}.jsonl", folder / f"{name}.stderr"
    command = [sys.executable, "-m", "tests.chaos_publisher", "--url", url, "--repository", str(built)]
    command += ["--rounds", str(rounds), "--name", name, "--log", str(log)]
    command += [
        "--staging",
        str(folder / "staging"),
        "--server",
        server,
        "--payload-bytes",
        str(payload_bytes),
    ]
    for model in models:
        command += ["--model", model]
    if shared is not None:
        command += ["--shared", shared[0], "--shared-rounds", ",".join(str(r) for r in shared[1])]
    with stderr.open("w") as errors:
        process = subprocess.Popen(
            command,
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
        )
    now = time.monotonic()
    return Publisher(name, models, log, stderr, process, now, now + deadline)


def read_log(path: Path) -> list[dict]:
    """The JSON lines of a publisher's log; a torn last line (killed while writing) is left out."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        lines = lines[:-1]
    return [json.loads(line) for line in lines if line.strip()]


# -- kills ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Aim:
    """Where a kill is meant to land: `delay` seconds (drawn from `window`) after the publish's first
    trace line containing `anchor`. Only meant: the step it was in is read from the trace after."""

    meant: str
    anchor: str
    window: tuple[float, float]


# In the order the kills take them. Uploads of the tiny model take ~0.1 s, the first pointer write then
# waits a second for its LastModified to move past the version's, the manifest write takes ~10 ms, a
# load about one second per model (measured on 2 cores, 1 MB payload).
AIMS = (
    Aim("mid-upload", "s3 upload_new", (0.0, 0.06)),
    Aim("between the pointers and the manifest", "/config.pbtxt", (0.0, 1.0)),
    Aim("during the manifest write", "/manifest.json", (0.0, 0.03)),
    Aim("while the servers load", "/manifest.json", (0.05, 0.8)),
    Aim("between the version and the pointer", "uploaded ", (0.0, 0.1)),
    Aim("while deleting what is no longer served", ": loaded ", (0.0, 0.05)),
)


@dataclass
class Kill:
    """Kill `publisher` in round `round` or a later one, as `aim` says (when it holds the lease: a
    publisher waiting for it is not interesting to kill); a publish that finishes first is let go, and
    the next one is aimed at."""

    publisher: str
    round: int
    aim: Aim
    delay: float
    anchor: float | None = None  # when the test saw the anchor line
    round_hit: int | None = None
    landed: str = ""  # the step it was in, from its trace
    last: str = ""  # its last traced line


def kill_schedule(names: list[str], rounds: int, kills: int, seed: int) -> list[Kill]:
    """`kills` publishers, each in a seeded random round, with the next aim and a seeded random delay
    within its window."""
    rng = random.Random(seed)
    victims = rng.sample(names, min(kills, len(names)))
    schedule = []
    for index, name in enumerate(victims):
        aim = AIMS[index % len(AIMS)]
        number = rng.randint(1, max(1, rounds - 1))  # a later round is left for a kill that overshot
        schedule.append(Kill(name, number, aim, round(rng.uniform(*aim.window), 3)))
    return schedule


def current_round(lines: list[str]) -> tuple[int | None, list[str]]:
    """The round in progress (None when between rounds) and its lines so far."""
    number, start = None, 0
    for index, line in enumerate(lines):
        match = ROUND.match(line)
        if match and match.group(2) == "publishing":
            number, start = int(match.group(1)), index + 1
        elif match:
            number = None
    return number, (lines[start:] if number is not None else [])


def step_of(lines: list[str]) -> str:
    """Which step of a publish the lines of an interrupted round end in (lease renewals skipped)."""
    steps = (
        ("s3 upload_new ", "", "mid-upload"),
        ("uploaded ", "read back", "after a version was uploaded and read back, before the pointers"),
        ("s3 write ", "/config.pbtxt", "during a pointer write"),
        ("s3 wrote ", "/config.pbtxt", "after a pointer write, before the manifest"),
        ("s3 write ", "/manifest.json", "during the manifest write"),
        ("s3 wrote ", "/manifest.json", "after the manifest write, while the servers load"),
        ("s3 delete ", "", "deleting what is no longer served"),
    )
    for line in reversed(lines):
        if "publish.lease" in line:
            continue
        if ": loaded " in line:
            return "after the servers loaded, before deleting what is no longer served"
        if "publish.probe" in line:
            return "probing conditional writes"
        for start, end, step in steps:
            if line.startswith(start) and (end in line if start == "uploaded " else line.endswith(end)):
                return step
    return "before its first S3 write"


def supervise(publishers: list[Publisher], kills: list[Kill], poll: float = 0.02) -> None:
    """Until every publisher has exited: arm each kill at its anchor line in its round (or a later one),
    kill when its delay is up (noting the step it was in), and kill any publisher that runs past its
    deadline (hung)."""
    by_name = {p.name: p for p in publishers}
    pending = list(kills)
    while any(p.process.poll() is None for p in publishers):
        now = time.monotonic()
        for kill in list(pending):
            victim = by_name[kill.publisher]
            if victim.process.poll() is not None:
                kill.landed = f"not killed: it had exited ({victim.process.returncode}) first"
                pending.remove(kill)
                continue
            number, lines = current_round(victim.lines())
            if kill.anchor is not None and number != kill.round_hit:
                kill.anchor = None  # that publish finished first: the kill waits for the next one
            if kill.anchor is None:
                anchored = any(kill.aim.anchor in line for line in lines)
                if number is not None and number >= kill.round and anchored:
                    kill.anchor, kill.round_hit = now, number
                continue
            if now - kill.anchor >= kill.delay:
                victim.kill()
                victim.killed_after = time.monotonic() - victim.started
                number, lines = current_round(victim.lines())
                kill.landed = step_of(lines) if number is not None else "after its round was done"
                kill.last = next((line for line in reversed(lines) if "publish.lease" not in line), "")
                pending.remove(kill)
        for publisher in publishers:
            if publisher.process.poll() is None and now > publisher.deadline:
                publisher.kill()
                publisher.hung = True
        time.sleep(poll)
    for kill in pending:
        kill.landed = "not killed: its publisher had exited first"


@dataclass
class Interrupted:
    """What a killed publisher's last round had begun: its uploads, its pointer writes, and whether a
    manifest write after them was done."""

    uploaded: dict[str, int] = field(default_factory=dict)  # model -> version
    pointers: list[str] = field(default_factory=list)
    manifest_after: bool = False

    @classmethod
    def of(cls, publisher: Publisher, prefix: str) -> Interrupted:
        _, lines = current_round(publisher.lines())
        found = cls()
        for line in lines:
            kind, _, key = line.partition(" ")[2].partition(" ") if line.startswith("s3 ") else ("", "", "")
            parts = key.removeprefix(prefix + "/").split("/")
            if kind == "upload_new" and len(parts) >= 3:
                version = parts[1] if parts[1].isdigit() else parts[2]
                found.uploaded.setdefault(parts[0], int(version))
            elif kind == "write" and key.endswith("/config.pbtxt"):  # begun: it may have landed
                found.pointers.append(parts[0])
                found.manifest_after = False
            elif kind == "wrote" and key.endswith("/manifest.json"):  # done: the manifest has it
                found.manifest_after = True
        return found

    def pointer_ahead(self, model: str, named: list[int]) -> bool:
        """True when `named` (a pointer's versions) is what this publish wrote for `model` before it was
        killed, without the manifest write that would have followed."""
        return model in self.pointers and not self.manifest_after and self.uploaded.get(model) == max(named)
