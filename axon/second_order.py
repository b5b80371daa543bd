"""Second-order optimization: L-BFGS as a GradientTransformation, and a Newton-CG step.

Gradient descent moves along ``-g`` whatever the curvature; Newton's method solves ``H d = -g`` and
jumps to the minimum of the local quadratic model. Neither method here ever forms the Hessian ``H``:

- ``lbfgs`` estimates ``H^-1 g`` from the last ``m`` steps ``s = x_{k+1} - x_k`` and gradient changes
  ``y = g_{k+1} - g_k`` (the two-loop recursion, O(mn) per step);
- ``newton_cg_step`` solves ``H d = -g`` by conjugate gradients, which only needs products ``H v``:
  ``hessian_vector_product`` gets them from the engine as the gradient of ``<grad f(x), v>``.

>>> import numpy as np
>>> from axon.autograd import Tensor
>>> def rosenbrock(p):
...     x, y = p["xy"][0], p["xy"][1]
...     return (1 - x) ** 2 + 100 * (y - x * x) ** 2
>>> params = {"xy": np.array([-1.2, 1.0])}
>>> for _ in range(25):
...     params = newton_cg_step(rosenbrock, params, cg_tol=1e-8)
>>> params["xy"].round(6)
array([1., 1.])
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from .autograd import Tensor, grad, no_grad, value_and_grad
from .schedules import as_schedule
from .tree import tree_leaves, tree_map, tree_structure_check
from .updates import GradientTransformation, _check_like, _count, _need_params

__all__ = ["lbfgs", "LbfgsState", "newton_cg_step", "hessian_vector_product"]


# ---- flat vectors <-> trees --------------------------------------------------------------------------
def _dtype(tree):
    return np.result_type(*[np.asarray(x).dtype for x in tree_leaves(tree)])


def _ravel(tree, dtype) -> np.ndarray:
    """Every leaf, flattened and concatenated in tree order: (n,)."""
    return np.concatenate([np.ravel(x).astype(dtype, copy=False) for x in tree_leaves(tree)])


def _unravel(vec, like):
    """The inverse of ``_ravel``: a tree like ``like`` (shapes and dtypes) holding ``vec``'s values."""
    sizes = [np.size(x) for x in tree_leaves(like)]
    pieces = iter(np.split(vec, np.cumsum(sizes)[:-1]))
    return tree_map(lambda x: next(pieces).reshape(np.shape(x)).astype(np.result_type(x), copy=False), like)


def _value(y) -> float:
    """A loss (Tensor, array or number) as a Python float."""
    return float(np.asarray(y.data if isinstance(y, Tensor) else y))


def _loss_at(f, params) -> float:
    """``f(params)`` as a Python float, the leaves passed as Tensors (as ``grad`` passes them), no graph."""
    with no_grad():
        return _value(f(tree_map(lambda x: Tensor._wrap(np.asarray(x)), params)))


def _backtrack(f, like, x, d, f0, slope, step, c1, shrink, max_backtracks) -> float:
    """Armijo backtracking: the first ``step * shrink^i`` with ``f(x + step d) <= f(x) + c1 step g.d``."""
    for _ in range(max_backtracks):
        if _loss_at(f, _unravel(x + step * d, like)) <= f0 + c1 * step * slope:
            return step
        step *= shrink
    return step


def _check_linesearch(fn, c1, shrink, max_backtracks):
    if not 0 < c1 < 1 or not 0 < shrink < 1:
        raise ValueError(f"{fn}: need 0 < c1 < 1 and 0 < shrink < 1, got c1={c1}, shrink={shrink}")
    if isinstance(max_backtracks, bool) or not isinstance(max_backtracks, numbers.Integral) or max_backtracks < 1:
        raise ValueError(f"{fn}: max_backtracks must be an integer >= 1, got {max_backtracks!r}")


# ---- L-BFGS -------------------------------------------------------------------------------------------
class LbfgsState(NamedTuple):
    """The last ``m`` curvature pairs, oldest row first (rows of zeros with ``rho = 0`` are empty).

    >>> state = lbfgs(memory_size=3).init({"w": np.zeros(2)})     # m = 3 pairs of n = 2 parameters
    >>> state._fields, state.s.shape, state.rho
    (('count', 's', 'y', 'rho', 'prev_params', 'prev_grads'), (3, 2), array([0., 0., 0.]))
    """
    count: np.ndarray                                              # () int64: updates so far
    s: np.ndarray                                                  # (m, n) steps x_{i+1} - x_i
    y: np.ndarray                                                  # (m, n) gradient changes g_{i+1} - g_i
    rho: np.ndarray                                                # (m,) 1 / (y_i . s_i)
    prev_params: np.ndarray                                        # (n,) x_k, flattened
    prev_grads: np.ndarray                                         # (n,) g_k, flattened


