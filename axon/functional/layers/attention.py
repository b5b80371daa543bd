"""Attention: scaled dot-product attention, multi-head attention, and positional information.

    attention(q, k, v) = softmax(q k^T / sqrt(D)) v          q (B, heads, Tq, D), k and v (B, heads, Tk, D)

A boolean ``mask`` broadcastable to (B, heads, Tq, Tk) says which keys each query may look at (True:
attend; integers count as True where nonzero; a float mask, such as PyTorch's additive 0/-inf one,
is a TypeError); ``causal=True`` adds "no key after the query". Masks and position tables are
Tensors on the input's backend, so attention runs on any device and inside ``axon.jit``. The
softmax is axon's fused, stable kernel (the row maximum subtracted first); masked scores are set to
the dtype's lowest value before it and the weights multiplied by the mask after, so a query that may
attend to nothing gets zeros rather than NaN. Everything is built from differentiable primitives:
gradients of any order.

Attention knows nothing about order; positions come in through

- ``sinusoidal_positional_embedding(x)``: adds ``sin``/``cos`` waves of geometric wavelengths;
- ``learned_positional_embedding(x, kernel)``: adds a trained row per position;
- ``rotary_embedding(x)``: rotates pairs of features of q and k by position-dependent angles, so
  ``q_m . k_n`` depends on ``m - n`` only.

>>> import numpy as np
>>> q = k = v = np.random.default_rng(0).standard_normal((2, 4, 5, 8)).astype(np.float32)
>>> y = dot_product_attention(q, k, v, causal=True)
>>> y.shape, bool(np.allclose(y.numpy()[:, :, 0], v[:, :, 0], atol=1e-6))   # step 0 sees only itself
((2, 4, 5, 8), True)
"""
from __future__ import annotations

import math

import numpy as np

from ... import kernels
from ...autograd import concatenate, reshape, transpose, where
from ...kernels._common import bool_mask, on_backend_of
from .dropouts import dropout
from .linear import dense
from ._utils import check_param, tensor

__all__ = ["dot_product_attention", "multi_head_attention", "sinusoidal_positions", "sinusoidal_positional_embedding",
           "learned_positional_embedding", "rotary_embedding"]


def _attend_mask(mask, causal, s):
    """The boolean mask (True: attend) from ``mask`` and ``causal`` for the scores ``s`` (..., Tq, Tk), on their
    backend and broadcastable to them; None if neither."""
    m = None
    if mask is not None:
        m = bool_mask("dot_product_attention", mask, s)
        try:
            np.broadcast_shapes(m.shape, s.shape)
        except ValueError:
            raise ValueError(f"dot_product_attention: mask of shape {m.shape} does not broadcast to "
                             f"(B, heads, Tq, Tk) = {s.shape}") from None
    if causal:
        Tq, Tk = s.shape[-2:]
        c = on_backend_of(s, np.tril(np.ones((Tq, Tk), dtype=bool)))   # query i sees keys 0..i (as PyTorch)
        m = c if m is None else m & c
    return m


def dot_product_attention(q, k, v, mask=None, causal=False, dropout_rate=0.0, key=None):
    """``softmax(q k^T / sqrt(D)) v`` on (B, heads, T, D), as ``torch.nn.functional.scaled_dot_product_attention``.

    ``mask``: boolean (or integer, nonzero = True), broadcastable to (B, heads, Tq, Tk), True where a
    query may attend to a key (a float mask is a TypeError: axon's masks are not additive); ``causal``:
    each query attends to keys up to its own position; ``dropout_rate`` drops attention weights
    (``key``, a random key, is then required). A query with no key to attend to gets 0.

    >>> import numpy as np
    >>> q = np.zeros((1, 1, 2, 4)); k = np.zeros((1, 1, 3, 4)); v = np.arange(12.0).reshape(1, 1, 3, 4)
    >>> dot_product_attention(q, k, v).numpy()[0, 0]          # equal scores: the mean of the values
    array([[4., 5., 6., 7.],
           [4., 5., 6., 7.]])
    >>> dot_product_attention(q, k, v, mask=np.array([[True, False, False], [False, False, False]])).numpy()[0, 0]
    array([[0., 1., 2., 3.],
           [0., 0., 0., 0.]])
    """
    q, k, v = (tensor("dot_product_attention", a, name) for a, name in ((q, "q"), (k, "k"), (v, "v")))
    if q.ndim < 2 or k.ndim != q.ndim or v.ndim != q.ndim or q.shape[-1] != k.shape[-1] or \
            k.shape[-2] != v.shape[-2] or q.shape[:-2] != k.shape[:-2] or k.shape[:-2] != v.shape[:-2]:
        raise ValueError(f"dot_product_attention: expects q (..., Tq, D), k (..., Tk, D) and v (..., Tk, Dv) with "
                         f"the same leading axes, got {q.shape}, {k.shape} and {v.shape}")
    if dropout_rate and key is None:
        raise ValueError("dot_product_attention: dropout_rate > 0 needs a random key (key=...)")
    scale = q.dtype.type(1 / math.sqrt(q.shape[-1]))
    s = (q * scale) @ _swap(k)                                 # (..., Tq, D) @ (..., D, Tk) -> (..., Tq, Tk)
    m = _attend_mask(mask, causal, s)
    if m is not None:
        s = where(m, s, np.finfo(s.dtype).min)                 # masked scores: exp(min - max) = 0 exactly
    p = kernels.softmax(s, axis=-1)                            # (..., Tq, Tk)
    if m is not None:
        p = p * m.astype(p.dtype)                              # a row with nothing to attend to: 0, not uniform
    if dropout_rate:
        p = dropout(p, key, rate=dropout_rate)
    return p @ v                                               # (..., Tq, Tk) @ (..., Tk, Dv) -> (..., Tq, Dv)


