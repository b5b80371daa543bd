"""Optimizers: each a short chain of the transformations in ``axon.updates`` (Axon's and Optax's aliases).

Every optimizer is a ``GradientTransformation``; ``lr`` is a number or a schedule (``axon.schedules``).

>>> import numpy as np
>>> from axon.updates import apply_updates
>>> opt = adamw(lr=0.1)
>>> params = {"w": np.array([1.0, -2.0], np.float32)}
>>> state = opt.init(params)
>>> for _ in range(200):                                   # minimise sum(w ** 2)
...     updates, state = opt.update({"w": 2 * params["w"]}, state, params)
...     params = apply_updates(params, updates)
>>> bool(np.abs(params["w"]).max() < 1e-2), params["w"].dtype
(True, dtype('float32'))

The eleven optimizers Axon announced: ``adabelief adagrad adam adamw fromage lamb noisy_sgd radam rmsprop
sgd yogi``; with ``nadam adadelta lion lars adafactor``; differentially private SGD (``dpsgd``, see
``axon.privacy``) and L-BFGS (``lbfgs``, see ``axon.second_order``, which also has a Newton-CG step).

``adam`` and ``adamw`` call the fused one-pass primitive ``kernels.adam_step_at`` (``axon.kernels.adam``:
a numba kernel on the CPU, a numba.cuda one on the GPU; the step number and the learning rate are 0-d
array inputs, so a traced step replays it) whenever the settings allow (``fused=None``, the default: no
``eps_root``, weight-decay mask or weight-decay schedule), the chain of transformations otherwise or with
``fused=False``; both give the same trajectory (equal up to floating-point rounding) and the same state
layout, so a checkpoint from one resumes on the other. In a traced step (``axon.jit``) the fusion pass
``axon.fusion.adam_apply`` also merges that primitive with ``apply_updates``' add on the CPU, so the
update is never written to memory.
"""
from __future__ import annotations

import math

import numpy as np

from .autograd import Tensor, apply, ops
from .flat import can_flatten, map_flat
from .privacy import differentially_private_aggregate
from .schedules import as_schedule, value_at
from .second_order import lbfgs
from .tree import tensor_map, tree_flatten_with_path, tree_leaves, tree_map_multi
from .updates import (GradientTransformation, ScaleByAdamState, ScaleByScheduleState, _check_like, _hyper,
                      _need_params, _next_count, add_decayed_weights, add_noise, chain, clip_by_block_rms, masked,
                      scale_by_adadelta, scale_by_adam, scale_by_belief, scale_by_factored_rms,
                      scale_by_learning_rate, scale_by_lion, scale_by_nadam, scale_by_param_block_rms,
                      scale_by_radam, scale_by_rms, scale_by_rss, scale_by_stddev, scale_by_trust_ratio,
                      scale_by_yogi, trace, ema, scale_by_adamax, scale_by_amsgrad, scale_by_novograd,
                      scale_by_optimistic_gradient, scale_by_sign, scale_by_rprop, scale_by_adan, scale_by_polyak,
                      scale_by_sm3, scale)

__all__ = ["adabelief", "adagrad", "adam", "adamw", "fromage", "lamb", "noisy_sgd", "radam", "rmsprop", "sgd",
           "yogi", "nadam", "adadelta", "lion", "lars", "adafactor", "dpsgd", "lbfgs",
           "adamax", "adamaxw", "amsgrad", "nadamw", "novograd", "sign_sgd", "signum", "optimistic_gradient_descent",
           "rprop", "adan", "optimistic_adam", "polyak_sgd", "sm3"]


def _optimizer(name: str, *transforms) -> GradientTransformation:
    """``chain(*transforms)`` that first checks the gradients against the params (one ValueError naming the path)."""
    inner = chain(*transforms)

    def update(grads, state, params=None):
        if params is not None:
            _check_like(name, params, grads)
        return inner.update(grads, state, params)
    return GradientTransformation(inner.init, update)


