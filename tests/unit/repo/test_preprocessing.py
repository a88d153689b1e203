"""The pre-processing code an ensemble's step runs (in the server and, for golden data, in the builder)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin
from tokenizers import Tokenizer, models, pre_tokenizers

from triton_repo.repo.templates import preprocessing
from triton_repo.repo.templates.preprocessing import image, letterbox, pixels, run, tokenize

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
VOCAB = {"[PAD]": 0, "[UNK]": 1, "the": 2, "cat": 3, "sat": 4, "on": 5, "mat": 6, "café": 7}


def encoded(picture: Image.Image, form: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format=form)
    return buffer.getvalue()


def solid(size: tuple[int, int], colour: tuple[int, int, int], form: str = "PNG") -> bytes:
    return encoded(Image.new("RGB", size, colour), form)


def normalised(colour: tuple[int, int, int]) -> np.ndarray:
    """(c/255 - mean)/std per channel, as a [3, 1, 1] array to compare with a CHW tensor."""
    return ((np.asarray(colour) / 255.0 - np.asarray(MEAN)) / np.asarray(STD)).reshape(3, 1, 1)


@pytest.fixture
def tokenizer_file(tmp_path) -> str:
    """A word-level tokenizer saved as tokenizer.json: [PAD] is id 0, unknown words become [UNK] (1)."""
    tokenizer = Tokenizer(models.WordLevel(vocab=VOCAB, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    return str(path)


# ---------------------------------------------------------------------------------------------------------
# pixels


def test_pixels_scales_to_float32_and_reshapes_each_row_to_dims():
    raw = np.arange(2 * 64, dtype=np.uint8).reshape(2, 8, 8)
    out = pixels(raw, [1, 8, 8], 0.0625)
    assert out.dtype == np.float32 and out.shape == (2, 1, 8, 8)
    np.testing.assert_array_equal(out, raw.reshape(2, 1, 8, 8).astype(np.float32) / 16)


def test_pixels_keeps_values_above_127_unsigned():
    out = pixels(np.full((1, 2, 2), 255, dtype=np.uint8), [4], 1.0)
    np.testing.assert_array_equal(out, [[255.0, 255.0, 255.0, 255.0]])


def test_pixels_rejects_dims_with_another_number_of_elements():
    with pytest.raises(ValueError):
        pixels(np.zeros((2, 8, 8), dtype=np.uint8), [1, 8, 9], 1.0)


# ---------------------------------------------------------------------------------------------------------
# image


@pytest.mark.parametrize("size", [(37, 20), (20, 53), (300, 200)], ids=["landscape", "portrait", "large"])
@pytest.mark.parametrize("colour", [(200, 100, 30), (0, 255, 7)])
def test_image_of_a_solid_png_is_that_colour_normalised_per_channel(size, colour):
    out = image(solid(size, colour), resize=16, size=12, mean=MEAN, std=STD)
    assert out.shape == (3, 12, 12) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.broadcast_to(normalised(colour), (3, 12, 12)), rtol=0, atol=1e-6)


def test_image_decodes_a_jpeg():
    colour = (200, 100, 30)
    out = image(solid((40, 64), colour, "JPEG"), resize=16, size=12, mean=MEAN, std=STD)
    assert out.shape == (3, 12, 12) and out.dtype == np.float32
    # JPEG is lossy: within a few levels of the colour
    np.testing.assert_allclose(out, np.broadcast_to(normalised(colour), out.shape), atol=4 / 255 / min(STD))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_image_converts_other_modes_to_three_channels(mode):
    grey = Image.new("RGB", (20, 30), (90, 90, 90))
    picture = grey.convert(mode, palette=Image.Palette.ADAPTIVE) if mode == "P" else grey.convert(mode)
    out = image(encoded(picture), resize=10, size=10, mean=MEAN, std=STD)
    assert out.shape == (3, 10, 10)
    np.testing.assert_allclose(out, np.broadcast_to(normalised((90, 90, 90)), out.shape), atol=1e-6)


def test_image_crops_the_centre_of_the_longer_side():
    picture = Image.new("RGB", (40, 20), (0, 0, 0))
    picture.paste((255, 255, 255), (10, 0, 30, 20))  # a white 20x20 square in the middle
    out = image(encoded(picture), resize=20, size=20, mean=[0, 0, 0], std=[1, 1, 1])
    np.testing.assert_array_equal(out, np.ones((3, 20, 20), dtype=np.float32))


def test_image_channels_come_first_in_rgb_order():
    out = image(solid((16, 16), (255, 0, 0)), resize=16, size=16, mean=[0, 0, 0], std=[1, 1, 1])
    assert [float(out[c].mean()) for c in range(3)] == [1.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "data",
    [b"not an image", b"", solid((20, 20), (1, 2, 3))[:60]],
    ids=["text", "empty", "truncated_png"],
)
def test_image_of_corrupt_bytes_raises(data):
    with pytest.raises(OSError):  # PIL.UnidentifiedImageError is an OSError
        image(data, resize=16, size=12, mean=MEAN, std=STD)


# ---------------------------------------------------------------------------------------------------------
# decoding a large JPEG at a reduced scale (draft)

# Measured on `scene` JPEGs (3200x2400, 2400x3200, 1600x1200) against the same call without draft: image()
# differs by at most 11 levels of 255 (mean 0.36), letterbox() at 640 by at most 4 (mean 0.16); drafting one
# scale further (DRAFT_GAP 1) gives 28 (mean 0.96). The bounds keep a margin of 2x or more.
IMAGE_LEVELS, LETTERBOX_LEVELS = (24, 1.0), (12, 0.5)  # (max, mean) absolute difference in levels


def scene(width: int, height: int) -> Image.Image:
    """A picture with smooth waves, a ramp and sharp-edged squares, so resampling differences show."""
    x, y = np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)[:, None]
    red = 128 + 90 * np.sin(x / 41) * np.cos(y / 57)
    green = np.broadcast_to(255 * x / width, red.shape)
    blue = np.where((x // 96 + y // 96) % 2 == 0, 40, 210)
    return Image.fromarray(np.stack([red, green, blue], -1).astype(np.uint8))


@pytest.fixture
def drafts(monkeypatch) -> list[int]:
    """The scale (2, 4 or 8) of every JPEG draft the code asks for."""
    scales, original = [], JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        width = self.size[0]
        result = original(self, mode, size)
        scales.append(round(width / result[1][2]))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return scales


def levels(a: np.ndarray, b: np.ndarray, std=(1.0, 1.0, 1.0)) -> tuple[float, float]:
    """Max and mean absolute difference of two CHW tensors, in pixel levels of 255."""
    diff = np.abs(a - b) * 255 * np.asarray(std).reshape(3, 1, 1)
    return float(diff.max()), float(diff.mean())


@pytest.mark.parametrize(
    "size, scale",
    [((1000, 700), None), ((1600, 1200), 2), ((1200, 1600), 2), ((3200, 2400), 4), ((4400, 4400), 8)],
)
def test_image_drafts_a_jpeg_at_the_smallest_scale_still_twice_the_resize(drafts, size, scale):
    # the shorter side resized to 256: a draft must keep at least 512 (DRAFT_GAP 2) of it
    out = image(solid(size, (200, 100, 30), "JPEG"), resize=256, size=224, mean=MEAN, std=STD)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    assert drafts == ([] if scale is None else [scale])


def test_image_drafts_a_cameras_multi_picture_jpeg_too(drafts):
    picture, buffer = Image.new("RGB", (1600, 1200), (200, 100, 30)), io.BytesIO()
    picture.save(buffer, format="MPO", save_all=True, append_images=[picture.copy()])
    out = image(buffer.getvalue(), resize=256, size=224, mean=MEAN, std=STD)
    assert drafts == [2]
    np.testing.assert_allclose(
        out, np.broadcast_to(normalised((200, 100, 30)), out.shape), atol=2 / 255 / 0.2
    )


@pytest.mark.parametrize("size", [(3200, 2400), (2400, 3200)], ids=["landscape", "portrait"])
def test_image_of_a_drafted_jpeg_is_close_to_the_full_scale_decode(monkeypatch, drafts, size):
    data = encoded(scene(*size), "JPEG")
    drafted = image(data, resize=256, size=224, mean=MEAN, std=STD)
    monkeypatch.setattr(preprocessing, "DRAFT_GAP", float("inf"))
    full = image(data, resize=256, size=224, mean=MEAN, std=STD)
    assert drafts == [4]
    assert drafted.shape == full.shape == (3, 224, 224) and drafted.dtype == np.float32
    most, mean = levels(drafted, full, STD)
    assert most <= IMAGE_LEVELS[0] and mean <= IMAGE_LEVELS[1]


def test_image_of_a_large_png_is_not_drafted_and_is_the_centre_of_the_whole_resize(drafts):
    picture = scene(1600, 1200)
    out = image(encoded(picture), resize=256, size=224, mean=[0, 0, 0], std=[1, 1, 1])
    whole = picture.resize((341, 256), Image.BILINEAR).crop((58, 16, 282, 240))
    reference = np.asarray(whole, np.float32).transpose(2, 0, 1) / 255
    assert drafts == []
    # resizing only the crop moves the filter by rounding alone: at most a level or two, never a pixel
    assert levels(out, reference)[0] <= 2


def test_image_of_a_jpeg_smaller_than_the_crop_is_enlarged_without_draft(drafts):
    out = image(solid((20, 15), (200, 100, 30), "JPEG"), resize=256, size=224, mean=MEAN, std=STD)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32 and drafts == []
    np.testing.assert_allclose(
        out, np.broadcast_to(normalised((200, 100, 30)), out.shape), atol=4 / 255 / 0.2
    )


@pytest.mark.parametrize(
    "mode, form", [("L", "JPEG"), ("CMYK", "JPEG"), ("L", "PNG"), ("P", "PNG"), ("RGBA", "PNG")]
)
def test_image_and_letterbox_give_rgb_for_every_mode_drafted_or_not(monkeypatch, drafts, mode, form):
    colour = (200, 100, 30) if mode != "L" else (90, 90, 90)
    picture = Image.new("RGB", (3200, 2400), colour)
    picture = picture.convert(mode, palette=Image.Palette.ADAPTIVE) if mode == "P" else picture.convert(mode)
    data = encoded(picture, form)
    with Image.open(io.BytesIO(data)) as opened:  # the colour as a full decode sees it (CMYK is lossy)
        expected = opened.convert("RGB").getpixel((1600, 1200))
    out = image(data, resize=256, size=224, mean=MEAN, std=STD)
    boxed, _ = letterbox(data, size=640, pad=114, scale=1 / 255)
    assert drafts == ([4, 2] if form == "JPEG" else [])  # image() to 1/4, letterbox() to 1/2
    assert out.shape == (3, 224, 224) and boxed.shape == (3, 640, 640)
    np.testing.assert_allclose(out, np.broadcast_to(normalised(expected), out.shape), atol=2 / 255 / 0.2)
    inside = boxed[:, 100:540, :]  # the picture, 640 x 480 between 80 rows of padding
    np.testing.assert_allclose(
        inside, np.broadcast_to(np.reshape(expected, (3, 1, 1)) / 255, inside.shape), atol=2 / 255
    )


def test_letterbox_of_a_drafted_jpeg_keeps_the_original_geometry_and_is_close_to_the_full_decode(
    monkeypatch, drafts
):
    data = encoded(scene(3200, 2400), "JPEG")
    drafted, geometry = letterbox(data, size=640, pad=114, scale=1 / 255)
    monkeypatch.setattr(preprocessing, "DRAFT_GAP", float("inf"))
    full, full_geometry = letterbox(data, size=640, pad=114, scale=1 / 255)
    assert drafts == [2]
    assert geometry.tolist() == full_geometry.tolist() == pytest.approx([0.2, 0.0, 80.0, 3200.0, 2400.0])
    assert drafted.shape == (3, 640, 640) and drafted.dtype == np.float32
    np.testing.assert_array_equal(drafted[:, :80], np.float32(114) * np.float32(1 / 255))  # padding exact
    most, mean = levels(drafted, full)
    assert most <= LETTERBOX_LEVELS[0] and mean <= LETTERBOX_LEVELS[1]


# ---------------------------------------------------------------------------------------------------------
# tokenize


def test_tokenize_pads_to_the_longest_text_in_the_batch(tokenizer_file):
    ids, mask = tokenize(["the cat sat", "cat"], tokenizer_file, max_length=10)
    np.testing.assert_array_equal(ids, [[2, 3, 4], [3, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 0]])


def test_tokenize_returns_int64_ids_and_a_zero_one_mask(tokenizer_file):
    ids, mask = tokenize(["the cat", "the cat sat on the mat"], tokenizer_file, max_length=10)
    assert ids.dtype == np.int64 and mask.dtype == np.int64
    assert ids.shape == mask.shape == (2, 6)
    assert set(np.unique(mask)) == {0, 1}


def test_tokenize_truncates_to_max_length(tokenizer_file):
    ids, mask = tokenize(["the cat sat on the mat", "cat"], tokenizer_file, max_length=3)
    np.testing.assert_array_equal(ids, [[2, 3, 4], [3, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 0]])


def test_tokenize_maps_unknown_words_to_unk(tokenizer_file):
    ids, _ = tokenize(["the dog"], tokenizer_file, max_length=10)
    np.testing.assert_array_equal(ids, [[2, 1]])


def test_tokenize_pads_with_the_given_pad_id(tokenizer_file):
    ids, mask = tokenize(["the cat", "mat"], tokenizer_file, max_length=10, pad_id=7)
    np.testing.assert_array_equal(ids, [[2, 3], [6, 7]])
    np.testing.assert_array_equal(mask, [[1, 1], [1, 0]])


def test_tokenize_takes_utf8_bytes_as_triton_sends_them(tokenizer_file):
    ids, mask = tokenize([b"the cat", "café mat".encode()], tokenizer_file, max_length=10)
    np.testing.assert_array_equal(ids, [[2, 3], [7, 6]])
    np.testing.assert_array_equal(mask, [[1, 1], [1, 1]])


def test_tokenize_honours_max_length_and_pad_id_of_each_call_with_the_same_file(tokenizer_file):
    tokenize(["the cat sat on the mat"], tokenizer_file, max_length=2)
    ids, _ = tokenize(["the cat sat on the mat", "cat"], tokenizer_file, max_length=10, pad_id=9)
    np.testing.assert_array_equal(ids, [[2, 3, 4, 5, 2, 6], [3, 9, 9, 9, 9, 9]])


# ---------------------------------------------------------------------------------------------------------
# run: the step as config.pbtxt describes it, on one request's raw input


def bytes_rows(*items: bytes) -> np.ndarray:
    """Raw BYTES input as Triton hands it to the step: an object array [n, 1]."""
    array = np.empty((len(items), 1), dtype=object)
    array[:, 0] = items
    return array


def test_run_tokenize_feeds_the_ids_and_mask_inputs_by_name(tokenizer_file):
    step = {
        "kind": "tokenize",
        "ids": "input_ids",
        "mask": "attention_mask",
        "pad_id": 0,
        "max_length": 4,
        "tokenizer_file": tokenizer_file,
    }
    out = run(step, bytes_rows(b"the cat sat on the mat", b"cat"))
    assert sorted(out) == ["attention_mask", "input_ids"]
    np.testing.assert_array_equal(out["input_ids"], [[2, 3, 4, 5], [3, 0, 0, 0]])
    np.testing.assert_array_equal(out["attention_mask"], [[1, 1, 1, 1], [1, 0, 0, 0]])


def test_run_image_stacks_one_tensor_per_row():
    step = {"kind": "image", "output": "image", "resize": 16, "size": 12, "mean": MEAN, "std": STD}
    colours = [(200, 100, 30), (10, 20, 30)]
    out = run(step, bytes_rows(solid((30, 20), colours[0]), solid((20, 30), colours[1], "PNG")))
    assert list(out) == ["image"]
    assert out["image"].shape == (2, 3, 12, 12) and out["image"].dtype == np.float32
    for row, colour in enumerate(colours):
        np.testing.assert_allclose(
            out["image"][row], np.broadcast_to(normalised(colour), (3, 12, 12)), atol=1e-6
        )


def test_run_pixels_feeds_the_output_input_in_the_model_shape():
    step = {"kind": "pixels", "output": "image", "dims": [1, 2, 2], "scale": 0.5}
    raw = np.array([[[0, 2], [4, 6]]], dtype=np.uint8)
    out = run(step, raw)
    assert list(out) == ["image"]
    np.testing.assert_array_equal(out["image"], [[[[0.0, 1.0], [2.0, 3.0]]]])


def test_run_with_an_unknown_kind_raises_value_error_naming_it():
    with pytest.raises(ValueError, match="'audio'"):
        run({"kind": "audio"}, np.zeros((1, 1), dtype=np.uint8))


def test_preprocessing_module_imports_only_numpy_at_top_level():
    """The file is copied into the server's model folder: heavy imports stay inside the functions."""
    source = (Path(run.__code__.co_filename)).read_text()
    top_level = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert top_level == ["import io", "import numpy as np"]
