"""The task metrics: each refuses planted damage the task would notice and passes planted noise within its
budget; the self-check refuses a metric that cannot fail on a model (cosine over one value, cosine over
a packed detection head) before any variant is measured."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import minimal_spec

from triton_repo.builders.precision.accuracy import measure
from triton_repo.builders.precision.metrics.selfcheck import check_metric
from triton_repo.core.decode import head_detections
from triton_repo.core.errors import SpecError
from triton_repo.core.spec import parse_spec

RNG = np.random.default_rng(0)


def _loaded(tmp_path, accuracy: dict, outputs: list[dict], labels: bool = False, axes: dict | None = None):
    data = minimal_spec()
    data["outputs"] = outputs
    data["axes"] |= axes or {}
    data["data"] |= {"eval": "eval.npz"} | ({"eval_labels": "labels.npz"} if labels else {})
    data["accuracy"] = accuracy
    path = tmp_path / "toy" / "model.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    return parse_spec(data, path)


# --- detection -------------------------------------------------------------------------------------------

ANCHORS = 400
CLASSES = 3


def _yolo_head(images: int, per_image: int = 4) -> np.ndarray:
    """A channels-first head [images, 4 + C, anchors]: a few confident boxes per image, the rest quiet."""
    head = np.zeros((images, 4 + CLASSES, ANCHORS), np.float32)
    head[:, 0:2] = RNG.uniform(20, 300, (images, 2, ANCHORS))
    head[:, 2:4] = RNG.uniform(8, 30, (images, 2, ANCHORS))
    head[:, 4:] = RNG.uniform(0, 0.05, (images, CLASSES, ANCHORS))
    for image in range(images):
        for anchor in RNG.choice(ANCHORS, per_image, replace=False):
            head[image, 4 + RNG.integers(CLASSES), anchor] = RNG.uniform(0.5, 0.95)
    return head


def _detection(tmp_path, **settings):
    return _loaded(
        tmp_path,
        {"metric": "detection", "budget": 0.9, "output": "output0", "detection": settings},
        [{"name": "output0", "dtype": "float32", "dims": ["batch", 4 + CLASSES, "anchors"]}],
        axes={"anchors": {"min": 1, "opt": ANCHORS, "max": 8400}},
    )


def test_detection_f1_counts_missed_and_added_boxes_against_fp32(tmp_path):
    loaded = _detection(tmp_path)
    reference = {"output0": _yolo_head(60)}
    found = head_detections(reference["output0"], "channels_first")
    assert sum(len(d) for d in found) == 240  # 4 per image, none suppressed
    dropped = reference["output0"].copy()
    for image, detections in enumerate(found[:12]):  # 12 images lose their best detection
        best = np.flatnonzero(dropped[image, 4:].max(axis=0) == detections.scores[0])[0]
        dropped[image, 4:, best] = 0.0
    result = measure(loaded, reference, {"output0": dropped}, None)
    assert result.details["missed"] == 12 and result.details["added"] == 0
    assert result.value == pytest.approx(2 * 228 / (2 * 228 + 12), abs=1e-6)
    assert result.label == "detection F1" and result.bound < result.value


def test_detection_passes_noise_on_scores_and_boxes_within_budget(tmp_path):
    loaded = _detection(tmp_path)
    reference = {"output0": _yolo_head(120)}
    noisy = reference["output0"].copy()
    noisy[:, :4] += RNG.normal(0, 0.5, noisy[:, :4].shape)  # half a pixel
    noisy[:, 4:] = np.clip(noisy[:, 4:] + RNG.normal(0, 0.01, noisy[:, 4:].shape), 0, 1)
    result = measure(loaded, reference, {"output0": noisy.astype(np.float32)}, None)
    assert result.passed, result.verdict
    assert result.value == 1.0 and result.details["max_score_shift"] < 0.05


def test_detection_refuses_boxes_moved_and_classes_swapped(tmp_path):
    loaded = _detection(tmp_path)
    reference = {"output0": _yolo_head(60)}
    moved = reference["output0"].copy()
    moved[:, 0] += moved[:, 2]
    assert measure(loaded, reference, {"output0": moved}, None).value == 0.0
    swapped = reference["output0"].copy()
    swapped[:, 4:] = np.roll(swapped[:, 4:], 1, axis=1)
    assert not measure(loaded, reference, {"output0": swapped}, None).passed


def test_detection_reads_an_anchors_first_head_with_objectness(tmp_path):
    loaded = _loaded(
        tmp_path,
        {"metric": "detection", "detection": {"objectness": True}},
        [{"name": "out", "dtype": "float32", "dims": ["batch", "anchors", 5 + CLASSES]}],
        axes={"anchors": {"min": 1, "opt": ANCHORS, "max": 8400}},
    )
    head = _yolo_head(30)
    anchors_first = np.concatenate([head[:, :4], np.ones_like(head[:, :1]), head[:, 4:]], axis=1)
    anchors_first = np.ascontiguousarray(anchors_first.transpose(0, 2, 1))
    quiet = anchors_first.copy()
    quiet[:, :, 4] = 0.1  # objectness 0.1: every score falls under the threshold
    result = measure(loaded, {"out": anchors_first}, {"out": quiet}, None)
    assert result.details["detections_fp32"] == 120 and result.details["detections_variant"] == 0
    assert not result.passed


def test_detection_from_separate_boxes_and_scores_outputs(tmp_path):
    loaded = _loaded(
        tmp_path,
        {"metric": "detection", "detection": {"boxes": "boxes", "scores": "scores", "box": "xyxy"}},
        [
            {"name": "boxes", "dtype": "float32", "dims": ["batch", 10, 4]},
            {"name": "scores", "dtype": "float32", "dims": ["batch", 10, CLASSES]},
        ],
    )
    corner = RNG.uniform(0, 200, (50, 10, 2))
    boxes = np.concatenate([corner, corner + RNG.uniform(10, 40, (50, 10, 2))], axis=2).astype(np.float32)
    scores = RNG.uniform(0, 1, (50, 10, CLASSES)).astype(np.float32)
    reference = {"boxes": boxes, "scores": scores}
    assert measure(loaded, reference, dict(reference), None).value == 1.0
    moved = boxes.copy()
    moved[..., [0, 2]] += (moved[..., 2] - moved[..., 0])[..., None]  # each box moved by its width
    assert measure(loaded, reference, {"boxes": moved, "scores": scores}, None).value < 0.01
    check_metric(loaded, reference, None)  # it can fail on this model: accepted
    with pytest.raises(SpecError, match="budget 0\\b.*cannot fail|cannot fail.*budget 0\\b"):
        check_metric(  # a budget of 0 passes anything: refused
            loaded.model_copy(
                update={
                    "spec": loaded.spec.model_copy(
                        update={"accuracy": loaded.spec.accuracy.model_copy(update={"budget": 0.0})}
                    )
                }
            ),
            reference,
            None,
        )


# --- the self-check ---------------------------------------------------------------------------------------


def test_the_self_check_refuses_cosine_over_a_packed_detection_head(tmp_path):
    """Pixel box coordinates hide the class scores: the cosine of a head whose scores come from another
    image still reads 0.999, so cosine_min cannot judge this model and is refused naming the fix."""
    loaded = _loaded(
        tmp_path,
        {"metric": "cosine_min", "output": "output0"},
        [{"name": "output0", "dtype": "float32", "dims": ["batch", 4 + CLASSES, "anchors"]}],
        axes={"anchors": {"min": 1, "opt": ANCHORS, "max": 8400}},
    )
    head = _yolo_head(40)
    head[:, :4] = np.sort(head[:, :4], axis=2)  # the anchors' boxes alike in every image, as a grid is
    with pytest.raises(SpecError) as info:
        check_metric(loaded, {"output0": head}, None)
    message = str(info.value)
    assert "\n" not in message and "cannot fail" in message
    assert "channels 4-6 of axis 1" in message and "detection for a raw detection head" in message
    assert check_metric(_detection(tmp_path), {"output0": head}, None) is None  # the task metric can fail


def test_the_self_check_refuses_cosine_over_one_value_whatever_its_dims_say(tmp_path):
    loaded = _loaded(
        tmp_path,
        {"metric": "cosine_min"},
        [{"name": "speech", "dtype": "float32", "dims": ["batch", "n"]}],
        axes={"n": {"min": 1, "opt": 1, "max": 4}},
    )
    probability = RNG.uniform(0, 1, (64, 1)).astype(np.float32)
    with pytest.raises(SpecError, match="is 1 whatever the value.*use metric: binary"):
        check_metric(loaded, {"speech": probability}, None)


def test_a_spec_gating_cosine_on_a_one_value_output_is_refused_when_loaded(tmp_path):
    with pytest.raises(SpecError, match=r"cosine_min over output 'p' \['batch', 1\] is 1 whatever the value"):
        _loaded(tmp_path, {"metric": "cosine_min"}, [{"name": "p", "dtype": "float32", "dims": ["batch", 1]}])


def test_the_self_check_refuses_an_eval_set_whose_rows_all_answer_alike(tmp_path):
    loaded = _binary(tmp_path)
    always_yes = np.full((200, 1), 0.9, np.float32)
    always_yes[0] = 0.1  # one row in 200 says no: answers for another row still agree 99%
    with pytest.raises(SpecError, match="barely differ from one eval row to another"):
        check_metric(loaded, {"speech": always_yes}, None)


def test_the_self_check_accepts_each_task_metric_on_outputs_that_vary(tmp_path):
    check_metric(_binary(tmp_path), {"speech": RNG.uniform(0, 1, (200, 1)).astype(np.float32)}, None)
    check_metric(_embedding(tmp_path), {"embedding": _clustered(120)}, None)
    check_metric(_dense(tmp_path), {"map": _maps(60)}, None)
    check_metric(_ctc(tmp_path), {"logits": _ctc_logits(60)}, None)


def test_a_metric_that_refuses_fp32_itself_is_refused_with_the_evidence(tmp_path):
    """A detector whose eval images hold no detection at the threshold gives the gate nothing to count."""
    head = _yolo_head(20, per_image=0)
    with pytest.raises(SpecError, match="refuses FP32's own outputs.*detections fp32 0"):
        check_metric(_detection(tmp_path), {"output0": head}, None)


# --- binary -------------------------------------------------------------------------------------------------


def _binary(tmp_path, budget=0.95):
    return _loaded(
        tmp_path,
        {"metric": "binary", "budget": budget},
        [{"name": "speech", "dtype": "float32", "dims": ["batch", 1]}],
    )


def test_binary_refuses_flipped_decisions_that_cosine_would_pass(tmp_path):
    probability = RNG.uniform(0.05, 0.95, (400, 1)).astype(np.float32)
    result = measure(_binary(tmp_path), {"speech": probability}, {"speech": 1 - probability}, None)
    assert result.value == 0.0 and not result.passed
    assert result.details["max_value_error"] > 0.5


def test_binary_passes_noise_that_moves_few_decisions(tmp_path):
    probability = RNG.uniform(0, 1, (1000, 1)).astype(np.float32)
    noisy = np.clip(probability + RNG.normal(0, 0.002, probability.shape), 0, 1).astype(np.float32)
    result = measure(_binary(tmp_path), {"speech": probability}, {"speech": noisy}, None)
    assert result.passed and result.value > 0.99
    assert result.details["flipped"] == np.sum((probability > 0.5) != (noisy > 0.5))


# --- dense maps -------------------------------------------------------------------------------------------


def _dense(tmp_path, **settings):
    return _loaded(
        tmp_path,
        {"metric": "dense", "budget": 0.8, "dense": settings},
        [{"name": "map", "dtype": "float32", "dims": ["batch", 1, 32, 32]}],
    )


def _maps(rows: int, empty_every: int = 5) -> np.ndarray:
    """Probability maps with one or two bright rectangles, every `empty_every`-th row without any."""
    maps = RNG.uniform(0, 0.1, (rows, 1, 32, 32)).astype(np.float32)
    for row in range(rows):
        if row % empty_every == 0:
            continue
        for _ in range(1 + row % 2):
            y, x = RNG.integers(0, 22, 2)
            maps[row, 0, y : y + 8, x : x + 10] = 0.9
    return maps


def test_dense_iou_counts_two_empty_maps_as_agreeing_and_refuses_a_shifted_map(tmp_path):
    maps = _maps(50)
    loaded = _dense(tmp_path)
    same = measure(loaded, {"map": maps}, {"map": maps + 0.01}, None)
    assert same.value == 1.0 and same.details["empty_rows"] == 10 and same.passed
    shifted = measure(loaded, {"map": maps}, {"map": np.roll(maps, 8, axis=-1)}, None)
    assert not shifted.passed


def test_dense_regions_ignore_stray_pixels_that_per_pixel_iou_counts(tmp_path):
    """Stray pixels on maps without text cost the IoU of those rows everything; the regions are the same."""
    maps = _maps(60)
    speckled = maps.copy()
    speckled[::5, 0, 3, 3] = 0.8  # a stray pixel on each empty map
    iou = measure(_dense(tmp_path), {"map": maps}, {"map": speckled}, None)
    regions = measure(_dense(tmp_path, compare="regions", min_area=4), {"map": maps}, {"map": speckled}, None)
    assert iou.value == pytest.approx(0.8) and not iou.passed
    assert regions.value == 1.0 and regions.passed and regions.label == "region F1"


def test_dense_argmax_gives_the_mean_iou_of_the_classes_either_map_has(tmp_path):
    loaded = _loaded(
        tmp_path,
        {"metric": "dense", "dense": {"decode": "argmax"}},
        [{"name": "map", "dtype": "float32", "dims": ["batch", 3, 8, 8]}],
    )
    logits = np.zeros((1, 3, 8, 8), np.float32)
    logits[0, 0] = 1.0
    logits[0, 1, :4] = 2.0  # class 1 on the top half, class 0 below
    moved = logits.copy()
    moved[0, 1, 4:6] = 2.0  # class 1 grows by a quarter of the map
    result = measure(loaded, {"map": logits}, {"map": moved}, None)
    assert result.value == pytest.approx((32 / 48 + 16 / 32) / 2)


# --- embeddings --------------------------------------------------------------------------------------------


def _embedding(tmp_path, budget=0.9):
    return _loaded(
        tmp_path,
        {"metric": "embedding", "budget": budget, "embedding": {"k": 5}},
        [{"name": "embedding", "dtype": "float32", "dims": ["batch", 32]}],
    )


def _clustered(rows: int) -> np.ndarray:
    centres = RNG.normal(0, 1, (rows // 6, 32))
    points = centres[np.arange(rows) % len(centres)] + RNG.normal(0, 0.3, (rows, 32))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def test_embedding_recall_finds_fp32s_neighbours_under_small_noise(tmp_path):
    points = _clustered(240)
    noisy = points + RNG.normal(0, 0.002, points.shape).astype(np.float32)
    result = measure(_embedding(tmp_path), {"embedding": points}, {"embedding": noisy}, None)
    assert result.passed and result.value > 0.95 and result.label == "recall@5"
    assert result.details["pair_rank_correlation"] > 0.99 and result.details["cosine_min"] > 0.999


def test_embedding_refuses_neighbours_lost_where_the_worst_cosine_stays_high(tmp_path):
    """Noise at 0.99 cosine reorders neighbours that sit closer than that: retrieval breaks, cosine does not."""
    points = RNG.normal(0, 1, (240, 32))
    points = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)
    noisy = points + RNG.normal(0, 0.02, points.shape).astype(np.float32)
    result = measure(_embedding(tmp_path), {"embedding": points}, {"embedding": noisy}, None)
    assert result.details["cosine_min"] > 0.97
    assert not result.passed and result.value < 0.9


# --- CTC text ------------------------------------------------------------------------------------------------


def _ctc(tmp_path):
    return _loaded(
        tmp_path,
        {"metric": "ctc", "budget": 0.9},
        [{"name": "logits", "dtype": "float32", "dims": ["batch", 20, 12]}],
    )


def _ctc_logits(rows: int) -> np.ndarray:
    tokens = RNG.integers(0, 12, (rows, 20))
    tokens[:, ::3] = 0  # blanks between characters
    logits = RNG.normal(0, 0.1, (rows, 20, 12)).astype(np.float32)
    np.put_along_axis(logits, tokens[..., None], 5.0, axis=2)
    return logits


def test_ctc_counts_edits_of_the_decoded_text(tmp_path):
    from triton_repo.core.decode import ctc_greedy

    logits = _ctc_logits(40)
    changed = logits.copy()
    changed[0, 1, :] = 0
    changed[0, 1, 11] = 9.0  # one character of row 0 replaced
    result = measure(_ctc(tmp_path), {"logits": logits}, {"logits": changed}, None)
    length = sum(len(t) for t in ctc_greedy(logits))
    assert result.details["exact_lines"] == pytest.approx(39 / 40)
    assert 1 - result.value <= 2 / length + 1e-9  # one substitution (or a split of a repeat) in all the text
    assert result.passed


def test_ctc_refuses_text_read_as_the_next_class(tmp_path):
    logits = _ctc_logits(40)
    result = measure(_ctc(tmp_path), {"logits": logits}, {"logits": np.roll(logits, 1, axis=2)}, None)
    assert not result.passed and result.details["exact_lines"] < 0.1


def test_greedy_ctc_merges_repeats_and_drops_blanks():
    from triton_repo.core.decode import ctc_greedy

    steps = np.array([0, 3, 3, 0, 3, 5, 5, 0, 0, 2])
    scores = np.eye(6)[steps][None]
    assert ctc_greedy(scores) == [(3, 3, 5, 2)]


# --- classification -----------------------------------------------------------------------------------------


def test_topk_agreement_counts_the_overlap_of_the_best_classes(tmp_path):
    loaded = _loaded(
        tmp_path,
        {"metric": "topk_agreement", "budget": 0.5, "classification": {"k": 3}},
        [{"name": "logits", "dtype": "float32", "dims": ["batch", 10]}],
    )
    logits = np.tile(np.arange(10, dtype=np.float32), (100, 1))  # top-3: 9, 8, 7
    other = logits.copy()
    other[:, 7], other[:, 0] = 0.0, 7.0  # top-3: 9, 8, 0
    result = measure(loaded, {"logits": logits}, {"logits": other}, None)
    assert result.value == pytest.approx(2 / 3) and result.details["top1_agreement"] == 1.0
    assert result.passed and result.label == "top-3 agreement"


# --- your own metric and relative budgets -------------------------------------------------------------------


def test_a_custom_metric_returns_per_row_scores_and_a_drop_budget_is_relative_to_fp32(tmp_path):
    loaded = _loaded(
        tmp_path,
        {
            "metric": "custom",
            "budget": {"drop": 0.05},
            "custom": {"function": "scoring:agreement_with_labels"},
        },
        [{"name": "logits", "dtype": "float32", "dims": ["batch", 4]}],
        labels=True,
    )
    (loaded.folder / "scoring.py").write_text(
        "import numpy as np\n"
        "def agreement_with_labels(reference, variant, labels):\n"
        "    return (variant['logits'].argmax(axis=1) == labels).astype(float)\n"
    )
    labels = np.arange(400) % 4
    right = np.eye(4, dtype=np.float32)[labels]
    wrong = right.copy()
    wrong[:4] = np.eye(4, dtype=np.float32)[(labels[:4] + 1) % 4]  # 1% lost
    result = measure(loaded, {"logits": right}, {"logits": wrong}, labels)
    assert result.value == pytest.approx(0.99) and result.budget == pytest.approx(0.95)
    assert result.passed and result.label == "scoring:agreement_with_labels"
    worse = right.copy()
    worse[:40] = np.eye(4, dtype=np.float32)[(labels[:40] + 1) % 4]  # 10% lost
    assert not measure(loaded, {"logits": right}, {"logits": worse}, labels).passed


def test_a_custom_metric_returning_the_wrong_shape_is_a_one_line_spec_error(tmp_path):
    loaded = _loaded(
        tmp_path,
        {"metric": "custom", "budget": 0.5, "custom": {"function": "scoring:score"}},
        [{"name": "logits", "dtype": "float32", "dims": ["batch", 4]}],
    )
    (loaded.folder / "scoring.py").write_text("def score(reference, variant, labels):\n    return [1.0]\n")
    logits = np.ones((8, 4), np.float32)
    with pytest.raises(
        SpecError, match=r"returned shape \[1\]; it must return one score per eval row \(\[8\]\)"
    ):
        measure(loaded, {"logits": logits}, {"logits": logits}, None)


@pytest.mark.parametrize(
    ("accuracy", "message"),
    [
        ({"metric": "detection", "binary": {"threshold": 0.3}}, "accuracy.binary configures another metric"),
        ({"metric": "custom", "budget": 1.0}, "metric custom needs accuracy.custom.function"),
        ({"metric": "top1_drop", "budget": {"drop": 1}}, "already a drop from FP32"),
        (
            {"metric": "binary", "budget": {"drop": 0.1, "relative_drop": 0.1}},
            "give one of 'drop' or 'relative_drop'",
        ),
        ({"metric": "detection", "detection": {"layout": "auto"}}, "cannot tell the channel axis"),
        ({"metric": "ctc", "output": "flat"}, "ctc reads scores"),
        ({"metric": "dense", "output": "flat"}, "dense reads a map per row"),
        ({"metric": "top1_agreement", "output": "one"}, "reads a score per class"),
    ],
)
def test_a_metric_spec_that_cannot_work_is_refused_with_the_field(tmp_path, accuracy, message):
    outputs = [
        {"name": "out", "dtype": "float32", "dims": ["batch", "n", "m"]},
        {"name": "flat", "dtype": "float32", "dims": ["batch", "n"]},
        {"name": "one", "dtype": "float32", "dims": ["batch", 1]},
    ]
    axes = {"n": {"min": 1, "opt": 4, "max": 8}, "m": {"min": 1, "opt": 4, "max": 8}}
    with pytest.raises(SpecError, match=message):
        _loaded(tmp_path, accuracy, outputs, axes=axes)


# --- against labels, beside the gate -------------------------------------------------------------------------


def test_detection_reports_map50_of_fp32_and_the_variant_against_labelled_boxes(tmp_path):
    loaded = _detection(tmp_path)
    reference = {"output0": _yolo_head(20)}
    truth = [
        np.column_stack([d.boxes, d.classes]) for d in head_detections(reference["output0"], "channels_first")
    ]
    rows = np.concatenate([np.column_stack([np.full(len(t), i), t]) for i, t in enumerate(truth)])
    half = reference["output0"].copy()
    half[10:, 4:] = 0.0  # the variant finds nothing in the last ten images
    result = measure(loaded, reference, {"output0": half}, rows.astype(np.float32))
    assert result.details["map50_fp32"] == pytest.approx(1.0)
    assert result.details["map50_variant"] == pytest.approx(0.5, abs=0.05)


def test_ctc_reports_the_character_error_rate_against_label_strings(tmp_path):
    loaded = _loaded(
        tmp_path,
        {"metric": "ctc", "budget": 0.5, "ctc": {"alphabet": "alphabet.txt"}},
        [{"name": "logits", "dtype": "float32", "dims": ["batch", 6, 4]}],
    )
    (loaded.folder / "alphabet.txt").write_text("a\nb\nc\n")  # classes 1, 2, 3; 0 is the blank
    steps = np.array([[1, 0, 2, 2, 0, 3], [3, 3, 0, 1, 0, 0]])  # "abc", "ca"
    logits = np.eye(4, dtype=np.float32)[steps]
    wrong = logits.copy()
    wrong[1, 3] = np.eye(4, dtype=np.float32)[2]  # the variant reads "cb" where FP32 reads "ca"
    result = measure(loaded, {"logits": logits}, {"logits": wrong}, np.array(["abc", "cb"]))
    assert result.details["cer_fp32_vs_labels"] == pytest.approx(1 / 5)  # "ca" for "cb"
    assert result.details["cer_variant_vs_labels"] == 0.0 and result.details["lines_variant_vs_labels"] == 1.0
    assert result.details["lines_fp32_vs_labels"] == 0.5 and result.details["exact_lines"] == 0.5


def test_dense_reports_the_iou_of_each_side_against_label_masks(tmp_path):
    maps = _maps(20)
    truth = (maps > 0.5).astype(np.int64)
    dropped = maps.copy()
    dropped[:10] = 0.0
    result = measure(_dense(tmp_path), {"map": maps}, {"map": dropped}, truth)
    assert result.details["iou_fp32_vs_labels"] == 1.0
    assert 0.3 < result.details["iou_variant_vs_labels"] < 0.7


def test_labels_for_a_detector_are_boxes_per_eval_row(tmp_path):
    from triton_repo.core.references import load_labels

    loaded = _detection(tmp_path)
    (loaded.folder / "model.py").write_text(
        "import numpy as np\n"
        "def boxes():\n"
        "    return [np.array([[1, 2, 3, 4, 0]]), np.zeros((0, 5)), np.array([[5, 6, 7, 8, 2], [0, 0, 1, 1, 1]])]\n"
    )
    spec = loaded.spec.model_copy(
        update={"data": loaded.spec.data.model_copy(update={"eval_labels": "model:boxes"})}
    )
    labels = load_labels(loaded.model_copy(update={"spec": spec}), {"images": np.zeros((3, 1))})
    assert labels[:, 0].tolist() == [0, 2, 2] and labels.shape == (3, 6)
    with pytest.raises(SpecError, match="boxes for 3 rows, but there are 4 eval rows"):
        load_labels(loaded.model_copy(update={"spec": spec}), {"images": np.zeros((4, 1))})


def test_a_binary_threshold_of_a_probability_on_logits_is_said_not_refused(tmp_path, capsys):
    logits = RNG.normal(0, 3, (200, 1)).astype(np.float32)
    check_metric(_binary(tmp_path), {"speech": logits}, None)
    assert "if it is a logit, the decision is at 0 (threshold: 0)" in capsys.readouterr().err


def test_the_quiet_border_of_a_map_is_not_taken_for_a_quiet_channel(tmp_path):
    """A text map's border columns are near zero in every row: that is not a packed output, and cosine's
    refusal there must not name it (the spatial axes of a map are not channels)."""
    from triton_repo.builders.precision.metrics.selfcheck import quiet_part

    maps = _maps(20)
    maps[..., :3] = 1e-6
    assert quiet_part({"map": maps}, "map") == {}