def _momentum(fn, momentum, nesterov):
    """``[trace(momentum, nesterov)]``, or ``[]`` for no momentum."""
    if not momentum:
        if nesterov:
            raise ValueError(f"{fn}: nesterov=True needs a momentum > 0")
        return []
    return [trace(_hyper(fn, "momentum", momentum, 0), nesterov)]


# ---- the eleven of Axon ------------------------------------------------------------------------------
def adabelief(lr=1e-3, b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16, weight_decay=0.0, mask=None
              ) -> GradientTransformation:
    """AdaBelief (Zhuang et al., 2020): Adam that trusts the gradient when it matches its prediction.

    ``weight_decay`` is decoupled, as in AdamW and the authors' ``AdaBelief(weight_decouple=True)``:
    ``p -= lr (step + weight_decay p)`` (``mask`` chooses the params it applies to).

    >>> adabelief(1e-3).init({"w": np.zeros(2)})[0].count
    array(0)
    """
    decay = [add_decayed_weights(weight_decay, mask)] if weight_decay or mask is not None else []
    return _optimizer("adabelief", scale_by_belief(b1, b2, eps, eps_root), *decay, scale_by_learning_rate(lr))


def adagrad(lr=1e-2, initial_accumulator_value=0.0, eps=1e-10) -> GradientTransformation:
    """Adagrad (Duchi et al., 2011): ``p -= lr g / (sqrt(sum of g^2) + eps)``; PyTorch's ``Adagrad``.

    >>> adagrad(0.1).update({"w": np.array([4.0])}, adagrad(0.1).init({"w": np.zeros(1)}))[0]["w"]
    array([-0.1])
    """
    return _optimizer("adagrad", scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate(lr))


def _find_adam_kernel():
    """``axon.kernels.adam``: the one-pass Adam(W) step, its primitive ``ADAM_STEP_AT`` called once per leaf.

    (Imported when an optimizer is made, not with this module; a function, so a test can put a kernel of
    its own in its place.)
    """
    from .kernels import adam
    return adam


