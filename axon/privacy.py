"""Differentially private training: per-example gradients, clipped and noised (DP-SGD, Abadi et al., 2016).

DP-SGD limits how much any single example can move the model. Each step it

1. computes every example's gradient separately (``per_example_grads``, no loop over examples),
2. clips each to global norm at most ``C`` (``l2_norm_clip``),
3. sums them, adds Gaussian noise ``N(0, (sigma C)^2)`` (``sigma = noise_multiplier``) to every coordinate,
4. divides by the batch size (``differentially_private_aggregate``).

One example changes the sum by a vector of norm at most ``C``, which noise of scale ``sigma C`` hides.
(This module implements the mechanism; accounting for the privacy budget (epsilon, delta) over a run is
left to a privacy accountant.) ``axon.optimizers.dpsgd`` chains it with SGD.

>>> import numpy as np
>>> def loss(p, x, y):                                     # a linear model, mean squared error
...     return ((x @ p["w"] + p["b"] - y) ** 2).mean()
>>> params = {"w": np.zeros((3, 1)), "b": np.zeros(1)}
>>> x, y = np.ones((5, 3)), np.arange(5.0)[:, None]
>>> g = per_example_grads(loss, params, x, y)
>>> g["w"].shape, g["b"][:, 0]                               # example e's own gradient: -2 y_e
((5, 3, 1), array([ 0., -2., -4., -6., -8.]))
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from .autograd import grad
from .random import rng
from .tree import tree_leaves, tree_map, tree_structure_check
from .updates import GradientTransformation, _count

__all__ = ["per_example_grads", "differentially_private_aggregate", "DifferentiallyPrivateAggregateState",
           "needs_per_example_grads"]


def per_example_grads(loss_fn, params, x, y, reduction="mean", method="auto"):
    """The gradient of ``loss_fn(params, x, y)`` for each example alone, stacked: leaves (E, *param.shape).

    The trick (``method="vectorized"``): give every example its own copy of the params, and evaluate the
    loss once on all of them. A param of shape (d, k) becomes a stacked leaf (E, d, k) (a broadcast view,
    no copies), a vector (k,) becomes (E, 1, k), and each example is a batch of one: ``x`` (E, d) becomes
    (E, 1, d). A dense layer's ``x @ W + b`` then computes (E, 1, d) @ (E, d, k) + (E, 1, k) -> (E, 1, k):
    a batched matmul in which example ``e`` only ever meets its own copy ``W[e]``. Nothing sums over
    examples, so the gradient of the total loss w.r.t. the stacked leaf holds example ``e``'s gradient in
    slice ``[e]``. The matmul's backward computes ``x_e^T dy_e`` for every ``e`` at once: Goodfellow's
    (2015) outer-product trick, which the engine derives by itself; one forward and one backward pass.

    What the trick needs from ``loss_fn`` (true of dense layers, elementwise activations and the usual
    losses): an extra leading axis on every array (so use negative axes, ``axis=-1``); matrices (in, out)
    multiplied from the right; vectors and scalars used elementwise (biases, scales); a plain mean over
    all batch elements (``reduction="mean"``, the default) or a plain sum (``reduction="sum"``).
    ``method="loop"`` works for any ``loss_fn`` (convolutions, a model's ``apply``): one backward pass
    per example, E times slower. ``method="auto"`` (the default) tries the trick and checks it: the first
    and the last example's gradients, computed alone (two backward passes on a batch of one), must match
    their slices; if the trick raises or they do not match, it falls back to the loop. Pass
    ``method="vectorized"`` to skip the check when the loss is known to fit.

    >>> def loss(p, x, y):
    ...     return ((x @ p["w"] - y) ** 2).mean()
    >>> per_example_grads(loss, {"w": np.ones((2, 1))}, np.eye(2), np.zeros((2, 1)))["w"][:, :, 0]
    array([[2., 0.],
           [0., 2.]])
    >>> flat = lambda p, x, y: ((x.reshape(x.shape[0], -1) @ p["w"] - y) ** 2).mean()   # needs the loop
    >>> per_example_grads(flat, {"w": np.ones((2, 1))}, np.eye(2), np.zeros((2, 1)))["w"][:, :, 0]
    array([[2., 0.],
           [0., 2.]])
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"per_example_grads: reduction must be 'mean' or 'sum', got {reduction!r}")
    if method not in ("auto", "vectorized", "loop"):
        raise ValueError(f"per_example_grads: method must be 'auto', 'vectorized' or 'loop', got {method!r}")
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
        raise ValueError(f"per_example_grads: x and y need the same leading (example) axis, "
                         f"got shapes {x.shape} and {y.shape}")
    if method == "loop":
        return _per_example_loop(loss_fn, params, x, y)
    try:
        grads = _per_example_vectorized(loss_fn, params, x, y, reduction)
    except (ValueError, TypeError):
        if method == "vectorized":
            raise
        return _per_example_loop(loss_fn, params, x, y)
    if method == "auto":
        n, grad_fn = x.shape[0], grad(loss_fn)
        for e in sorted({0, n - 1}):                               # example e alone, against its slice
            alone = grad_fn(params, x[e:e + 1], y[e:e + 1])
            if not all(np.allclose(g[e], a, rtol=1e-3, atol=1e-5 * max(1.0, float(np.abs(a).max(initial=0))))
                       for g, a in zip(tree_leaves(grads), tree_leaves(alone))):
                return _per_example_loop(loss_fn, params, x, y)
    return grads


