"""Turn PyTorch models into a verified NVIDIA Triton Inference Server model repository."""

__version__ = "0.1.0"