def _fused_adam(reference: GradientTransformation, kernel, lr, b1, b2, eps, weight_decay):
    """Adam(W) through the one-pass kernel, with ``reference``'s state layout and trajectory.

    Per leaf the kernel reads ``p, g, m, v`` once and writes the update ``u = -lr (m_hat / (sqrt(v_hat) +
    eps) + wd p)`` and the new moments into fresh arrays: the caller's params, grads and old state
    stay untouched, as a GradientTransformation promises. The step number ``t`` and the learning rate
    are 0-d arrays given to the kernel as inputs (``t = count + 1`` and a schedule's value are ops too),
    so Python reads no value of the state: the whole update traces (``axon.jit``), and each replay
    computes that step's bias corrections. A leaf whose shape or dtype does not match stops the update
    before anything is written, and the error names the first mismatching path.
    """
    scheduled = callable(lr)
    fn = "adamw" if weight_decay else "adam"
    lr_array = None if scheduled else np.asarray(lr, np.float64)

    def update(grads, state, params=None):
        adam_state, lr_state = state[0], state[-1]
        if weight_decay:
            _need_params(fn, params)
        t = _next_count(adam_state.count)                          # the 1-based step, an int64 array
        step_size = value_at(lr, lr_state.count) if scheduled else lr_array
        settings = dict(b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
        trees = (grads, adam_state.mu, adam_state.nu) + ((params,) if weight_decay else ())
        if can_flatten(*trees):                                    # one dtype: one kernel call for every leaf
            for tree in trees[1:]:
                _check_like(fn, tree, grads)                       # structure and shapes, before any write
            updates, mu, nu = map_flat(lambda g, m, v, p=None: _adam_at(kernel, g if p is None else p, g, m, v, t,
                                                                        step_size, settings),
                                       *trees, n_out=3)            # on the flat buffers (n,) of axon.flat
        else:
            updates, mu, nu = _adam_per_leaf(fn, kernel, grads, adam_state, params, t, step_size, settings)
        new_lr_state = ScaleByScheduleState(_next_count(lr_state.count)) if scheduled else lr_state
        return updates, (ScaleByAdamState(t, mu, nu),) + tuple(state[1:-1]) + (new_lr_state,)
    return GradientTransformation(reference.init, update)


def _adam_at(kernel, p, g, m, v, t, lr, settings) -> tuple:
    """The primitive ``kernels.adam_step_at`` on checked arrays of one shape and dtype: ``(u, m_new, v_new)``."""
    return tuple(a.data for a in apply(kernel.ADAM_STEP_AT, p, g, m, v, t, lr, **settings))


def _adam_per_leaf(fn, kernel, grads, adam_state, params, t, lr, settings) -> tuple:
    """Fused Adam leaf by leaf (leaves of several dtypes): the trees ``(updates, mu, nu)``.

    A gradient of another dtype than its moments is cast to theirs first, as the reference path does.
    """
    decay = settings["weight_decay"]

    def leaf(g, m, v, p):
        g = g if hasattr(g, "dtype") else np.asarray(g)    # a Python number for a 0-d param
        if g.dtype != m.dtype and g.dtype.kind in "biuf":  # the moments keep the param's dtype, as
            g = ops.astype(Tensor._wrap(g), m.dtype).data  # the reference path's do
        p = p if decay else g                              # without decay p is only read as a placeholder
        if not (g.shape == m.shape == p.shape and g.dtype == m.dtype == p.dtype):
            raise ValueError("mismatch")                   # reworded below, with the path
        return _adam_at(kernel, p, g, m, v, t, lr, settings)
    try:
        return tree_map_multi(leaf, 3, grads, adam_state.mu, adam_state.nu,
                              params if decay else grads)  # p only read when decaying
    except ValueError:
        _check_like(fn, params if decay else adam_state.mu, grads)     # names the first bad path
        _check_dtypes(fn, params if decay else adam_state.mu, grads)
        raise


def _check_dtypes(fn, reference, grads) -> None:
    """ValueError naming the first path where a gradient's dtype differs from its parameter's."""
    for (path, r), g in zip(tree_flatten_with_path(reference), tree_leaves(grads)):
        if np.asarray(g).dtype != r.dtype:
            raise ValueError(f"{fn}: params and grads differ at '{path}': dtype {r.dtype} vs {np.asarray(g).dtype}")


def _adam_family(fn, lr, b1, b2, eps, eps_root, weight_decay, mask, fused, decoupled):
    parts = [scale_by_adam(b1, b2, eps, eps_root)]
    if decoupled:
        parts.append(add_decayed_weights(weight_decay, mask))
    reference = _optimizer(fn, *parts, scale_by_learning_rate(lr))
    if fused is False:
        return reference
    eligible = eps_root == 0 and mask is None and not callable(weight_decay)
    if fused and not eligible:
        raise ValueError(f"{fn}: fused=True but the fused kernel supports neither eps_root, a weight-decay mask "
                         f"nor a weight-decay schedule")
    if not eligible:
        return reference
    lr = lr if callable(lr) else float(lr)
    return _fused_adam(reference, _find_adam_kernel(), lr, float(b1), float(b2), float(eps), float(weight_decay))


def adam(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, *, fused=None) -> GradientTransformation:
    """Adam (Kingma and Ba, 2015): ``p -= lr m_hat / (sqrt(v_hat) + eps)``; PyTorch's ``Adam``.

    ``fused``: None uses the one-pass kernel when the options allow it (no ``eps_root``), True requires
    it (a ValueError otherwise), False never uses it.

    >>> opt = adam(0.1)
    >>> opt.update({"w": np.array([5.0])}, opt.init({"w": np.zeros(1)}))[0]["w"].round(6)
    array([-0.1])
    """
    return _adam_family("adam", lr, b1, b2, eps, eps_root, 0.0, None, fused, decoupled=False)


def adamw(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-2, *, mask=None, eps_root=0.0,
          fused=None) -> GradientTransformation:
    """AdamW (Loshchilov and Hutter, 2019): Adam plus decoupled weight decay, ``p -= lr (adam + wd p)``.

    PyTorch's ``AdamW``. ``mask`` (a tree of bools, or ``params -> tree``) limits the decay, e.g. to kernels.

    >>> opt = adamw(0.1, weight_decay=0.5)
    >>> opt.update({"w": np.array([5.0])}, opt.init({"w": np.ones(1)}), {"w": np.ones(1)})[0]["w"].round(6)
    array([-0.15])
    """
    wd = weight_decay if callable(weight_decay) else _hyper("adamw", "weight_decay", weight_decay, 0)
    return _adam_family("adamw", lr, b1, b2, eps, eps_root, wd, mask, fused, decoupled=True)


def fromage(lr=1e-2, min_norm=1e-6) -> GradientTransformation:
    """Fromage (Bernstein et al., 2020): ``p <- (p - lr ||p|| / ||g|| g) / sqrt(1 + lr^2)`` per layer.

    A step of relative size ``lr`` in each layer, then a shrink that keeps the norms from growing: a
    gradient orthogonal to ``p`` rotates it and leaves its norm unchanged.

    >>> opt = fromage(0.1)
    >>> p = {"w": np.array([3.0, 4.0])}
    >>> round(float(np.linalg.norm(opt.update({"w": np.array([4.0, -3.0])}, opt.init(p), p)[0]["w"] + p["w"])), 12)
    5.0
    """
    lr = as_schedule(lr if callable(lr) else _hyper("fromage", "lr", lr, 0))

    def mult(count):                                               # 1 / sqrt(1 + lr^2)
        return 1 / math.sqrt(1 + float(lr(count)) ** 2)
    return _optimizer("fromage", scale_by_trust_ratio(min_norm),
                      scale_by_learning_rate(lambda c: float(lr(c)) * mult(c)), add_decayed_weights(lambda c: mult(c) - 1))


def lamb(lr=1e-3, b1=0.9, b2=0.999, eps=1e-6, eps_root=0.0, weight_decay=0.0, mask=None, min_norm=0.0
         ) -> GradientTransformation:
    """LAMB (You et al., 2019): AdamW's step rescaled per layer by ``||p|| / ||step||`` (layer-wise trust ratio).

    ``min_norm``: both norms are at least this (Polaris' option), so a param near 0 still moves.

    >>> lamb(1e-3).init({"w": np.zeros(2)})[0].count
    array(0)
    """
    return _optimizer("lamb", scale_by_adam(b1, b2, eps, eps_root), add_decayed_weights(weight_decay, mask),
                      scale_by_trust_ratio(min_norm), scale_by_learning_rate(lr))


def noisy_sgd(lr=1e-2, eta=0.01, gamma=0.55, seed=0) -> GradientTransformation:
    """SGD on gradients plus annealed Gaussian noise of variance ``eta / (1 + t)^gamma`` (Neelakantan et al., 2015).

    >>> opt = noisy_sgd(0.1, seed=1)
    >>> u1 = opt.update({"w": np.zeros(2)}, opt.init(None))[0]["w"]
    >>> u2 = opt.update({"w": np.zeros(2)}, opt.init(None))[0]["w"]
    >>> bool((u1 == u2).all())                                 # same seed and step, same noise
    True
    """
    return _optimizer("noisy_sgd", add_noise(eta, gamma, seed), scale_by_learning_rate(lr))


def radam(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, threshold=5.0) -> GradientTransformation:
    """Rectified Adam (Liu et al., 2020): momentum SGD for the first steps, then variance-rectified Adam.

    PyTorch's ``RAdam``.

    >>> radam(1e-3).init({"w": np.zeros(2)})[0].nu["w"]
    array([0., 0.])
    """
    return _optimizer("radam", scale_by_radam(b1, b2, eps, threshold), scale_by_learning_rate(lr))


def rmsprop(lr=1e-2, decay=0.9, eps=1e-8, centered=False, momentum=None, nesterov=False, initial_scale=0.0
            ) -> GradientTransformation:
    """RMSProp (Hinton, 2012): ``p -= lr g / (sqrt(E[g^2]) + eps)``; centered: divide by the std of g.

    With ``momentum`` the scaled gradients go through ``trace``: PyTorch's ``RMSprop(alpha=decay, ...)``.
    ``initial_scale``: the starting value of E[g^2] (Polaris' and Optax's option; PyTorch starts at 0).

    >>> type(rmsprop(1e-2, centered=True, momentum=0.9).init({"w": np.zeros(1)})[1]).__name__
    'TraceState'
    """
    scaling = (scale_by_stddev if centered else scale_by_rms)(decay, eps, initial_scale)
    return _optimizer("rmsprop", scaling, *_momentum("rmsprop", momentum, nesterov), scale_by_learning_rate(lr))


def sgd(lr=1e-2, momentum=None, nesterov=False) -> GradientTransformation:
    """Stochastic gradient descent, with optional (Nesterov) momentum: PyTorch's ``SGD``.

    >>> sgd(0.1).update({"w": np.array([2.0])}, sgd(0.1).init(None))[0]["w"]
    array([-0.2])
    """
    return _optimizer("sgd", *_momentum("sgd", momentum, nesterov), scale_by_learning_rate(lr))


def yogi(lr=1e-2, b1=0.9, b2=0.999, eps=1e-3, initial_accumulator_value=1e-6) -> GradientTransformation:
    """Yogi (Zaheer et al., 2018): Adam whose second moment changes additively, so it forgets more slowly.

    >>> yogi(1e-2).init({"w": np.zeros(1)})[0].nu["w"]
    array([1.e-06])
    """
    return _optimizer("yogi", scale_by_yogi(b1, b2, eps, 0.0, initial_accumulator_value), scale_by_learning_rate(lr))


# ---- more --------------------------------------------------------------------------------------------
def nadam(lr=2e-3, b1=0.9, b2=0.999, eps=1e-8, momentum_decay=4e-3) -> GradientTransformation:
    """NAdam (Dozat, 2016): Adam with Nesterov momentum; PyTorch's ``NAdam``.

    >>> nadam().init({"w": np.zeros(1)})[0].mu_product
    array(1.)
    """
    return _optimizer("nadam", scale_by_nadam(b1, b2, eps, momentum_decay), scale_by_learning_rate(lr))


def adadelta(lr=1.0, rho=0.9, eps=1e-6) -> GradientTransformation:
    """Adadelta (Zeiler, 2012): steps scaled by the ratio of past update and gradient RMS; PyTorch's ``Adadelta``.

    >>> adadelta().init({"w": np.zeros(1)})[0].delta_nu["w"]
    array([0.])
    """
    return _optimizer("adadelta", scale_by_adadelta(rho, eps), scale_by_learning_rate(lr))


def lion(lr=1e-4, b1=0.9, b2=0.99, weight_decay=0.0, mask=None) -> GradientTransformation:
    """Lion (Chen et al., 2023): ``p -= lr (sign(b1 m + (1 - b1) g) + wd p)``; use a 3-10x smaller lr than Adam.

    >>> lion(0.1).update({"w": np.array([-7.0])}, lion(0.1).init({"w": np.zeros(1)}), {"w": np.zeros(1)})[0]["w"]
    array([0.1])
    """
    return _optimizer("lion", scale_by_lion(b1, b2), add_decayed_weights(weight_decay, mask),
                      scale_by_learning_rate(lr))


def lars(lr, weight_decay=0.0, trust_coefficient=1e-3, eps=0.0, momentum=0.9, nesterov=False,
         weight_decay_mask=None, trust_ratio_mask=None) -> GradientTransformation:
    """LARS (You et al., 2017): SGD with momentum whose step is scaled per layer by ``coef ||p|| / ||g + wd p||``.

    >>> type(lars(0.1).init({"w": np.zeros(1)})[-1]).__name__
    'TraceState'
    """
    ratio = scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps)
    return _optimizer("lars", add_decayed_weights(weight_decay, weight_decay_mask),
                      ratio if trust_ratio_mask is None else masked(ratio, trust_ratio_mask),
                      scale_by_learning_rate(lr), *_momentum("lars", momentum, nesterov))


