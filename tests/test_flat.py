"""axon.flat: a tree's leaves as views of one buffer; the whole Adam update and apply_updates on it, bit for bit."""
import numpy as np
import pytest

import axon
from axon import flat, fusion
from axon.tracing import jit
from axon.kernels import adam_step
from axon.tree import tree_leaves


@pytest.fixture(autouse=True)
def flat_always(monkeypatch):
    monkeypatch.setattr(flat, "FLAT_MIN_LEAVES", 0)          # the flat path for every tree, however small
    monkeypatch.setattr(fusion, "ENABLED", False)            # bit for bit: the plan as traced (tests/test_fusion.py)


def _tree(rng, dtype=np.float32):
    return {"w": rng.standard_normal((3, 5)).astype(dtype), "b": rng.standard_normal(5).astype(dtype),
            "s": np.asarray(rng.standard_normal(), dtype), "k": {"x": rng.standard_normal((2, 1, 3)).astype(dtype)}}


def test_join_copies_separate_arrays_once_then_finds_the_buffer_its_views_tile():
    rng = np.random.default_rng(0)
    tree = _tree(rng)
    leaves = tree_leaves(tree)
    f = flat.join(leaves)
    assert f.shape == (sum(a.size for a in leaves),) and np.array_equal(f, np.concatenate([a.ravel() for a in leaves]))
    views = flat.split(f, [a.shape for a in leaves])
    assert all(v.base is f for v in views) and flat.join(views) is f                   # no copy
    assert flat.join(views[::-1]) is not f                                             # out of order: a copy
    assert flat.join(views[1:]) is not f                                               # not the whole buffer
    assert np.array_equal(flat.join(views[1:]), f[views[0].size:])
    bigger = np.zeros(f.size + 1, np.float32)
    assert flat.join(flat.split(bigger, [a.shape for a in leaves])) is not bigger      # a tail is left over


def test_can_flatten_needs_one_floating_dtype_and_arrays():
    rng = np.random.default_rng(1)
    assert flat.can_flatten(_tree(rng), _tree(rng))
    assert not flat.can_flatten(_tree(rng), _tree(rng, np.float64))
    assert not flat.can_flatten({"n": np.arange(3)}) and not flat.can_flatten({"x": 1.0}) and not flat.can_flatten({})
    flat.FLAT_MIN_LEAVES = 5                                   # (restored by the fixture)
    assert not flat.can_flatten(_tree(rng)) and flat.can_flatten({i: np.ones(1) for i in range(5)})


def test_apply_updates_on_flat_buffers_equals_the_per_leaf_sum_and_keeps_the_buffer():
    rng = np.random.default_rng(2)
    p, u = _tree(rng), _tree(rng)
    out = axon.updates.apply_updates(p, u)
    assert all(np.array_equal(o, a + b) and o.dtype == a.dtype for o, a, b in zip(*map(tree_leaves, (out, p, u))))
    base = tree_leaves(out)[0].base
    assert all(o.base is base for o in tree_leaves(out))                               # views of one buffer
    mixed = {"a": np.ones(2, np.float32), "b": np.ones(2, np.float64)}                 # two dtypes: per leaf
    assert axon.updates.apply_updates(mixed, mixed)["b"].dtype == np.float64


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_the_fused_adam_is_one_kernel_over_every_leaf_equal_to_the_kernel_per_leaf(weight_decay):
    # (equal to rounding, not bit for bit: the vectorised loop contracts to FMAs where the scalar tail does not,
    # and a leaf's elements fall elsewhere in the flat loop; eager and traced steps both run the flat one)
    rng = np.random.default_rng(3)
    params = _tree(rng)
    opt = axon.optimizers.adamw(0.01, weight_decay=weight_decay) if weight_decay else axon.optimizers.adam(0.01)
    state = opt.init(params)
    mu, nu = state[0].mu, state[0].nu
    for step in (1, 2, 3):
        grads = _tree(rng)
        updates, state = opt.update(grads, state, params)
        for path in ("w", "b", "s"):                                  # the documented per-leaf kernel
            u, m, v = adam_step(params[path], grads[path], mu[path], nu[path], lr=0.01, b1=0.9, b2=0.999,
                                eps=1e-8, weight_decay=weight_decay, step=step)
            for got, want in ((updates[path], u), (state[0].mu[path], m), (state[0].nu[path], v)):
                np.testing.assert_allclose(got, want.numpy(), rtol=1e-6, atol=1e-10)
        assert state[0].mu["w"].base is state[0].mu["k"]["x"].base   # the moments: views of one buffer
        params, mu, nu = axon.updates.apply_updates(params, updates), state[0].mu, state[0].nu
    f = jit(lambda g, s, p: opt.update(g, s, p))
    f(grads, state, params)
    plan_ops = [op.name for op in next(iter(f.plans.values())).ops]
    assert plan_ops.count("kernels.adam_step_at") == 1


@pytest.mark.parametrize("name", ["mlp", "cnn", "batch_norm"])
def test_the_compiled_step_on_flat_buffers_is_bit_identical_to_the_eager_one(name):
    from test_jit import _models, same
    rng = np.random.default_rng(7)
    x = rng.standard_normal((24, 8, 8, 1)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 24)]
    runs = []
    for compile in (False, True):
        init, step_fn = axon.training.step(_models()[name], "categorical_cross_entropy",
                                           axon.optimizers.adamw(1e-2, weight_decay=0.05), compile=compile)
        state = init(seed=3)
        for lo in (0, 8, 16, 0):
            state, _ = step_fn(state, x[lo:lo + 8], y[lo:lo + 8])
        runs.append(state)
    assert same(runs[0].params, runs[1].params) and same(runs[0].opt_state, runs[1].opt_state)
    kernel = axon.tree.tree_leaves(runs[1].opt_state[0].mu)
    assert all(m.base is kernel[0].base is not None for m in kernel)          # the moments: one buffer
    ops_run = [op.name for plan in step_fn.compiled.plans.values() for op in plan.ops]
    assert ops_run.count("kernels.adam_step_at") == 1


def test_with_fusion_the_flat_update_and_its_add_are_one_kernel_bit_for_bit(monkeypatch):
    """fusion.flat_round_trip drops apply_updates' join of the split update; adam_apply then fuses the add."""
    from test_jit import _models, same
    rng = np.random.default_rng(8)
    x = rng.standard_normal((16, 8, 8, 1)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 16)]
    runs = []
    for enabled in (False, True):
        monkeypatch.setattr(fusion, "ENABLED", enabled)
        init, step_fn = axon.training.step(_models()["mlp"], "categorical_cross_entropy",
                                           axon.optimizers.adamw(1e-2, weight_decay=0.05))
        state = init(seed=3)
        for lo in (0, 8, 0):
            state, _ = step_fn(state, x[lo:lo + 8], y[lo:lo + 8])
        ops = [op.name for plan in step_fn.compiled.plans.values() for op in plan.ops]
        runs.append((state, ops))
    (plain, plain_ops), (fused, fused_ops) = runs
    assert plain_ops.count("kernels.adam_step_at") == 1 and "fused[kernels.adam_step_at,add]" not in plain_ops
    assert fused_ops.count("fused[kernels.adam_step_at,add]") == 1 and "kernels.adam_step_at" not in fused_ops
    assert fused_ops.count("flat.join") == plain_ops.count("flat.join") - 1             # the update's join is gone
    assert same(plain.params, fused.params) and same(plain.opt_state, fused.opt_state)
    params = tree_leaves(fused.params)
    assert all(p.base is params[0].base is not None for p in params)                    # still one buffer
