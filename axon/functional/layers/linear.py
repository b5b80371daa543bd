"""Linear layers: ``dense``, ``bilinear`` and ``embedding``, with their output shapes.

Parameters are passed explicitly, as in Axon: a dense kernel is (in, out), a bilinear kernel is
(out, in1, in2), an embedding table is (vocab, dim). Biases are optional (``None``).

>>> import numpy as np
>>> y = dense(np.ones((2, 3), np.float32), np.ones((3, 4), np.float32), np.zeros(4, np.float32))
>>> y.shape
(2, 4)
"""
from __future__ import annotations

import math

from ... import kernels
from ...autograd import getitem, reshape, sum as tsum, transpose
from ...kernels._common import in_range
from ._utils import check_param, int_indices, tensor

__all__ = ["dense", "bilinear", "embedding", "dense_output_shape", "bilinear_output_shape",
           "embedding_output_shape"]


def dense_output_shape(input_shape, kernel_shape) -> tuple:
    """Output shape of ``dense``: ``(*batch, out)`` for an input ``(*batch, in)`` and a kernel (in, out).

    >>> dense_output_shape((None, 784), (784, 128))
    (None, 128)
    """
    input_shape, kernel_shape = tuple(input_shape), tuple(kernel_shape)
    if len(input_shape) < 1:
        raise ValueError(f"dense: expects input of rank >= 1 (..., features), got shape {input_shape}")
    if len(kernel_shape) != 2:
        raise ValueError(f"dense: expects kernel of rank 2 (in, out), got shape {kernel_shape}")
    if input_shape[-1] != kernel_shape[0]:
        raise ValueError(f"dense: kernel expects {kernel_shape[0]} input features, input has {input_shape[-1]} "
                         f"(input shape {input_shape}, kernel shape {kernel_shape})")
    return input_shape[:-1] + (kernel_shape[1],)


def dense(x, kernel, bias=None):
    """Fully connected layer: ``y = x W + b``, over the last axis of ``x``.

    ``x`` is (..., in), ``kernel`` (in, out), ``bias`` (out,) or None; the result is (..., out).

    >>> import numpy as np
    >>> x = np.array([[1.0, 0.5, 1.0, 0.5]], np.float32)
    >>> w = np.array([[0.2], [0.3], [0.5], [0.8]], np.float32)
    >>> dense(x, w, np.array([1.0], np.float32)).numpy()
    array([[2.25]], dtype=float32)
    """
    x, kernel = tensor("dense", x), tensor("dense", kernel, "kernel")
    out_shape = dense_output_shape(x.shape, kernel.shape)
    bias = check_param("dense", "bias", bias, kernel.shape[1:])
    # One matmul over every leading index, through the kernel (numba's thread pool, like conv's),
    # never numpy's own multi-threaded BLAS: two pools on the same cores slow each other down.
    x2 = x if x.ndim == 2 else reshape(x, (math.prod(x.shape[:-1]), x.shape[-1]))   # (..., in) -> (M, in)
    y = kernels.matmul(x2, kernel)                              # (M, out)
    if x.ndim != 2:
        y = reshape(y, out_shape)                               # (M, out) -> (..., out)
    return y if bias is None else y + bias


def bilinear_output_shape(input1_shape, input2_shape, kernel_shape) -> tuple:
    """Output shape of ``bilinear``: ``(*batch, out)`` for inputs (*batch, in1), (*batch, in2).

    >>> bilinear_output_shape((None, 5), (None, 3), (4, 5, 3))
    (None, 4)
    """
    s1, s2, k = tuple(input1_shape), tuple(input2_shape), tuple(kernel_shape)
    if len(s1) < 1 or len(s2) < 1:
        raise ValueError(f"bilinear: expects inputs of rank >= 1 (..., features), got shapes {s1} and {s2}")
    if s1[:-1] != s2[:-1]:
        raise ValueError(f"bilinear: inputs must agree on every axis but the last, got shapes {s1} and {s2}")
    if len(k) != 3:
        raise ValueError(f"bilinear: expects kernel of rank 3 (out, in1, in2), got shape {k}")
    if (k[1], k[2]) != (s1[-1], s2[-1]):
        raise ValueError(f"bilinear: kernel expects ({k[1]}, {k[2]}) input features, inputs have "
                         f"({s1[-1]}, {s2[-1]}) (input shapes {s1} and {s2}, kernel shape {k})")
    return s1[:-1] + (k[0],)


