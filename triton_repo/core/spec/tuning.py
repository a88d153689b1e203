"""models/<name>/tuning.yaml: the served settings `triton-repo tune --apply` chose, applied by every build.

It overrides model.yaml's `triton` section (instances, threads per instance, dynamic batching) and, when
the ensemble's variant is `auto`, names the variant the ensemble calls. The measured numbers that
justified the choice are kept in the file for the reader (`measured`); the build ignores them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from triton_repo.core.errors import SpecError

TUNING_FILE = "tuning.yaml"
HEADER = """\
# Served settings chosen by `triton-repo tune --apply`, applied over model.yaml by every build.
# `triton` overrides model.yaml's triton section; `variant` is the precision the ensemble calls when its
# variant is auto. `measured` is what justified the choice (the build ignores it). Editing by hand is fine;
# delete the file to go back to model.yaml's settings.
"""
ALLOWED = {"triton", "variant", "measured"}
TUNED_TRITON = {"instance_count", "intra_op_threads", "dynamic_batching"}


def read_tuning(folder: Path) -> dict[str, Any] | None:
    """The folder's tuning.yaml as a mapping, or None without one; unknown keys are refused."""
    path = folder / TUNING_FILE
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: malformed YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict) or set(data) - ALLOWED:
        unknown = sorted(set(data) - ALLOWED) if isinstance(data, dict) else data
        raise SpecError(
            f"{path}: unknown keys {unknown}; allowed: {sorted(ALLOWED)} (delete the file to reset)"
        )
    triton = data.get("triton") or {}
    if not isinstance(triton, dict) or set(triton) - TUNED_TRITON:
        raise SpecError(f"{path}: triton: only {sorted(TUNED_TRITON)} can be tuned")
    return data


def apply_tuning(spec_data: dict[str, Any], tuning: dict[str, Any]) -> dict[str, Any]:
    """model.yaml's mapping with tuning.yaml's settings over it (validated after, with the rest)."""
    merged = dict(spec_data)
    triton = dict(merged.get("triton") or {})
    triton.update(tuning.get("triton") or {})
    merged["triton"] = triton
    variant = tuning.get("variant")
    ensemble = merged.get("ensemble")
    if variant and isinstance(ensemble, dict) and ensemble.get("variant", "auto") == "auto":
        merged["ensemble"] = {**ensemble, "variant": variant}
    return merged


def write_tuning(folder: Path, triton: dict, variant: str | None, measured: dict) -> Path:
    """tuning.yaml, atomically: the settings, then the numbers behind them."""
    from triton_repo.core.spec.triton import TritonSettings

    try:
        TritonSettings.model_validate(triton)
    except ValidationError as error:
        raise SpecError(f"tuned settings are not valid triton settings: {error.errors()[0]['msg']}") from None
    data = {"triton": triton, **({"variant": variant} if variant else {}), "measured": measured}
    path = folder / TUNING_FILE
    tmp = path.with_name(TUNING_FILE + ".tmp")
    tmp.write_text(HEADER + yaml.safe_dump(data, sort_keys=False, width=110))
    tmp.replace(path)
    return path
