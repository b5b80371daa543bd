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


# ---- donated arguments: the optimizer's update in place ------------------------------------------------------
def _mlp_states(donate, optimizer, steps=4):
    import axon
    from axon.tree import tree_leaves
    rng = np.random.default_rng(7)
    x = rng.standard_normal((32, 12)).astype(np.float32)
    y = rng.integers(0, 4, 32)
    net = axon.input((None, 12)).dense(8, activation="relu").dense(4)
    init, step = axon.training.step(net, "sparse_categorical_cross_entropy", optimizer, donate=donate)
    state = init(seed=3)
    passed = []
    for _ in range(steps):
        passed.append(state)
        state, _ = step(state, x, y)
    plan = next(iter(step.compiled.plans.values()))
    return state, passed, [op.name for op in plan.ops], tree_leaves


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_a_donated_step_updates_in_place_with_the_same_bits(weight_decay, monkeypatch):
    import axon
    monkeypatch.setattr(axon.fusion, "ENABLED", True)                   # (the in-place update is of a fused op)
    opt = lambda: axon.optimizers.adamw(1e-2, weight_decay=weight_decay) if weight_decay else axon.optimizers.adam(1e-2)  # noqa: E731
    kept, _, names, leaves = _mlp_states(False, opt())
    given, passed, donated_names, _ = _mlp_states(True, opt())
    assert "adam_apply_in_place" not in names
    assert donated_names.count("adam_apply_in_place") == 4                  # every leaf's update
    for a, b in zip(leaves((kept.params, kept.opt_state)), leaves((given.params, given.opt_state))):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    # the replayed steps wrote over the arrays they were given: the last passed state holds the new values
    last = passed[-1].params
    assert all(np.shares_memory(a, b) for a, b in zip(leaves(last), leaves(given.params)))


def test_without_donation_the_passed_state_is_left_alone():
    import axon
    state_final, passed, _, leaves = _mlp_states(False, axon.optimizers.adam(1e-2))
    first, second = leaves(passed[0].params), leaves(passed[1].params)     # init's params, one step's
    assert not any(np.array_equal(a, b) for a, b in zip(first, second))     # (each step changed them)
    assert not any(np.shares_memory(a, b) for a, b in zip(leaves(passed[-1].params), leaves(state_final.params)))


def test_donate_in_place_needs_donated_unread_slots():
    from axon.buffers import donate_in_place
    from axon.kernels.adam import adam_apply_at
    from axon.tracing import Op
    settings = dict(b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0)
    op = Op("fused[kernels.adam_step_at,add]", adam_apply_at, (0, 1, 1, 2, 3, 4, 5), settings, (6, 7, 8))
    reader = Op("neg", np.negative, (0,), {}, 9)                          # reads the old params after the update
    assert donate_in_place([op], [6, 7, 8], {0, 2, 3})[0].name == "adam_apply_in_place"
    assert donate_in_place([op, reader], [6, 7, 8, 9], {0, 2, 3})[0].name == op.name
    assert donate_in_place([op], [6, 7, 8, 0], {0, 2, 3})[0].name == op.name   # old params returned too
    assert donate_in_place([op], [6, 7, 8], {0, 2})[0].name == op.name         # v not donated
    decayed = op._replace(params=dict(settings, weight_decay=0.1))            # decay reads p, which is not base
    assert donate_in_place([decayed], [6, 7, 8], {0, 2, 3})[0].name == op.name


def test_an_array_donated_and_passed_again_is_refused():
    import axon
    f = axon.jit(lambda a, b: a + b, donate_argnums=0)
    x = np.ones(3)
    with pytest.raises(ValueError, match="donated"):
        f(x, x)
    assert np.array_equal(f(np.ones(3), x), 2 * x)


def test_adam_apply_in_place_falls_back_for_read_only_arrays():
    from axon.kernels.adam import adam_apply_at, adam_apply_in_place
    p, g, m, v = np.ones(4), np.full(4, 0.5), np.zeros(4), np.zeros(4)
    p.flags.writeable = False
    t, lr = np.asarray(2), np.asarray(0.1)
    out = adam_apply_in_place(p, g, g, m, v, t, lr, 0.9, 0.999, 1e-8, 0.0)
    ref = adam_apply_at(p, g, g, m, v, t, lr, 0.9, 0.999, 1e-8, 0.0)
    assert out[0] is not p and all(np.array_equal(a, b) for a, b in zip(out, ref))
    with pytest.raises(ValueError, match="weight decay"):
        adam_apply_in_place(np.ones(4), g, g, m, v, t, lr, 0.9, 0.999, 1e-8, 0.1)
