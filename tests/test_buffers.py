"""axon.buffers: a plan's outputs in buffers reused by liveness, never an array the caller holds, bit for bit.

Fusion is off here (test_jit's fixture), so the plans replay the eager ops; tests/test_fusion.py checks
the fused plans.
"""
import threading

import numpy as np
import pytest

import axon
from axon import buffers
from axon.autograd import ops
from axon.tracing import jit
from test_jit import _models, same, unfused  # noqa: F401  (unfused: an autouse fixture)


def _plan(f):
    return next(iter(f.plans.values()))


def test_a_buffer_is_reused_only_after_its_last_reader_never_by_the_op_reading_it():
    w = np.random.default_rng(0).standard_normal((128, 128)).astype(np.float32) * 0.1
    mm = axon.kernels.matmul                                        # (the dense layer's product)
    f = jit(lambda x: ops.tanh(mm(ops.tanh(mm(x, w)), w)).sum())   # matmul, tanh, matmul (reads tanh's), tanh
    x = np.random.default_rng(1).standard_normal((128, 128)).astype(np.float32)
    assert same(f(x), ops.tanh(mm(ops.tanh(mm(x, w)), w)).sum().numpy())
    b = _plan(f).buffer_of
    assert sorted(b) == [0, 1, 2, 3] and b[1] != b[0] and b[2] != b[1] and b[3] != b[2]
    assert b[2] == b[0] and len(_plan(f).buffers) == 2              # the first product's buffer, free again
    assert same(f(x + 1), ops.tanh(mm(ops.tanh(mm(x + 1, w)), w)).sum().numpy())


def test_results_and_their_views_are_never_planned_so_earlier_results_stay_intact():
    f = jit(lambda x: ((ops.exp(x) * 2.0).reshape(-1), ops.exp(x).sum()))
    x = np.ones((64, 64), np.float32)
    first, _ = f(x)
    second, _ = f(x * 2)
    assert np.array_equal(first, (np.exp(x) * np.float32(2)).reshape(-1))          # not overwritten by call 2
    assert np.array_equal(second, (np.exp(x * 2) * np.float32(2)).reshape(-1))
    plan = _plan(f)
    planned = {plan.ops[i].name for i in plan.buffer_of}
    assert planned == {"exp"} and [op.name for op in plan.ops].count("exp") == 2    # the one summed, only


def test_small_outputs_and_other_forwards_are_left_alone(monkeypatch):
    f = jit(lambda x: (x * 2.0 + 1.0).sum())
    f(np.ones(10, np.float32))
    assert not _plan(f).buffer_of                                   # 40 bytes: below MIN_BYTES
    monkeypatch.setattr(buffers, "MIN_BYTES", 0)
    g = jit(lambda x: (x * 2.0 + 1.0).sum())
    g(np.ones(10, np.float32))
    assert len(_plan(g).buffer_of) == 2


@pytest.mark.parametrize("name", ["mlp", "cnn", "residual", "batch_norm"])
def test_the_compiled_step_with_buffers_is_bit_identical_to_eager(name, monkeypatch):
    monkeypatch.setattr(buffers, "MIN_BYTES", 0)                    # plan every output it can, however small
    rng = np.random.default_rng(2)
    x = rng.standard_normal((24, 8, 8, 1)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 24)]
    runs = []
    for compile in (False, True):
        init, step_fn = axon.training.step(_models()[name], "categorical_cross_entropy", axon.optimizers.adam(1e-2),
                                           compile=compile)
        state, losses = init(seed=4), []
        for lo in (0, 8, 16, 0, 8):
            state, metrics = step_fn(state, x[lo:lo + 8], y[lo:lo + 8])
            losses.append(metrics["loss"])
        runs.append((state, losses))
    assert same(runs[0][0].params, runs[1][0].params) and same(runs[0][0].opt_state, runs[1][0].opt_state)
    assert runs[0][1] == runs[1][1]
    assert _plan(step_fn.compiled).buffer_of                        # something was planned


def test_two_threads_replaying_one_plan_get_their_own_results():
    w = np.random.default_rng(3).standard_normal((96, 96)).astype(np.float32)
    mm = axon.kernels.matmul
    f = jit(lambda x: mm(ops.tanh(mm(x, w)), w).sum(axis=1))
    xs = [np.random.default_rng(10 + i).standard_normal((96, 96)).astype(np.float32) for i in range(2)]
    want = [mm(ops.tanh(mm(x, w)), w).sum(axis=1).numpy() for x in xs]
    f(xs[0])
    errors = []

    def run(i):
        for _ in range(30):
            if not np.array_equal(f(xs[i]), want[i]):
                errors.append(i)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and _plan(f).buffer_of
