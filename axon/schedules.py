"""Learning-rate schedules: plain functions that return ``step -> value`` callables.

A schedule maps the step count (0 on the first update) to a Python float. Every optimizer's ``lr=``
takes either a number or a schedule; ``as_schedule`` turns either into a schedule.

>>> lr = warmup_cosine_decay(init_value=0.0, peak_value=1e-3, warmup_steps=100, decay_steps=1000)
>>> [round(lr(s), 6) for s in (0, 50, 100, 550, 1000, 5000)]
[0.0, 0.0005, 0.001, 0.0005, 0.0, 0.0]

Values are Python floats, never numpy scalars, so ``update * lr(step)`` keeps float32 updates float32.
Steps past the end of a schedule keep its final value; steps before ``transition_begin`` its first.

An optimizer reads its schedule with ``value_at(schedule, count)``: the primitive ``schedules.value``
calls the schedule on the host when the op runs, so a traced training step (``axon.jit``) takes the
count as an input array and each replay evaluates the schedule at that step, exactly as the eager
step does (any schedule, even one of your own, as long as it is a function of the count alone).
"""
from __future__ import annotations

import bisect
import math
import numbers

import numpy as np

from .autograd import apply, primitive
from .backend import to_host

__all__ = ["value_at", "as_schedule", "constant", "linear_decay", "linear_schedule", "exponential_decay", "cosine_decay",
           "polynomial_decay", "piecewise_constant", "warmup_cosine_decay", "one_cycle", "join_schedules"]


