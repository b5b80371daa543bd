"""Parameter initializers: factories that return ``init(shape, dtype="float32", key=None) -> numpy array``.

As in Elixir Axon's ``Axon.Initializers``, each public function takes the initializer's options and
returns the function that draws the values; ``key`` (an int seed, a numpy Generator or None) goes
through ``axon.random.rng``, so the same key always gives the same parameters.

>>> init = glorot_uniform()
>>> w = init((784, 128), key=0)
>>> w.shape, w.dtype
((784, 128), dtype('float32'))
>>> bool((w == glorot_uniform()((784, 128), key=0)).all())
True

Fans (how many inputs and outputs a unit has) follow the channels-last kernel layout
``(*receptive_field, in, out)``: a dense kernel (in, out) has fan_in = in and fan_out = out; a
(3, 3, 16, 32) conv kernel has fan_in = 3*3*16 and fan_out = 3*3*32.
"""
from __future__ import annotations

import math

import numpy as np

from .. import random as axrandom
from ._registry import resolve, table

__all__ = [
    "zeros", "ones", "full", "identity", "uniform", "normal", "lecun_uniform", "lecun_normal",
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "variance_scaling", "orthogonal",
    "compute_fans", "get",
]

_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")
# Standard deviation of a unit normal truncated to [-2, 2]: dividing by it restores the wanted std.
_TRUNCATED_STD = 0.87962566103423978


def _check(name: str, shape, dtype, floating: bool = True):
    """Validate and normalise ``shape`` (tuple of ints >= 0) and ``dtype``; raise naming the initializer."""
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    try:
        shape = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: shape must be a tuple of ints, got {shape!r}") from None
    if any(n < 0 for n in shape):
        raise ValueError(f"{name}: shape must have non-negative sizes, got {shape}")
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name}: dtype {dtype!r} is not a numpy dtype") from None
    if floating and dtype.kind != "f":
        raise TypeError(f"{name}: random initializers need a floating dtype, got {dtype}")
    return shape, dtype


def compute_fans(shape) -> tuple[float, float]:
    """(fan_in, fan_out) of a kernel of shape ``(*receptive_field, in, out)``.

    Scalars give (1, 1) and vectors (n, n), as in Axon.

    >>> compute_fans((784, 128))
    (784, 128)
    >>> compute_fans((3, 3, 16, 32))                 # a 3x3 conv from 16 to 32 channels
    (144, 288)
    """
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])                          # 1 for dense kernels
    return shape[-2] * receptive, shape[-1] * receptive


def _draw_dtype(dtype):
    """The dtype to draw in: numpy's Generator makes float32 and float64; others are cast afterwards."""
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


def _truncated_normal(gen, shape, dtype):
    """Unit normal draws outside [-2, 2] redrawn until none are left (about 4.6% each round)."""
    x = gen.standard_normal(shape, dtype=dtype)
    bad = np.abs(x) > 2
    while bad.any():
        x[bad] = gen.standard_normal(int(bad.sum()), dtype=dtype)
        bad = np.abs(x) > 2
    return x


# ---- constants -----------------------------------------------------------------------------------
def zeros():
    """Initialize to 0.

    >>> zeros()((2, 2))
    array([[0., 0.],
           [0., 0.]], dtype=float32)
    """
    def init(shape, dtype="float32", key=None):
        shape, dtype = _check("zeros", shape, dtype, floating=False)
        return np.zeros(shape, dtype=dtype)
    return init


def ones():
    """Initialize to 1.

    >>> ones()((3,), dtype="float64")
    array([1., 1., 1.])
    """
    def init(shape, dtype="float32", key=None):
        shape, dtype = _check("ones", shape, dtype, floating=False)
        return np.ones(shape, dtype=dtype)
    return init


def full(value):
    """Initialize every element to ``value``.

    >>> full(0.1)((2,))
    array([0.1, 0.1], dtype=float32)
    """
    def init(shape, dtype="float32", key=None):
        shape, dtype = _check("full", shape, dtype, floating=False)
        return np.full(shape, value, dtype=dtype)
    return init


