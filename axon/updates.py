"""Gradient transformations: optimizers built from small composable pieces (Elixir Axon's Updates, Optax).

A ``GradientTransformation`` is a pair of pure functions:

- ``state = t.init(params)``: what the transformation remembers (moment estimates, a step count);
- ``updates, state = t.update(grads, state, params)``: turn gradients into updates.

``apply_updates(params, updates)`` adds them, ``params + updates``. ``chain`` runs transformations one
after the other, and every transformation here also takes an optional *preceding* transformation as its
first argument (Axon's combinator style), so these two are the same optimizer (Adam with step 0.1):

>>> import numpy as np
>>> opt = chain(scale_by_adam(), scale(-0.1))
>>> opt = scale(scale_by_adam(), -0.1)
>>> params = {"w": np.array([1.0, -2.0])}
>>> state = opt.init(params)
>>> grads = {"w": 2 * params["w"]}                         # the gradient of sum(w ** 2)
>>> updates, state = opt.update(grads, state, params)
>>> apply_updates(params, updates)["w"]
array([ 0.9, -1.9])

Params, grads, updates and states are trees (nested dicts, lists, tuples; see ``axon.tree``) of
arrays, numpy arrays or a device's (``axon.backend``): the arithmetic is done with Tensor operations
(``tensor_map`` gives each leaf as a Tensor), so an update runs where the params live. A state is a
NamedTuple of arrays (the step count is a 0-d int array, which stays on the host), so a checkpoint
stores it and a resumed run continues exactly. Nothing here changes its inputs in place. Scalars are Python floats, so
float32 params get float32 updates. Shapes are checked where they matter: a transformation that keeps
per-parameter state (or reads ``params``) raises ValueError naming the first path where the gradients do
not match, and so does ``apply_updates``.
"""
from __future__ import annotations

import functools
import math
import numbers
from typing import Any, Callable, NamedTuple

import numpy as np

from .autograd import Tensor, ops
from .flat import can_flatten, map_flat
from .backend import backend_of
from .random import rng
from .schedules import value_at
from .tree import tensor_map, tree_leaves, tree_map, tree_map_multi, tree_structure_check

__all__ = [
    # the protocol and how to combine
    "GradientTransformation", "EmptyState", "identity", "stateless", "stateful", "chain", "apply_updates",
    "global_norm", "find_state",
    # scaling
    "scale", "scale_by_schedule", "scale_by_learning_rate", "scale_by_adam", "scale_by_belief", "scale_by_rms",
    "scale_by_stddev", "scale_by_radam", "scale_by_yogi", "scale_by_nadam", "scale_by_adadelta", "scale_by_lion",
    "scale_by_rss", "scale_by_trust_ratio", "scale_by_factored_rms", "scale_by_param_block_rms",
    "scale_by_amsgrad", "scale_by_adamax", "scale_by_novograd", "scale_by_optimistic_gradient", "scale_by_sign",
    "ema", "scale_by_state", "scale_by_rprop", "scale_by_adan", "scale_by_polyak", "scale_by_sm3",
    # momentum, regularisation, noise, clipping
    "trace", "add_decayed_weights", "add_noise", "clip", "clip_by_global_norm", "clip_by_block_rms", "centralize",
    # wrappers
    "masked", "apply_if_finite", "accumulate_gradients", "ema_params",
    # states
    "ScaleByScheduleState", "ScaleByAdamState", "ScaleByNadamState", "ScaleByRmsState", "ScaleByStddevState",
    "ScaleByAdadeltaState", "ScaleByLionState", "ScaleByRssState", "FactoredRmsState", "TraceState",
    "AddNoiseState", "MaskedState", "ApplyIfFiniteState", "AccumulateGradientsState", "EmaParamsState",
    "ScaleByAmsgradState", "ScaleByNovogradState", "ScaleByOptimisticGradientState", "EmaState",
    "ScaleByStateState", "ScaleByRpropState", "ScaleByAdanState", "ScaleBySM3State",
]


# ---- the protocol ------------------------------------------------------------------------------------
class GradientTransformation(NamedTuple):
    """``init(params) -> state`` and ``update(grads, state, params=None) -> (updates, state)``.

    >>> t = scale(0.5)                                         # every transformation is such a pair
    >>> t.update({"w": np.array([2.0, -4.0])}, t.init(None))
    ({'w': array([ 1., -2.])}, EmptyState())
    """
    init: Callable
    update: Callable


class EmptyState(NamedTuple):
    """The state of a transformation that remembers nothing.

    >>> scale(-0.1).init({"w": np.zeros(2)})
    EmptyState()
    """


class ScaleByScheduleState(NamedTuple):
    """The step count that ``scale_by_schedule`` passes to its schedule.

    >>> t = scale_by_schedule(lambda count: 0.5 ** count)
    >>> t.update({"w": np.array([1.0])}, t.init(None))         # step 0: scaled by 0.5 ** 0
    ({'w': array([1.])}, ScaleByScheduleState(count=array(1)))
    """
    count: np.ndarray                                              # () int64: updates so far


class ScaleByAdamState(NamedTuple):
    """Step count and first/second moment estimates (Adam, AdaBelief, RAdam, Yogi).

    >>> scale_by_adam().init({"w": np.zeros(2)})
    ScaleByAdamState(count=array(0), mu={'w': array([0., 0.])}, nu={'w': array([0., 0.])})
    """
    count: np.ndarray                                              # () int64
    mu: Any                                                        # tree like params: E[g]
    nu: Any                                                        # tree like params: E[g^2] (or its variant)


class ScaleByNadamState(NamedTuple):
    """NAdam's step count, product of its momentum schedule, and moment estimates.

    >>> state = scale_by_nadam().init({"w": np.zeros(2)})
    >>> state._fields, state.mu_product
    (('count', 'mu_product', 'mu', 'nu'), array(1.))
    """
    count: np.ndarray                                              # () int64
    mu_product: np.ndarray                                         # () float64: prod of the momentum schedule
    mu: Any
    nu: Any


class ScaleByRmsState(NamedTuple):
    """RMSprop's moving average of squared gradients, ``E[g^2]``.

    >>> scale_by_rms(initial_scale=0.1).init({"w": np.zeros(2)})
    ScaleByRmsState(nu={'w': array([0.1, 0.1])})
    """
    nu: Any                                                        # E[g^2]


class ScaleByStddevState(NamedTuple):
    """Centred RMSprop's moving averages of the gradients and of their squares.

    >>> scale_by_stddev().init({"w": np.zeros(2)})
    ScaleByStddevState(mu={'w': array([0., 0.])}, nu={'w': array([0., 0.])})
    """
    mu: Any                                                        # E[g]
    nu: Any                                                        # E[g^2]


class ScaleByAdadeltaState(NamedTuple):
    """Adadelta's moving averages of squared gradients and of squared updates.

    >>> scale_by_adadelta().init({"w": np.zeros(2)})
    ScaleByAdadeltaState(nu={'w': array([0., 0.])}, delta_nu={'w': array([0., 0.])})
    """
    nu: Any                                                        # E[g^2]
    delta_nu: Any                                                  # E[dx^2]


class ScaleByLionState(NamedTuple):
    """Lion's momentum: a moving average of the gradients.

    >>> scale_by_lion().init({"w": np.zeros(2)})
    ScaleByLionState(mu={'w': array([0., 0.])})
    """
    mu: Any


class ScaleByRssState(NamedTuple):
    """Adagrad's running sum of squared gradients.

    >>> scale_by_rss(initial_accumulator_value=0.1).init({"w": np.zeros(2)})
    ScaleByRssState(sum_of_squares={'w': array([0.1, 0.1])})
    """
    sum_of_squares: Any


class FactoredRmsState(NamedTuple):
    """Adafactor's accumulators: row and column means for matrices, a full ``v`` otherwise (None when unused).

    >>> state = scale_by_factored_rms(min_dim_size_to_factor=2).init({"w": np.zeros((2, 3)), "b": np.zeros(3)})
    >>> state.v_row["w"].shape, state.v_col["w"].shape, state.v["w"], state.v["b"].shape   # w: (2, 3) factored
    ((2,), (3,), None, (3,))
    """
    count: np.ndarray
    v_row: Any                                                     # (..., n) for a (..., n, m) leaf
    v_col: Any                                                     # (..., m)
    v: Any                                                         # leaf-shaped, for leaves not factored


class TraceState(NamedTuple):
    """The momentum buffer of ``trace``: ``trace = decay trace + g``.

    >>> t = trace(0.9)
    >>> t.update({"w": np.array([1.0, -1.0])}, t.init({"w": np.zeros(2)}))[1]
    TraceState(trace={'w': array([ 1., -1.])})
    """
    trace: Any


class AddNoiseState(NamedTuple):
    """The step count of ``add_noise``, which sets the noise's variance and picks its random stream.

    >>> add_noise(eta=0.01).init({"w": np.zeros(2)})
    AddNoiseState(count=array(0))
    """
    count: np.ndarray


class MaskedState(NamedTuple):
    """The inner transformation's state, kept for the masked-in leaves.

    >>> masked(trace(0.9), {"w": True, "b": False}).init({"w": np.zeros(2), "b": np.zeros(1)})
    MaskedState(inner_state=TraceState(trace={'w': array([0., 0.]), 'b': None}))
    """
    inner_state: Any


class ApplyIfFiniteState(NamedTuple):
    """``apply_if_finite``'s count of skipped (non-finite) steps, and the inner transformation's state.

    >>> t = apply_if_finite(scale(-0.1))
    >>> t.update({"w": np.array([np.nan])}, t.init(None))[1].total_notfinite    # the step was skipped
    array(1)
    """
    notfinite_count: np.ndarray                                    # () int64: consecutive skipped steps
    last_finite: np.ndarray                                        # () bool
    total_notfinite: np.ndarray                                    # () int64
    inner_state: Any