# ---- argument checks ---------------------------------------------------------------------------------
def _number(fn: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a number, got {type(value).__name__}")
    return float(value)


def _steps(fn: str, name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{fn}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _step(step) -> int:
    """The step count as a Python int (it may come as a 0-d numpy array from an optimizer state)."""
    return int(step)


def _value_forward(count, schedule):
    # count: a 0-d int array of any backend -> schedule(count) as a 0-d float64 host array
    return np.asarray(float(schedule(int(to_host(count)))), np.float64)


_VALUE = primitive("schedules.value", _value_forward)      # never differentiated; a host call when it runs


def value_at(schedule, count):
    """``schedule(count)`` as a 0-d float64 Tensor, with ``count`` an array (an op of a traced plan).

    The schedule runs on the host each time the op runs: under ``axon.jit`` at every replay, with
    that call's count, so the value is the eager step's own.

    >>> value_at(cosine_decay(1.0, decay_steps=4), np.asarray(2))
    Tensor(0.5, dtype=float64)
    """
    return apply(_VALUE, count, schedule=schedule)


def as_schedule(lr):
    """A schedule for ``lr``: a callable is returned as it is, a number becomes ``constant(lr)``.

    >>> as_schedule(0.1)(7), as_schedule(lambda step: 1.0 / (step + 1))(3)
    (0.1, 0.25)
    """
    if callable(lr):
        return lr
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(f"lr must be a number or a schedule (a callable step -> value), got {type(lr).__name__}")
    return constant(lr)


# ---- schedules ---------------------------------------------------------------------------------------
def constant(value):
    """The same value at every step.

    >>> constant(0.01)(12345)
    0.01
    """
    value = _number("constant", "value", value)

    def schedule(step):
        return value
    return schedule


def linear_decay(init_value, end_value=0.0, transition_steps=1000, transition_begin=0):
    """Straight line from ``init_value`` to ``end_value`` over ``transition_steps`` steps.

    ``lr(t) = init + (end - init) * clip((t - begin) / transition_steps, 0, 1)``.

    >>> lr = linear_decay(1.0, 0.0, transition_steps=10)
    >>> lr(0), lr(5), lr(10), lr(20)
    (1.0, 0.5, 0.0, 0.0)
    """
    init = _number("linear_decay", "init_value", init_value)
    end = _number("linear_decay", "end_value", end_value)
    steps = _steps("linear_decay", "transition_steps", transition_steps)
    begin = _steps("linear_decay", "transition_begin", transition_begin, minimum=0)

    def schedule(step):
        frac = min(max(_step(step) - begin, 0), steps) / steps
        return init + (end - init) * frac
    return schedule


linear_schedule = linear_decay
"""Optax's name for ``linear_decay``, which reads better for a rising ramp: ``linear_schedule(0.0, 1e-3, 100)``."""


def exponential_decay(init_value, decay_rate, transition_steps=1, transition_begin=0, staircase=False,
                      end_value=None):
    """Multiply by ``decay_rate`` every ``transition_steps`` steps.

    ``lr(t) = init * decay_rate ** ((t - begin) / transition_steps)``; with ``staircase`` the exponent is
    floored, so the value drops in steps. ``end_value`` bounds it (from below when decaying, from above
    when growing).

    >>> lr = exponential_decay(1.0, 0.5, transition_steps=10, staircase=True)
    >>> lr(0), lr(9), lr(10), lr(25)
    (1.0, 1.0, 0.5, 0.25)
    """
    init = _number("exponential_decay", "init_value", init_value)
    rate = _number("exponential_decay", "decay_rate", decay_rate)
    if rate <= 0:
        raise ValueError(f"exponential_decay: decay_rate must be > 0, got {rate}")
    steps = _steps("exponential_decay", "transition_steps", transition_steps)
    begin = _steps("exponential_decay", "transition_begin", transition_begin, minimum=0)
    end = None if end_value is None else _number("exponential_decay", "end_value", end_value)

    def schedule(step):
        t = max(_step(step) - begin, 0)
        exponent = t // steps if staircase else t / steps
        value = init * rate ** exponent
        if end is not None:
            value = max(value, end) if rate < 1 else min(value, end)
        return value
    return schedule


def cosine_decay(init_value, decay_steps, alpha=0.0):
    """Half a cosine from ``init_value`` down to ``alpha * init_value`` over ``decay_steps`` steps.

    ``lr(t) = init * ((1 - alpha) * (1 + cos(pi * min(t, T) / T)) / 2 + alpha)`` (Loshchilov and Hutter's SGDR
    without restarts; PyTorch's ``CosineAnnealingLR`` with ``eta_min = alpha * init``).

    >>> lr = cosine_decay(1.0, decay_steps=100)
    >>> lr(0), round(lr(50), 12), lr(100), lr(200)
    (1.0, 0.5, 0.0, 0.0)
    """
    init = _number("cosine_decay", "init_value", init_value)
    steps = _steps("cosine_decay", "decay_steps", decay_steps)
    alpha = _number("cosine_decay", "alpha", alpha)

    def schedule(step):
        t = min(max(_step(step), 0), steps)
        cosine = 0.5 * (1 + math.cos(math.pi * t / steps))
        return init * ((1 - alpha) * cosine + alpha)
    return schedule


def polynomial_decay(init_value, end_value=0.0, power=1.0, transition_steps=1000, transition_begin=0):
    """``(init - end) * (1 - frac) ** power + end`` with ``frac = clip((t - begin) / transition_steps, 0, 1)``.

    ``power=1`` is ``linear_decay``; ``power=2`` falls fast at first and flattens at the end.

    >>> lr = polynomial_decay(1.0, 0.0, power=2, transition_steps=10)
    >>> lr(0), lr(5), lr(10)
    (1.0, 0.25, 0.0)
    """
    init = _number("polynomial_decay", "init_value", init_value)
    end = _number("polynomial_decay", "end_value", end_value)
    power = _number("polynomial_decay", "power", power)
    steps = _steps("polynomial_decay", "transition_steps", transition_steps)
    begin = _steps("polynomial_decay", "transition_begin", transition_begin, minimum=0)

    def schedule(step):
        frac = min(max(_step(step) - begin, 0), steps) / steps
        return (init - end) * (1 - frac) ** power + end
    return schedule


def piecewise_constant(boundaries, values):
    """``values[i]`` while ``boundaries[i-1] <= step < boundaries[i]``: ``len(values) == len(boundaries) + 1``.

    >>> lr = piecewise_constant([100, 200], [1.0, 0.1, 0.01])
    >>> lr(0), lr(99), lr(100), lr(199), lr(200), lr(10**6)
    (1.0, 1.0, 0.1, 0.1, 0.01, 0.01)
    """
    boundaries = [_steps("piecewise_constant", "boundaries", b, minimum=0) for b in boundaries]
    values = [_number("piecewise_constant", "values", v) for v in values]
    if len(values) != len(boundaries) + 1:
        raise ValueError(f"piecewise_constant: needs one more value than boundaries, got {len(boundaries)} "
                         f"boundaries and {len(values)} values")
    if boundaries != sorted(boundaries):
        raise ValueError(f"piecewise_constant: boundaries must be increasing, got {boundaries}")

    def schedule(step):
        return values[bisect.bisect_right(boundaries, _step(step))]
    return schedule


def warmup_cosine_decay(init_value, peak_value, warmup_steps, decay_steps, end_value=0.0):
    """Linear warm-up from ``init_value`` to ``peak_value``, then a cosine down to ``end_value``.

    ``decay_steps`` counts the whole schedule, warm-up included (as in Optax): the cosine runs from step
    ``warmup_steps`` to step ``decay_steps``.

    >>> lr = warmup_cosine_decay(0.0, 1.0, warmup_steps=10, decay_steps=110)
    >>> lr(0), lr(5), lr(10), round(lr(60), 12), lr(110)
    (0.0, 0.5, 1.0, 0.5, 0.0)
    """
    init = _number("warmup_cosine_decay", "init_value", init_value)
    peak = _number("warmup_cosine_decay", "peak_value", peak_value)
    end = _number("warmup_cosine_decay", "end_value", end_value)
    warmup = _steps("warmup_cosine_decay", "warmup_steps", warmup_steps, minimum=0)
    total = _steps("warmup_cosine_decay", "decay_steps", decay_steps)
    if total <= warmup:
        raise ValueError(f"warmup_cosine_decay: decay_steps ({total}) must exceed warmup_steps ({warmup}); "
                         f"it counts the whole schedule, warm-up included")
    cosine_steps = total - warmup

    def schedule(step):
        t = _step(step)
        if t < warmup:                                             # linear warm-up
            return init + (peak - init) * t / warmup
        frac = min(t - warmup, cosine_steps) / cosine_steps
        return end + (peak - end) * 0.5 * (1 + math.cos(math.pi * frac))
    return schedule


def one_cycle(total_steps, max_value, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
    """Smith's one-cycle policy, as PyTorch's ``OneCycleLR`` (cosine annealing, two phases).

    Starts at ``max_value / div_factor``, rises along a half cosine to ``max_value`` at step
    ``pct_start * total_steps - 1``, then falls along a half cosine to
    ``max_value / (div_factor * final_div_factor)`` at step ``total_steps - 1``, and stays there.

    >>> lr = one_cycle(100, 1.0, pct_start=0.3, div_factor=10.0, final_div_factor=100.0)
    >>> [round(lr(s), 12) for s in (0, 29, 99, 500)]
    [0.1, 1.0, 0.001, 0.001]
    """
    total = _steps("one_cycle", "total_steps", total_steps, minimum=2)
    peak = _number("one_cycle", "max_value", max_value)
    pct = _number("one_cycle", "pct_start", pct_start)
    if not 0 < pct < 1:
        raise ValueError(f"one_cycle: pct_start must be in (0, 1), got {pct}")
    start = peak / _number("one_cycle", "div_factor", div_factor)
    low = start / _number("one_cycle", "final_div_factor", final_div_factor)
    up_end, down_end = pct * total - 1, total - 1                  # the steps where each phase ends
    if not 0 < up_end < down_end:
        raise ValueError(f"one_cycle: pct_start * total_steps = {pct * total} leaves no room for both phases")

    def anneal(a, b, frac):                                        # half a cosine from a (frac 0) to b (frac 1)
        return b + (a - b) / 2 * (math.cos(math.pi * min(max(frac, 0.0), 1.0)) + 1)

    def schedule(step):
        t = _step(step)
        if t <= up_end:
            return anneal(start, peak, t / up_end)
        return anneal(peak, low, (t - up_end) / (down_end - up_end))
    return schedule


def join_schedules(schedules, boundaries):
    """Run ``schedules[i]`` from step ``boundaries[i-1]``, each seeing steps counted from its own start.

    >>> lr = join_schedules([constant(1.0), linear_decay(1.0, 0.0, transition_steps=10)], [5])
    >>> lr(4), lr(5), lr(10), lr(15)
    (1.0, 1.0, 0.5, 0.0)
    """
    schedules = list(schedules)
    boundaries = [_steps("join_schedules", "boundaries", b, minimum=0) for b in boundaries]
    if len(schedules) != len(boundaries) + 1:
        raise ValueError(f"join_schedules: needs one more schedule than boundaries, got {len(schedules)} "
                         f"schedules and {len(boundaries)} boundaries")
    if boundaries != sorted(boundaries):
        raise ValueError(f"join_schedules: boundaries must be increasing, got {boundaries}")
    for s in schedules:
        if not callable(s):
            raise TypeError(f"join_schedules: every schedule must be callable, got {type(s).__name__}")
    starts = [0] + boundaries

    def schedule(step):
        t = _step(step)
        i = bisect.bisect_right(boundaries, t)
        return float(schedules[i](t - starts[i]))
    return schedule
