"""Numba CPU kernels, each wired into autograd as a primitive with its own backward.

Every function takes Tensors or numpy arrays (channels-last, float32 or float64, dtype preserved),
checks shapes and dtypes in Python, and returns Tensors the engine can differentiate. The functions,
and the module each lives in (named for what it holds, so that ``axon.kernels.conv`` is the function
and ``axon.kernels.convolution`` its module):

- ``conv(x, w, strides, padding, dilation, groups=1)``: 1-d, 2-d, 3-d convolution by im2col/col2im
  (``convolution``).
- ``max_pool``, ``avg_pool``, ``lp_pool``, ``adaptive_max_pool``, ``adaptive_avg_pool``,
  ``global_max_pool``, ``global_avg_pool`` (``pool``).
- ``softmax``, ``log_softmax``, ``logsumexp``, ``softmax_cross_entropy`` (fused with its gradient)
  (``softmax_family``).
- ``reduce_sum``, ``reduce_mean``, ``max_with_indices``, ``take_along_axis``: along one axis (``reduce``).
- ``batch_norm_train(x, gamma, beta, eps) -> (y, mean, var)`` (``norm``); ``bias_relu(x, b)`` (fused,
  ``activation``); ``erf`` (``special``); ``ctc_loss`` (``ctc``).
- ``lstm_sequence``, ``gru_sequence``: a whole LSTM/GRU recurrence (after the input projection) fused
  (``recurrent``).
- ``conv_max_pool``, ``conv_max_pool_backward``: a convolution and the max pooling after it in one sweep, on
  arrays (``conv_pool``); ``axon.fusion``'s ``conv_pool`` pass puts them into compiled plans.
- ``matmul_loop`` (the teaching triple loop) and ``matmul`` (BLAS per row chunk) (``matrix_product``).
- ``adam_update(p, g, m, v, *, lr, b1, b2, eps, weight_decay, step)``: numpy arrays, in place;
  ``adam_step(...) -> (u, m_new, v_new)``: the same pass into fresh arrays, a primitive (``adam``; the
  optimizers call its twin, the primitive ``kernels.adam_step_at``, which takes the step as an array).

Each kernel is a primitive of the engine's one table (``"kernels.<name>"``), and so is its backward
(``"kernels.<name>_backward"``): another backend (``axon.backend``) adds its own forwards for them with
``axon.autograd.implement``; the signatures are listed in each module's docstring and in CONTRIBUTING.md.

How they stay fast inside a whole training step (see each module's docstring):

- one thread pool: numba's; BLAS is called single-threaded inside it (``threads``);
- no per-step reallocation of big temporaries: block-sized scratch buffers are reused, and freed
  memory is kept for the next step rather than returned to the OS (``workspace``);
- float32 stays float32 inside the kernels (constants cast to the array's dtype).

Kernels compile on first use (``cache=True``: a second process loads them from disk), so importing
this package compiles nothing. It does change one process-wide setting: glibc's ``malloc`` keeps freed
memory for reuse (``workspace.keep_freed_memory``; ``AXON_KEEP_FREED_MEMORY=0`` leaves it alone).

>>> import numpy as np
>>> from axon import kernels
>>> x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype(np.float32)
>>> w = np.zeros((3, 3, 3, 4), np.float32)
>>> y = kernels.max_pool(kernels.conv(x, w, (1, 1), ((1, 1), (1, 1)), (1, 1)), (2, 2), (2, 2), ((0, 0), (0, 0)))
>>> y.shape, y.dtype
((2, 4, 4, 4), dtype('float32'))
"""
from ._common import FASTMATH, KERNEL, PARALLEL_MIN     # the settings every kernel compiles with
from .activation import bias_relu
from .adam import adam_step, adam_update
from .convolution import conv
from .matrix_product import matmul, matmul_loop
from .norm import batch_norm_train
from .pool import (adaptive_avg_pool, adaptive_max_pool, avg_pool, global_avg_pool, global_max_pool, lp_pool,
                   max_pool)
from .ctc import ctc_loss
from .recurrent import gru_sequence, lstm_sequence
from .reduce import max_with_indices, reduce_mean, reduce_sum, take_along_axis
from .softmax_family import log_softmax, logsumexp, softmax, softmax_cross_entropy
from .special import erf
from .threads import num_threads, set_num_threads
from .workspace import keep_freed_memory

keep_freed_memory()

__all__ = [
    "KERNEL", "FASTMATH", "PARALLEL_MIN",
    "conv", "max_pool", "avg_pool", "lp_pool", "adaptive_max_pool", "adaptive_avg_pool", "global_max_pool",
    "global_avg_pool", "softmax", "log_softmax", "logsumexp", "softmax_cross_entropy", "reduce_sum",
    "reduce_mean", "max_with_indices", "take_along_axis", "erf", "ctc_loss", "batch_norm_train", "bias_relu",
    "matmul_loop", "matmul", "adam_update", "adam_step", "num_threads", "set_num_threads", "lstm_sequence",
    "gru_sequence",
]