def _two_loop(g, s, y, rho, gamma):
    """``H g`` for the L-BFGS inverse-Hessian estimate ``H`` (Nocedal and Wright, Algorithm 7.4).

    ``H`` is ``H0 = gamma I`` updated by the BFGS formula with each pair (s_i, y_i); the two loops apply
    it to ``g`` without forming it. Empty rows (``rho = 0``, ``s = 0``) change nothing.
    """
    q = g.copy()
    alphas = [0.0] * len(rho)
    for i in reversed(range(len(rho))):                            # newest pair to oldest
        alphas[i] = float(rho[i] * (s[i] @ q))
        q -= alphas[i] * y[i]
    r = gamma * q
    for i in range(len(rho)):                                      # oldest pair to newest
        beta = float(rho[i] * (y[i] @ r))
        r += (alphas[i] - beta) * s[i]
    return r


def lbfgs(lr=1.0, memory_size=10, loss_fn=None, *, c1=1e-4, shrink=0.5, max_backtracks=30) -> GradientTransformation:
    """Limited-memory BFGS (Liu and Nocedal, 1989) as a GradientTransformation.

    Each update: store the pair ``s = x - x_prev``, ``y = g - g_prev`` (only when ``s.y > 1e-10``, so the
    estimate stays positive definite; at most ``memory_size`` pairs), take the direction
    ``d = -H g`` by the two-loop recursion with ``H0 = (s.y / y.y) I`` from the newest pair (``I``
    without pairs), and return ``step * d``. The very first step is ``d = -g min(1, 1 / ||g||_1)``: steepest
    descent no longer than ``lr``. With a fixed step this is PyTorch's ``LBFGS(max_iter=1)``.

    The step is ``lr`` (a number or a schedule), or, when ``loss_fn(params) -> loss`` is given, the first
    of ``lr, lr * shrink, lr * shrink^2, ...`` that decreases the loss enough (Armijo:
    ``f(x + t d) <= f(x) + c1 t g.d``); ``loss_fn`` gets the params as Tensors, as under ``grad``, and runs
    without recording a graph. L-BFGS is a full-batch method: give it the whole problem's gradient.

    >>> import numpy as np
    >>> from axon.updates import apply_updates
    >>> f = lambda p: ((p["w"] - 3.0) ** 2).sum() + (p["w"][0] * p["w"][1]) ** 2 / 10
    >>> grad_f = grad(f)
    >>> opt = lbfgs(loss_fn=f)
    >>> params = {"w": np.array([0.0, 1.0])}
    >>> state = opt.init(params)
    >>> for _ in range(20):
    ...     updates, state = opt.update(grad_f(params), state, params)
    ...     params = apply_updates(params, updates)
    >>> bool(np.abs(grad_f(params)["w"]).max() < 1e-6)
    True
    """
    lr = as_schedule(lr)
    if isinstance(memory_size, bool) or not isinstance(memory_size, numbers.Integral) or memory_size < 1:
        raise ValueError(f"lbfgs: memory_size must be an integer >= 1, got {memory_size!r}")
    _check_linesearch("lbfgs", c1, shrink, max_backtracks)
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"lbfgs: loss_fn must be callable (params -> loss), got {type(loss_fn).__name__}")
    m = int(memory_size)

    def init(params):
        dtype = _dtype(params)
        n = sum(np.size(x) for x in tree_leaves(params))
        return LbfgsState(_count(), np.zeros((m, n), dtype), np.zeros((m, n), dtype),
                          np.zeros(m, dtype), np.zeros(n, dtype), np.zeros(n, dtype))

    def update(grads, state, params=None):
        _need_params("lbfgs", params)
        _check_like("lbfgs", params, grads)
        dtype = state.s.dtype
        x, g = _ravel(params, dtype), _ravel(grads, dtype)         # (n,), (n,)
        if x.shape != state.prev_params.shape:
            raise ValueError(f"lbfgs: the state was made for {state.prev_params.size} parameters, "
                             f"params have {x.size}")
        count = int(state.count)
        s, y, rho = state.s, state.y, state.rho
        if count > 0:
            s_new, y_new = x - state.prev_params, g - state.prev_grads
            sy = float(s_new @ y_new)
            if sy > 1e-10:                                         # positive curvature: keep the pair
                s = np.concatenate([s[1:], s_new[None]])           # (m, n): drop the oldest row
                y = np.concatenate([y[1:], y_new[None]])
                rho = np.append(rho[1:], 1 / sy).astype(dtype)
        first = min(1.0, 1 / max(float(np.abs(g).sum()), 1e-300))   # the first step's scale
        gamma = 1 / float(rho[-1] * (y[-1] @ y[-1])) if rho[-1] > 0 else 1.0   # s.y / y.y
        d = -first * g if count == 0 else -_two_loop(g, s, y, rho, gamma)
        slope = float(g @ d)
        if slope >= 0:                                             # not a descent direction: fall back
            d = -first * g
            slope = float(g @ d)
        step = float(lr(count))
        if loss_fn is not None and slope < 0:
            f0 = _loss_at(loss_fn, params)
            step = _backtrack(loss_fn, params, x, d, f0, slope, step, c1, shrink, max_backtracks)
        new_state = LbfgsState(_count(count + 1), s, y, rho, x, g)
        return _unravel(step * d, params), new_state
    return GradientTransformation(init, update)


