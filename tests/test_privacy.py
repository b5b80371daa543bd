"""axon.privacy and dpsgd: per-example gradients against a slow loop, the clip-sum-noise aggregation,
and DP-SGD converging on a small logistic regression."""

import numpy as np
import pytest

from axon.autograd import Tensor, grad
from axon.optimizers import dpsgd
from axon.privacy import differentially_private_aggregate, per_example_grads
from axon.tree import tree_leaves, tree_map
from axon.updates import apply_updates


def _mlp_loss(p, x, y):
    """A two-layer tanh network with a softmax cross-entropy; y one-hot (N, 3)."""
    h = (x @ p["l1"]["kernel"] + p["l1"]["bias"]).tanh()          # (N, 4)
    z = p["temperature"] * (h @ p["l2"]["kernel"] + p["l2"]["bias"])   # (N, 3)
    log_p = z - (z - z.max(axis=-1, keepdims=True)).exp().sum(axis=-1, keepdims=True).log() \
        - z.max(axis=-1, keepdims=True)
    return -(y * log_p).sum(axis=-1).mean()


def _mlp_problem(dtype=np.float64):
    r = np.random.default_rng(3)
    params = {"l1": {"kernel": r.standard_normal((5, 4)), "bias": r.standard_normal(4)},
              "l2": {"kernel": r.standard_normal((4, 3)), "bias": r.standard_normal(3)},
              "temperature": np.asarray(1.3)}
    params = tree_map(lambda a: a.astype(dtype), params)
    x = r.standard_normal((7, 5)).astype(dtype)                    # 7 examples: a prime
    y = np.eye(3, dtype=dtype)[r.integers(0, 3, 7)]
    return params, x, y


def test_per_example_grads_equal_a_loop_over_examples():
    params, x, y = _mlp_problem()
    fast = per_example_grads(_mlp_loss, params, x, y)
    grad_fn = grad(_mlp_loss)
    for e in range(len(x)):
        slow = grad_fn(params, x[e:e + 1], y[e:e + 1])            # a batch of one
        for a, b in zip(tree_leaves(fast), tree_leaves(slow)):
            np.testing.assert_allclose(a[e], b, rtol=1e-10, atol=1e-12)
    assert fast["l1"]["kernel"].shape == (7, 5, 4) and fast["temperature"].shape == (7,)


def test_per_example_grads_average_to_the_batch_gradient():
    params, x, y = _mlp_problem()
    mean = tree_map(lambda g: g.mean(axis=0), per_example_grads(_mlp_loss, params, x, y))
    batch = grad(_mlp_loss)(params, x, y)
    for a, b in zip(tree_leaves(mean), tree_leaves(batch)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_per_example_grads_with_a_summed_loss_and_float32():
    params, x, y = _mlp_problem(np.float32)
    summed = lambda p, x, y: _mlp_loss(p, x, y) * float(len(x))   # a sum over examples
    a = per_example_grads(summed, params, x, y, reduction="sum")
    b = per_example_grads(_mlp_loss, params, x, y)
    for u, v in zip(tree_leaves(a), tree_leaves(b)):
        assert u.dtype == np.float32
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5)


def _loop(loss, params, x, y):
    """The definition: each example's gradient, one batch of one at a time."""
    each = [grad(loss)(params, x[e:e + 1], y[e:e + 1]) for e in range(len(x))]
    return tree_map(lambda *gs: np.stack(gs), *each)


def test_auto_uses_the_vectorized_trick_when_it_fits(monkeypatch):
    import axon.privacy as privacy
    params, x, y = _mlp_problem()
    monkeypatch.setattr(privacy, "_per_example_loop", lambda *a: pytest.fail("fell back to the loop"))
    assert per_example_grads(_mlp_loss, params, x, y)["l1"]["kernel"].shape == (7, 5, 4)


def test_a_loss_that_mixes_examples_is_caught_and_computed_by_the_loop():
    """Flattening with x.shape[0] breaks the trick silently: its (E, E, 1) products mix the examples."""
    r = np.random.default_rng(1)
    params, x, y = {"w": r.standard_normal((3, 1))}, r.standard_normal((5, 3)), r.standard_normal((5, 1))
    flat = lambda p, x, y: ((x.reshape(x.shape[0], -1) @ p["w"] - y) ** 2).mean()
    expected = _loop(flat, params, x, y)["w"]
    np.testing.assert_allclose(per_example_grads(flat, params, x, y)["w"], expected, rtol=1e-10)
    np.testing.assert_allclose(per_example_grads(flat, params, x, y, method="loop")["w"], expected, rtol=1e-10)
    assert not np.allclose(per_example_grads(flat, params, x, y, method="vectorized")["w"], expected)