def identity():
    """Initialize a 2-D kernel to the identity matrix (ones on the diagonal, also when not square).

    >>> identity()((2, 3))
    array([[1., 0., 0.],
           [0., 1., 0.]], dtype=float32)
    """
    def init(shape, dtype="float32", key=None):
        shape, dtype = _check("identity", shape, dtype, floating=False)
        if len(shape) != 2:
            raise ValueError(f"identity: needs a 2-D shape, got {shape}")
        return np.eye(*shape, dtype=dtype)
    return init


# ---- plain random --------------------------------------------------------------------------------
def uniform(scale=1e-2):
    """Uniform on [-scale, scale).

    >>> w = uniform(scale=0.5)((1000,), key=0)
    >>> bool(w.min() >= -0.5 and w.max() < 0.5)
    True
    """
    def init(shape, dtype="float32", key=None):
        shape, dtype = _check("uniform", shape, dtype)
        gen = axrandom.rng(key)
        x = gen.random(shape, dtype=_draw_dtype(dtype)) * (2 * scale) - scale
        return x.astype(dtype, copy=False)
    return init


def normal(mean=0.0, scale=1e-2):
    """Normal with mean ``mean`` and standard deviation ``scale``.

    >>> w = normal(mean=1.0, scale=0.1)((10000,), key=0)
    >>> round(float(w.mean()), 2), round(float(w.std()), 2)
    (1.0, 0.1)
    """
    def init(shape, dtype="float32", key=None):
        shape, dtype = _check("normal", shape, dtype)
        gen = axrandom.rng(key)
        x = gen.standard_normal(shape, dtype=_draw_dtype(dtype)) * scale + mean
        return x.astype(dtype, copy=False)
    return init


# ---- variance scaling and its named cases ----------------------------------------------------------
def variance_scaling(scale=1.0, mode="fan_in", distribution="normal"):
    """Random values with variance ``scale / n``, n the fan chosen by ``mode``.

    ``mode``: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"`` ((fan_in + fan_out) / 2), see ``compute_fans``.
    ``distribution``:

    - ``"normal"``: N(0, sigma^2) with sigma = sqrt(scale / n);
    - ``"truncated_normal"``: a normal cut at two of its standard deviations, rescaled so the
      variance is still scale / n (sigma = sqrt(scale / n) / 0.8796...);
    - ``"uniform"``: U(-limit, limit) with limit = sqrt(3 scale / n).

    >>> w = variance_scaling(scale=2.0, mode="fan_in", distribution="uniform")((500, 300), key=0)
    >>> round(float(w.var() * 500), 1)             # variance = scale / fan_in
    2.0
    """
    return _variance_scaling("variance_scaling", scale, mode, distribution)


def _variance_scaling(name, scale, mode, distribution):
    """``variance_scaling`` whose errors carry ``name`` (he_normal, glorot_uniform...)."""
    if mode not in _MODES:
        raise ValueError(f"{name}: mode must be one of {', '.join(_MODES)}, got {mode!r}")
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(f"{name}: distribution must be one of {', '.join(_DISTRIBUTIONS)}, "
                         f"got {distribution!r}")
    if scale < 0:
        raise ValueError(f"{name}: scale must be non-negative, got {scale}")

    def init(shape, dtype="float32", key=None):
        shape, dtype = _check(name, shape, dtype)
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        variance = scale / max(n, 1)
        gen, draw = axrandom.rng(key), _draw_dtype(dtype)
        if distribution == "uniform":
            limit = math.sqrt(3 * variance)
            x = gen.random(shape, dtype=draw) * (2 * limit) - limit
        elif distribution == "normal":
            x = gen.standard_normal(shape, dtype=draw) * math.sqrt(variance)
        else:
            x = _truncated_normal(gen, shape, draw) * (math.sqrt(variance) / _TRUNCATED_STD)
        return x.astype(dtype, copy=False)
    return init


def lecun_uniform(scale=1.0):
    """LeCun uniform: ``variance_scaling(scale, "fan_in", "uniform")``, limit sqrt(3 scale / fan_in).

    >>> lecun_uniform()((4, 3), key=0).shape
    (4, 3)
    """
    return _variance_scaling("lecun_uniform", scale, "fan_in", "uniform")