class AccumulateGradientsState(NamedTuple):
    """The gradients summed so far by ``accumulate_gradients``, how many, and the inner state.

    >>> t, params = accumulate_gradients(scale(-0.1), every_k=2), {"w": np.zeros(2)}
    >>> t.update({"w": np.array([1.0, 2.0])}, t.init(params), params)[1]
    AccumulateGradientsState(mini_step=array(1), acc_grads={'w': array([1., 2.])}, inner_state=EmptyState())
    """
    mini_step: np.ndarray                                          # () int64: gradients summed since the last update
    acc_grads: Any                                                 # tree like params: their sum
    inner_state: Any


class EmaParamsState(NamedTuple):
    """The step count and the moving average of the params that ``ema_params`` keeps.

    >>> ema_params(0.99).init({"w": np.array([1.0, 2.0])})     # the average starts at the params
    EmaParamsState(count=array(0), ema={'w': array([1., 2.])})
    """
    count: np.ndarray
    ema: Any                                                       # tree like params: the moving average


# ---- small helpers ---------------------------------------------------------------------------------
def _count(n: int = 0) -> np.ndarray:
    return np.asarray(n, dtype=np.int64)


def _next_count(count) -> np.ndarray:
    """``count + 1`` as an int64 array, computed by an op (so a traced step keeps the count an input).

    >>> _next_count(np.asarray(4))
    array(5)
    """
    c = Tensor._wrap(count)
    c = c if c.dtype == np.int64 else ops.astype(c, np.int64)
    return (c + Tensor._wrap(np.ones((), np.int64))).data


def _times(c, x):
    """``c * x`` for a 0-d float64 Tensor ``c`` (a value of the step count), in ``x``'s dtype.

    The same numbers as a Python float times ``x``: numpy rounds the float to ``x``'s dtype first.

    >>> _times(Tensor(np.float64(0.1)), Tensor(np.ones(2, np.float32)))
    Tensor([0.1, 0.1], dtype=float32)
    """
    return ops.astype(c, x.dtype) * x


def _hyper(fn: str, name: str, value, lo: float = -math.inf, hi: float = math.inf) -> float:
    """``value`` as a Python float in ``[lo, hi]`` (numpy scalars would turn float32 updates into float64)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a number, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{fn}: {name} must be a number, got nan")
    if not lo <= value <= hi:
        raise ValueError(f"{fn}: {name} must be in [{lo}, {hi}], got {value}")
    return value


def _schedule_or_float(fn: str, name: str, value):
    """A callable ``count -> float`` is kept; a number becomes a Python float."""
    if callable(value):
        return value
    return _hyper(fn, name, value)


def _check_like(fn: str, reference, grads) -> None:
    """ValueError naming the first path where ``grads`` differ in structure or shape from ``reference``.

    ``reference`` is ``params`` or a state tree that mirrors them (so the message speaks of params).
    """
    try:
        tree_structure_check(reference, grads)
    except ValueError as e:
        raise ValueError(f"{fn}: {e}") from None


def _need_params(fn: str, params) -> None:
    if params is None:
        raise ValueError(f"{fn}: update needs params (call update(grads, state, params))")


def _tensor(x):
    return x if x is None or isinstance(x, Tensor) else Tensor._wrap(x)


def _full_like(p, value):
    """A new array of ``p``'s shape, dtype and backend, filled with ``value``."""
    return backend_of(p).full(p.shape, value, p.dtype)


def _like(x, ref):
    """``x`` in ``ref``'s dtype (float64 grads for float32 params must not turn the state float64)."""
    return x if x.dtype == ref.dtype else ops.astype(x, ref.dtype)


def _first_moment(grads, mu, decay):
    """``m = decay m + (1 - decay) g`` per leaf (Adam's ``m``), in the moment's dtype."""
    return tensor_map(lambda g, m: _like(decay * m + (1 - decay) * g, m), grads, mu)


def _second_moment(grads, nu, decay):
    """``v = decay v + (1 - decay) g^2`` per leaf (Adam's ``v``), in the moment's dtype."""
    return tensor_map(lambda g, v: _like(decay * v + (1 - decay) * (g * g), v), grads, nu)


def _zeros(params):
    return tree_map(lambda p: _full_like(p, 0), params)


def _sum_of_squares(x) -> float:
    """Sum of the squares of an array's elements, as a Python float."""
    x = _tensor(x)
    return float(ops.sum(x * x))


def _norm(x) -> float:
    """Euclidean norm of an array, as a Python float."""
    return math.sqrt(_sum_of_squares(x))


def _rms(x) -> float:
    """Root mean square of an array's elements, ``||x|| / sqrt(size)`` (0 for an empty array)."""
    return _norm(x) / math.sqrt(max(x.size, 1))


def global_norm(tree) -> float:
    """``sqrt(sum of squares of every element of every leaf)``, as a Python float.

    >>> global_norm({"a": np.array([3.0]), "b": np.array([[4.0]])})
    5.0
    """
    return math.sqrt(sum(_sum_of_squares(x) for x in tree_leaves(tree)))


def find_state(state, state_type):
    """The first NamedTuple of type ``state_type`` inside an optimizer state (depth first), or None.

    >>> opt = chain(scale(-0.1), ema_params(0.9))
    >>> state = opt.init({"w": np.ones(2)})
    >>> find_state(state, EmaParamsState).ema["w"]
    array([1., 1.])
    """
    if isinstance(state, state_type):
        return state
    children = state.values() if isinstance(state, dict) else state if isinstance(state, (list, tuple)) else ()
    for child in children:
        found = find_state(child, state_type)
        if found is not None:
            return found
    return None


def _combinator(make):
    """Let ``make(*args)`` also take a preceding transformation first: ``make(t, *args) == chain(t, make(*args))``."""
    @functools.wraps(make)
    def build(*args, **kwargs):
        if args and isinstance(args[0], GradientTransformation):
            return chain(args[0], make(*args[1:], **kwargs))
        return make(*args, **kwargs)
    return build


# ---- building and combining ----------------------------------------------------------------------
def identity() -> GradientTransformation:
    """Pass the gradients through unchanged.

    >>> identity().update({"w": np.ones(2)}, EmptyState())[0]
    {'w': array([1., 1.])}
    """
    return GradientTransformation(lambda params: EmptyState(), lambda grads, state, params=None: (grads, state))


@_combinator
def stateless(fn) -> GradientTransformation:
    """A transformation without state from ``fn(updates, params) -> updates``.

    >>> double = stateless(lambda updates, params: tree_map(lambda u: 2 * u, updates))
    >>> double.update({"w": np.ones(2)}, double.init(None))[0]
    {'w': array([2., 2.])}
    """
    def update(grads, state, params=None):
        return fn(grads, params), state
    return GradientTransformation(lambda params: EmptyState(), update)


@_combinator
def stateful(init_fn, update_fn) -> GradientTransformation:
    """A transformation from ``init_fn(params) -> state`` and ``update_fn(updates, state, params) -> (updates, state)``.

    >>> counter = stateful(lambda params: np.asarray(0), lambda u, n, params: (u, np.asarray(n + 1)))
    >>> counter.update({"w": np.ones(2)}, counter.init(None))[1]
    array(1)
    """
    def update(grads, state, params=None):
        return update_fn(grads, state, params)
    return GradientTransformation(init_fn, update)


def chain(*transforms) -> GradientTransformation:
    """Run ``transforms`` one after the other; the state is the tuple of their states.

    >>> sgd_momentum = chain(trace(decay=0.9), scale(-0.01))
    >>> state = sgd_momentum.init({"w": np.zeros(3)})
    >>> len(state), type(state[0]).__name__
    (2, 'TraceState')
    """
    for i, t in enumerate(transforms):
        if not isinstance(t, GradientTransformation):
            raise TypeError(f"chain: argument {i} must be a GradientTransformation, got {type(t).__name__}")

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(grads, state, params=None):
        if not isinstance(state, tuple) or len(state) != len(transforms):
            raise ValueError(f"chain: expected a state tuple of {len(transforms)} transformation states, got "
                             f"{type(state).__name__} of length {len(state) if isinstance(state, tuple) else '-'}")
        new_state = []
        for t, s in zip(transforms, state):
            grads, s = t.update(grads, s, params)
            new_state.append(s)
        return grads, tuple(new_state)
    update.per_example_grads = any(getattr(t.update, "per_example_grads", False) for t in transforms)   # DP-SGD
    return GradientTransformation(init, update)


def apply_updates(params, updates):
    """``params + updates`` leaf by leaf, each result keeping its param's dtype.

    >>> apply_updates({"w": np.ones(2, np.float32)}, {"w": np.array([0.5, -0.5])})["w"]
    array([1.5, 0.5], dtype=float32)
    """
    _check_like("apply_updates", params, updates)
    if can_flatten(params, updates):               # one dtype: one add over the flat buffers (axon.flat)
        return map_flat(ops.add, params, updates)
    def add(p, u):
        y = p + u
        return y if y.dtype == p.dtype else ops.astype(y, p.dtype)     # an update never changes a param's dtype
    return tensor_map(add, params, updates)


# ---- scaling ---------------------------------------------------------------------------------------
@_combinator
def scale(step_size) -> GradientTransformation:
    """Multiply the updates by a constant: ``u = step_size * g``.

    >>> scale(-0.5).update({"w": np.array([2.0])}, EmptyState())[0]
    {'w': array([-1.])}
    """
    step_size = _hyper("scale", "step_size", step_size)
    return stateless(lambda updates, params: tensor_map(lambda g: step_size * g, updates))


