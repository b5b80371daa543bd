"""axon.schedules: values at known points (start, end, boundaries), against torch's schedulers, bad input."""
import math

import numpy as np
import pytest

from axon.schedules import (as_schedule, constant, cosine_decay, exponential_decay, join_schedules, linear_decay,
                            one_cycle, piecewise_constant, polynomial_decay, warmup_cosine_decay)


def test_constant_and_as_schedule():
    assert constant(0.3)(0) == 0.3 and constant(0.3)(10 ** 9) == 0.3
    assert as_schedule(0.1)(5) == 0.1
    fn = lambda step: 1.0 / (step + 1)
    assert as_schedule(fn) is fn
    with pytest.raises(TypeError, match="lr must be a number or a schedule"):
        as_schedule("0.1")


def test_linear_decay_known_points():
    lr = linear_decay(1.0, 0.1, transition_steps=10, transition_begin=5)
    assert lr(0) == 1.0 and lr(5) == 1.0
    assert math.isclose(lr(10), 0.55)
    assert math.isclose(lr(15), 0.1) and math.isclose(lr(1000), 0.1)


def test_exponential_decay_smooth_staircase_and_bound():
    smooth = exponential_decay(2.0, 0.5, transition_steps=4)
    assert smooth(0) == 2.0 and math.isclose(smooth(4), 1.0) and math.isclose(smooth(2), 2.0 * 0.5 ** 0.5)
    stairs = exponential_decay(2.0, 0.5, transition_steps=4, staircase=True)
    assert [stairs(t) for t in (0, 3, 4, 7, 8)] == [2.0, 2.0, 1.0, 1.0, 0.5]
    bounded = exponential_decay(1.0, 0.1, transition_steps=1, end_value=0.01)
    assert math.isclose(bounded(1), 0.1) and bounded(5) == 0.01
    growing = exponential_decay(1.0, 2.0, transition_steps=1, end_value=5.0)
    assert growing(2) == 4.0 and growing(3) == 5.0
    delayed = exponential_decay(1.0, 0.5, transition_steps=1, transition_begin=3)
    assert delayed(3) == 1.0 and delayed(4) == 0.5


def test_cosine_decay_known_points():
    lr = cosine_decay(2.0, decay_steps=100, alpha=0.1)
    assert lr(0) == 2.0
    assert math.isclose(lr(50), 2.0 * (0.9 * 0.5 + 0.1))
    assert math.isclose(lr(100), 0.2) and math.isclose(lr(10 ** 6), 0.2)


def test_cosine_decay_matches_torch():
    torch = pytest.importorskip("torch")
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=30, eta_min=0.05)
    ours = cosine_decay(0.5, 30, alpha=0.1)
    for step in range(31):
        assert math.isclose(ours(step), opt.param_groups[0]["lr"], rel_tol=1e-9), step
        opt.step()
        sched.step()


def test_polynomial_decay_known_points():
    lr = polynomial_decay(1.0, 0.2, power=2, transition_steps=10, transition_begin=2)
    assert lr(0) == 1.0 and lr(2) == 1.0
    assert math.isclose(lr(7), 0.8 * 0.25 + 0.2)
    assert math.isclose(lr(12), 0.2) and math.isclose(lr(100), 0.2)
    assert math.isclose(polynomial_decay(1.0, 0.0, power=1, transition_steps=4)(1),
                        linear_decay(1.0, 0.0, transition_steps=4)(1))


def test_piecewise_constant_boundaries():
    lr = piecewise_constant([10, 20], [1.0, 0.5, 0.1])
    assert [lr(t) for t in (0, 9, 10, 19, 20, 999)] == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]
    with pytest.raises(ValueError, match="one more value than boundaries"):
        piecewise_constant([10], [1.0])
    with pytest.raises(ValueError, match="increasing"):
        piecewise_constant([20, 10], [1.0, 0.5, 0.1])


