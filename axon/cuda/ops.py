"""The engine's own primitives on the GPU: one line each on top of the kernel factories.

Every primitive of ``axon.autograd.ops`` keeps its name and its VJP (written with Tensor operations,
so it runs here too); this module only adds its ``"cuda"`` forward with ``implement``. Elementwise ops
are a scalar function given to ``cuda_map`` / ``cuda_zip``, reductions a fold given to ``cuda_reduce``;
the output dtypes come from the CPU twins (``like=``), so numpy's promotion rules hold on both.

NaN behaves as in numpy: ``maximum``/``minimum``/``max``/``min``/``relu``/``clip``/``sign`` let it through.

>>> import numpy as np
>>> from axon.autograd import Tensor
>>> from axon.cuda._runtime import from_host
>>> x = Tensor(from_host(np.array([-1.0, 2.0], np.float32)), requires_grad=True)
>>> y = (x * x).sum(); y.backward()
>>> float(y), x.grad.copy_to_host()
(5.0, array([-2.,  4.], dtype=float32))
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd.engine import PRIMITIVES, implement
from .factories import cuda_map, cuda_reduce, cuda_zip

__all__ = ["FORWARDS"]


def _max2(a, b):
    return a if a > b or a != a else b                           # NaN wins, as numpy.maximum


def _min2(a, b):
    return a if a < b or a != a else b


def _clip(v, c):
    return v if v != v else (c[0] if v < c[0] else (c[1] if v > c[1] else v))


def _sign(v):
    return v if v != v else (1 if v > 0 else (-1 if v < 0 else 0))


def _bounds(dtype, lo, hi):
    """clip's bounds as numbers of ``dtype`` (a missing one is the dtype's extreme)."""
    if np.dtype(dtype).kind == "f":
        low, high = -np.inf, np.inf
    else:
        info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
        low, high = (info.min, info.max) if info else (False, True)
    return np.dtype(dtype).type(low if lo is None else lo), np.dtype(dtype).type(high if hi is None else hi)


# ---- arithmetic and functions (cuda_map / cuda_zip) -----------------------------------------------------
implement("add", "cuda", cuda_zip(lambda a, b: a + b, like="add"))
implement("sub", "cuda", cuda_zip(lambda a, b: a - b, like="sub"))
implement("mul", "cuda", cuda_zip(lambda a, b: a * b, like="mul"))
implement("div", "cuda", cuda_zip(lambda a, b: a / b, like="div"))
implement("power", "cuda", cuda_zip(lambda a, b: a ** b, like="power"))
implement("maximum", "cuda", cuda_zip(_max2, like="maximum"))
implement("minimum", "cuda", cuda_zip(_min2, like="minimum"))
implement("where", "cuda", cuda_zip(lambda c, a, b: a if c else b, like="where"))
implement("neg", "cuda", cuda_map(lambda v: -v, like="neg"))
implement("exp", "cuda", cuda_map(lambda v: math.inf if v >= 709.0 else math.exp(v), like="exp"))
implement("log", "cuda", cuda_map(lambda v: math.log(v) if v > 0 else (-math.inf if v == 0 else math.nan), like="log"))
implement("sqrt", "cuda", cuda_map(lambda v: math.sqrt(v) if v >= 0 else math.nan, like="sqrt"))
implement("abs", "cuda", cuda_map(lambda v: abs(v), like="abs"))
implement("tanh", "cuda", cuda_map(lambda v: math.tanh(v), like="tanh"))
implement("sigmoid", "cuda", cuda_map(lambda v: 0.5 * (math.tanh(0.5 * v) + 1.0), like="sigmoid"))
implement("relu", "cuda", cuda_map(lambda v: v if v > 0 or v != v else 0, like="relu"))
_clip_forward = cuda_map(_clip, like=None)
implement("clip", "cuda", lambda x, lo, hi: _clip_forward(x, *_bounds(x.dtype, lo, hi)))
_copy = cuda_map(lambda v: v)
implement("astype", "cuda", lambda x, dtype: _copy(x, dtype=dtype))

# ---- comparisons and logic (never differentiated) ------------------------------------------------------
implement("sign", "cuda", cuda_map(_sign, like="sign"))
implement("less", "cuda", cuda_zip(lambda a, b: a < b, like="less"))
implement("less_equal", "cuda", cuda_zip(lambda a, b: a <= b, like="less_equal"))
implement("greater", "cuda", cuda_zip(lambda a, b: a > b, like="greater"))
implement("greater_equal", "cuda", cuda_zip(lambda a, b: a >= b, like="greater_equal"))
implement("equal", "cuda", cuda_zip(lambda a, b: a == b, like="equal"))
implement("not_equal", "cuda", cuda_zip(lambda a, b: a != b, like="not_equal"))
implement("logical_and", "cuda", cuda_zip(lambda a, b: a != 0 and b != 0, like="logical_and"))
implement("logical_or", "cuda", cuda_zip(lambda a, b: a != 0 or b != 0, like="logical_or"))
implement("logical_not", "cuda", cuda_map(lambda v: v == 0, like="logical_not"))

# ---- reductions (cuda_reduce: a shared-memory tree per output) -----------------------------------------
implement("sum", "cuda", cuda_reduce(lambda a, b: a + b, 0, like="sum"))
implement("max", "cuda", cuda_reduce(_max2, -np.inf, like="max"))
implement("min", "cuda", cuda_reduce(_min2, np.inf, like="min"))

# ---- the functional API's own primitives (activations), where this tree defines them ----------------------
_FUNCTIONAL = {
    "log1p": cuda_map(lambda v: math.log1p(v) if v > -1 else (-math.inf if v == -1 else math.nan), like="log1p"),
    "expm1": cuda_map(lambda v: math.inf if v >= 709.0 else math.expm1(v), like="expm1"),
    "erf": cuda_map(lambda v: math.erf(v)),
    "kernels.erf": cuda_map(lambda v: math.erf(v)),
    "softplus": cuda_map(lambda v: max(v, 0) + math.log1p(math.exp(-abs(v)))),
    "elu": lambda x, alpha, scale: _elu(x, alpha, scale),
}
_elu = cuda_map(lambda v, c: v if v > 0 else c[0] * math.expm1(min(v, 0) / c[1]))


def _normalize(x, axes, epsilon, center):
    """Layer norm's ``standardize`` (center) and ``rms_normalize``: ``(y, r)`` with r = 1 / sqrt(mean(xc^2) + eps).

    Composed from the forwards above (a handful of launches), with the CPU forward's dtype rules.
    """
    from ._runtime import constant
    f = {name: PRIMITIVES[name].forwards["cuda"] for name in ("sum", "sub", "mul", "add", "div", "sqrt")}
    scalar = lambda v: constant(np.asarray(v, dtype=x.dtype))       # noqa: E731  (0-d, in x's dtype)
    inv_n = scalar(1.0 / int(np.prod([x.shape[a] for a in np.atleast_1d(axes)])))
    xc = f["sub"](x, f["mul"](f["sum"](x, axes, True), inv_n)) if center else x
    r = f["div"](scalar(1.0), f["sqrt"](f["add"](f["mul"](f["sum"](f["mul"](xc, xc), axes, True), inv_n),
                                                 scalar(epsilon))))
    return f["mul"](xc, r), r


def _composed(name):
    """The CPU forward of a primitive that computes with Tensor operations only (so on any backend).

    ``scan`` (``dynamic_unroll``) runs the user's cell step by step with recording off, and
    ``model.backward_hook`` is the identity on the way forward: neither touches an array itself, so
    one function serves both backends.
    """
    return PRIMITIVES[name].forwards["cpu"]


for _name in ("scan", "model.backward_hook"):
    if _name in PRIMITIVES:
        _FUNCTIONAL[_name] = _composed(_name)
_FUNCTIONAL["standardize"] = lambda x, axes, epsilon: _normalize(x, axes, epsilon, center=True)
_FUNCTIONAL["rms_normalize"] = lambda x, axes, epsilon: _normalize(x, axes, epsilon, center=False)
for _name, _forward in _FUNCTIONAL.items():
    if _name in PRIMITIVES:
        implement(_name, "cuda", _forward)

FORWARDS = ("add", "sub", "mul", "div", "power", "maximum", "minimum", "where", "neg", "exp", "log", "sqrt", "abs",
            "tanh", "sigmoid", "relu", "clip", "astype", "sign", "less", "less_equal", "greater", "greater_equal",
            "equal", "not_equal", "logical_and", "logical_or", "logical_not", "sum", "max", "min")
"""The primitives this module gives a CUDA forward (the layout ops and matmul live in their own modules)."""