def adafactor(lr=None, min_dim_size_to_factor=128, decay_rate=0.8, clipping_threshold=1.0,
              multiply_by_parameter_scale=True, eps=1e-30, min_scale=1e-3, weight_decay=0.0) -> GradientTransformation:
    """Adafactor (Shazeer and Stern, 2018): Adam-like steps with O(n + m) memory for an (n, m) matrix.

    The chain: ``scale_by_factored_rms`` (factored second moments), ``clip_by_block_rms`` (update
    clipping at ``clipping_threshold``; None: off), ``scale_by_param_block_rms`` (the step relative to the
    param's RMS, at least ``min_scale``; with ``multiply_by_parameter_scale``), decoupled weight decay,
    and the learning rate. ``lr=None`` is the paper's relative step ``min(1e-2, 1 / sqrt(t))``.
    No first moment (the paper's default, beta1 = 0).

    >>> opt = adafactor(min_dim_size_to_factor=2)
    >>> state = opt.init({"w": np.zeros((4, 3))})
    >>> state[0].v_row["w"].shape, state[0].v_col["w"].shape
    ((4,), (3,))
    """
    if lr is None:
        def lr(count):                                             # the paper's relative step size
            return min(1e-2, 1 / math.sqrt(count + 1))
    parts = [scale_by_factored_rms(decay_rate, eps, min_dim_size_to_factor)]
    if clipping_threshold is not None:
        parts.append(clip_by_block_rms(clipping_threshold))
    if multiply_by_parameter_scale:
        parts.append(scale_by_param_block_rms(min_scale))
    if weight_decay:
        parts.append(add_decayed_weights(weight_decay))
    return _optimizer("adafactor", *parts, scale_by_learning_rate(lr))