def lecun_normal(scale=1.0):
    """LeCun normal: ``variance_scaling(scale, "fan_in", "truncated_normal")``, variance scale / fan_in.

    >>> lecun_normal()((4, 3), key=0).dtype
    dtype('float32')
    """
    return _variance_scaling("lecun_normal", scale, "fan_in", "truncated_normal")


def glorot_uniform(scale=1.0):
    """Glorot (Xavier) uniform: ``variance_scaling(scale, "fan_avg", "uniform")``.

    limit = sqrt(6 scale / (fan_in + fan_out)).

    >>> w = glorot_uniform()((300, 600), key=0)
    >>> round(float(np.abs(w).max()), 3), round(6 ** 0.5 / 900 ** 0.5, 3)
    (0.082, 0.082)
    """
    return _variance_scaling("glorot_uniform", scale, "fan_avg", "uniform")


def glorot_normal(scale=1.0):
    """Glorot (Xavier) normal: ``variance_scaling(scale, "fan_avg", "truncated_normal")``.

    Variance 2 scale / (fan_in + fan_out).

    >>> glorot_normal()((4, 3), key=0).shape
    (4, 3)
    """
    return _variance_scaling("glorot_normal", scale, "fan_avg", "truncated_normal")


def he_uniform(scale=2.0):
    """He (Kaiming) uniform: ``variance_scaling(scale, "fan_in", "uniform")``, limit sqrt(6 / fan_in).

    >>> he_uniform()((3, 3, 8, 16), key=0).shape     # a conv kernel: fan_in = 3 * 3 * 8
    (3, 3, 8, 16)
    """
    return _variance_scaling("he_uniform", scale, "fan_in", "uniform")


def he_normal(scale=2.0):
    """He (Kaiming) normal: ``variance_scaling(scale, "fan_in", "truncated_normal")``, variance 2 / fan_in.

    >>> he_normal()((4, 3), key=0).shape
    (4, 3)
    """
    return _variance_scaling("he_normal", scale, "fan_in", "truncated_normal")


def orthogonal(distribution="normal", scale=1.0):
    """A (scaled) random orthogonal matrix: the Q of the QR decomposition of a random matrix.

    The kernel is seen as a matrix (prod(shape[:-1]), shape[-1]): its columns are orthonormal
    (Q^T Q = I) when it has at least as many rows as columns, its rows otherwise (Q Q^T = I). The
    signs of R's diagonal are folded into Q so the result is uniformly distributed (Haar) when
    ``distribution="normal"``.

    >>> q = orthogonal()((5, 3), key=0)
    >>> bool(np.allclose(q.T @ q, np.eye(3), atol=1e-6))
    True
    """
    if distribution not in ("normal", "uniform"):
        raise ValueError(f"orthogonal: distribution must be 'normal' or 'uniform', got {distribution!r}")

    def init(shape, dtype="float32", key=None):
        shape, dtype = _check("orthogonal", shape, dtype)
        if len(shape) < 2:
            raise ValueError(f"orthogonal: needs a shape with at least 2 axes, got {shape}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        gen = axrandom.rng(key)
        a = gen.standard_normal((max(rows, cols), min(rows, cols))) if distribution == "normal" \
            else gen.random((max(rows, cols), min(rows, cols)))   # (tall, narrow), float64
        q, r = np.linalg.qr(a)                                     # q: (tall, narrow), orthonormal columns
        q *= np.where(np.diag(r) < 0, -1.0, 1.0)                   # fix column signs: Haar distributed
        if rows < cols:
            q = q.T                                                # (rows, cols) with orthonormal rows
        return (scale * q).reshape(shape).astype(dtype)
    return init


_BY_NAME = table(globals(), [n for n in __all__ if n != "compute_fans"])


def get(name, **options):
    """The init function for ``name`` built with ``options``; a callable is returned unchanged.

    >>> get("glorot_uniform")((2, 2), key=0).shape
    (2, 2)
    >>> get("full", value=0.5)((2,))
    array([0.5, 0.5], dtype=float32)
    """
    if callable(name):
        return name
    return resolve("initializer", _BY_NAME, name)(**options)