@_combinator
def scale_by_schedule(schedule) -> GradientTransformation:
    """Multiply the updates by ``schedule(count)``, ``count`` the number of updates so far (0 first).

    >>> t = scale_by_schedule(lambda count: 1.0 / (count + 1))
    >>> state = t.init(None)
    >>> u, state = t.update({"w": np.ones(1)}, state)
    >>> u, state = t.update({"w": np.ones(1)}, state)
    >>> u["w"], state.count
    (array([0.5]), array(2))
    """
    if not callable(schedule):
        raise TypeError(f"scale_by_schedule: schedule must be callable (count -> float), got {type(schedule).__name__}")

    def update(grads, state, params=None):
        step_size = value_at(schedule, state.count)                # a 0-d float64 Tensor
        return (tensor_map(lambda g: _times(step_size, g), grads),
                ScaleByScheduleState(_next_count(state.count)))
    return GradientTransformation(lambda params: ScaleByScheduleState(_count()), update)


@_combinator
def scale_by_learning_rate(lr, flip_sign: bool = True) -> GradientTransformation:
    """Scale by ``-lr`` (a number or a schedule ``count -> lr``): the last step of every optimizer.

    >>> scale_by_learning_rate(0.1).update({"w": np.array([1.0])}, EmptyState())[0]
    {'w': array([-0.1])}
    """
    sign = -1.0 if flip_sign else 1.0
    if callable(lr):
        return scale_by_schedule(lambda count: sign * lr(count))
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(f"scale_by_learning_rate: lr must be a number or a schedule (count -> lr), "
                        f"got {type(lr).__name__}")
    return scale(sign * float(lr))


@_combinator
def scale_by_adam(b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, nesterov=False) -> GradientTransformation:
    """Adam's direction (Kingma and Ba, 2015), bias-corrected moments of the gradient.

    ``m = b1 m + (1 - b1) g``,  ``v = b2 v + (1 - b2) g^2``,
    ``u = m_hat / (sqrt(v_hat + eps_root) + eps)`` with ``m_hat = m / (1 - b1^t)``, ``v_hat = v / (1 - b2^t)``.
    ``nesterov=True`` (Optax's option) looks one step ahead:
    ``m_hat = b1 m / (1 - b1^(t+1)) + (1 - b1) g / (1 - b1^t)``.

    >>> t = scale_by_adam()
    >>> t.update({"w": np.array([3.0, -0.5])}, t.init({"w": np.zeros(2)}))[0]["w"].round(6)
    array([ 1., -1.])
    """
    b1, b2 = _hyper("scale_by_adam", "b1", b1, 0, 1), _hyper("scale_by_adam", "b2", b2, 0, 1)
    eps, eps_root = _hyper("scale_by_adam", "eps", eps, 0), _hyper("scale_by_adam", "eps_root", eps_root, 0)

    def init(params):
        return ScaleByAdamState(_count(), _zeros(params), _zeros(params))

    def update(grads, state, params=None):
        _check_like("scale_by_adam", state.mu, grads)
        t = _next_count(state.count)                               # the 1-based step, an array (traceable)
        mu, nu = _first_moment(grads, state.mu, b1), _second_moment(grads, state.nu, b2)
        c1 = value_at(lambda n: 1 / (1 - b1 ** n), t)              # bias corrections, Python floats of t
        c2 = value_at(lambda n: 1 / (1 - b2 ** n), t)              # computed when the op runs
        if nesterov:                                               # the moment one step ahead
            ahead = value_at(lambda n: b1 / (1 - b1 ** (n + 1)), t)
            c1 = value_at(lambda n: (1 - b1) * (1 / (1 - b1 ** n)), t)
            updates = tensor_map(lambda g, m, v: (_times(ahead, m) + _times(c1, g))
                                 / (ops.sqrt(_times(c2, v) + eps_root) + eps), grads, mu, nu)
        else:
            updates = tensor_map(lambda m, v: _times(c1, m) / (ops.sqrt(_times(c2, v) + eps_root) + eps), mu, nu)
        return updates, ScaleByAdamState(t, mu, nu)
    return GradientTransformation(init, update)


@_combinator
def scale_by_belief(b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16) -> GradientTransformation:
    """AdaBelief's direction (Zhuang et al., 2020): Adam with the variance of g around its prediction m.

    ``m = b1 m + (1 - b1) g``,  ``s = b2 s + (1 - b2) (g - m)^2 + eps_root``,
    ``u = m_hat / (sqrt(s_hat) + eps)`` (bias corrections as in Adam; Algorithm 2 of the paper).

    >>> t = scale_by_belief()
    >>> t.update({"w": np.array([2.0])}, t.init({"w": np.zeros(1)}))[0]["w"].round(3)
    array([1.111])
    """
    b1, b2 = _hyper("scale_by_belief", "b1", b1, 0, 1), _hyper("scale_by_belief", "b2", b2, 0, 1)
    eps, eps_root = _hyper("scale_by_belief", "eps", eps, 0), _hyper("scale_by_belief", "eps_root", eps_root, 0)

    def init(params):
        return ScaleByAdamState(_count(), _zeros(params), _zeros(params))

    def update(grads, state, params=None):
        _check_like("scale_by_belief", state.mu, grads)
        t = int(state.count) + 1
        mu = _first_moment(grads, state.mu, b1)
        nu = tensor_map(lambda g, m, s: b2 * s + (1 - b2) * ((g - m) * (g - m)) + eps_root, grads, mu, state.nu)
        c1, c2 = 1 / (1 - b1 ** t), 1 / (1 - b2 ** t)
        updates = tensor_map(lambda m, s: (c1 * m) / (ops.sqrt(c2 * s) + eps), mu, nu)
        return updates, ScaleByAdamState(_count(t), mu, nu)
    return GradientTransformation(init, update)


@_combinator
def scale_by_rms(decay=0.9, eps=1e-8, initial_scale=0.0) -> GradientTransformation:
    """RMSProp's direction (Hinton): ``v = decay v + (1 - decay) g^2``, ``u = g / (sqrt(v) + eps)``.

    >>> t = scale_by_rms(decay=0.75)
    >>> t.update({"w": np.array([2.0])}, t.init({"w": np.zeros(1)}))[0]["w"].round(6)
    array([2.])
    """
    decay, eps = _hyper("scale_by_rms", "decay", decay, 0, 1), _hyper("scale_by_rms", "eps", eps, 0)
    initial_scale = _hyper("scale_by_rms", "initial_scale", initial_scale, 0)

    def update(grads, state, params=None):
        _check_like("scale_by_rms", state.nu, grads)
        nu = tensor_map(lambda g, v: decay * v + (1 - decay) * (g * g), grads, state.nu)
        return tensor_map(lambda g, v: g / (ops.sqrt(v) + eps), grads, nu), ScaleByRmsState(nu)
    return GradientTransformation(lambda params: ScaleByRmsState(tree_map(lambda p: _full_like(p, initial_scale),
                                                                          params)), update)


@_combinator
def scale_by_stddev(decay=0.9, eps=1e-8, initial_scale=0.0) -> GradientTransformation:
    """Centered RMSProp: divide by the standard deviation of g instead of its root mean square.

    ``m = decay m + (1 - decay) g``, ``v = decay v + (1 - decay) g^2``, ``u = g / (sqrt(v - m^2) + eps)``.

    >>> t = scale_by_stddev(decay=0.75)
    >>> t.update({"w": np.array([2.0])}, t.init({"w": np.zeros(1)}))[0]["w"].round(6)
    array([2.309401])
    """
    decay, eps = _hyper("scale_by_stddev", "decay", decay, 0, 1), _hyper("scale_by_stddev", "eps", eps, 0)
    initial_scale = _hyper("scale_by_stddev", "initial_scale", initial_scale, 0)

    def init(params):
        return ScaleByStddevState(_zeros(params), tree_map(lambda p: _full_like(p, initial_scale), params))

    def update(grads, state, params=None):
        _check_like("scale_by_stddev", state.mu, grads)
        mu = tensor_map(lambda g, m: decay * m + (1 - decay) * g, grads, state.mu)
        nu = tensor_map(lambda g, v: decay * v + (1 - decay) * (g * g), grads, state.nu)
        updates = tensor_map(lambda g, m, v: g / (ops.sqrt(v - m * m) + eps), grads, mu, nu)
        return updates, ScaleByStddevState(mu, nu)
    return GradientTransformation(init, update)


@_combinator
def scale_by_radam(b1=0.9, b2=0.999, eps=1e-8, threshold=5.0) -> GradientTransformation:
    """Rectified Adam's direction (Liu et al., 2020): Adam once the variance of its step size is tractable.

    ``rho_inf = 2 / (1 - b2) - 1``, ``rho_t = rho_inf - 2 t b2^t / (1 - b2^t)``. While ``rho_t <= threshold``
    the step is momentum alone, ``u = m_hat``; after it,
    ``u = r_t m_hat sqrt(1 - b2^t) / (sqrt(v) + eps)`` with
    ``r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))`` (as the authors' code
    and PyTorch place ``eps``).

    >>> t = scale_by_radam()
    >>> t.update({"w": np.array([3.0])}, t.init({"w": np.zeros(1)}))[0]["w"]    # first steps: momentum only
    array([3.])
    """
    b1, b2 = _hyper("scale_by_radam", "b1", b1, 0, 1), _hyper("scale_by_radam", "b2", b2, 0, 1 - 1e-12)
    eps = _hyper("scale_by_radam", "eps", eps, 0)
    threshold = _hyper("scale_by_radam", "threshold", threshold, 4)   # r_t is real only for rho_t > 4
    rho_inf = 2 / (1 - b2) - 1

    def init(params):
        return ScaleByAdamState(_count(), _zeros(params), _zeros(params))

    def update(grads, state, params=None):
        _check_like("scale_by_radam", state.mu, grads)
        t = int(state.count) + 1
        mu, nu = _first_moment(grads, state.mu, b1), _second_moment(grads, state.nu, b2)
        c1 = 1 / (1 - b1 ** t)
        rho_t = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
        if rho_t > threshold:                                      # the adaptive step's variance is finite
            r_t = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            k = r_t * c1 * math.sqrt(1 - b2 ** t)
            updates = tensor_map(lambda m, v: (k * m) / (ops.sqrt(v) + eps), mu, nu)
        else:
            updates = tensor_map(lambda m: c1 * m, mu)
        return updates, ScaleByAdamState(_count(t), mu, nu)
    return GradientTransformation(init, update)


