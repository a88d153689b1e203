"""Precision stage: FP16 and INT8 artifacts, the accuracy gate, layer-wise INT8 debugging, mixed-precision search."""
