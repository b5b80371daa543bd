"""Activation functions: element-wise (or per-axis) non-linearities on Tensors, all differentiable.

Every function takes a Tensor, a numpy array or a number and returns a Tensor built from
``axon.autograd`` primitives, so gradients of any order flow through it. Names and options follow
Elixir Axon's ``Axon.Activations``; ``get(name)`` resolves a name.

>>> import numpy as np
>>> relu6(np.array([-1.0, 3.0, 9.0]))
Tensor([0., 3., 6.], dtype=float64)
>>> get("softplus")(np.array([0.0, 1.0])).numpy().round(4).tolist()
[0.6931, 1.3133]

A few are primitives of their own, where composing existing ops would be unstable, slow or give a
wrong subgradient: ``log1p``, ``expm1``, ``elu`` (also behind celu and selu) and ``softplus`` here;
``erf``, ``softmax``, ``log_softmax`` and ``log_sumexp`` are numba kernels of ``axon.kernels``. Their
VJPs work with grad-of-grad too (Tensor ops, or the same formula in Tensor ops when a backward is
recorded); the rest are compositions of ``axon.autograd`` ops.
"""
from __future__ import annotations

import math

import numpy as np
from .. import kernels
from ..autograd import ops
from ..autograd.ops import primitive
from ..autograd.engine import apply
from ..autograd.tensor import Tensor, as_tensor
from ._registry import getter

__all__ = [
    "celu", "elu", "exp", "gelu", "hard_sigmoid", "hard_silu", "hard_tanh", "leaky_relu", "linear",
    "log_sumexp", "log_sigmoid", "log_softmax", "mish", "relu", "relu6", "selu", "sigmoid", "silu",
    "softmax", "softplus", "softsign", "tanh", "log1p", "expm1", "erf", "get",
]

_SQRT_HALF = math.sqrt(0.5)
_SQRT_TWO_OVER_PI = math.sqrt(2.0 / math.pi)


def _float(x) -> Tensor:
    """``x`` as a floating Tensor: Tensors and float arrays keep their dtype, integers become float32."""
    t = as_tensor(x)
    return t if t.dtype.kind == "f" else ops.astype(t, np.float32)