def dpsgd(lr, l2_norm_clip, noise_multiplier, seed=0, momentum=None, nesterov=False) -> GradientTransformation:
    """Differentially private SGD (Abadi et al., 2016): give ``update`` per-example gradients (E, *shape).

    Each example's gradient is clipped to norm ``l2_norm_clip``; the sum gets Gaussian noise of std
    ``noise_multiplier * l2_norm_clip`` and is divided by E; then (momentum) SGD. Get the per-example
    gradients with ``axon.privacy.per_example_grads``; ``axon.training.step`` and ``train`` do that by
    themselves for this optimizer (``axon.privacy.needs_per_example_grads``).

    >>> opt = dpsgd(0.1, l2_norm_clip=1.0, noise_multiplier=0.0)
    >>> opt.update({"w": np.array([[30.0], [0.0]])}, opt.init({"w": np.zeros(1)}), {"w": np.zeros(1)})[0]["w"]
    array([-0.05])
    """
    return chain(differentially_private_aggregate(l2_norm_clip, noise_multiplier, seed),
                 *_momentum("dpsgd", momentum, nesterov), scale_by_learning_rate(lr))


# ---- Optax's aliases ----------------------------------------------------------------------------------
def adamax(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8) -> GradientTransformation:
    """AdaMax (Kingma and Ba, 2015): Adam with the infinity norm; PyTorch's ``Adamax``, Optax's ``adamax``.

    >>> adamax(0.1).update({"w": np.array([-3.0])}, adamax(0.1).init({"w": np.zeros(1)}))[0]["w"].round(6)
    array([0.1])
    """
    return _optimizer("adamax", scale_by_adamax(b1, b2, eps), scale_by_learning_rate(lr))


