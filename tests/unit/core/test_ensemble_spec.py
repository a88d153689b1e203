"""The `ensemble:` section of model.yaml: each bad one fails with one line naming the offending field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from conftest import TOKENIZE_ENSEMBLE, minimal_spec, spec_error

from triton_repo.core.spec import ImageStep, PixelsStep, TokenizeStep, load_spec

MODELS = Path(__file__).resolve().parents[3] / "models"

IMAGE_STEP = {
    "kind": "image",
    "output": "image",
    "resize": 16,
    "size": 12,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}
PIXELS_STEP = {"kind": "pixels", "output": "image", "dims": [12, 12, 3], "scale": 0.5}


def tokenize_spec() -> dict:
    """The conftest minimal spec (input_ids, attention_mask over batch x seq) with a text ensemble."""
    data = minimal_spec()
    data["ensemble"] = copy.deepcopy(TOKENIZE_ENSEMBLE)
    return data


def image_spec(step: dict | None = None) -> dict:
    """One float32 [batch, 3, 12, 12] input, ten logits, and an ensemble with an image (or given) step."""
    data = minimal_spec()
    data["axes"] = {"batch": {"min": 1, "opt": 2, "max": 4}}
    data["inputs"] = [{"name": "image", "dtype": "float32", "dims": ["batch", 3, 12, 12]}]
    data["outputs"] = [{"name": "logits", "dtype": "float32", "dims": ["batch", 10]}]
    data["ensemble"] = {"preprocess": dict(step or IMAGE_STEP), "samples": "model:ensemble_samples"}
    return data


def _step(**changes):
    return lambda d: d["ensemble"]["preprocess"].update(changes)


def _unbatched(d):
    d["max_batch_size"] = 0


def _without_batch_axis(d):
    del d["axes"]["batch"]
    for tensor in d["inputs"] + d["outputs"]:
        tensor["dims"] = tensor["dims"][1:]


def _extra_input(d):
    d["inputs"].append({"name": "token_type_ids", "dtype": "int64", "dims": ["batch", "seq"]})


# (test id, spec builder, how to break it, substrings the one-line message must contain)
BAD_ENSEMBLES = [
    (
        "tokenize_ids_not_an_input",
        tokenize_spec,
        _step(ids="token_ids"),
        ["ensemble.preprocess feeds 'token_ids'", "not an input", "['input_ids', 'attention_mask']"],
    ),
    (
        "tokenize_mask_not_an_input",
        tokenize_spec,
        _step(mask="mask"),
        ["ensemble.preprocess feeds 'mask'", "not an input"],
    ),
    (
        "image_output_not_an_input",
        image_spec,
        _step(output="pixels"),
        ["ensemble.preprocess feeds 'pixels'", "not an input", "['image']"],
    ),
    (
        "input_left_unfed",
        tokenize_spec,
        _extra_input,
        ["ensemble.preprocess must feed every input", "not fed: ['token_type_ids']"],
    ),
    (
        "ids_and_mask_feed_the_same_input",
        tokenize_spec,
        _step(mask="input_ids"),
        ["ensemble.preprocess", "'input_ids'"],
    ),
    ("unbatched_max_batch_size_zero", tokenize_spec, _unbatched, ["ensemble needs a batched model"]),
    ("unbatched_without_batch_axis", tokenize_spec, _without_batch_axis, ["ensemble needs a batched model"]),
    (
        "variant_int8_not_built",
        tokenize_spec,
        lambda d: d["ensemble"].update(variant="int8"),
        ["ensemble.variant int8 is not built", "['fp32']"],
    ),
    (
        "variant_fp16_not_built",
        tokenize_spec,
        lambda d: d["ensemble"].update(variant="fp16"),
        ["ensemble.variant fp16 is not built", "['fp32']"],
    ),
    (
        "variant_not_a_precision",
        tokenize_spec,
        lambda d: d["ensemble"].update(variant="fp8"),
        ["ensemble.variant", "'fp8' is not allowed"],
    ),
    (
        "unknown_key_in_ensemble",
        tokenize_spec,
        lambda d: d["ensemble"].update(postprocessing={"kind": "softmax"}),
        ["ensemble.postprocessing: unknown key"],
    ),
    (
        "unknown_postprocess_kind",
        tokenize_spec,
        lambda d: d["ensemble"].update(postprocess={"kind": "softmax"}),
        ["ensemble.postprocess.kind: 'softmax' is not allowed: use one of 'detections'"],
    ),
    (
        "unknown_form",
        tokenize_spec,
        lambda d: d["ensemble"].update(form="one"),
        ["ensemble.form", "'one' is not allowed"],
    ),
    (
        "fused_form_with_postprocess",
        tokenize_spec,
        lambda d: d["ensemble"].update(form="fused", postprocess={"kind": "detections"}),
        ["ensemble.form fused: not with ensemble.postprocess", "use form: steps or auto"],
    ),
    (
        "unknown_key_in_tokenize_step",
        tokenize_spec,
        _step(lowercase=True),
        ["ensemble.preprocess", "lowercase: unknown key"],
    ),
    (
        "unknown_key_in_image_step",
        image_spec,
        _step(interpolation="bicubic"),
        ["ensemble.preprocess", "interpolation: unknown key"],
    ),
    (
        "unknown_kind",
        tokenize_spec,
        _step(kind="audio"),
        ["ensemble.preprocess", "'audio'", "'tokenize', 'image', 'pixels'"],
    ),
    (
        "missing_kind",
        image_spec,
        lambda d: d["ensemble"]["preprocess"].pop("kind"),
        ["ensemble.preprocess", "'kind'"],
    ),
    ("std_with_a_zero", image_spec, _step(std=[0.2, 0.0, 0.2]), ["ensemble.preprocess", "std[1]", "0.0"]),
    ("std_negative", image_spec, _step(std=[0.2, 0.2, -1.0]), ["ensemble.preprocess", "std[2]", "-1.0"]),
    (
        "mean_with_two_values",
        image_spec,
        _step(mean=[0.5, 0.5]),
        ["ensemble.preprocess", "mean", "at least 3"],
    ),
    (
        "mean_with_four_values",
        image_spec,
        _step(mean=[0.5, 0.5, 0.5, 0.5]),
        ["ensemble.preprocess", "mean", "at most 3"],
    ),
    ("image_size_zero", image_spec, _step(size=0), ["ensemble.preprocess", "size", "0 is not allowed"]),
    (
        "image_without_resize",
        image_spec,
        lambda d: d["ensemble"]["preprocess"].pop("resize"),
        ["ensemble.preprocess", "resize: required field is missing"],
    ),
    (
        "tokenize_without_tokenizer",
        tokenize_spec,
        lambda d: d["ensemble"]["preprocess"].pop("tokenizer"),
        ["ensemble.preprocess", "tokenizer: required field is missing"],
    ),
    ("tokenize_negative_pad_id", tokenize_spec, _step(pad_id=-1), ["ensemble.preprocess", "pad_id", "-1"]),
    (
        "pixels_dim_zero",
        lambda: image_spec(PIXELS_STEP),
        _step(dims=[12, 0, 36]),
        ["ensemble.preprocess", "dims[1]", "0 is not allowed"],
    ),
    ("pixels_scale_zero", lambda: image_spec(PIXELS_STEP), _step(scale=0), ["ensemble.preprocess", "scale"]),
    (
        "raw_input_name_not_a_tensor_name",
        tokenize_spec,
        _step(input="raw\ntext"),
        ["ensemble.preprocess", "has a control character"],
    ),
    (
        "samples_an_npz_file",
        tokenize_spec,
        lambda d: d["ensemble"].update(samples="samples.npz"),
        ["ensemble.samples", "'samples.npz' must be module:function"],
    ),
    (
        "samples_missing",
        tokenize_spec,
        lambda d: d["ensemble"].pop("samples"),
        ["ensemble.samples: required field is missing"],
    ),
    (
        "preprocess_missing",
        tokenize_spec,
        lambda d: d["ensemble"].pop("preprocess"),
        ["ensemble.preprocess: required field is missing"],
    ),
]


@pytest.mark.parametrize(
    ("build", "mutate", "expected"), [c[1:] for c in BAD_ENSEMBLES], ids=[c[0] for c in BAD_ENSEMBLES]
)
def test_spec_rejects_ensemble(spec_file, build, mutate, expected):
    data = build()
    mutate(data)
    message = spec_error(spec_file(data))
    for part in expected:
        assert part in message


@pytest.mark.parametrize(
    ("build", "kind"),
    [(tokenize_spec, TokenizeStep), (image_spec, ImageStep), (lambda: image_spec(PIXELS_STEP), PixelsStep)],
    ids=["tokenize", "image", "pixels"],
)
def test_spec_accepts_each_preprocess_kind(spec_file, build, kind):
    ensemble = load_spec(spec_file(build())).spec.ensemble
    assert isinstance(ensemble.preprocess, kind)


def test_ensemble_defaults_auto_variant_no_labels_and_named_raw_inputs(spec_file):
    tokenize = load_spec(spec_file(tokenize_spec())).spec.ensemble
    assert tokenize.variant == "auto" and tokenize.labels is None and tokenize.form == "auto"
    assert tokenize.preprocess.input == "TEXT" and tokenize.preprocess.pad_id == 0
    assert load_spec(spec_file(image_spec())).spec.ensemble.preprocess.input == "IMAGE"
    unscaled = image_spec({k: v for k, v in PIXELS_STEP.items() if k != "scale"})
    pixels = load_spec(spec_file(unscaled)).spec.ensemble.preprocess
    assert pixels.input == "PIXELS" and pixels.scale == 1.0


def test_spec_accepts_variant_int8_when_int8_is_built(spec_file):
    data = tokenize_spec()
    data["accuracy"] = {"metric": "cosine_min"}
    data["data"].update(eval="eval.npz", calibration="calibration.npz")
    data["ensemble"]["variant"] = "int8"
    spec = load_spec(spec_file(data)).spec
    assert "int8" in spec.precisions and spec.ensemble.variant == "int8"


def test_spec_without_ensemble_has_none(spec_file):
    assert load_spec(spec_file(minimal_spec())).spec.ensemble is None


@pytest.mark.parametrize(
    ("name", "kind", "labels"),
    [
        ("digits", "pixels", "labels.txt"),
        ("minilm", "tokenize", None),
        ("mobilenet_v2", "image", "labels.txt"),
    ],
)
def test_zoo_ensembles_load(name, kind, labels):
    spec = load_spec(MODELS / name).spec
    assert spec.ensemble.preprocess.kind == kind and spec.labels_file(spec.outputs[0].name) == labels


@pytest.mark.parametrize(
    ("build", "mutate", "field"),
    [
        (tokenize_spec, _step(lowercase=True), "ensemble.preprocess.lowercase: unknown key"),
        (image_spec, _step(std=[0.2, 0.0, 0.2]), "ensemble.preprocess.std[1]: "),
    ],
    ids=["unknown_key", "std_zero"],
)
def test_spec_error_names_the_preprocess_field_as_written_in_yaml(spec_file, build, mutate, field):
    data = build()
    mutate(data)
    assert field in spec_error(spec_file(data))


@pytest.mark.parametrize("raw_name", ["image", "logits"], ids=["model_input", "model_output"])
def test_spec_rejects_raw_input_named_like_a_model_tensor(spec_file, raw_name):
    data = image_spec({**PIXELS_STEP, "input": raw_name})
    message = spec_error(spec_file(data))
    assert "ensemble.preprocess" in message and f"'{raw_name}'" in message
