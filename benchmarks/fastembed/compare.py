"""Sentences/s of in-process text embedding, measured in one interleaved run:

  fastembed    FastEmbed TextEmbedding.embed() (ONNX Runtime, mean pooling + normalize in numpy) on the
               locally exported all-MiniLM-L6-v2 (export_onnx.py), registered with add_custom_model
  ov-bf16      the project's served pair: preprocessing.tokenize + tokenizer.json, then the served
  ov-f32       model's model.onnx run by its openvino_cpu.OpenVinoSession at bf16 / f32
  ort-fp32     ONNX Runtime (CPUExecutionProvider, intra-op threads) on the FP32 variant's model.onnx,
               same tokenizer

Every call embeds `batch` consecutive sentences of the file (cycling), tokenizing them and padding to the
longest in the call; all run with the same thread count. Each cell is the median and range over `rounds`
measurements of `seconds` each; the methods are alternated (order rotated per round).

    python compare.py SENTENCES SERVED_DIR FP32_DIR [--preprocess-dir DIR] [--ov-fp32-onnx]
        [--fastembed-dir DIR] [--batches 8,32] [--seconds 3] [--rounds 3] [--threads 2]

SERVED_DIR: the served model's version folder (openvino_cpu.py + model.onnx, and preprocessing.py +
tokenizer.json unless --preprocess-dir names the tokenize step's own folder); FP32_DIR: the FP32 variant's
version folder (model.onnx). Their files are copied to a temporary folder first and imported from there, so
nothing is written next to them. --ov-fp32-onnx adds ov-bf16/ov-f32 columns on FP32_DIR's model.onnx.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.dont_write_bytecode = True
HERE = Path(__file__).resolve().parent
CUSTOM_NAME = "local/all-MiniLM-L6-v2"


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_inputs(served_dir: Path, preprocess_dir: Path, fp32_dir: Path, work: Path) -> dict:
    """Copy the project's runtime module, ONNX files and tokenizer (read-only sources) into `work`."""
    for src in (
        served_dir / "openvino_cpu.py",
        preprocess_dir / "preprocessing.py",
        preprocess_dir / "tokenizer.json",
    ):
        shutil.copyfile(src, work / src.name)
    shutil.copyfile(served_dir / "model.onnx", work / "served.onnx")
    shutil.copyfile(fp32_dir / "model.onnx", work / "fp32.onnx")
    return {
        "ov_module": work / "openvino_cpu.py",
        "served_onnx": work / "served.onnx",
        "fp32_onnx": work / "fp32.onnx",
        "pre_module": work / "preprocessing.py",
        "tokenizer": work / "tokenizer.json",
    }


def fastembed_runner(model_dir: Path, threads: int):
    """FastEmbed on the local export: the way users call it (embed() per batch, pooling in fastembed)."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    TextEmbedding.add_custom_model(
        model=CUSTOM_NAME,
        pooling=PoolingType.MEAN,
        normalization=True,
        sources=ModelSource(hf="local/unused"),
        dim=384,
        model_file="model.onnx",
    )
    model = TextEmbedding(CUSTOM_NAME, threads=threads, specific_model_path=str(model_dir), cuda=False)

    def run(rows: list[str]) -> np.ndarray:
        return np.stack(list(model.embed(rows, batch_size=len(rows))))

    return run


def project_tokenize(files: dict):
    pre = load_module("preprocessing", files["pre_module"])
    tok = str(files["tokenizer"])
    return lambda rows: pre.tokenize(rows, tok, 256, 0)


def openvino_runner(files: dict, onnx: Path, threads: int, precision: str):
    """The served model's path: tokenize, then OpenVinoSession.run (pooling + norm are in the graph)."""
    ov = load_module("openvino_cpu", files["ov_module"])
    session = ov.OpenVinoSession(str(onnx), threads, precision)
    tokenize = project_tokenize(files)

    def run(rows: list[str]) -> np.ndarray:
        ids, mask = tokenize(rows)
        return session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]

    return run


def ort_runner(files: dict, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(files["fp32_onnx"]), options, providers=["CPUExecutionProvider"])
    tokenize = project_tokenize(files)

    def run(rows: list[str]) -> np.ndarray:
        ids, mask = tokenize(rows)
        return session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]

    return run