def adamaxw(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4, mask=None) -> GradientTransformation:
    """AdaMax with decoupled weight decay, ``p -= lr (adamax + wd p)`` (Optax's ``adamaxw``).

    >>> opt = adamaxw(0.1, weight_decay=0.5)
    >>> opt.update({"w": np.array([5.0])}, opt.init({"w": np.ones(1)}), {"w": np.ones(1)})[0]["w"].round(6)
    array([-0.15])
    """
    wd = _hyper("adamaxw", "weight_decay", weight_decay, 0)
    return _optimizer("adamaxw", scale_by_adamax(b1, b2, eps), add_decayed_weights(wd, mask),
                      scale_by_learning_rate(lr))


def amsgrad(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0) -> GradientTransformation:
    """AMSGrad (Reddi et al., 2018): Adam that never lets its step grow back (Optax's ``amsgrad``).

    >>> amsgrad(0.1).update({"w": np.array([2.0])}, amsgrad(0.1).init({"w": np.zeros(1)}))[0]["w"].round(6)
    array([-0.1])
    """
    return _optimizer("amsgrad", scale_by_amsgrad(b1, b2, eps, eps_root), scale_by_learning_rate(lr))


def nadamw(lr=2e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-2, momentum_decay=4e-3,
           mask=None) -> GradientTransformation:
    """NAdam with decoupled weight decay: PyTorch's ``NAdam(decoupled_weight_decay=True)``.

    >>> opt = nadamw(0.1, weight_decay=0.5)
    >>> type(opt.init({"w": np.ones(1)})[0]).__name__
    'ScaleByNadamState'
    """
    wd = _hyper("nadamw", "weight_decay", weight_decay, 0)
    return _optimizer("nadamw", scale_by_nadam(b1, b2, eps, momentum_decay), add_decayed_weights(wd, mask),
                      scale_by_learning_rate(lr))