@_combinator
def scale_by_yogi(b1=0.9, b2=0.999, eps=1e-3, eps_root=0.0, initial_accumulator_value=1e-6) -> GradientTransformation:
    """Yogi's direction (Zaheer et al., 2018): Adam whose ``v`` moves additively, by at most ``(1 - b2) g^2``.

    ``m = b1 m + (1 - b1) g``,  ``v = v - (1 - b2) sign(v - g^2) g^2``,
    ``u = m_hat / (sqrt(v_hat + eps_root) + eps)``; ``m`` starts at 0, ``v`` at ``initial_accumulator_value``.

    >>> t = scale_by_yogi()
    >>> t.update({"w": np.array([2.0])}, t.init({"w": np.zeros(1)}))[0]["w"].round(4)
    array([0.9994])
    """
    b1, b2 = _hyper("scale_by_yogi", "b1", b1, 0, 1), _hyper("scale_by_yogi", "b2", b2, 0, 1)
    eps, eps_root = _hyper("scale_by_yogi", "eps", eps, 0), _hyper("scale_by_yogi", "eps_root", eps_root, 0)
    v0 = _hyper("scale_by_yogi", "initial_accumulator_value", initial_accumulator_value, 0)

    def init(params):
        return ScaleByAdamState(_count(), _zeros(params), tree_map(lambda p: _full_like(p, v0), params))

    def update(grads, state, params=None):
        _check_like("scale_by_yogi", state.mu, grads)
        t = int(state.count) + 1
        mu = _first_moment(grads, state.mu, b1)
        nu = tensor_map(lambda g, v: v - (1 - b2) * ops.sign(v - g * g) * (g * g), grads, state.nu)
        c1, c2 = 1 / (1 - b1 ** t), 1 / (1 - b2 ** t)
        updates = tensor_map(lambda m, v: (c1 * m) / (ops.sqrt(c2 * v + eps_root) + eps), mu, nu)
        return updates, ScaleByAdamState(_count(t), mu, nu)
    return GradientTransformation(init, update)


@_combinator
def scale_by_nadam(b1=0.9, b2=0.999, eps=1e-8, momentum_decay=4e-3) -> GradientTransformation:
    """NAdam's direction (Dozat, 2016): Adam with Nesterov momentum and a warming momentum schedule.

    ``mu_t = b1 (1 - 0.96^(t psi) / 2)`` (``psi = momentum_decay``), ``m = b1 m + (1 - b1) g``,
    ``v = b2 v + (1 - b2) g^2``, ``d = sqrt(v / (1 - b2^t)) + eps``, and
    ``u = (1 - mu_t) / (1 - prod_{i<=t} mu_i) g / d + mu_{t+1} / (1 - prod_{i<=t+1} mu_i) m / d``
    (the formulation PyTorch's ``NAdam`` implements).

    >>> t = scale_by_nadam()
    >>> t.update({"w": np.array([2.0])}, t.init({"w": np.zeros(1)}))[0]["w"].round(4)
    array([1.0565])
    """
    b1, b2 = _hyper("scale_by_nadam", "b1", b1, 0, 1), _hyper("scale_by_nadam", "b2", b2, 0, 1)
    eps = _hyper("scale_by_nadam", "eps", eps, 0)
    psi = _hyper("scale_by_nadam", "momentum_decay", momentum_decay, 0)

    def mu_at(t):                                                  # the momentum schedule
        return b1 * (1 - 0.5 * 0.96 ** (t * psi))

    def init(params):
        return ScaleByNadamState(_count(), np.asarray(1.0), _zeros(params), _zeros(params))

    def update(grads, state, params=None):
        _check_like("scale_by_nadam", state.mu, grads)
        t = int(state.count) + 1
        mu_t, mu_next = mu_at(t), mu_at(t + 1)
        product = float(state.mu_product) * mu_t
        k_g, k_m = (1 - mu_t) / (1 - product), mu_next / (1 - product * mu_next)
        c2 = 1 / (1 - b2 ** t)
        mu, nu = _first_moment(grads, state.mu, b1), _second_moment(grads, state.nu, b2)
        updates = tensor_map(lambda g, m, v: (k_g * g + k_m * m) / (ops.sqrt(c2 * v) + eps), grads, mu, nu)
        return updates, ScaleByNadamState(_count(t), np.asarray(product), mu, nu)
    return GradientTransformation(init, update)


@_combinator
def scale_by_adadelta(rho=0.9, eps=1e-6) -> GradientTransformation:
    """Adadelta's direction (Zeiler, 2012): a step in the units of the parameters, no learning rate needed.

    ``v = rho v + (1 - rho) g^2``, ``u = sqrt(d + eps) / sqrt(v + eps) g``, ``d = rho d + (1 - rho) u^2``.

    >>> t = scale_by_adadelta()
    >>> t.update({"w": np.array([1.0])}, t.init({"w": np.zeros(1)}))[0]["w"].round(5)
    array([0.00316])
    """
    rho, eps = _hyper("scale_by_adadelta", "rho", rho, 0, 1), _hyper("scale_by_adadelta", "eps", eps, 0)

    def update(grads, state, params=None):
        _check_like("scale_by_adadelta", state.nu, grads)
        nu = tensor_map(lambda g, v: rho * v + (1 - rho) * (g * g), grads, state.nu)
        updates = tensor_map(lambda g, v, d: ops.sqrt(d + eps) / ops.sqrt(v + eps) * g, grads, nu, state.delta_nu)
        delta_nu = tensor_map(lambda u, d: rho * d + (1 - rho) * (u * u), updates, state.delta_nu)
        return updates, ScaleByAdadeltaState(nu, delta_nu)
    return GradientTransformation(lambda params: ScaleByAdadeltaState(_zeros(params), _zeros(params)), update)


@_combinator
def scale_by_lion(b1=0.9, b2=0.99) -> GradientTransformation:
    """Lion's direction (Chen et al., 2023): the sign of an interpolated momentum.

    ``u = sign(b1 m + (1 - b1) g)``, then ``m = b2 m + (1 - b2) g``.

    >>> t = scale_by_lion()
    >>> t.update({"w": np.array([0.3, -2.0, 0.0])}, t.init({"w": np.zeros(3)}))[0]["w"]
    array([ 1., -1.,  0.])
    """
    b1, b2 = _hyper("scale_by_lion", "b1", b1, 0, 1), _hyper("scale_by_lion", "b2", b2, 0, 1)

    def update(grads, state, params=None):
        _check_like("scale_by_lion", state.mu, grads)
        updates = tensor_map(lambda g, m: ops.sign(b1 * m + (1 - b1) * g), grads, state.mu)
        mu = tensor_map(lambda g, m: b2 * m + (1 - b2) * g, grads, state.mu)
        return updates, ScaleByLionState(mu)
    return GradientTransformation(lambda params: ScaleByLionState(_zeros(params)), update)


@_combinator
def scale_by_rss(initial_accumulator_value=0.0, eps=1e-10) -> GradientTransformation:
    """Adagrad's direction (Duchi et al., 2011): divide by the root of the sum of all squared gradients.

    ``s = s + g^2``, ``u = g / (sqrt(s) + eps)``.

    >>> t = scale_by_rss()
    >>> state = t.init({"w": np.zeros(1)})
    >>> u, state = t.update({"w": np.array([3.0])}, state)
    >>> u, state = t.update({"w": np.array([4.0])}, state)
    >>> u["w"], state.sum_of_squares["w"]
    (array([0.8]), array([25.]))
    """
    s0 = _hyper("scale_by_rss", "initial_accumulator_value", initial_accumulator_value, 0)
    eps = _hyper("scale_by_rss", "eps", eps, 0)

    def update(grads, state, params=None):
        _check_like("scale_by_rss", state.sum_of_squares, grads)
        sums = tensor_map(lambda g, s: s + g * g, grads, state.sum_of_squares)
        return tensor_map(lambda g, s: g / (ops.sqrt(s) + eps), grads, sums), ScaleByRssState(sums)
    return GradientTransformation(lambda params: ScaleByRssState(tree_map(lambda p: _full_like(p, s0), params)),
                                  update)


@_combinator
def scale_by_trust_ratio(min_norm=0.0, trust_coefficient=1.0, eps=0.0) -> GradientTransformation:
    """Scale each leaf's update by ``coef * ||p|| / (||u|| + eps)`` (LARS, LAMB; You et al., 2017, 2019).

    Norms are per leaf (per layer) and at least ``min_norm``; a leaf whose param or update norm is 0 keeps
    its update unchanged.

    >>> t = scale_by_trust_ratio()
    >>> t.update({"w": np.array([0.0, 2.0])}, EmptyState(), {"w": np.array([3.0, 4.0])})[0]
    {'w': array([0., 5.])}
    """
    min_norm = _hyper("scale_by_trust_ratio", "min_norm", min_norm, 0)
    coef = _hyper("scale_by_trust_ratio", "trust_coefficient", trust_coefficient, 0)
    eps = _hyper("scale_by_trust_ratio", "eps", eps, 0)

    def ratio_times(u, p):
        p_norm, u_norm = max(_norm(p), min_norm), max(_norm(u), min_norm)
        if p_norm == 0 or u_norm == 0:
            return u
        return (coef * p_norm / (u_norm + eps)) * u

    def update(grads, state, params=None):
        _need_params("scale_by_trust_ratio", params)
        _check_like("scale_by_trust_ratio", params, grads)
        return tensor_map(ratio_times, grads, params), state
    return GradientTransformation(lambda params: EmptyState(), update)