def _per_example_vectorized(loss_fn, params, x, y, reduction):
    """Per-example grads by stacked params: one forward and one backward pass for the whole batch."""
    n = x.shape[0]

    def stacked(p):                                                # (*s) -> (E, *s), at least (E, 1, k)
        p = np.asarray(p)
        one = p.reshape((1,) * max(0, 2 - p.ndim) + p.shape)       # () -> (1, 1), (k,) -> (1, k)
        return np.broadcast_to(one, (n,) + one.shape)

    grads = grad(loss_fn)(tree_map(stacked, params), x[:, None], y[:, None])   # x: (E, ...) -> (E, 1, ...)
    scale = float(n) if reduction == "mean" else 1.0               # mean over E examples -> each example's own
    return tree_map(lambda g, p: (scale * g).reshape((n,) + np.shape(p)), grads, params)


def _per_example_loop(loss_fn, params, x, y):
    """Per-example grads, one backward pass per example: any loss, E times the work."""
    grad_fn = grad(loss_fn)
    each = [grad_fn(params, x[e:e + 1], y[e:e + 1]) for e in range(x.shape[0])]   # E trees like params
    return tree_map(lambda *gs: np.stack(gs), *each)


def needs_per_example_grads(optimizer) -> bool:
    """Whether ``optimizer.update`` wants per-example gradients (E, *param.shape), as ``dpsgd``'s does.

    A transformation says so with the attribute ``per_example_grads = True`` on its ``update``
    (``differentially_private_aggregate`` sets it, ``chain`` passes it on); ``axon.training.step``
    then hands it ``per_example_grads(...)`` instead of the batch-mean gradient.

    >>> from axon import optimizers
    >>> needs_per_example_grads(optimizers.dpsgd(0.1, 1.0, 1.0)), needs_per_example_grads(optimizers.sgd(0.1))
    (True, False)
    """
    return bool(getattr(getattr(optimizer, "update", None), "per_example_grads", False))


class DifferentiallyPrivateAggregateState(NamedTuple):
    """The state of ``differentially_private_aggregate``: the step count, which picks each step's noise.

    >>> differentially_private_aggregate(l2_norm_clip=1.0, noise_multiplier=1.1).init(None)
    DifferentiallyPrivateAggregateState(count=array(0))
    """
    count: np.ndarray                                              # () int64: steps so far (the noise stream)


def differentially_private_aggregate(l2_norm_clip, noise_multiplier, seed=0) -> GradientTransformation:
    """Clip per-example gradients, sum, add Gaussian noise, average: DP-SGD's aggregation step.

    ``grads`` carry a leading example axis (E, *param.shape), e.g. from ``per_example_grads``. With
    ``n_e`` example e's global norm (over all its leaves) and ``C = l2_norm_clip``:

        u = (sum_e g_e min(1, C / n_e) + N(0, (noise_multiplier C)^2 I)) / E

    The noise of step ``count`` comes from ``axon.random.rng(seed, "dp_aggregate", count)``: runs are
    reproducible and a resumed run draws the same noise.

    >>> t = differentially_private_aggregate(l2_norm_clip=1.0, noise_multiplier=0.0)
    >>> per_example = {"w": np.array([[3.0, 4.0], [0.3, 0.4]])}   # norms 5 and 0.5
    >>> t.update(per_example, t.init(None))[0]["w"]               # (0.6 + 0.3, 0.8 + 0.4) / 2
    array([0.45, 0.6 ])
    """
    for name, value in (("l2_norm_clip", l2_norm_clip), ("noise_multiplier", noise_multiplier)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
            raise ValueError(f"differentially_private_aggregate: {name} must be a number >= 0, got {value!r}")
    clip, sigma = float(l2_norm_clip), float(noise_multiplier)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"differentially_private_aggregate: seed must be an int, got {type(seed).__name__}")

    def update(grads, state, params=None):
        leaves = tree_leaves(grads)
        if not leaves or any(np.ndim(g) == 0 or g.shape[0] != leaves[0].shape[0] for g in leaves):
            raise ValueError(f"differentially_private_aggregate: every gradient leaf needs the same leading "
                             f"example axis, got shapes {[np.shape(g) for g in leaves]}")
        if params is not None:
            tree_structure_check(params, tree_map(lambda g: g[0], grads), names=("params", "per-example grads"))
        n = leaves[0].shape[0]
        sq_norms = sum(np.einsum("ei,ei->e", g.reshape(n, -1), g.reshape(n, -1)) for g in leaves)   # (E,)
        factors = np.minimum(1.0, clip / np.maximum(np.sqrt(sq_norms), 1e-30))                     # (E,)
        gen = rng(seed, "dp_aggregate", int(state.count))

        def aggregate(g):                                          # (E, *s) -> (*s)
            clipped_sum = np.tensordot(factors.astype(g.dtype), g, axes=1)
            noise = gen.standard_normal(clipped_sum.shape).astype(g.dtype) if sigma else 0.0
            return (1.0 / n) * (clipped_sum + (sigma * clip) * noise)
        new_state = DifferentiallyPrivateAggregateState(_count(state.count + 1))
        return tree_map(aggregate, grads), new_state
    update.per_example_grads = True                                # see needs_per_example_grads
    return GradientTransformation(lambda params: DifferentiallyPrivateAggregateState(_count()), update)
