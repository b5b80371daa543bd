"""The CUDA backend: the same primitive table, with forwards that run on an NVIDIA GPU (numba.cuda).

Importing this package (``axon.backend`` does it the first time ``"cuda"`` is named: ``set_backend``,
``to_device(tree, "cuda")``, ``AXON_BACKEND=cuda``) checks that numba's CUDA target can run, adds a
``"cuda"`` forward to the primitives of the table, and registers the backend:

- ``_runtime``: the device check, views (storage, offset, strides), launch sizes, fill/copy/move;
- ``factories``: ``cuda_map``, ``cuda_zip``, ``cuda_reduce`` (kernels from one scalar function each) and
  the strided copy the layout ops share;
- ``ops``, ``layout``, ``matmul``: the engine's own primitives (elementwise, reductions, shapes, indexing,
  the tiled matrix product);
- ``kernels``: the fused kernels of ``axon.kernels`` (conv by im2col, pooling, the softmax family, the
  fused cross-entropy, batch norm, bias+relu) and dropout's masks drawn on the device;
- ``backward``: their backward primitives (``kernels.<name>_backward``), the fused Adam step;
- ``ctc``, ``recurrent``: CTC's forward-backward recursions, the fused LSTM and GRU sequences
  (forward and backward), one block of threads per sequence;
- ``fused``: ``axon.fusion``'s generated kernels, a chain of elementwise ops in one (imported by the
  pass when a CUDA plan has a chain to fuse).

VJPs are not written here: each primitive's VJP is Tensor operations, which run on whichever backend
holds the Tensors. Without a GPU (and without ``NUMBA_ENABLE_CUDASIM=1``, numba's simulator) importing
this package raises one ``RuntimeError`` saying why; ``import axon`` never imports it.

>>> import numpy as np, axon
>>> from axon.backend import to_device
>>> w = to_device({"w": np.ones((2, 2), np.float32)}, "cuda")["w"]   # a device array
>>> x = axon.Tensor(w, requires_grad=True)
>>> (x @ x).sum().backward(); x.grad.copy_to_host()
array([[4., 4.],
       [4., 4.]], dtype=float32)
"""
from ..backend import Backend, register_backend
from ._runtime import ARRAY_TYPES, SIMULATOR, copy, copy_ahead, from_host, full, to_host
from .. import kernels as _cpu_kernels  # noqa: F401  (the kernels.* primitives must exist before ours)
from . import ops, layout, matmul, kernels, backward, ctc, recurrent  # noqa: F401  (each adds its "cuda" forwards to the table)

__all__ = ["BACKEND", "SIMULATOR"]

BACKEND = register_backend(Backend("cuda", ARRAY_TYPES, to_host=to_host, from_host=from_host, full=full, copy=copy,
                                   copy_ahead=copy_ahead))
"""The registered ``"cuda"`` backend entry (``axon.backend.backend("cuda")``)."""