# ---- primitives this module adds -----------------------------------------------------------------
def _softplus_forward(x):
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow for any x."""
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _elu_forward(x, alpha, scale):
    """x for x > 0, alpha * (e^(x/scale) - 1) otherwise; min(x, 0) keeps e^x from overflowing."""
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0) / scale))


def _elu_vjp(dy, y, x, alpha, scale):
    # on the negative side dy/dx = (alpha / scale) e^(x/scale) = (y + alpha) / scale
    return (ops.where(x > 0, dy, dy * ((y + alpha) / scale)),)


_log1p = primitive("log1p", np.log1p, lambda dy, y, x: (dy / (1 + x),))
_expm1 = primitive("expm1", np.expm1, lambda dy, y, x: (dy * (y + 1),))
_elu = primitive("elu", _elu_forward, _elu_vjp)
_softplus = primitive("softplus", _softplus_forward, lambda dy, y, x: (dy * ops.sigmoid(x),))


def log1p(x):
    """log(1 + x), accurate for tiny x.

    >>> log1p(np.array([1e-10])).item()         # log(1 + 1e-10) would give 1.00000008e-10
    9.999999999500001e-11
    """
    return apply(_log1p, _float(x))


def expm1(x):
    """e^x - 1, accurate for tiny x.

    >>> expm1(np.array([1e-10])).item()         # exp(1e-10) - 1 would give 1.00000008e-10
    1.00000000005e-10
    """
    return apply(_expm1, _float(x))


def erf(x):
    """The error function erf(x) = 2/sqrt(pi) * integral_0^x e^(-t^2) dt (the kernel ``axon.kernels.erf``).

    >>> float(erf(np.array(1.0)))
    0.8427007929497149
    """
    return kernels.erf(_float(x))


# ---- activations ---------------------------------------------------------------------------------
def celu(x, alpha=1.0):
    """Continuously differentiable ELU: x for x > 0, alpha * (e^(x/alpha) - 1) otherwise.

    >>> celu(np.array([-1.0, 2.0]), alpha=2.0).numpy().round(4)
    array([-0.7869,  2.    ])
    """
    if alpha <= 0:
        raise ValueError(f"celu: alpha must be positive, got {alpha}")
    return apply(_elu, _float(x), alpha=alpha, scale=alpha)


def elu(x, alpha=1.0):
    """Exponential linear unit: x for x > 0, alpha * (e^x - 1) otherwise.

    One primitive (shared with celu); its gradient on the negative side is y + alpha.

    >>> elu(np.array([-1.0, 2.0])).numpy().round(4)
    array([-0.6321,  2.    ])
    """
    return apply(_elu, _float(x), alpha=alpha, scale=1.0)


def exp(x):
    """Exponential e^x.

    >>> exp(np.array([0.0, 1.0])).numpy().round(4)
    array([1.    , 2.7183])
    """
    return ops.exp(_float(x))


def gelu(x, approximate=False):
    """Gaussian error linear unit: x * Phi(x), with Phi the standard normal CDF.

    Exact: x/2 * (1 + erf(x / sqrt 2)). With ``approximate=True`` (or ``"tanh"``):
    x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).

    >>> gelu(np.array([-1.0, 1.0])).numpy().round(4)
    array([-0.1587,  0.8413])
    >>> gelu(np.array([1.0]), approximate=True).numpy().round(4)
    array([0.8412])
    """
    if approximate not in (True, False, "tanh", "none"):
        raise ValueError(f"gelu: approximate must be True, False, 'tanh' or 'none', got {approximate!r}")
    x = _float(x)
    if approximate in (True, "tanh"):
        inner = _SQRT_TWO_OVER_PI * (x + 0.044715 * x * x * x)
        return 0.5 * x * (1 + ops.tanh(inner))
    return 0.5 * x * (1 + erf(x * _SQRT_HALF))


def hard_sigmoid(x, alpha=0.2, beta=0.2):
    """Piecewise-linear sigmoid: clip(alpha * x + beta, 0, 1).

    The defaults are Axon's; torch's ``hardsigmoid`` is ``alpha=1/6, beta=0.5``.

    >>> hard_sigmoid(np.array([-5.0, 0.0, 1.0])).numpy().round(4)
    array([0. , 0.2, 0.4])
    """
    return ops.clip(alpha * _float(x) + beta, 0.0, 1.0)


def hard_silu(x, alpha=0.2, beta=0.2):
    """Hard SiLU (hard swish): x * hard_sigmoid(x, alpha, beta).

    torch's ``hardswish`` is ``alpha=1/6, beta=0.5``.

    >>> hard_silu(np.array([1.0, 2.0])).numpy().round(4)
    array([0.4, 1.2])
    """
    x = _float(x)
    return x * hard_sigmoid(x, alpha, beta)


def hard_tanh(x):
    """Hard hyperbolic tangent: clip(x, -1, 1).

    >>> hard_tanh(np.array([-3.0, 0.5, 3.0])).numpy()
    array([-1. ,  0.5,  1. ])
    """
    return ops.clip(_float(x), -1.0, 1.0)


def leaky_relu(x, alpha=0.01):
    """Leaky ReLU: x for x > 0, alpha * x otherwise.

    >>> leaky_relu(np.array([-2.0, 3.0]), alpha=0.5).numpy()
    array([-1.,  3.])
    """
    x = _float(x)
    return ops.where(x > 0, x, alpha * x)


def linear(x):
    """The identity: f(x) = x.

    >>> linear(np.array([1.5])).numpy()
    array([1.5])
    """
    return _float(x)


def log_sumexp(x, axis=-1, keepdims=True):
    """log(sum(e^x)) over ``axis``, computed as m + log(sum(e^(x - m))) with m = max(x).

    As in Axon the reduced axis is kept (size 1) unless ``keepdims=False``; its gradient is softmax(x).

    >>> log_sumexp(np.array([[0.0, 0.0], [1000.0, 1000.0]])).numpy().round(4).tolist()
    [[0.6931], [1000.6931]]
    """
    return kernels.logsumexp(_float(x), axis, keepdims)       # numba, one pass per row


def log_sigmoid(x):
    """log(sigmoid(x)) = -softplus(-x), finite for any x.

    >>> log_sigmoid(np.array([-1000.0, 0.0])).numpy().round(4).tolist()
    [-1000.0, -0.6931]
    """
    return -softplus(-_float(x))


def log_softmax(x, axis=-1):
    """log(softmax(x)) = x - m - log(sum(e^(x - m))) with m = max(x) over ``axis``; stable for any x.

    >>> log_softmax(np.array([0.0, 1000.0])).numpy().round(4)
    array([-1000.,     0.])
    """
    return kernels.log_softmax(_float(x), axis)


def mish(x):
    """Mish: x * tanh(softplus(x)).

    >>> mish(np.array([-1.0, 1.0])).numpy().round(4)
    array([-0.3034,  0.8651])
    """
    x = _float(x)
    return x * ops.tanh(softplus(x))


def relu(x):
    """Rectified linear unit: max(x, 0) (gradient 0 at x = 0).

    >>> relu(np.array([-1.0, 2.0])).numpy()
    array([0., 2.])
    """
    return ops.relu(_float(x))


def relu6(x):
    """ReLU capped at 6: min(max(x, 0), 6).

    >>> relu6(np.array([-1.0, 7.0])).numpy()
    array([0., 6.])
    """
    return ops.clip(_float(x), 0.0, 6.0)


def selu(x, alpha=1.6732632423543772, gamma=1.0507009873554805):
    """Scaled ELU: gamma * elu(x, alpha), with the self-normalizing constants as defaults.

    >>> selu(np.array([-1.0, 1.0])).numpy().round(4)
    array([-1.1113,  1.0507])
    """
    return gamma * elu(x, alpha)


def sigmoid(x):
    """Logistic sigmoid: 1 / (1 + e^-x), computed as (tanh(x/2) + 1)/2 so it never overflows.

    >>> sigmoid(np.array([0.0])).numpy()
    array([0.5])
    """
    return ops.sigmoid(_float(x))


def silu(x):
    """Sigmoid linear unit (swish): x * sigmoid(x).

    >>> silu(np.array([1.0])).numpy().round(4)
    array([0.7311])
    """
    x = _float(x)
    return x * ops.sigmoid(x)


def softmax(x, axis=-1):
    """e^x / sum(e^x) over ``axis`` (an int or a tuple), shifted by the max so it never overflows.

    Gradient: y * (dy - sum(dy * y)).

    >>> softmax(np.array([[1.0, 1.0], [0.0, 1000.0]])).numpy()
    array([[0.5, 0.5],
           [0. , 1. ]])
    """
    return kernels.softmax(_float(x), axis)


def softplus(x):
    """log(1 + e^x), as max(x, 0) + log1p(e^-|x|): finite for any x; gradient sigmoid(x).

    >>> softplus(np.array([-1000.0, 0.0, 1000.0])).numpy().round(4).tolist()
    [0.0, 0.6931, 1000.0]
    """
    return apply(_softplus, _float(x))


def softsign(x):
    """x / (1 + |x|).

    >>> softsign(np.array([-3.0, 1.0])).numpy()
    array([-0.75,  0.5 ])
    """
    x = _float(x)
    return x / (1 + ops.abs(x))


def tanh(x):
    """Hyperbolic tangent.

    >>> tanh(np.array([0.0])).numpy()
    array([0.])
    """
    return ops.tanh(_float(x))


get = getter("activation", globals(), __all__)                 # get("relu") -> relu