def _factored(shape, min_dim: int) -> bool:
    """Adafactor factors a leaf's second moment when its last two axes are both at least ``min_dim`` long."""
    return len(shape) >= 2 and min(shape[-2:]) >= min_dim


@_combinator
def scale_by_factored_rms(decay_rate=0.8, eps=1e-30, min_dim_size_to_factor=128) -> GradientTransformation:
    """Adafactor's direction (Shazeer and Stern, 2018): ``g / sqrt(v_hat)`` with a factored ``v_hat``.

    ``beta_t = 1 - t^(-decay_rate)``. A leaf of shape (..., n, m) keeps row means ``R`` (..., n) and column
    means ``C`` (..., m) of ``g^2 + eps``, each an EMA with ``beta_t``, and uses
    ``v_hat = R C^T / mean(R)`` (rank one: O(n + m) memory instead of O(nm)). Other leaves keep a full EMA
    ``v`` of ``g^2 + eps``. The first step has ``beta_1 = 0``: no bias to correct.

    >>> t = scale_by_factored_rms(min_dim_size_to_factor=2)
    >>> state = t.init({"w": np.zeros((2, 3))})
    >>> state.v_row["w"].shape, state.v_col["w"].shape, state.v["w"]
    ((2,), (3,), None)
    """
    decay_rate = _hyper("scale_by_factored_rms", "decay_rate", decay_rate, 0)
    eps = _hyper("scale_by_factored_rms", "eps", eps, 0)
    min_dim = int(_hyper("scale_by_factored_rms", "min_dim_size_to_factor", min_dim_size_to_factor, 1))

    def init(params):
        def rows(p): return backend_of(p).full(p.shape[:-1], 0, p.dtype) if _factored(p.shape, min_dim) else None
        def cols(p): return backend_of(p).full(p.shape[:-2] + p.shape[-1:], 0, p.dtype) if _factored(p.shape, min_dim) else None
        def full(p): return None if _factored(p.shape, min_dim) else _full_like(p, 0)
        return FactoredRmsState(_count(), tree_map(rows, params), tree_map(cols, params), tree_map(full, params))

    def scaled(g, r, c, v):                                        # g / sqrt(v_hat) for one leaf
        if v is not None:
            return g / ops.sqrt(v)
        row_scale = 1 / ops.sqrt(r / r.mean(axis=-1, keepdims=True))       # (..., n)
        return g * row_scale[..., :, None] * (1 / ops.sqrt(c))[..., None, :]   # (..., n, m)

    def update(grads, state, params=None):
        if params is not None:
            _check_like("scale_by_factored_rms", params, grads)
        t = int(state.count) + 1
        beta = 1 - t ** -decay_rate
        g2 = tensor_map(lambda g: g * g + eps, grads)
        v_row = tensor_map(lambda s, r: None if r is None else beta * r + (1 - beta) * s.mean(axis=-1), g2, state.v_row)
        v_col = tensor_map(lambda s, c: None if c is None else beta * c + (1 - beta) * s.mean(axis=-2), g2, state.v_col)
        v = tensor_map(lambda s, v: None if v is None else beta * v + (1 - beta) * s, g2, state.v)
        return tensor_map(scaled, grads, v_row, v_col, v), FactoredRmsState(_count(t), v_row, v_col, v)
    return GradientTransformation(init, update)


@_combinator
def scale_by_param_block_rms(min_scale=1e-3) -> GradientTransformation:
    """Scale each leaf's update by ``max(min_scale, rms(p))``: Adafactor's relative step size.

    >>> t = scale_by_param_block_rms()
    >>> t.update({"w": np.ones(2)}, EmptyState(), {"w": np.array([3.0, -3.0])})[0]
    {'w': array([3., 3.])}
    """
    min_scale = _hyper("scale_by_param_block_rms", "min_scale", min_scale, 0)

    def update(grads, state, params=None):
        _need_params("scale_by_param_block_rms", params)
        _check_like("scale_by_param_block_rms", params, grads)
        return tensor_map(lambda u, p: max(min_scale, _rms(p)) * u, grads, params), state
    return GradientTransformation(lambda params: EmptyState(), update)


# ---- momentum, weight decay, noise ---------------------------------------------------------------
@_combinator
def trace(decay=0.9, nesterov: bool = False) -> GradientTransformation:
    """Momentum: ``t = decay t + g``; the update is ``t`` (heavy ball) or ``g + decay t`` (Nesterov).

    With ``scale(-lr)`` after it this is PyTorch's ``SGD(momentum=decay, nesterov=...)``.

    >>> t = trace(decay=0.5)
    >>> state = t.init({"w": np.zeros(1)})
    >>> u, state = t.update({"w": np.ones(1)}, state)
    >>> u, state = t.update({"w": np.ones(1)}, state)
    >>> u["w"]
    array([1.5])
    """
    decay = _hyper("trace", "decay", decay, 0)

    def update(grads, state, params=None):
        _check_like("trace", state.trace, grads)
        new_trace = tensor_map(lambda g, t: decay * t + g, grads, state.trace)
        updates = tensor_map(lambda g, t: g + decay * t, grads, new_trace) if nesterov else new_trace
        return updates, TraceState(new_trace)
    return GradientTransformation(lambda params: TraceState(_zeros(params)), update)


@_combinator
def add_decayed_weights(weight_decay=0.0, mask=None) -> GradientTransformation:
    """Add ``weight_decay * p`` to the updates (decoupled weight decay, as in AdamW when placed before the lr).

    ``weight_decay`` is a number or a schedule ``count -> float``; ``mask`` (a tree of bools like params, a
    prefix of it, or a function ``params -> mask``) limits the decay to the leaves marked True.

    >>> t = add_decayed_weights(0.1)
    >>> t.update({"w": np.zeros(2)}, t.init(None), {"w": np.array([1.0, -2.0])})[0]
    {'w': array([ 0.1, -0.2])}
    """
    weight_decay = _schedule_or_float("add_decayed_weights", "weight_decay", weight_decay)
    scheduled = callable(weight_decay)

    def init(params):
        return ScaleByScheduleState(_count()) if scheduled else EmptyState()

    def update(grads, state, params=None):
        _need_params("add_decayed_weights", params)
        _check_like("add_decayed_weights", params, grads)
        wd = float(weight_decay(int(state.count))) if scheduled else weight_decay
        new_state = ScaleByScheduleState(_count(state.count + 1)) if scheduled else state
        return tensor_map(lambda g, p: g + wd * p, grads, params), new_state
    t = GradientTransformation(init, update)
    return t if mask is None else masked(t, mask)


@_combinator
def add_noise(eta=0.01, gamma=0.55, seed=0) -> GradientTransformation:
    """Add Gaussian noise of variance ``eta / (1 + count)^gamma`` (Neelakantan et al., 2015).

    The noise of step ``count`` is drawn from ``axon.random.rng(seed, "add_noise", count)`` (leaves in tree
    order), so a resumed run adds the same noise as an uninterrupted one.

    >>> t = add_noise(eta=0.01, seed=0)
    >>> u, state = t.update({"w": np.zeros(3, np.float32)}, t.init(None))
    >>> u["w"].dtype, bool((u["w"] != 0).all()), state.count
    (dtype('float32'), True, array(1))
    """
    eta = _hyper("add_noise", "eta", eta, 0)
    gamma = _hyper("add_noise", "gamma", gamma, 0)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"add_noise: seed must be an int, got {type(seed).__name__}")

    def update(grads, state, params=None):
        count = int(state.count)
        std = math.sqrt(eta / (1 + count) ** gamma)
        gen = rng(seed, "add_noise", count)                        # one stream per step; leaves in tree order
        def noisy_leaf(g):                                         # noise drawn on the host, then moved to g's device
            noise = gen.standard_normal(g.shape).astype(g.dtype, copy=False)
            return g + std * Tensor._wrap(backend_of(g.data).from_host(noise))
        noisy = tensor_map(noisy_leaf, grads)
        return noisy, AddNoiseState(_count(count + 1))
    return GradientTransformation(lambda params: AddNoiseState(_count()), update)


# ---- clipping and centralisation -------------------------------------------------------------------
@_combinator
def clip(max_delta) -> GradientTransformation:
    """Clip every element of the updates to ``[-max_delta, max_delta]``.

    >>> clip(1.0).update({"w": np.array([-3.0, 0.5, 2.0])}, EmptyState())[0]
    {'w': array([-1. ,  0.5,  1. ])}
    """
    max_delta = _hyper("clip", "max_delta", max_delta, 0)
    return stateless(lambda updates, params: tensor_map(lambda g: ops.clip(g, -max_delta, max_delta), updates))


@_combinator
def clip_by_global_norm(max_norm) -> GradientTransformation:
    """Rescale all updates together so their global norm is at most ``max_norm`` (Pascanu et al., 2013).

    ``u = g * min(1, max_norm / ||g||)`` with ``||g||`` the norm over every element of every leaf.

    >>> clip_by_global_norm(1.0).update({"a": np.array([3.0]), "b": np.array([4.0])}, EmptyState())[0]
    {'a': array([0.6]), 'b': array([0.8])}
    """
    max_norm = _hyper("clip_by_global_norm", "max_norm", max_norm, 0)

    def clip_fn(updates, params):
        norm = global_norm(updates)
        if norm <= max_norm:
            return updates
        factor = max_norm / norm
        return tensor_map(lambda g: factor * g, updates)
    return stateless(clip_fn)