def bilinear(x1, x2, kernel, bias=None):
    """Bilinear layer: ``y_o = sum_ij x1_i W_oij x2_j + b_o`` (as Axon and ``torch.nn.functional.bilinear``).

    ``x1`` is (..., in1), ``x2`` (..., in2), ``kernel`` (out, in1, in2), ``bias`` (out,) or None.

    >>> import numpy as np
    >>> x1, x2 = np.arange(6.0).reshape(3, 2), np.arange(12.0).reshape(3, 4)
    >>> bilinear(x1, x2, np.arange(8.0).reshape(1, 2, 4), np.ones(1)).numpy().ravel()
    array([  39.,  455., 1319.])
    """
    x1, x2 = tensor("bilinear", x1, "input1"), tensor("bilinear", x2, "input2")
    kernel = tensor("bilinear", kernel, "kernel")
    out_shape = bilinear_output_shape(x1.shape, x2.shape, kernel.shape)
    bias = check_param("bilinear", "bias", bias, kernel.shape[:1])
    n_out, n1, n2 = kernel.shape
    w = reshape(transpose(kernel, (1, 0, 2)), (n1, n_out * n2))   # (out, in1, in2) -> (in1, out*in2)
    t = reshape(reshape(x1, (-1, n1)) @ w, (-1, n_out, n2))       # (M, in1) @ (in1, out*in2) -> (M, out, in2)
    y = tsum(t * reshape(x2, (-1, 1, n2)), axis=2)                # contract in2: (M, out)
    y = reshape(y, out_shape)
    return y if bias is None else y + bias


def embedding_output_shape(input_shape, kernel_shape) -> tuple:
    """Output shape of ``embedding``: the index shape with the embedding size appended.

    >>> embedding_output_shape((None, 20), (1000, 32))
    (None, 20, 32)
    """
    kernel_shape = tuple(kernel_shape)
    if len(kernel_shape) != 2:
        raise ValueError(f"embedding: expects kernel of rank 2 (vocab_size, embedding_size), "
                         f"got shape {kernel_shape}")
    return tuple(input_shape) + (kernel_shape[1],)


def embedding(x, kernel):
    """Look up rows of the table: ``y[..., :] = kernel[x[...], :]``.

    ``x`` holds integer indices in ``[0, vocab_size)`` (any shape; an array, list or Tensor);
    ``kernel`` is (vocab_size, dim). The gradient w.r.t. the table is a scatter-add of ``dy`` into the
    looked-up rows (repeated indices accumulate); every other row gets zero.

    >>> import numpy as np
    >>> table = np.arange(6.0, dtype=np.float32).reshape(3, 2)
    >>> embedding(np.array([[2, 0]]), table).numpy()
    array([[[4., 5.],
            [0., 1.]]], dtype=float32)
    """
    idx = int_indices("embedding", x)
    kernel = tensor("embedding", kernel, "kernel")
    embedding_output_shape(idx.shape, kernel.shape)
    vocab = kernel.shape[0]
    ok, lo, hi = in_range(idx, 0, vocab)
    if not ok:
        bad = lo if lo < 0 else hi
        raise ValueError(f"embedding: index {bad} is out of range for a table of {vocab} rows "
                         f"(kernel shape {kernel.shape})")
    return getitem(kernel, idx)                                # (*idx.shape, dim)
