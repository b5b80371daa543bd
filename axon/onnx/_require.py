"""The one place ``axon.onnx`` imports the ``onnx`` package, when a function needs it.

>>> require_onnx().__name__
'onnx'
"""
from __future__ import annotations

import importlib

__all__ = ["require_onnx", "Unsupported"]


def require_onnx():
    """The ``onnx`` module, or an ImportError that names the extra to install.

    >>> hasattr(require_onnx(), "helper")
    True
    """
    try:
        return importlib.import_module("onnx")
    except ImportError as e:
        raise ImportError('axon.onnx needs the onnx package: pip install "axon[onnx]" '
                          "(onnx, and onnxruntime to run the exported files)") from e


class Unsupported(Exception):
    """Raised by one node's translation (export or import); collected, then reported all at once.

    >>> str(Unsupported("conv: input_dilation with strides"))
    'conv: input_dilation with strides'
    """