@_combinator
def clip_by_block_rms(threshold=1.0) -> GradientTransformation:
    """Divide each leaf's update by ``max(1, rms(u) / threshold)`` (Adafactor's update clipping).

    >>> clip_by_block_rms(1.0).update({"w": np.array([3.0, -3.0])}, EmptyState())[0]
    {'w': array([ 1., -1.])}
    """
    threshold = _hyper("clip_by_block_rms", "threshold", threshold, 0)

    def clip_fn(updates, params):
        return tensor_map(lambda u: u * (1 / max(1.0, _rms(u) / threshold)), updates)
    return stateless(clip_fn)


@_combinator
def centralize() -> GradientTransformation:
    """Gradient centralisation (Yong et al., 2020): remove the mean of each output unit's weight gradient.

    For leaves with two or more axes (a dense kernel (in, out), a conv kernel (kh, kw, in, out)) subtract
    the mean over every axis but the last; vectors (biases) pass unchanged.

    >>> centralize().update({"k": np.array([[1.0, 2.0], [3.0, 6.0]]), "b": np.ones(2)}, EmptyState())[0]["k"]
    array([[-1., -2.],
           [ 1.,  2.]])
    """
    def center(g):
        if g.ndim < 2:
            return g
        return g - g.mean(axis=tuple(range(g.ndim - 1)), keepdims=True)   # (..., out) minus (1, ..., 1, out)
    return stateless(lambda updates, params: tensor_map(center, updates))


# ---- wrappers --------------------------------------------------------------------------------------
def masked(inner: GradientTransformation, mask) -> GradientTransformation:
    """Apply ``inner`` to the leaves where ``mask`` is True; the others pass through unchanged.

    ``mask`` is a tree of bools with params' structure (or a prefix of it: ``{"dense_0": True}`` covers the
    whole layer), or a function ``params -> mask``. ``inner`` sees trees where the other leaves are None
    (empty subtrees), so its state holds nothing for them.

    >>> t = masked(scale(10.0), {"kernel": True, "bias": False})
    >>> t.update({"kernel": np.ones(1), "bias": np.ones(1)}, t.init({"kernel": np.ones(1), "bias": np.ones(1)}))[0]
    {'kernel': array([10.]), 'bias': array([1.])}
    """
    if not isinstance(inner, GradientTransformation):
        raise TypeError(f"masked: inner must be a GradientTransformation, got {type(inner).__name__}")

    def mask_for(tree):
        m = mask(tree) if callable(mask) else mask
        try:
            tree_map(lambda keep, x: None, m, tree)                # checks that m is a prefix of tree
        except ValueError as e:
            raise ValueError(f"masked: the mask does not match the params: {e}") from None
        return m

    def keep_masked(m, tree):
        return tree_map(lambda keep, x: x if keep else None, m, tree)

    def init(params):
        return MaskedState(inner.init(keep_masked(mask_for(params), params)))

    def update(grads, state, params=None):
        m = mask_for(params if params is not None else grads)
        inner_params = None if params is None else keep_masked(m, params)
        new, inner_state = inner.update(keep_masked(m, grads), state.inner_state, inner_params)
        merged = tree_map(lambda keep, u, g: u if keep else g, m, new, grads)
        return merged, MaskedState(inner_state)
    return GradientTransformation(init, update)


def apply_if_finite(inner: GradientTransformation, max_consecutive_errors: int = 5) -> GradientTransformation:
    """Skip steps whose gradients hold NaN or inf: zero updates and ``inner``'s state kept as it was.

    After more than ``max_consecutive_errors`` bad steps in a row the update is applied anyway (so a run
    that has really diverged does not skip silently forever). The state counts skipped steps.

    >>> t = apply_if_finite(scale(-1.0))
    >>> u, state = t.update({"w": np.array([np.nan, 1.0])}, t.init({"w": np.zeros(2)}))
    >>> u["w"], state.total_notfinite
    (array([0., 0.]), array(1))
    """
    if not isinstance(inner, GradientTransformation):
        raise TypeError(f"apply_if_finite: inner must be a GradientTransformation, got {type(inner).__name__}")
    max_errors = int(_hyper("apply_if_finite", "max_consecutive_errors", max_consecutive_errors, 0))

    def init(params):
        return ApplyIfFiniteState(_count(), np.asarray(True), _count(), inner.init(params))

    def update(grads, state, params=None):
        # g * 0 is 0 for every finite element and NaN for inf and NaN: one reduction per leaf tells
        finite = all(math.isfinite(float(ops.sum(_tensor(g) * 0))) for g in tree_leaves(grads))
        notfinite_count = 0 if finite else int(state.notfinite_count) + 1
        total = int(state.total_notfinite) + (not finite)
        if finite or notfinite_count > max_errors:
            updates, inner_state = inner.update(grads, state.inner_state, params)
        else:
            updates, inner_state = _zeros(grads), state.inner_state
        return updates, ApplyIfFiniteState(_count(notfinite_count), np.asarray(finite), _count(total), inner_state)
    return GradientTransformation(init, update)


def accumulate_gradients(inner: GradientTransformation, every_k: int) -> GradientTransformation:
    """Average the gradients of ``every_k`` calls and let ``inner`` update once with that mean.

    The other calls return zero updates, so ``apply_updates`` leaves the params alone: a batch of
    ``every_k * batch_size`` examples with the memory of one batch. ``state.mini_step == 0`` after an update.

    >>> t = accumulate_gradients(scale(-1.0), every_k=2)
    >>> state = t.init({"w": np.zeros(1)})
    >>> u, state = t.update({"w": np.array([1.0])}, state)
    >>> u["w"], int(state.mini_step)
    (array([0.]), 1)
    >>> u, state = t.update({"w": np.array([3.0])}, state)
    >>> u["w"], int(state.mini_step)
    (array([-2.]), 0)
    """
    if not isinstance(inner, GradientTransformation):
        raise TypeError(f"accumulate_gradients: inner must be a GradientTransformation, got {type(inner).__name__}")
    if isinstance(every_k, bool) or not isinstance(every_k, numbers.Integral) or every_k < 1:
        raise ValueError(f"accumulate_gradients: every_k must be an integer >= 1, got {every_k!r}")
    k = int(every_k)

    def init(params):
        return AccumulateGradientsState(_count(), _zeros(params), inner.init(params))

    def update(grads, state, params=None):
        _check_like("accumulate_gradients", state.acc_grads, grads)
        acc = tensor_map(lambda g, a: a + g, grads, state.acc_grads)
        mini_step = int(state.mini_step) + 1
        if mini_step < k:
            return _zeros(grads), AccumulateGradientsState(_count(mini_step), acc, state.inner_state)
        mean = tensor_map(lambda a: (1 / k) * a, acc)
        updates, inner_state = inner.update(mean, state.inner_state, params)
        return updates, AccumulateGradientsState(_count(), _zeros(acc), inner_state)
    return GradientTransformation(init, update)


@_combinator
def ema_params(decay=0.999) -> GradientTransformation:
    """Keep an exponential moving average of the params (Polyak averaging); the updates pass unchanged.

    Put it last in a chain, after the learning rate: it averages ``params + updates``, the params the step
    produces: ``ema = decay ema + (1 - decay) (p + u)``, starting from the initial params. Read the average
    with ``find_state(state, EmaParamsState).ema``.

    >>> opt = chain(scale(-1.0), ema_params(0.5))
    >>> params = {"w": np.array([4.0])}
    >>> state = opt.init(params)
    >>> updates, state = opt.update({"w": np.array([2.0])}, state, params)
    >>> apply_updates(params, updates)["w"], find_state(state, EmaParamsState).ema["w"]
    (array([2.]), array([3.]))
    """
    decay = _hyper("ema_params", "decay", decay, 0, 1)

    def init(params):
        return EmaParamsState(_count(), tree_map(lambda p: backend_of(p).copy(p), params))

    def update(grads, state, params=None):
        _need_params("ema_params", params)
        _check_like("ema_params", params, grads)
        ema = tensor_map(lambda e, p, u: decay * e + (1 - decay) * (p + u), state.ema, params, grads)
        return grads, EmaParamsState(_count(state.count + 1), ema)
    return GradientTransformation(init, update)


# ---- more of Optax's transformations -----------------------------------------------------------------
class ScaleByAmsgradState(NamedTuple):
    """AMSGrad's moments and the running maximum of the bias-corrected second moment.

    >>> scale_by_amsgrad().init({"w": np.zeros(2)}).nu_max["w"]
    array([0., 0.])
    """
    count: np.ndarray
    mu: Any
    nu: Any
    nu_max: Any


class ScaleByNovogradState(NamedTuple):
    """NovoGrad's first moment (like params) and its per-layer second moment (one 0-d array per leaf).

    >>> scale_by_novograd().init({"w": np.zeros(2)}).nu["w"]
    array(0.)
    """
    count: np.ndarray
    mu: Any
    nu: Any                                                        # () per leaf: an EMA of ||g||^2


class ScaleByOptimisticGradientState(NamedTuple):
    """The previous gradient, and whether there was one yet.

    >>> scale_by_optimistic_gradient().init({"w": np.zeros(1)}).is_initial_step
    array(True)
    """
    is_initial_step: np.ndarray                                    # () bool
    previous_gradient: Any


class EmaState(NamedTuple):
    """The step count and the exponential moving average that ``ema`` keeps of the updates.

    >>> ema(0.9).init({"w": np.zeros(1)})
    EmaState(count=array(0), ema={'w': array([0.])})
    """
    count: np.ndarray
    ema: Any


