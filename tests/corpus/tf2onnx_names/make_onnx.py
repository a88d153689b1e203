"""Writes model.onnx shaped as tf2onnx writes a Keras image classifier: TensorFlow tensor names kept
(`input:0`, `Identity:0`, `model/dense/BiasAdd:0`), an NHWC input whose batch is the unnamed dim
`unk__653`, and a second input whose name starts with a digit and holds '/' and '-' (run once; the
file is committed, as a user's would be)."""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main() -> None:
    rng = np.random.default_rng(25)
    weights = {
        "model/conv2d/Conv2D/ReadVariableOp:0": (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32),
        "model/conv2d/BiasAdd/ReadVariableOp:0": (rng.standard_normal(8) * 0.1).astype(np.float32),
        "model/dense/MatMul/ReadVariableOp:0": (rng.standard_normal((8, 5)) * 0.5).astype(np.float32),
        "model/dense/BiasAdd/ReadVariableOp:0": (rng.standard_normal(5) * 0.1).astype(np.float32),
    }
    nodes = [
        helper.make_node(
            "Transpose",
            ["input:0"],
            ["model/conv2d/Conv2D__6:0"],
            name="model/conv2d/Conv2D__6",
            perm=[0, 3, 1, 2],
        ),
        helper.make_node(
            "Conv",
            [
                "model/conv2d/Conv2D__6:0",
                "model/conv2d/Conv2D/ReadVariableOp:0",
                "model/conv2d/BiasAdd/ReadVariableOp:0",
            ],
            ["model/conv2d/BiasAdd:0"],
            name="model/conv2d/BiasAdd",
            pads=[1, 1, 1, 1],
        ),
        helper.make_node(
            "Relu", ["model/conv2d/BiasAdd:0"], ["model/conv2d/Relu:0"], name="model/conv2d/Relu"
        ),
        helper.make_node(
            "ReduceMean",
            ["model/conv2d/Relu:0"],
            ["model/features/Mean:0"],
            name="model/features/Mean",
            axes=[2, 3],
            keepdims=0,
        ),
        helper.make_node(
            "MatMul",
            ["model/features/Mean:0", "model/dense/MatMul/ReadVariableOp:0"],
            ["model/dense/MatMul:0"],
            name="model/dense/MatMul",
        ),
        helper.make_node(
            "Add",
            ["model/dense/MatMul:0", "model/dense/BiasAdd/ReadVariableOp:0"],
            ["model/dense/BiasAdd:0"],
            name="model/dense/BiasAdd",
        ),
        helper.make_node(
            "Mul", ["model/dense/BiasAdd:0", "2nd/temperature-scale"], ["Identity:0"], name="Identity"
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "tf2onnx",
        [
            helper.make_tensor_value_info("input:0", TensorProto.FLOAT, ["unk__653", 24, 24, 3]),
            helper.make_tensor_value_info("2nd/temperature-scale", TensorProto.FLOAT, ["unk__653", 1]),
        ],
        [
            helper.make_tensor_value_info("Identity:0", TensorProto.FLOAT, ["unk__653", 5]),
            helper.make_tensor_value_info("model/features/Mean:0", TensorProto.FLOAT, ["unk__653", 8]),
        ],
        [numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="tf2onnx")
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, Path(__file__).with_name("model.onnx"))


if __name__ == "__main__":
    main()