def novograd(lr=1e-3, b1=0.9, b2=0.25, eps=1e-6, eps_root=0.0, weight_decay=0.0) -> GradientTransformation:
    """NovoGrad (Ginsburg et al., 2019): layer-wise second moments, robust to the learning rate (Optax's).

    >>> opt = novograd(0.1)
    >>> opt.update({"w": np.array([3.0, 4.0])}, opt.init({"w": np.zeros(2)}), {"w": np.zeros(2)})[0]["w"].round(4)
    array([-0.06, -0.08])
    """
    return _optimizer("novograd", scale_by_novograd(b1, b2, eps, eps_root, weight_decay), scale_by_learning_rate(lr))


def sign_sgd(lr) -> GradientTransformation:
    """signSGD (Bernstein et al., 2018): ``p -= lr sign(g)`` (Optax's ``sign_sgd``).

    >>> sign_sgd(0.1).update({"w": np.array([-4.0, 2.0])}, sign_sgd(0.1).init(None))[0]["w"]
    array([ 0.1, -0.1])
    """
    return _optimizer("sign_sgd", scale_by_sign(), scale_by_learning_rate(lr))


def signum(lr, beta=0.9) -> GradientTransformation:
    """Signum (Bernstein et al., 2018): ``m = beta m + (1 - beta) g``, ``p -= lr sign(m)`` (Optax's ``signum``).

    >>> signum(0.1).update({"w": np.array([-4.0])}, signum(0.1).init({"w": np.zeros(1)}))[0]["w"]
    array([0.1])
    """
    return _optimizer("signum", ema(beta, debias=False), scale_by_sign(), scale_by_learning_rate(lr))


def optimistic_gradient_descent(lr, alpha=1.0, beta=1.0) -> GradientTransformation:
    """Optimistic gradient descent (Daskalakis et al., 2018): ``p -= lr ((alpha + beta) g - beta g_prev)``.

    >>> opt = optimistic_gradient_descent(0.1)
    >>> opt.update({"w": np.array([1.0])}, opt.init({"w": np.zeros(1)}))[0]["w"]
    array([-0.1])
    """
    return _optimizer("optimistic_gradient_descent", scale_by_optimistic_gradient(alpha, beta),
                      scale_by_learning_rate(lr))