def measure(run, lines: list[str], batch: int, seconds: float, start: int) -> float:
    """Sentences/s of `run` over consecutive `batch`-sized slices of `lines` for about `seconds`."""
    n, i = 0, start
    t0 = time.perf_counter()
    while True:
        rows = [lines[(i + j) % len(lines)] for j in range(batch)]
        run(rows)
        n += batch
        i += batch
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return n / elapsed


def check(runners: dict, reference: Path | None, lines: list[str]) -> None:
    """Cosine of every method's embeddings to the torch reference (FastEmbed must reach > 0.9999)."""
    if reference is None or not reference.exists():
        print("no reference.npz: accuracy check skipped")
        return
    data = np.load(reference)
    sentences, ref = [str(s) for s in data["sentences"]], data["embeddings"]
    for name, run in runners.items():
        emb = run(sentences)
        cos = np.sum(emb * ref, 1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(ref, axis=1)
        print(
            f"  {name:17s} cosine to torch mean-pooling reference over {len(sentences)} sentences: "
            f"min {cos.min():.7f}"
        )
        if name == "fastembed" and cos.min() <= 0.9999:
            sys.exit("FastEmbed embeddings disagree with the torch reference (cosine <= 0.9999)")


def versions() -> str:
    import importlib.metadata as md

    names = ("fastembed", "onnxruntime", "openvino", "tokenizers", "numpy")
    return ", ".join(f"{n} {md.version(n)}" for n in names) + f", python {sys.version.split()[0]}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sentences", type=Path)
    p.add_argument("served_dir", type=Path)
    p.add_argument("fp32_dir", type=Path)
    p.add_argument("--preprocess-dir", type=Path, default=None, help="default: SERVED_DIR")
    p.add_argument("--ov-fp32-onnx", action="store_true", help="also OpenVINO on FP32_DIR's model.onnx")
    p.add_argument("--fastembed-dir", type=Path, default=HERE / "model")
    p.add_argument("--batches", default="8,32")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()

    lines = [line.strip() for line in a.sentences.read_text().splitlines() if line.strip()]
    batches = [int(b) for b in a.batches.split(",")]
    with tempfile.TemporaryDirectory(prefix="embcompare-") as tmp:
        files = copy_inputs(a.served_dir, a.preprocess_dir or a.served_dir, a.fp32_dir, Path(tmp))
        runners = {
            "fastembed": fastembed_runner(a.fastembed_dir, a.threads),
            "ov-bf16": openvino_runner(files, files["served_onnx"], a.threads, "bf16"),
            "ov-f32": openvino_runner(files, files["served_onnx"], a.threads, "f32"),
            "ort-fp32": ort_runner(files, a.threads),
        }
        if a.ov_fp32_onnx:
            runners["ov-bf16 fp32.onnx"] = openvino_runner(files, files["fp32_onnx"], a.threads, "bf16")
            runners["ov-f32 fp32.onnx"] = openvino_runner(files, files["fp32_onnx"], a.threads, "f32")
        print(versions())
        print(f"load average before: {os.getloadavg()[0]:.1f} (other processes skew timings)")
        print(
            f"{len(lines)} sentences, threads {a.threads}, {a.seconds:g} s per measurement, {a.rounds} rounds"
        )
        check(runners, a.fastembed_dir / "reference.npz", lines)
        for run in runners.values():  # warm-up: every batch shape class once
            for b in batches:
                for k in range(3):
                    run(lines[k * b : (k + 1) * b])
        results = {(name, b): [] for name in runners for b in batches}
        names = list(runners)
        for r in range(a.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for b in batches:
                for name in order:
                    results[name, b].append(measure(runners[name], lines, b, a.seconds, 0))
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"  round {r + 1}/{a.rounds} done (load average {load})", flush=True)

    print(f"\nsentences/s: median [min-max] of {a.rounds}")
    print(f"{'batch':>5} | " + " | ".join(f"{n:>20s}" for n in names))
    for b in batches:
        cells = []
        for n in names:
            v = results[n, b]
            cells.append(f"{statistics.median(v):6.0f} [{min(v):.0f}-{max(v):.0f}]".rjust(20))
        print(f"{b:>5} | " + " | ".join(cells))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
