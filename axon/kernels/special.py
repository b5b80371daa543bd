"""Special functions, element by element: the error function ``erf``.

    erf(x) = 2 / sqrt(pi) * integral_0^x e^(-t^2) dt          d/dx: 2 / sqrt(pi) e^(-x^2)

numpy has no ``erf``; numba compiles ``math.erf`` into a loop. Inputs of a dtype numba has no loop
for (float16) are computed in float32 and cast back. The VJP is written with Tensor operations, so
``gelu`` (which uses it) has gradients of any order.

Primitive (a backend implements this forward):

- ``kernels.erf(x) -> y``, same shape and dtype.

>>> import numpy as np
>>> erf(np.array([0.0, 1.0], np.float32)).numpy().round(4)
array([0.    , 0.8427], dtype=float32)
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..autograd import apply, as_tensor, exp, primitive
from ._common import KERNEL, contiguous

__all__ = ["erf"]

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


@njit(**KERNEL)
def _erf_kernel(x, out):
    # x, out (n,) of one float dtype: out = erf(x)
    for i in range(x.shape[0]):
        out[i] = math.erf(x[i])


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