def rprop(lr, eta_minus=0.5, eta_plus=1.2, min_step_size=1e-6, max_step_size=50.0) -> GradientTransformation:
    """Rprop (Riedmiller and Braun, 1993): a step size per element, grown while g keeps its sign;
    ``p -= sign(g) step``. PyTorch's ``Rprop(lr, etas=(eta_minus, eta_plus), step_sizes=(min, max))``.

    >>> opt = rprop(0.1)
    >>> opt.update({"w": np.array([3.0, -2.0])}, opt.init({"w": np.zeros(2)}))[0]["w"]
    array([-0.1,  0.1])
    """
    return _optimizer("rprop", scale_by_rprop(lr, eta_minus, eta_plus, min_step_size, max_step_size), scale(-1.0))


def adan(lr=1e-3, b1=0.98, b2=0.92, b3=0.99, eps=1e-8, eps_root=0.0, weight_decay=0.0, mask=None
         ) -> GradientTransformation:
    """Adan (Xie et al., 2022): Nesterov-style moments of g and of its differences; Optax's ``adan``.

    ``weight_decay`` is decoupled (added after the direction, before the learning rate).

    >>> adan(1e-3).init({"w": np.zeros(2)})[0].count
    array(0)
    """
    decay = [add_decayed_weights(weight_decay, mask)] if weight_decay or mask is not None else []
    return _optimizer("adan", scale_by_adan(b1, b2, b3, eps, eps_root), *decay, scale_by_learning_rate(lr))


def optimistic_adam(lr, optimism=None, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, nesterov=True
                    ) -> GradientTransformation:
    """Optimistic Adam (Daskalakis et al., 2018), as Optax: with Adam's direction r,
    ``p -= lr r + optimism (r - r_prev)`` (``optimism`` defaults to ``lr``), for min-max games.

    >>> opt = optimistic_adam(0.1)
    >>> opt.update({"w": np.array([3.0])}, opt.init({"w": np.zeros(1)}))[0]["w"].round(6)   # -lr r, r looking ahead
    array([-0.147368])
    """
    optimism = lr if optimism is None else optimism
    return _optimizer("optimistic_adam", scale_by_adam(b1, b2, eps, eps_root, nesterov=nesterov),
                      scale_by_optimistic_gradient(lr, optimism), scale(-1.0))


def polyak_sgd(max_lr=1.0, scaling=1.0, f_min=0.0, eps=0.0) -> GradientTransformation:
    """SGD with the Polyak step size (Optax's ``polyak_sgd``): ``p -= min(max_lr, (f - f_min) / ||g||^2) g``.

    ``update`` needs the loss: ``update(grads, state, params, value=f)`` (so it runs in a loop written by
    hand, not through ``axon.training.step``).

    >>> opt = polyak_sgd()
    >>> w = np.array([1.0, -2.0])                              # f = ||w||^2 / 2, least value 0
    >>> opt.update(w, opt.init(w), w, value=float(w @ w) / 2)[0]   # (f - 0) / ||g||^2 = 1/2: halfway there
    array([-0.5,  1. ])
    """
    inner = scale_by_polyak(max_lr, scaling, f_min, eps)

    def update(grads, state, params=None, value=None):
        if params is not None:
            _check_like("polyak_sgd", params, grads)
        updates, state = inner.update(grads, state, params, value=value)
        return tensor_map(lambda u: -u, updates), state
    return GradientTransformation(inner.init, update)


def sm3(lr, momentum=0.9) -> GradientTransformation:
    """SM3 (Anil et al., 2019): Adagrad with one accumulator per axis of each param; Optax's ``sm3``.

    >>> opt = sm3(0.1, momentum=0.0)
    >>> opt.update({"w": np.array([[3.0, -4.0]])}, opt.init({"w": np.zeros((1, 2))}))[0]["w"].round(6)
    array([[-0.1,  0.1]])
    """
    return _optimizer("sm3", scale_by_sm3(momentum), scale(-_hyper("sm3", "lr", lr)))