# ---- Newton-CG ----------------------------------------------------------------------------------------
def hessian_vector_product(f, params, v):
    """``H v``, the Hessian of scalar ``f`` at ``params`` times ``v`` (a tree like params), without forming H.

    ``H v = grad_x <grad f(x), v>``: the engine differentiates its own backward pass (reverse over
    reverse), at the cost of about two gradient evaluations.

    >>> import numpy as np
    >>> f = lambda p: (p["x"] ** 3).sum()                      # H = diag(6 x)
    >>> hessian_vector_product(f, {"x": np.array([1.0, 2.0])}, {"x": np.array([1.0, 1.0])})
    {'x': array([ 6., 12.])}
    """
    try:
        tree_structure_check(params, v, names=("params", "v"))
    except ValueError as e:
        raise ValueError(f"hessian_vector_product: {e}") from None
    grad_f = grad(f)

    def directional_derivative(p):                                 # <grad f(p), v>, still on the tape
        return sum((g_i * v_i).sum() for g_i, v_i in zip(tree_leaves(grad_f(p)), tree_leaves(v)))
    return grad(directional_derivative)(params)


def newton_cg_step(f, params, *, cg_tol=None, max_cg_iters=None, damping=0.0, linesearch=True, c1=1e-4,
                   shrink=0.5, max_backtracks=30):
    """One truncated-Newton step: solve ``(H + damping I) d = -g`` by conjugate gradients, return ``x + t d``.

    CG (Nocedal and Wright, Algorithm 7.1) needs only products ``H v`` (``hessian_vector_product``) and
    stops once the residual ``||H d + g||`` is below ``cg_tol * ||g||``, after ``max_cg_iters`` iterations
    (default: the number of parameters, at most 100), or on meeting a direction of negative curvature
    (far from a minimum, where Newton's model has no minimum; on the first iteration the step is then
    ``-g``). The default ``cg_tol = min(0.5, sqrt(||g||))`` is inexact Newton's forcing sequence: cheap
    rough solves far away, exact ones near the minimum (superlinear convergence). A small ``cg_tol``
    solves every Newton system almost exactly: fewer, dearer steps. With ``linesearch`` the step ``t``
    backtracks from 1 until the Armijo condition holds; otherwise ``t = 1``. Returns the new params (same
    tree and dtypes). Also a damped (Levenberg-Marquardt style) step with ``damping > 0``.

    >>> import numpy as np
    >>> f = lambda p: ((p["w"] - 1.0) ** 2).sum() * 3.0        # a quadratic: one Newton step is exact
    >>> newton_cg_step(f, {"w": np.array([5.0, -2.0])})["w"]
    array([1., 1.])
    """
    _check_linesearch("newton_cg_step", c1, shrink, max_backtracks)
    damping = float(damping)
    value, grads = value_and_grad(f)(params)
    dtype = _dtype(params)
    x, g = _ravel(params, dtype), _ravel(grads, dtype)             # (n,), (n,)
    g_norm = math.sqrt(float(g @ g))
    if g_norm == 0:
        return tree_map(np.copy, params)
    iters = max_cg_iters if max_cg_iters is not None else min(x.size, 100)
    tol = (min(0.5, math.sqrt(g_norm)) if cg_tol is None else float(cg_tol)) * g_norm

    def hvp(v):                                                    # (n,) -> (n,)
        return _ravel(hessian_vector_product(f, params, _unravel(v, params)), dtype) + damping * v

    z, r = np.zeros_like(g), g.copy()                              # z: the solution so far, r = H z + g
    p, rr = -r, float(r @ r)                                       # p: the search direction
    for j in range(iters):
        hp = hvp(p)
        curvature = float(p @ hp)
        if curvature <= 0:                                         # negative curvature along p
            if j == 0:
                z = -g
            break
        a = rr / curvature
        z = z + a * p
        r = r + a * hp
        rr_new = float(r @ r)
        if math.sqrt(rr_new) < tol:
            break
        p = -r + (rr_new / rr) * p
        rr = rr_new
    step = 1.0
    if linesearch:
        step = _backtrack(f, params, x, z, _value(value), float(g @ z), 1.0, c1, shrink, max_backtracks)
    return _unravel(x + step * z, params)
