"""Writes model.onnx: a small conv net built with onnx.helper, dynamic batch and spatial dims
(run once; the file is committed, as a user's exported model would be)."""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main() -> None:
    rng = np.random.default_rng(6)
    weights = {
        "w1": rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3,
        "b1": rng.standard_normal(8).astype(np.float32) * 0.1,
        "w2": rng.standard_normal((4, 8, 1, 1)).astype(np.float32) * 0.3,
        "b2": rng.standard_normal(4).astype(np.float32) * 0.1,
    }
    nodes = [
        helper.make_node("Conv", ["pixels", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["features"], name="conv2"),
        helper.make_node("GlobalAveragePool", ["features"], ["pooled"], name="pool"),
    ]
    graph = helper.make_graph(
        nodes,
        "onnx_spatial",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 4, "H", "W"]),
            helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["N", 4, 1, 1]),
        ],
        [numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, Path(__file__).with_name("model.onnx"))


if __name__ == "__main__":
    main()
