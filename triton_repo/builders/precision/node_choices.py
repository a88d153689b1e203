"""models/<name>/precision.yaml: the node-level precision choices a build applies.

Written by `triton-repo search-precision` (or by hand) and read by every build. Each artifact lists the
FP32-graph nodes it keeps in higher precision and why, so a reviewer can see what was traded for accuracy.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from triton_repo.builders.precision.kinds import CHOICES_SECTIONS, KINDS
from triton_repo.core.errors import SpecError

CHOICES_FILE = "precision.yaml"
HEADER = """\
# Node-level precision choices for this model, read by every `triton-repo build`.
# Written by `triton-repo search-precision`; editing by hand is fine. Each node named here is a node of
# the FP32 ONNX graph that stays in higher precision in that artifact:
""" + "".join(f"#   {k.name:<9} {k.choices_note}\n" for k in KINDS if k.choices_section == k.name)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class KeptNode(_Strict):
    node: str = Field(min_length=1)
    op_type: str = ""
    why: str = ""


class SearchResult(_Strict):
    metric: str
    value: float
    bound: float | None = None  # what the gate held to the budget (accuracy.py: the metric's bound)
    budget: float
    default_value: float | None = None  # the metric with nothing excluded
    trials: int = 0
    seconds: float = 0.0
    searched_on: str = ""  # date
    # In-process ONNX Runtime inferences/s at batch 8 measured in one run: fp32, everything quantized
    # (when that was tried), and these choices; what keeping the nodes costs in speed.
    throughput_per_s: dict[str, float] = {}


class ArtifactChoices(_Strict):
    keep: list[KeptNode] = []
    result: SearchResult | None = None

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(kept.node for kept in self.keep)


class _Choices(_Strict):
    def for_artifact(self, artifact: str) -> ArtifactChoices:
        section = CHOICES_SECTIONS.get(artifact)
        return getattr(self, _field(section)) if section else ArtifactChoices()

    def with_artifact(self, artifact: str, choices: ArtifactChoices) -> PrecisionChoices:
        return self.model_copy(update={_field(CHOICES_SECTIONS[artifact]): choices})


def _field(section: str) -> str:
    return section.replace("-", "_")


_SECTIONS = list(dict.fromkeys(CHOICES_SECTIONS.values()))  # one per kind that owns one, in table order
# One field per section (kinds.py), its name as written in precision.yaml: unknown keys are errors.
PrecisionChoices = create_model(
    "PrecisionChoices",
    __base__=_Choices,
    **{_field(s): (ArtifactChoices, Field(default=ArtifactChoices(), alias=s)) for s in _SECTIONS},
)


def load_choices(folder: Path) -> PrecisionChoices:
    """The folder's precision.yaml, or empty choices when there is none."""
    path = folder / CHOICES_FILE
    if not path.is_file():
        return PrecisionChoices()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: malformed YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping with keys {', '.join(_SECTIONS)}")
    try:
        return PrecisionChoices.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise SpecError(
            f"{path}: {where}: {first['msg']} (keys: {', '.join(_SECTIONS)}; each keep: [{{node, why}}])"
        ) from None


def save_choices(choices: PrecisionChoices, folder: Path) -> Path:
    """Write precision.yaml atomically, artifacts with nothing to say left out."""
    path = folder / CHOICES_FILE
    data = choices.model_dump(by_alias=True, exclude_defaults=True)
    tmp = path.with_name(CHOICES_FILE + ".tmp")
    tmp.write_text(HEADER + yaml.safe_dump(data, sort_keys=False, width=110))
    tmp.replace(path)
    return path


def check_nodes(choices: PrecisionChoices, node_names: set[str], path: Path) -> None:
    """Every node the choices name must exist in the FP32 graph (names change when a model is re-exported)."""
    for artifact in CHOICES_SECTIONS:
        for kept in choices.for_artifact(artifact).keep:
            if kept.node not in node_names:
                raise SpecError(
                    f"{path}: {artifact}: node '{kept.node}' is not in the FP32 ONNX graph; the export changed: "
                    "re-run `triton-repo search-precision` or remove the entry"
                )
