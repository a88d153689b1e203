"""The registry of artifact kinds (triton_repo/builders/precision/kinds.py): the tables every module reads."""

from __future__ import annotations

from pathlib import Path

from triton_repo.builders.precision.kinds import (
    BY_NAME,
    CHOICES_SECTIONS,
    CPU_CANDIDATES,
    EXPORT,
    GPU_SERVED,
    KINDS,
    SEARCHABLE,
    TOOL_FAMILY,
    kinds_for,
    runners_for,
)
from triton_repo.builders.precision.node_choices import HEADER, PrecisionChoices
from triton_repo.core.spec import PRECISIONS

ROOT = Path(__file__).resolve().parents[3]


def test_the_served_pairs_are_the_ones_the_docs_promise():
    assert CPU_CANDIDATES == {
        "fp32": ("fp32", "fp32@ov-f32"),
        "fp16": ("fp16-cpu",),
        "bf16": ("fp32@ov-bf16",),
        "int8": ("int8-cpu", "int8-ov@ov-bf16", "int8-qad@ov-bf16"),
    }
    assert GPU_SERVED == {"fp32": "fp32", "fp16": "fp16", "bf16": "bf16@ov-f32", "int8": "int8"}


def test_each_target_builds_and_measures_only_its_candidates_and_the_reference():
    from triton_repo.builders.targets import CpuTarget, GpuTarget

    assert CpuTarget().serves == {
        "fp32",
        "fp32@ov-f32",
        "fp32@ov-bf16",
        "fp16-cpu",
        "int8-cpu",
        "int8-ov@ov-bf16",
        "int8-qad@ov-bf16",
    }
    assert GpuTarget().serves == {"fp32", "fp16", "bf16@ov-f32", "int8"}
    assert GpuTarget().pairs == GpuTarget().serves and GpuTarget(artifacts="all").pairs is None
    assert CpuTarget(artifacts="all").pairs is None


def test_every_kind_has_its_own_file_a_known_precision_and_a_maker_that_runs_somewhere():
    assert len({k.file for k in KINDS}) == len(KINDS) == len(BY_NAME)
    for kind in KINDS:
        assert kind.precision in PRECISIONS, kind.name
        assert kind.maker == EXPORT or kind.maker in TOOL_FAMILY, kind.name
        assert kind.runners, kind.name
        runner_names = {r.name for r in kind.runners}
        assert set(kind.cpu_serves) <= runner_names, kind.name
        assert set(kind.cpu_serves.values()) <= set(PRECISIONS), kind.name
        assert kind.gpu_runner is None or kind.gpu_runner in kind.runners, kind.name
        assert kind.choices_section is None or kind.choices_section in {k.name for k in KINDS}, kind.name


def test_a_spec_asks_for_the_kinds_of_its_precisions_and_the_qad_export_only_with_qad():
    assert kinds_for(["fp32"]) == ["fp32"]
    assert kinds_for(["fp32", "int8"]) == ["fp32", "int8", "int8-cpu", "int8-ov"]
    assert kinds_for(["fp32", "int8"], "qad")[-1] == "int8-qad"
    assert kinds_for(["fp32", "fp16", "bf16"]) == ["fp32", "fp16", "fp16-cpu", "bf16"]


def test_the_fp32_graph_runs_in_openvino_at_bf16_only_when_bf16_is_asked_for():
    assert [r.name for r in runners_for(["fp32", "int8"])["fp32"]] == ["ort", "ov-f32"]
    assert [r.name for r in runners_for(["fp32", "bf16"])["fp32"]] == ["ort", "ov-f32", "ov-bf16"]


def test_precision_yaml_has_one_section_per_kind_that_owns_one_and_its_header_explains_each():
    sections = list(PrecisionChoices.model_fields)
    owners = [k.name for k in KINDS if k.choices_section == k.name]
    assert sections == [name.replace("-", "_") for name in owners]
    assert CHOICES_SECTIONS["int8-qad"] == "int8"  # the QAD export applies the TensorRT artifact's section
    for name in owners:
        assert f"#   {name:<9} " in HEADER
    assert set(SEARCHABLE) <= set(owners)


def test_the_docs_table_of_artifacts_lists_every_kind():
    text = (ROOT / "docs" / "precision.md").read_text()
    table = text[text.index("| artifact | made by | file | measured with |") :].split("\n\n")[0]
    listed = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert listed == [k.name for k in KINDS]
    for kind in KINDS:
        assert f"`{kind.file}`" in table, kind.name
