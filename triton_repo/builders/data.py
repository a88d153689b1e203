"""A spec's data sets (calibration, eval and its labels, the ensemble's raw samples) for one build: loaded
once, and only when used.

Their digests key the artifact and measurement caches. A digest is remembered in `<work>/<name>/data.json`
under what the data is made from: the model folder's content, the data function's module when it lives
outside the folder, and the installed packages. So a rebuild with nothing changed computes no data at all
(MobileNetV2's 320 eval crops take about 3 s to cut). A data function must therefore be a deterministic
function of those; one that reads files elsewhere is recomputed after `rm -r <work>/<name>/data.json`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from triton_repo.core.fingerprint import arrays_digest, installed_packages, sha256_file
from triton_repo.core.golden import load_raw_golden, save_raw_golden
from triton_repo.core.golden_streams import check_streams
from triton_repo.core.references import load_arrays, load_labels
from triton_repo.core.spec import LoadedSpec

RECORD_FILE = "data.json"
LABELS = "eval_labels"


class DataSet:
    """Named input arrays, loaded on first use, and their digest, known without loading them when the
    build remembers it."""

    def __init__(self, load: Callable[[], dict[str, np.ndarray]], digest: Callable[[], str]) -> None:
        self._load, self._digest = load, digest
        self._arrays: dict[str, np.ndarray] | None = None

    @classmethod
    def of(cls, arrays: dict[str, np.ndarray]) -> DataSet:
        """Arrays already in memory."""
        return cls(lambda: arrays, lambda: arrays_digest(arrays))

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = self._load()
        return self._arrays

    @property
    def digest(self) -> str:
        return self._digest()


class ModelData:
    """The data sets of one spec; `fingerprint` is the export stage's (the model folder and its tools)."""

    def __init__(self, loaded: LoadedSpec, work_dir: Path, fingerprint: str) -> None:
        self.loaded, self._record = loaded, work_dir / RECORD_FILE
        self._fingerprint = fingerprint
        self._loaded: dict[str, dict[str, np.ndarray]] = {}

    def get(self, field: str) -> DataSet | None:
        """data.<field> (calibration, eval, eval_labels), or None when the spec has none."""
        if getattr(self.loaded.spec.data, field) is None:
            return None
        return DataSet(lambda: self.load(field), lambda: self.digest(field))

    def load(self, field: str) -> dict[str, np.ndarray]:
        if field not in self._loaded:
            if field == LABELS:
                self._loaded[field] = {"labels": load_labels(self.loaded, self.load("eval"))}
            elif self.loaded.spec.sequence is not None and field == "eval":  # streams, as data.sequence
                self._loaded[field] = check_streams(
                    self.loaded, load_arrays(self.loaded, field, check=False), field
                )
            else:
                self._loaded[field] = load_arrays(self.loaded, field)
        return self._loaded[field]

    def digest(self, field: str) -> str:
        source = self._source(field)
        remembered = self._read().get(field, {})
        if remembered.get("source") == source:
            return remembered["digest"]
        digest = arrays_digest(self.load(field))
        self._remember(field, {"source": source, "digest": digest})
        return digest

    def remember(self, field: str, make: Callable[[], np.ndarray]) -> np.ndarray:
        """The array `make` returns for the spec's `field` (a dotted path, e.g. ensemble.samples), kept in
        `<work>/<name>/data/<field>.npz` under what it is made from (text as bytes, without pickle)."""
        path = self._record.with_name("data") / f"{field}.npz"
        source = self._source(field)
        if self._read().get(field, {}).get("source") == source and path.is_file():
            return load_raw_golden(path).inputs[field]
        array = make()
        path.parent.mkdir(exist_ok=True)
        save_raw_golden({field: array}, {}, path)
        self._remember(field, {"source": source})
        return array

    def remember_file(self, field: str, make: Callable[[], Path | None]) -> Path | None:
        """The file path `make` returns for the spec's `field` (e.g. a tokenizer a function finds in a
        package), remembered under what it is made from while the file exists."""
        source = self._source(field)
        remembered = self._read().get(field, {})
        if remembered.get("source") == source:
            path = remembered.get("path")
            if path is None or Path(path).is_file():
                return None if path is None else Path(path)
        path = make()
        self._remember(field, {"source": source, "path": None if path is None else str(path)})
        return path

    def _remember(self, field: str, entry: dict) -> None:
        record = self._read()
        record[field] = entry
        tmp = self._record.with_name(RECORD_FILE + ".tmp")
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(self._record)

    def _read(self) -> dict:
        try:
            return json.loads(self._record.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def _source(self, field: str) -> str:
        """What data.<field> (or the spec's dotted `field`) is made from (labels: from the eval rows too)."""
        owner = self.loaded.spec
        for part in field.split(".") if "." in field else ["data", field]:
            owner = getattr(owner, part, None)
        reference = str(owner)
        parts = [
            self._fingerprint,
            installed_packages(),
            field,
            reference,
            _module_file_digest(self.loaded, reference),
        ]
        if field == LABELS:
            parts.append(self._source("eval"))
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _module_file_digest(loaded: LoadedSpec, reference: str) -> str:
    """The source file's digest of a `module:function` outside the model folder (the folder's own files are
    in the export fingerprint already); '' for a data file or a module in the folder."""
    if reference.endswith(".npz") or ":" not in reference:
        return ""
    module = reference.split(":")[0]
    if (loaded.folder / (module.replace(".", "/") + ".py")).is_file():
        return ""
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return ""
    origin = Path(found.origin) if found is not None and found.origin else None
    return sha256_file(origin) if origin is not None and origin.is_file() else ""
