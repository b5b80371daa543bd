"""Special functions, element by element: the error function ``erf``.

    erf(x) = 2 / sqrt(pi) * integral_0^x e^(-t^2) dt          d/dx: 2 / sqrt(pi) e^(-x^2)

numpy has no ``erf``; numba compiles ``math.erf`` into a loop, one libm call per element (about 8 ns:
``gelu`` on a transformer block's (32, 128, 512) activations spent 17 ms there). In float32 the loop
uses Eigen's rational approximation instead, which LLVM vectorises (``erf32`` below, 20x faster, within
a few ulp); float64 keeps ``math.erf``. Inputs of a dtype numba has no loop for (float16) are computed
in float32 and cast back. The VJP is written with Tensor operations, so
``gelu`` (which uses it) has gradients of any order.

Primitive (a backend implements this forward):

- ``kernels.erf(x) -> y``, same shape and dtype.

>>> import numpy as np
>>> erf(np.array([0.0, 1.0], np.float32)).numpy().round(4)
array([0.    , 0.8427], dtype=float32)
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit
from numba.extending import overload

from ..autograd import apply, as_tensor, exp, primitive
from ._common import KERNEL, contiguous

__all__ = ["erf", "erf_scalar"]

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def erf_scalar(x):
    """erf of one number: ``math.erf``, or in float32 a rational approximation LLVM can vectorise.

    Compiled code (the kernel below, ``axon.fusion``'s generated loops) calls it; from Python it is
    ``math.erf``.

    >>> erf_scalar(1.0)
    0.8427007929497149
    """
    return math.erf(x)


@overload(erf_scalar, inline="always")
def _erf_overload(x):
    if x != numba.float32:
        return lambda x: math.erf(x)

    def erf32(x):
        # Eigen's float erf: x p(x^2) / q(x^2), p of degree 6 and q of degree 4, on [-4, 4] (beyond it
        # erf is +-1 in float32); tests/test_kernels_special.py measures its error against math.erf.
        x = min(max(x, np.float32(-4.0)), np.float32(4.0))
        x2 = x * x
        p = x2 * np.float32(-2.72614225801306e-10) + np.float32(2.77068142495902e-08)
        p = x2 * p + np.float32(-2.10102402082508e-06)
        p = x2 * p + np.float32(-5.69250639462346e-05)
        p = x2 * p + np.float32(-7.34990630326855e-04)
        p = x2 * p + np.float32(-2.95459980854025e-03)
        p = x2 * p + np.float32(-1.60960333262415e-02)
        q = x2 * np.float32(-1.45660718464996e-05) + np.float32(-2.13374055278905e-04)
        q = x2 * q + np.float32(-1.68282697438203e-03)
        q = x2 * q + np.float32(-7.37332916720468e-03)
        q = x2 * q + np.float32(-1.42647390514189e-02)
        return x * p / q
    return erf32


@njit(**KERNEL)
def _erf_kernel(x, out):
    # x, out (n,) of one float dtype: out = erf(x)
    for i in range(x.shape[0]):
        out[i] = erf_scalar(x[i])


def _erf_forward(x):
    if x.dtype not in (np.float32, np.float64):              # numba has no float16: compute in float32
        return _erf_forward(x.astype(np.float32)).astype(x.dtype)
    x = contiguous(x)                                         # so the flat views below share memory
    out = np.empty_like(x)                                    # same shape and dtype as x
    _erf_kernel(x.reshape(-1), out.reshape(-1))
    return out


_erf = primitive("kernels.erf", _erf_forward, lambda dy, y, x: (dy * _TWO_OVER_SQRT_PI * exp(-(x * x)),))


def erf(x):
    """The error function, element by element; differentiable to any order.

    >>> import numpy as np
    >>> float(erf(np.array(1.0)).numpy())
    0.8427007929497149
    """
    x = as_tensor(x)
    if x.dtype.kind != "f":
        raise TypeError(f"erf: x must be floating point, got dtype {x.dtype} (shape {x.shape})")
    return apply(_erf, x)