@_combinator
def scale_by_amsgrad(b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0) -> GradientTransformation:
    """AMSGrad's direction (Reddi et al., 2018): Adam dividing by the largest second moment seen so far.

    ``m, v`` as in Adam, ``v_max = max(v_max, v_hat)``, ``u = m_hat / (sqrt(v_max + eps_root) + eps)``
    (Optax's form: the maximum of the bias-corrected ``v_hat``).

    >>> t = scale_by_amsgrad()
    >>> u, state = t.update({"w": np.array([2.0])}, t.init({"w": np.zeros(1)}))
    >>> u["w"].round(6), state.nu_max["w"]                     # the first step is Adam's: sign(g)
    (array([1.]), array([4.]))
    """
    b1, b2 = _hyper("scale_by_amsgrad", "b1", b1, 0, 1), _hyper("scale_by_amsgrad", "b2", b2, 0, 1)
    eps, eps_root = _hyper("scale_by_amsgrad", "eps", eps, 0), _hyper("scale_by_amsgrad", "eps_root", eps_root, 0)

    def init(params):
        return ScaleByAmsgradState(_count(), _zeros(params), _zeros(params), _zeros(params))

    def update(grads, state, params=None):
        _check_like("scale_by_amsgrad", state.mu, grads)
        t = int(state.count) + 1
        mu, nu = _first_moment(grads, state.mu, b1), _second_moment(grads, state.nu, b2)
        c1, c2 = 1 / (1 - b1 ** t), 1 / (1 - b2 ** t)
        nu_max = tensor_map(lambda v, v_max: ops.maximum(v_max, c2 * v), nu, state.nu_max)
        updates = tensor_map(lambda m, v_max: (c1 * m) / (ops.sqrt(v_max + eps_root) + eps), mu, nu_max)
        return updates, ScaleByAmsgradState(_count(t), mu, nu, nu_max)
    return GradientTransformation(init, update)


@_combinator
def scale_by_adamax(b1=0.9, b2=0.999, eps=1e-8) -> GradientTransformation:
    """AdaMax's direction (Kingma and Ba, 2015, section 7): Adam with the infinity norm.

    ``m = b1 m + (1 - b1) g``, ``u_inf = max(b2 u_inf, |g| + eps)``, ``u = m_hat / u_inf`` (no bias to
    correct in ``u_inf``); PyTorch's ``Adamax`` and Optax's ``scale_by_adamax``.

    >>> t = scale_by_adamax()
    >>> t.update({"w": np.array([-3.0])}, t.init({"w": np.zeros(1)}))[0]["w"].round(6)
    array([-1.])
    """
    b1, b2 = _hyper("scale_by_adamax", "b1", b1, 0, 1), _hyper("scale_by_adamax", "b2", b2, 0, 1)
    eps = _hyper("scale_by_adamax", "eps", eps, 0)

    def init(params):
        return ScaleByAdamState(_count(), _zeros(params), _zeros(params))

    def update(grads, state, params=None):
        _check_like("scale_by_adamax", state.mu, grads)
        t = int(state.count) + 1
        mu = _first_moment(grads, state.mu, b1)
        nu = tensor_map(lambda g, u: ops.maximum(b2 * u, ops.abs(g) + eps), grads, state.nu)
        c1 = 1 / (1 - b1 ** t)
        return tensor_map(lambda m, u: (c1 * m) / u, mu, nu), ScaleByAdamState(_count(t), mu, nu)
    return GradientTransformation(init, update)


@_combinator
def scale_by_novograd(b1=0.9, b2=0.25, eps=1e-6, eps_root=0.0, weight_decay=0.0) -> GradientTransformation:
    """NovoGrad's direction (Ginsburg et al., 2019): a second moment per layer, not per element.

    Per leaf, ``n = ||g||^2`` at the first step, then ``n = b2 n + (1 - b2) ||g||^2``;
    ``m = b1 m + (g / (sqrt(n + eps_root) + eps) + wd p)`` (``m`` starts at that bracket); ``u = m``.
    Needs ``params`` when ``weight_decay`` is set.

    >>> t = scale_by_novograd()
    >>> t.update({"w": np.array([3.0, 4.0])}, t.init({"w": np.zeros(2)}), {"w": np.zeros(2)})[0]["w"].round(4)
    array([0.6, 0.8])
    """
    b1, b2 = _hyper("scale_by_novograd", "b1", b1, 0, 1), _hyper("scale_by_novograd", "b2", b2, 0, 1)
    eps, eps_root = _hyper("scale_by_novograd", "eps", eps, 0), _hyper("scale_by_novograd", "eps_root", eps_root, 0)
    wd = _hyper("scale_by_novograd", "weight_decay", weight_decay, 0)

    def init(params):                                              # nu: a host scalar per leaf
        return ScaleByNovogradState(_count(), _zeros(params), tree_map(lambda p: np.zeros((), p.dtype), params))

    def update(grads, state, params=None):
        _check_like("scale_by_novograd", state.mu, grads)
        if wd:
            _need_params("scale_by_novograd", params)
        first = int(state.count) == 0
        nu = tree_map(lambda g, n: np.asarray(_sum_of_squares(g) if first else
                                              b2 * float(n) + (1 - b2) * _sum_of_squares(g), dtype=n.dtype),
                      grads, state.nu)

        def step(g, n, p):                                         # g / (sqrt(n + eps_root) + eps) + wd p
            s = g * (1 / (math.sqrt(float(n) + eps_root) + eps))
            return s + wd * p if wd else s
        bracket = tensor_map(step, grads, nu, params if wd else grads)
        mu = bracket if first else tensor_map(lambda m, s: b1 * m + s, state.mu, bracket)
        return mu, ScaleByNovogradState(_count(int(state.count) + 1), mu, nu)
    return GradientTransformation(init, update)


@_combinator
def scale_by_optimistic_gradient(alpha=1.0, beta=1.0) -> GradientTransformation:
    """Optimistic gradient descent's direction (Daskalakis et al., 2018): ``u = (alpha + beta) g - beta g_prev``.

    At the first step ``g_prev = g``, so the step is ``alpha g``. For min-max games, where plain
    gradient descent circles or diverges.

    >>> t = scale_by_optimistic_gradient()
    >>> u, state = t.update({"w": np.array([1.0])}, t.init({"w": np.zeros(1)}))
    >>> u["w"], t.update({"w": np.array([3.0])}, state)[0]["w"]   # 2 * 3 - 1 * 1
    (array([1.]), array([5.]))
    """
    alpha = _hyper("scale_by_optimistic_gradient", "alpha", alpha)
    beta = _hyper("scale_by_optimistic_gradient", "beta", beta)

    def init(params):
        return ScaleByOptimisticGradientState(np.asarray(True), _zeros(params))

    def update(grads, state, params=None):
        _check_like("scale_by_optimistic_gradient", state.previous_gradient, grads)
        first = bool(state.is_initial_step)
        updates = tensor_map(lambda g, g_prev: (alpha + beta) * g - beta * (g if first else g_prev),
                             grads, state.previous_gradient)
        return updates, ScaleByOptimisticGradientState(np.asarray(False), grads)
    return GradientTransformation(init, update)


@_combinator
def scale_by_sign() -> GradientTransformation:
    """``u = sign(g)``: each element's direction only (signSGD, Bernstein et al., 2018).

    >>> scale_by_sign().update({"w": np.array([-0.3, 0.0, 7.0])}, EmptyState())[0]
    {'w': array([-1.,  0.,  1.])}
    """
    return stateless(lambda updates, params: tensor_map(ops.sign, updates))


@_combinator
def ema(decay, debias: bool = True) -> GradientTransformation:
    """An exponential moving average of the updates: ``e = decay e + (1 - decay) g``, ``u = e`` (debiased:
    ``e / (1 - decay^t)``).

    >>> t = ema(0.5, debias=False)
    >>> t.update({"w": np.array([4.0])}, t.init({"w": np.zeros(1)}))[0]["w"]
    array([2.])
    """
    decay = _hyper("ema", "decay", decay, 0, 1)

    def update(grads, state, params=None):
        _check_like("ema", state.ema, grads)
        t = int(state.count) + 1
        e = tensor_map(lambda g, e: decay * e + (1 - decay) * g, grads, state.ema)
        c = 1 / (1 - decay ** t) if debias and decay < 1 else 1.0
        return (tensor_map(lambda e: c * e, e) if c != 1.0 else e), EmaState(_count(t), e)
    return GradientTransformation(lambda params: EmaState(_count(), _zeros(params)), update)


class ScaleByStateState(NamedTuple):
    """The step size ``scale_by_state`` multiplies by, kept in the state so code outside can change it.

    >>> scale_by_state(-0.1).init({"w": np.zeros(2)})
    ScaleByStateState(scale=array(-0.1))
    """
    scale: np.ndarray                                              # () float64: the current step size


@_combinator
def scale_by_state(step_size) -> GradientTransformation:
    """Multiply the updates by a step size held in the optimizer state: ``u = scale * g`` (Polaris).

    Like ``scale``, but the factor is ``state.scale``, so a callback (or any code holding the state)
    can tune it during training: ``find_state(opt_state, ScaleByStateState)._replace(scale=...)``.

    >>> t = scale_by_state(-0.5)
    >>> state = t.init({"w": np.zeros(1)})
    >>> t.update({"w": np.array([2.0])}, state)[0]
    {'w': array([-1.])}
    >>> t.update({"w": np.array([2.0])}, state._replace(scale=np.asarray(-0.25)))[0]    # lowered from outside
    {'w': array([-0.5])}
    """
    step_size = _hyper("scale_by_state", "step_size", step_size)

    def update(grads, state, params=None):
        factor = float(state.scale)                                # a Python float: float32 updates stay float32
        return tensor_map(lambda g: factor * g, grads), state
    return GradientTransformation(lambda params: ScaleByStateState(np.asarray(step_size, dtype=np.float64)), update)


class ScaleByRpropState(NamedTuple):
    """Rprop's step size per element and the previous (masked) gradient.

    >>> scale_by_rprop(0.1).init({"w": np.zeros(2)}).step_sizes["w"]
    array([0.1, 0.1])
    """
    step_sizes: Any
    previous_gradient: Any