def test_per_example_grads_of_a_conv_model():
    """A model's apply with a convolution: the trick cannot run (the conv wants rank 4), the loop does."""
    import axon
    model = axon.input((None, 6, 6, 2)).conv(3, kernel_size=3).relu().flatten().dense(2)
    params = model.init(seed=0)
    r = np.random.default_rng(2)
    x, y = r.standard_normal((4, 6, 6, 2)).astype(np.float32), np.eye(2, dtype=np.float32)[[0, 1, 1, 0]]

    def loss(p, x, y):
        logits, _ = axon.model.apply(model, p, x)
        return axon.losses.categorical_cross_entropy(y, logits, from_logits=True, reduction="mean")
    got = per_example_grads(loss, params, x, y)
    for a, b in zip(tree_leaves(got), tree_leaves(_loop(loss, params, x, y))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert got["conv_0"]["kernel"].shape == (4, 3, 3, 2, 3)
    with pytest.raises(ValueError):
        per_example_grads(loss, params, x, y, method="vectorized")


def test_per_example_grads_reject_bad_input():
    params, x, y = _mlp_problem()
    with pytest.raises(ValueError, match=r"same leading \(example\) axis.*\(7, 5\) and \(6, 3\)"):
        per_example_grads(_mlp_loss, params, x, y[:6])
    with pytest.raises(ValueError, match="reduction"):
        per_example_grads(_mlp_loss, params, x, y, reduction="max")
    with pytest.raises(ValueError, match="method must be 'auto', 'vectorized' or 'loop', got 'fast'"):
        per_example_grads(_mlp_loss, params, x, y, method="fast")


def test_aggregate_without_noise_is_the_mean_of_clipped_gradients(rng):
    per_example = {"w": rng.standard_normal((6, 3, 2)), "b": rng.standard_normal((6, 2))}
    t = differentially_private_aggregate(l2_norm_clip=1.5, noise_multiplier=0.0)
    out, state = t.update(per_example, t.init(None), {"w": np.zeros((3, 2)), "b": np.zeros(2)})
    expected = {"w": np.zeros((3, 2)), "b": np.zeros(2)}
    for e in range(6):                                             # clip each example's global norm to 1.5
        norm = np.sqrt(np.sum(per_example["w"][e] ** 2) + np.sum(per_example["b"][e] ** 2))
        k = min(1.0, 1.5 / norm)
        expected["w"] += k * per_example["w"][e] / 6
        expected["b"] += k * per_example["b"][e] / 6
    np.testing.assert_allclose(out["w"], expected["w"], rtol=1e-12)
    np.testing.assert_allclose(out["b"], expected["b"], rtol=1e-12)
    assert int(state.count) == 1


def test_aggregate_noise_has_the_right_scale_and_is_reproducible():
    zeros = {"w": np.zeros((4, 20000), np.float32)}
    t = differentially_private_aggregate(l2_norm_clip=2.0, noise_multiplier=0.5, seed=11)
    a, state = t.update(zeros, t.init(None))
    b, _ = t.update(zeros, t.init(None))
    c, _ = t.update(zeros, state)
    assert a["w"].dtype == np.float32
    assert abs(a["w"].std() / (0.5 * 2.0 / 4) - 1) < 0.03            # std sigma C / E
    assert np.array_equal(a["w"], b["w"]) and not np.array_equal(a["w"], c["w"])


def test_aggregate_rejects_bad_shapes():
    t = differentially_private_aggregate(1.0, 1.0)
    with pytest.raises(ValueError, match="same leading example axis"):
        t.update({"w": np.zeros((4, 2)), "b": np.zeros((3, 2))}, t.init(None))
    with pytest.raises(ValueError, match=r"params and per-example grads differ at 'w': shape \(3,\) vs \(2,\)"):
        t.update({"w": np.zeros((4, 2))}, t.init(None), {"w": np.zeros(3)})
    with pytest.raises(ValueError, match="l2_norm_clip"):
        differentially_private_aggregate(-1.0, 1.0)


def test_dpsgd_follows_the_dp_sgd_equations():
    r = np.random.default_rng(0)
    per_example = {"w": r.standard_normal((5, 3))}
    opt = dpsgd(0.1, l2_norm_clip=1.0, noise_multiplier=0.7, seed=4, momentum=0.9)
    state = opt.init({"w": np.zeros(3)})
    u1, state = opt.update(per_example, state, {"w": np.zeros(3)})
    u2, state = opt.update(per_example, state, {"w": np.zeros(3)})
    agg = differentially_private_aggregate(1.0, 0.7, seed=4)
    a1, s = agg.update(per_example, agg.init(None))
    a2, _ = agg.update(per_example, s)
    np.testing.assert_allclose(u1["w"], -0.1 * a1["w"])
    np.testing.assert_allclose(u2["w"], -0.1 * (a2["w"] + 0.9 * a1["w"]))


def test_dpsgd_trains_a_logistic_regression():
    r = np.random.default_rng(0)
    x = r.standard_normal((512, 4))
    y = (x @ np.array([[2.0], [-1.0], [0.5], [1.5]]) + 0.3 > 0).astype(float)      # (N, 1)

    def loss(p, x, y):
        z = x @ p["w"] + p["b"]
        return ((1 + (-z.abs()).exp()).log() + z.relu() - y * z).mean()

    params = {"w": np.zeros((4, 1)), "b": np.zeros(1)}
    opt = dpsgd(0.5, l2_norm_clip=1.0, noise_multiplier=1.0, seed=0)
    state = opt.init(params)
    full_loss = lambda p: float(loss(tree_map(Tensor, p), x, y))
    start = full_loss(params)
    for step in range(60):
        batch = np.random.default_rng(step).choice(len(x), 64, replace=False)
        g = per_example_grads(loss, params, x[batch], y[batch])
        updates, state = opt.update(g, state, params)
        params = apply_updates(params, updates)
    accuracy = np.mean(((x @ params["w"] + params["b"]) > 0) == (y > 0.5))
    assert full_loss(params) < 0.5 * start and accuracy > 0.9
