"""Verify stage: ONNX Runtime vs the golden FP32 PyTorch outputs, per output, at every golden shape."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from triton_repo.core.compare import compare
from triton_repo.core.errors import CheckFailed
from triton_repo.core.fingerprint import package_version, sha256_file
from triton_repo.core.golden import load_golden
from triton_repo.core.golden_streams import SEQUENCE_FILE, load_streams, run_streams
from triton_repo.core.spec import LoadedSpec, Tolerance
from triton_repo.runtimes.onnxruntime_cpu import cpu_session

RECORD_FILE = "verify.json"
STAGE_VERSION = "verify-1"


@dataclass(frozen=True)
class VerifyRow:
    case: str
    output: str
    shape: tuple[int, ...]  # the golden (PyTorch) shape
    actual_shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    tolerance: Tolerance
    passed: bool


@dataclass(frozen=True)
class VerifyResult:
    rows: list[VerifyRow]
    seconds: float

    @property
    def worst_abs(self) -> float:
        return max(row.max_abs for row in self.rows)


def verify(loaded: LoadedSpec, onnx_path: Path, golden_path: Path) -> VerifyResult:
    """Run the ONNX model on every golden case; raise CheckFailed naming the first shape outside tolerance.

    A pass is remembered in `verify.json` beside the golden file, keyed by the ONNX and golden files'
    content, the tolerances and ONNX Runtime's version: a rebuild with nothing changed runs nothing.
    """
    start = time.perf_counter()
    record = golden_path.with_name(RECORD_FILE)
    key = _key(loaded, onnx_path, golden_path)
    remembered = _remembered(record, key)
    if remembered is not None:
        return VerifyResult(remembered, 0.0)
    session = cpu_session(onnx_path)
    tolerances = {o.name: o.tolerance for o in loaded.spec.outputs}
    names = list(tolerances)
    rows = []
    for case in load_golden(golden_path):
        try:
            actual = dict(zip(names, session.run(names, case.inputs), strict=True))
        except Exception as error:  # noqa: BLE001 - ONNX Runtime raises its own types; the shape is the clue
            shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in case.inputs.items())
            reason = str(error).splitlines()[0][:300]
            raise CheckFailed(
                f"{loaded.spec.name}: ONNX Runtime fails at {case.label} (inputs {shapes}) although PyTorch runs "
                f"there: {reason} (an export that bakes a shape into a Reshape fails like this)"
            ) from None
        for name in names:
            diff = compare(actual[name], case.outputs[name], tolerances[name])
            rows.append(
                VerifyRow(
                    case.label,
                    name,
                    case.outputs[name].shape,
                    actual[name].shape,
                    diff.max_abs,
                    diff.max_rel,
                    tolerances[name],
                    diff.passed,
                )
            )
    rows += _streamed(loaded, session, golden_path.with_name(SEQUENCE_FILE))
    failed = [row for row in rows if not row.passed]
    if failed:
        row = failed[0]
        if row.actual_shape != row.shape:
            raise CheckFailed(
                f"{loaded.spec.name}: ONNX output '{row.output}' has shape {list(row.actual_shape)} at {row.case} "
                f"where PyTorch gives {list(row.shape)} ({len(failed)} of {len(rows)} checks failed; "
                "an export that bakes a dim into a Reshape fails like this: use x.shape[i] without int())"
            )
        raise CheckFailed(
            f"{loaded.spec.name}: ONNX output '{row.output}' differs from PyTorch at {row.case} "
            f"(shape {list(row.shape)}): max abs diff {row.max_abs:.3g}, max rel diff {row.max_rel:.3g}, "
            f"tolerance atol={row.tolerance.atol:g} rtol={row.tolerance.rtol:g} "
            f"({len(failed)} of {len(rows)} checks failed; loosen outputs[].tolerance only if the export is right)"
        )
    tmp = record.with_name(RECORD_FILE + ".tmp")
    saved = [{**vars(row), "tolerance": row.tolerance.model_dump()} for row in rows]
    tmp.write_text(json.dumps({"key": key, "rows": saved}, indent=1))
    tmp.replace(record)
    return VerifyResult(rows, time.perf_counter() - start)


def _streamed(loaded: LoadedSpec, session, path: Path) -> list[VerifyRow]:
    """A stateful model's golden streams run step by step in ONNX Runtime, the state carried from each
    step to the next: one row per output over every step of every stream (an error grows over steps)."""
    if loaded.spec.sequence is None:
        return []
    golden = load_streams(path)
    names = [o.name for o in loaded.spec.outputs]

    def step(feed):
        return dict(zip(names, session.run(names, feed), strict=True))

    actual = run_streams(loaded, golden.inputs, step)
    label = f"streams ({golden.streams} x {golden.steps} steps)"
    rows = []
    for output in loaded.spec.served_outputs:
        expected, got = golden.outputs[output.name], actual.outputs[output.name]
        diff = compare(got, expected, output.tolerance)
        rows.append(
            VerifyRow(
                label,
                output.name,
                expected.shape,
                got.shape,
                diff.max_abs,
                diff.max_rel,
                output.tolerance,
                diff.passed,
            )
        )
    return rows


def _key(loaded: LoadedSpec, onnx_path: Path, golden_path: Path) -> str:
    streams = golden_path.with_name(SEQUENCE_FILE)
    payload = {
        "onnx": sha256_file(onnx_path),
        "golden": sha256_file(golden_path),
        **({"streams": sha256_file(streams)} if loaded.spec.sequence is not None else {}),
        "tolerances": {o.name: o.tolerance.model_dump() for o in loaded.spec.outputs},
        "onnxruntime": package_version("onnxruntime-gpu", "onnxruntime"),
        "v": STAGE_VERSION,
    }
    return json.dumps(payload, sort_keys=True)


def _remembered(record: Path, key: str) -> list[VerifyRow] | None:
    try:
        data = json.loads(record.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if data.get("key") != key:
        return None
    return [
        VerifyRow(
            **{
                **row,
                "shape": tuple(row["shape"]),
                "actual_shape": tuple(row["actual_shape"]),
                "tolerance": Tolerance(**row["tolerance"]),
            }
        )
        for row in data["rows"]
    ]
