"""Writes model.onnx shaped as Paddle2ONNX writes a text detector (PP-OCR's DB head): opset 12, tensor
names with dots (`conv2d_0.w_0`, `sigmoid_0.tmp_0`), weights as Constant nodes and as initializers that
are also listed as graph inputs (older exporters), a ConvTranspose and a Resize, and dynamic batch,
height and width named `p2o.DynamicDimension.N` (run once; the file is committed, as a user's would be).

Its weights are set by hand, with a little noise, so that it finds what data.py draws (dark strokes on a
light page) as a DB head finds text: each stage averages, darker is higher, and the map is above 0.5 on
the strokes and below it elsewhere. A detector with random weights finds nothing, and its accuracy gate
would judge nothing."""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main() -> None:
    rng = np.random.default_rng(26)

    def averaging(scale: float, *shape: int) -> np.ndarray:
        """Each output the mean of its inputs times `scale`, 10% noise on every weight."""
        fan_in = np.prod(shape[1:])
        return (scale / fan_in * (1 + 0.1 * rng.standard_normal(shape))).astype(np.float32)

    constants = {  # Paddle2ONNX's way: a Constant node per weight
        "conv2d_0.w_0": averaging(-3.0, 8, 3, 3, 3),  # darkness (input normalised: page 1.6, stroke -1.6)
        "conv2d_transpose_0.w_0": averaging(16.0, 8, 4, 2, 2) / 8,  # each output: the mean of the 8 inputs
    }
    initializers = {  # also listed as graph inputs, as exporters before IR 4 had to
        "conv2d_0.b_0": (rng.standard_normal(8) * 0.05).astype(np.float32),
        "conv2d_1.w_0": averaging(1.0, 8, 8, 3, 3),
        "conv2d_2.w_0": averaging(10.0, 1, 4, 1, 1),  # hard sigmoid: page 0.5, strokes about 0.8
        "conv2d_2.b_0": np.array([-6.6], np.float32),
        "p2o.Resize.scales": np.array([1, 1, 2, 2], np.float32),
        "p2o.Resize.roi": np.array([], np.float32),
    }
    nodes = [
        helper.make_node(
            "Constant", [], [name], name=f"p2o.Constant.{i}", value=numpy_helper.from_array(a, name)
        )
        for i, (name, a) in enumerate(constants.items())
    ]
    nodes += [
        helper.make_node(
            "Conv",
            ["x", "conv2d_0.w_0", "conv2d_0.b_0"],
            ["conv2d_0.tmp_0"],
            name="p2o.Conv.0",
            strides=[2, 2],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["conv2d_0.tmp_0"], ["relu_0.tmp_0"], name="p2o.Relu.0"),
        helper.make_node(
            "Conv",
            ["relu_0.tmp_0", "conv2d_1.w_0"],
            ["conv2d_1.tmp_0"],
            name="p2o.Conv.1",
            strides=[2, 2],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node(
            "HardSigmoid", ["conv2d_1.tmp_0"], ["hardsigmoid_0.tmp_0"], name="p2o.HardSigmoid.0"
        ),
        helper.make_node(
            "ConvTranspose",
            ["hardsigmoid_0.tmp_0", "conv2d_transpose_0.w_0"],
            ["conv2d_transpose_0.tmp_0"],
            name="p2o.ConvTranspose.0",
            strides=[2, 2],
        ),
        helper.make_node(
            "Resize",
            ["conv2d_transpose_0.tmp_0", "p2o.Resize.roi", "p2o.Resize.scales"],
            ["nearest_interp_v2_0.tmp_0"],
            name="p2o.Resize.0",
            mode="nearest",
        ),
        helper.make_node(
            "Conv",
            ["nearest_interp_v2_0.tmp_0", "conv2d_2.w_0", "conv2d_2.b_0"],
            ["conv2d_2.tmp_0"],
            name="p2o.Conv.2",
        ),
        helper.make_node("Sigmoid", ["conv2d_2.tmp_0"], ["sigmoid_0.tmp_0"], name="p2o.Sigmoid.0"),
    ]
    dims = ["p2o.DynamicDimension.0", 3, "p2o.DynamicDimension.1", "p2o.DynamicDimension.2"]
    graph = helper.make_graph(
        nodes,
        "paddle_detector",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)]
        + [helper.make_tensor_value_info(n, TensorProto.FLOAT, a.shape) for n, a in initializers.items()],
        [helper.make_tensor_value_info("sigmoid_0.tmp_0", TensorProto.FLOAT, [dims[0], 1, *dims[2:]])],
        [numpy_helper.from_array(array, name) for name, array in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], producer_name="p2o")
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, Path(__file__).with_name("model.onnx"))


if __name__ == "__main__":
    main()
