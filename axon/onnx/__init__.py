"""ONNX export and import: ``axon.onnx.export(model, params, path)`` and ``axon.onnx.load(path)``.

Needs the optional extra ``onnx`` (``pip install "axon[onnx]"``: the ``onnx`` package, and
``onnxruntime`` to run the files); ``import axon`` never imports it, and importing ``axon.onnx``
does not either: each function imports ``onnx`` when called and says which extra to install when
it is missing.

- ``exporter``: an axon model graph and its params -> an ONNX file that takes axon's channels-last
  inputs (convolutions and pools run in ONNX's channels-first layout between transposes the
  exporter places and cancels);
- ``importer``: an ONNX file (from PyTorch, say) -> ``(model, params)`` in the file's layout
  (``channels="first"`` layers for an NCHW file).

>>> import axon.onnx
>>> axon.onnx.__all__
['export', 'load', 'OPSET']
"""
from .exporter import OPSET, export
from .importer import load

__all__ = ["export", "load", "OPSET"]
