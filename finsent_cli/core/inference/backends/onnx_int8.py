"""Backend ``onnx-int8``: the int8 graph of ``finsent export MODEL --onnx --int8`` (onnxruntime's dynamic
quantisation of the fp32 graph), run by onnxruntime on the CPU; see ``backends.onnx``."""

from __future__ import annotations

from finsent_cli.core.inference.backends.onnx import OnnxBackend

BACKEND = OnnxBackend("onnx-int8")