def test_warmup_cosine_decay_known_points():
    lr = warmup_cosine_decay(0.1, 1.0, warmup_steps=10, decay_steps=30, end_value=0.2)
    assert lr(0) == 0.1 and math.isclose(lr(5), 0.55) and lr(10) == 1.0
    assert math.isclose(lr(20), 0.6) and math.isclose(lr(30), 0.2) and math.isclose(lr(100), 0.2)
    no_warmup = warmup_cosine_decay(0.0, 1.0, warmup_steps=0, decay_steps=10)
    assert no_warmup(0) == 1.0 and math.isclose(no_warmup(10), 0.0, abs_tol=1e-15)
    with pytest.raises(ValueError, match="must exceed warmup_steps"):
        warmup_cosine_decay(0.0, 1.0, warmup_steps=10, decay_steps=10)


def test_one_cycle_known_points():
    lr = one_cycle(100, 1.0, pct_start=0.3, div_factor=10.0, final_div_factor=100.0)
    assert math.isclose(lr(0), 0.1)
    assert math.isclose(lr(29), 1.0)                                # the peak: pct_start * total - 1
    assert lr(10) < lr(20) < lr(29) and lr(40) > lr(60) > lr(99)
    assert math.isclose(lr(99), 0.001) and math.isclose(lr(500), 0.001)


def test_one_cycle_matches_torch():
    torch = pytest.importorskip("torch")
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.8, total_steps=50, pct_start=0.25, div_factor=20.0,
                                                final_div_factor=50.0, anneal_strategy="cos", cycle_momentum=False)
    ours = one_cycle(50, 0.8, pct_start=0.25, div_factor=20.0, final_div_factor=50.0)
    for step in range(50):
        assert math.isclose(ours(step), opt.param_groups[0]["lr"], rel_tol=1e-9), step
        opt.step()
        if step < 49:
            sched.step()


def test_join_schedules_restarts_the_step_count():
    lr = join_schedules([constant(0.1), linear_decay(1.0, 0.0, transition_steps=10), constant(0.0)], [5, 15])
    assert lr(0) == 0.1 and lr(4) == 0.1
    assert lr(5) == 1.0 and math.isclose(lr(10), 0.5)
    assert lr(15) == 0.0 and lr(100) == 0.0
    with pytest.raises(ValueError, match="one more schedule"):
        join_schedules([constant(1.0)], [5])
    with pytest.raises(TypeError, match="callable"):
        join_schedules([constant(1.0), 0.5], [5])


@pytest.mark.parametrize("make", [lambda: constant(0.5), lambda: linear_decay(1.0, 0.0, 10),
                                  lambda: exponential_decay(1.0, 0.9, 3, staircase=True), lambda: cosine_decay(1.0, 10),
                                  lambda: polynomial_decay(1.0, 0.0, 2, 10), lambda: piecewise_constant([3], [1.0, 0.1]),
                                  lambda: warmup_cosine_decay(0.0, 1.0, 3, 10), lambda: one_cycle(10, 1.0),
                                  lambda: join_schedules([constant(1.0), cosine_decay(1.0, 5)], [3])])
def test_values_are_python_floats_for_int_and_array_steps(make):
    lr = make()
    for step in (0, 4, np.int64(5), np.asarray(7, dtype=np.int64)):
        assert type(lr(step)) is float                             # never a numpy scalar: float32 stays float32


@pytest.mark.parametrize("bad", [lambda: linear_decay(1.0, 0.0, transition_steps=0),
                                 lambda: cosine_decay(1.0, decay_steps=-1), lambda: exponential_decay(1.0, 0.0),
                                 lambda: exponential_decay(1.0, 0.5, transition_steps=2.5),
                                 lambda: one_cycle(10, 1.0, pct_start=1.5), lambda: linear_decay(1.0, "0")])
def test_bad_arguments_raise(bad):
    with pytest.raises((ValueError, TypeError)):
        bad()