def _swap(x):
    """Swap the last two axes: (..., T, D) -> (..., D, T)."""
    axes = list(range(x.ndim))
    axes[-1], axes[-2] = axes[-2], axes[-1]
    return transpose(x, axes)


def _split_heads(x, num_heads):
    """(B, T, heads * D) -> (B, heads, T, D)."""
    B, T, E = x.shape
    return transpose(reshape(x, (B, T, num_heads, E // num_heads)), (0, 2, 1, 3))


def _merge_heads(x):
    """(B, heads, T, D) -> (B, T, heads * D)."""
    B, h, T, D = x.shape
    return reshape(transpose(x, (0, 2, 1, 3)), (B, T, h * D))


def multi_head_attention(query, keys, values, query_kernel, key_kernel, value_kernel, output_kernel,
                         num_heads, query_bias=None, key_bias=None, value_bias=None, output_bias=None,
                         mask=None, causal=False, dropout_rate=0.0, key=None):
    """Multi-head attention: project, split into heads, ``dot_product_attention`` per head, merge, project.

        Q = query W_q + b_q     K = keys W_k + b_k     V = values W_v + b_v           (B, T, heads * D)
        y = concat_h(attention(Q_h, K_h, V_h)) W_o + b_o

    ``query`` (B, Tq, Eq), ``keys`` and ``values`` (B, Tk, Ek) and (B, Tk, Ev) (self-attention: all
    three the same); kernels (Eq, E), (Ek, E), (Ev, E) and (E, Eo) with E divisible by ``num_heads``.
    ``mask`` broadcastable to (B, heads, Tq, Tk), True = attend. ``key`` is the random key for dropout.
    Matches ``torch.nn.MultiheadAttention(batch_first=True)`` with ``in_proj_weight`` split in three and
    every weight transposed.

    >>> import numpy as np
    >>> r = np.random.default_rng(0)
    >>> x = r.standard_normal((2, 5, 8)).astype(np.float32)
    >>> w = [r.standard_normal((8, 8)).astype(np.float32) for _ in range(4)]
    >>> multi_head_attention(x, x, x, *w, num_heads=2, causal=True).shape
    (2, 5, 8)
    """
    query = tensor("multi_head_attention", query, "query")
    keys, values = tensor("multi_head_attention", keys, "keys"), tensor("multi_head_attention", values, "values")
    if query.ndim != 3 or keys.ndim != 3 or values.ndim != 3 or keys.shape[:2] != values.shape[:2] or \
            query.shape[0] != keys.shape[0]:
        raise ValueError(f"multi_head_attention: expects query (B, Tq, Eq), keys (B, Tk, Ek) and values (B, Tk, Ev), "
                         f"got {query.shape}, {keys.shape} and {values.shape}")
    E = np.shape(query_kernel)[-1]
    if E % num_heads:
        raise ValueError(f"multi_head_attention: the projection width {E} is not divisible by num_heads {num_heads}")
    for name, w, b in (("query", query_kernel, query_bias), ("key", key_kernel, key_bias),
                       ("value", value_kernel, value_bias)):
        if np.shape(w)[-1] != E:
            raise ValueError(f"multi_head_attention: {name}_kernel must project to {E} features (as query_kernel), "
                             f"got shape {np.shape(w)}")
        check_param("multi_head_attention", f"{name}_bias", b, (E,))
    q = _split_heads(dense(query, query_kernel, query_bias), num_heads)          # (B, heads, Tq, D)
    k = _split_heads(dense(keys, key_kernel, key_bias), num_heads)               # (B, heads, Tk, D)
    v = _split_heads(dense(values, value_kernel, value_bias), num_heads)           # (B, heads, Tk, D)
    y = dot_product_attention(q, k, v, mask=mask, causal=causal, dropout_rate=dropout_rate, key=key)
    return dense(_merge_heads(y), output_kernel, output_bias)                    # (B, Tq, E) -> (B, Tq, Eo)


def sinusoidal_positions(length, dim, base=10000.0, dtype=np.float32) -> np.ndarray:
    """The (length, dim) table of "Attention is all you need": ``P[t, 2i] = sin(t / base^(2i/dim))``, cos at 2i+1.

    >>> sinusoidal_positions(3, 4).round(4)
    array([[ 0.    ,  1.    ,  0.    ,  1.    ],
           [ 0.8415,  0.5403,  0.01  ,  1.    ],
           [ 0.9093, -0.4161,  0.02  ,  0.9998]], dtype=float32)
    """
    t = np.arange(length, dtype=np.float64)[:, None]                          # (T, 1)
    freq = base ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)             # (ceil(dim / 2),)
    table = np.zeros((length, dim))
    table[:, 0::2] = np.sin(t * freq)
    table[:, 1::2] = np.cos(t * freq[:dim // 2])
    return table.astype(dtype)


def sinusoidal_positional_embedding(x, base=10000.0):
    """``x + sinusoidal_positions(T, E)`` for ``x`` (B, T, E): fixed position codes, nothing to train.

    >>> import numpy as np
    >>> sinusoidal_positional_embedding(np.zeros((1, 2, 2), np.float32)).numpy().round(4)
    array([[[0.    , 1.    ],
            [0.8415, 0.5403]]], dtype=float32)
    """
    x = tensor("sinusoidal_positional_embedding", x)
    if x.ndim != 3:
        raise ValueError(f"sinusoidal_positional_embedding: expects x (B, T, E), got shape {x.shape}")
    return x + on_backend_of(x, sinusoidal_positions(x.shape[1], x.shape[2], base, x.dtype))   # (B, T, E) + (T, E)


def learned_positional_embedding(x, kernel):
    """``x + kernel[:T]`` for ``x`` (B, T, E) and a trained table ``kernel`` (max_length, E).

    >>> import numpy as np
    >>> learned_positional_embedding(np.zeros((1, 2, 3)), np.arange(12.0).reshape(4, 3)).numpy()
    array([[[0., 1., 2.],
            [3., 4., 5.]]])
    """
    x, kernel = tensor("learned_positional_embedding", x), tensor("learned_positional_embedding", kernel, "kernel")
    if x.ndim != 3 or kernel.ndim != 2 or kernel.shape[1] != x.shape[2] or kernel.shape[0] < x.shape[1]:
        raise ValueError(f"learned_positional_embedding: expects x (B, T, E) and kernel (max_length >= T, E), got "
                         f"{x.shape} and {kernel.shape}")
    return x + kernel[:x.shape[1]]


def rotary_embedding(x, base=10000.0, offset=0):
    """Rotary position embedding (RoPE) along axis -2 (the steps) of ``x`` (..., T, D), D even.

    Features are paired as (first half, second half); pair i at position t turns by ``t base^(-2i/D)``:

        y_1 = x_1 cos - x_2 sin        y_2 = x_2 cos + x_1 sin

    so for rotated q and k, ``q_m . k_n`` depends on the offset ``m - n`` only. ``offset`` is the
    position of the first step (decoding one step at a time).

    >>> import numpy as np
    >>> q = np.tile(np.array([1.0, 0.0, 0.0, 1.0]), (3, 1))          # the same vector at 3 positions
    >>> y = rotary_embedding(q).numpy()
    >>> np.round(y @ y.T, 4)                                         # dot products depend on m - n only
    array([[2.    , 1.5403, 0.5837],
           [1.5403, 2.    , 1.5403],
           [0.5837, 1.5403, 2.    ]])
    """
    x = tensor("rotary_embedding", x)
    if x.ndim < 2 or x.shape[-1] % 2:
        raise ValueError(f"rotary_embedding: expects x (..., T, D) with D even, got shape {x.shape}")
    T, D = x.shape[-2], x.shape[-1]
    angle = (np.arange(offset, offset + T, dtype=np.float64)[:, None]
             * base ** (-np.arange(0, D, 2, dtype=np.float64) / D))           # (T, D/2)
    cos, sin = (on_backend_of(x, f(angle).astype(x.dtype)) for f in (np.cos, np.sin))   # (T, D/2), x's backend
    x1, x2 = x[..., :D // 2], x[..., D // 2:]
    return concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