@_combinator
def scale_by_rprop(learning_rate, eta_minus=0.5, eta_plus=1.2, min_step_size=1e-6, max_step_size=50.0
                   ) -> GradientTransformation:
    """Rprop's direction (Riedmiller and Braun, 1993): the sign of g times a step size of its own per element.

    Where g keeps its sign the step grows by ``eta_plus`` (up to ``max_step_size``), where it flips the
    step shrinks by ``eta_minus`` (down to ``min_step_size``) and that element rests for one step.
    ``u = sign(g) step`` (Optax's ``scale_by_rprop``; negate for descent).

    >>> t = scale_by_rprop(0.1)
    >>> u, state = t.update({"w": np.array([2.0, -1.0])}, t.init({"w": np.zeros(2)}))
    >>> u["w"], t.update({"w": np.array([3.0, 1.0])}, state)[0]["w"]   # kept sign: 0.12; flipped: rests
    (array([ 0.1, -0.1]), array([0.12, 0.  ]))
    """
    fn = "scale_by_rprop"
    lr = _hyper(fn, "learning_rate", learning_rate, 0)
    eta_minus, eta_plus = _hyper(fn, "eta_minus", eta_minus, 0, 1), _hyper(fn, "eta_plus", eta_plus, 1)
    lo, hi = _hyper(fn, "min_step_size", min_step_size, 0), _hyper(fn, "max_step_size", max_step_size, 0)

    def init(params):
        return ScaleByRpropState(tree_map(lambda p: _full_like(p, lr), params), _zeros(params))

    def step(*arrays):                                             # one leaf: (g, g_prev, step size)
        g, prev, size = (_tensor(a) for a in arrays)
        agree = ops.sign(g * prev)                                 # +1 kept, -1 flipped, 0 either is 0
        size = ops.where(agree > 0, ops.minimum(size * eta_plus, hi),
                         ops.where(agree < 0, ops.maximum(size * eta_minus, lo), size))
        g = ops.where(agree < 0, 0.0 * g, g)                       # a flipped element rests this step
        return (ops.sign(g) * size).data, g.data, size.data

    def update(grads, state, params=None):
        _check_like(fn, state.step_sizes, grads)
        updates, previous, sizes = tree_map_multi(step, 3, grads, state.previous_gradient, state.step_sizes)
        return updates, ScaleByRpropState(sizes, previous)
    return GradientTransformation(init, update)


class ScaleByAdanState(NamedTuple):
    """Adan's moments of g, of the gradient difference and of the corrected square, the previous g, the count.

    >>> scale_by_adan().init({"w": np.zeros(1)}).count
    array(0)
    """
    m: Any
    v: Any
    n: Any
    g: Any
    count: np.ndarray


@_combinator
def scale_by_adan(b1=0.98, b2=0.92, b3=0.99, eps=1e-8, eps_root=0.0) -> GradientTransformation:
    """Adan's direction (Xie et al., 2022), as Optax's ``scale_by_adan``.

    With ``d = g - g_prev`` (0 at the first step): ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) d``,
    ``n = b3 n + (1 - b3) (g + (1 - b2) d)^2``, and with bias-corrected moments
    ``u = (m_hat + (1 - b2) v_hat) / (sqrt(n_hat + eps_root) + eps)``.

    >>> t = scale_by_adan()
    >>> t.update({"w": np.array([2.0])}, t.init({"w": np.zeros(1)}))[0]["w"].round(6)   # the first step: g / |g|
    array([1.])
    """
    fn = "scale_by_adan"
    b1, b2, b3 = (_hyper(fn, name, b, 0, 1) for name, b in (("b1", b1), ("b2", b2), ("b3", b3)))
    eps, eps_root = _hyper(fn, "eps", eps, 0), _hyper(fn, "eps_root", eps_root, 0)

    def init(params):
        return ScaleByAdanState(_zeros(params), _zeros(params), _zeros(params), _zeros(params), _count())

    def update(grads, state, params=None):
        _check_like(fn, state.m, grads)
        first = int(state.count) == 0
        t = int(state.count) + 1
        d = tensor_map(lambda g, g_prev: 0.0 * g if first else g - g_prev, grads, state.g)
        m = tensor_map(lambda g, m: b1 * m + (1 - b1) * g, grads, state.m)
        v = tensor_map(lambda d, v: b2 * v + (1 - b2) * d, d, state.v)
        n = tensor_map(lambda g, d, n: b3 * n + (1 - b3) * ((g + (1 - b2) * d) * (g + (1 - b2) * d)), grads, d, state.n)
        c1, c2, c3 = 1 / (1 - b1 ** t), 1 / (1 - b2 ** t), 1 / (1 - b3 ** t)
        updates = tensor_map(lambda m, v, n: (c1 * m + ((1 - b2) * c2) * v) / (ops.sqrt(c3 * n + eps_root) + eps),
                             m, v, n)
        return updates, ScaleByAdanState(m, v, n, grads, _count(t))
    return GradientTransformation(init, update)


def scale_by_polyak(max_learning_rate=1.0, scaling=1.0, f_min=0.0, eps=0.0) -> GradientTransformation:
    """The Polyak step size: ``u = min(max_lr, scaling (f - f_min) / (||g||^2 + eps)) g`` (Optax's ``scale_by_polyak``).

    It needs the loss ``f`` at the params: ``update(grads, state, params, value=f)``. The step lands on
    the minimum of a function whose least value ``f_min`` is known (0 for interpolating models).

    >>> t = scale_by_polyak()
    >>> t.update({"w": np.array([2.0])}, t.init(None), value=1.0)[0]["w"]     # f = w^2 at w = 1: 1 / 4 * 2
    array([0.5])
    """
    fn = "scale_by_polyak"
    max_lr, scaling = _hyper(fn, "max_learning_rate", max_learning_rate, 0), _hyper(fn, "scaling", scaling)
    f_min, eps = _hyper(fn, "f_min", f_min), _hyper(fn, "eps", eps, 0)

    def update(grads, state, params=None, value=None):
        if value is None:
            raise ValueError(f"{fn}: update needs the loss at the params: update(grads, state, params, value=loss)")
        step = min(max_lr, scaling * (float(value) - f_min) / (global_norm(grads) ** 2 + eps)) \
            if global_norm(grads) ** 2 + eps > 0 else 0.0
        return tensor_map(lambda g: step * g, grads), state
    return GradientTransformation(lambda params: EmptyState(), update)


class ScaleBySM3State(NamedTuple):
    """SM3's accumulators, one vector per axis of each leaf (``mu[i]``: the i-th leaf's list, in
    ``tree_leaves`` order), and the momentum of the scaled g (``nu``, like the params).

    >>> [a.shape for a in scale_by_sm3().init({"w": np.zeros((3, 2))}).mu[0]]
    [(3,), (2,)]
    """
    mu: Any
    nu: Any


@_combinator
def scale_by_sm3(b1=0.9, b2=1.0, eps=1e-8) -> GradientTransformation:
    """SM3's direction (Anil et al., 2019), as Optax's ``scale_by_sm3``: Adagrad with one accumulator per row,
    column, ... of each leaf instead of one per element (memory: the sum of the sizes, not their product).

    Each element's sum of squares is bounded by the smallest of its axes' accumulators:
    ``a = g^2 + min_axes(mu)`` (with ``b2 < 1``: ``(1 - b2) g^2 + b2 min_axes(mu)``), the update is
    ``g / sqrt(a + eps)`` (0 where ``a = 0``) through a momentum ``b1``, and each axis keeps the max of
    ``a`` over the other axes. For a vector, it is Adagrad with momentum.

    >>> t = scale_by_sm3(b1=0.0)
    >>> t.update({"w": np.array([[3.0, 4.0]])}, t.init({"w": np.zeros((1, 2))}))[0]["w"].round(6)   # g / |g|
    array([[1., 1.]])
    """
    fn = "scale_by_sm3"
    b1, b2, eps = _hyper(fn, "b1", b1, 0, 1), _hyper(fn, "b2", b2, 0, 1), _hyper(fn, "eps", eps, 0)
    keep, new = (b2, 1.0 - b2) if b2 != 1.0 else (1.0, 1.0)

    def init(params):
        leaves = tree_leaves(params)
        if any(np.ndim(p) == 0 for p in leaves):
            raise ValueError(f"{fn}: every param needs at least one axis, got a 0-d param")
        mu = [[backend_of(p).full((n,), 0, p.dtype) for n in p.shape] for p in leaves]   # per leaf, per axis
        return ScaleBySM3State(mu, _zeros(params))

    def leaf(g, mu, nu):
        g, nu = _tensor(g), _tensor(nu)
        rank = g.ndim
        bounds = [ops.reshape(_tensor(m), tuple(n if a == i else 1 for a, n in enumerate(g.shape)))
                  for i, m in enumerate(mu)]                        # axis i's vector, broadcastable to g
        low = functools.reduce(ops.minimum, bounds)
        a = new * (g * g) + keep * low                              # (*g.shape)
        scaled = ops.where(a > 0, g / ops.sqrt(a + eps), 0.0 * g)
        nu = b1 * nu + (1 - b1) * scaled
        new_mu = [ops.max(a, axis=tuple(j for j in range(rank) if j != i)).data if rank > 1 else a.data
                  for i in range(rank)]
        return nu.data, new_mu

    def update(grads, state, params=None):
        _check_like(fn, state.nu, grads)
        done = [leaf(g, mu, nu) for g, mu, nu in zip(tree_leaves(grads), state.mu, tree_leaves(state.nu))]
        steps = iter(done)
        updates = tree_map(lambda g: next(steps)[0], grads)       # the leaves back in the grads' tree
        return updates, ScaleBySM3State([d[1] for d in done], updates)
    return GradientTransformation(init, update)
