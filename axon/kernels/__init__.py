"""Numba CPU kernels, each wired into autograd as a primitive with its own backward.

Every function takes Tensors or numpy arrays (channels-last, float32 or float64, dtype preserved),
checks shapes and dtypes in Python, and returns Tensors the engine can differentiate:

- ``conv(x, w, strides, padding, dilation, groups=1)``: 1-d, 2-d, 3-d convolution by im2col/col2im.
- ``max_pool``, ``avg_pool``, ``lp_pool``, ``adaptive_max_pool``, ``adaptive_avg_pool``,
  ``global_max_pool``, ``global_avg_pool``.
- ``softmax``, ``log_softmax``, ``logsumexp``, ``softmax_cross_entropy`` (fused with its gradient).
- ``reduce_sum``, ``reduce_mean``, ``max_with_indices``: reductions along one axis.
- ``batch_norm_train(x, gamma, beta, eps) -> (y, mean, var)``; ``bias_relu(x, b)`` (fused).
- ``lstm_sequence``, ``gru_sequence``: a whole LSTM/GRU recurrence (after the input projection) fused.
- ``matmul_loop`` (the teaching triple loop) and ``matmul`` (BLAS per row chunk).
- ``adam_update(p, g, m, v, *, lr, b1, b2, eps, weight_decay, step)``: numpy arrays, in place;
  ``adam_step(...) -> (u, m_new, v_new)``: the same pass into fresh arrays (functional optimizers).

How they stay fast inside a whole training step (see each module's docstring):

- one thread pool: numba's; BLAS is called single-threaded inside it (``threads``);
- no per-step reallocation of big temporaries: block-sized scratch buffers are reused, and freed
  memory is kept for the next step rather than returned to the OS (``workspace``);
- float32 stays float32 inside the kernels (constants cast to the array's dtype).

Kernels compile on first use (``cache=True``: a second process loads them from disk), so importing
this package compiles nothing.

>>> import numpy as np
>>> from axon import kernels
>>> x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype(np.float32)
>>> w = np.zeros((3, 3, 3, 4), np.float32)
>>> y = kernels.max_pool(kernels.conv(x, w, (1, 1), ((1, 1), (1, 1)), (1, 1)), (2, 2), (2, 2), ((0, 0), (0, 0)))
>>> y.shape, y.dtype
((2, 4, 4, 4), dtype('float32'))
"""
from .activation import bias_relu
from .adam import adam_step, adam_update
from .conv import conv
from .matmul import matmul, matmul_loop
from .norm import batch_norm_train
from .pool import (adaptive_avg_pool, adaptive_max_pool, avg_pool, global_avg_pool, global_max_pool, lp_pool,
                   max_pool)
from .recurrent import gru_sequence, lstm_sequence
from .reduce import max_with_indices, reduce_mean, reduce_sum
from .softmax import log_softmax, logsumexp, softmax, softmax_cross_entropy
from .threads import num_threads, set_num_threads
from .workspace import keep_freed_memory

keep_freed_memory()

__all__ = [
    "conv", "max_pool", "avg_pool", "lp_pool", "adaptive_max_pool", "adaptive_avg_pool", "global_max_pool",
    "global_avg_pool", "softmax", "log_softmax", "logsumexp", "softmax_cross_entropy", "reduce_sum",
    "reduce_mean", "max_with_indices", "batch_norm_train", "bias_relu", "matmul_loop", "matmul",
    "adam_update", "adam_step", "num_threads", "set_num_threads", "lstm_sequence", "gru_sequence",
]
