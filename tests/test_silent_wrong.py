"""Behaviours that give wrong numbers without an error if broken, each pinned to an independent reference.

PyTorch (where installed), finite differences (``check_grads``) or a computation by hand:

1. ``x ** p``: the gradients at base 0 (and for negative bases) are finite and PyTorch's;
2. ``concatenate`` / ``stack`` along a negative axis: each input gets its own slice of the gradient;
3. convolutions with stride, padding and dilation on the last spatial axis and few channels per group:
   in ``test_kernels_conv`` (the kernel, over the cross product of the options that select its code paths)
   and ``test_layers_conv`` (``conv_transpose``, which runs on the same kernel);
4. a model whose dense/conv output feeds its relu *and* another node: no fusion may swallow the tap;
5. ``evaluate`` of an objective-form step with a batch size that does not divide the examples.
"""
import numpy as np
import pytest

import axon
import axon.functional.layers as L
from axon.autograd import Tensor, check_grads, grad, ops
from axon.model.run import _plan
from axon.training import step


# ---- 1. x ** p at base 0 and for negative bases ------------------------------------------------------------
# every (base, exponent) kind: base 0 with exponents > 0, = 0, in (0, 1); negative bases with integer exponents
X_POW = np.array([0.0, 0.0, 0.0, 0.0, 0.0, -2.0, -1.5, -3.0, 0.5, 2.0, 1.0])
P_POW = np.array([2.0, 1.0, 0.5, 0.0, 3.0, 2.0, 3.0, 1.0, 1.5, 3.0, 0.0])


def _power_grads(x, p, u):
    X, P = Tensor(x, requires_grad=True), Tensor(p, requires_grad=True)
    y = X ** P
    (y * Tensor(u)).sum().backward()
    return y.numpy(), X.grad, P.grad


def test_power_gradients_at_base_zero_and_negative_bases_match_torch(rng):
    torch = pytest.importorskip("torch")
    u = rng.standard_normal(X_POW.shape)
    with np.errstate(all="ignore"):
        y, dx, dp = _power_grads(X_POW, P_POW, u)
    xt, pt = torch.tensor(X_POW, requires_grad=True), torch.tensor(P_POW, requires_grad=True)
    yt = xt ** pt
    yt.backward(torch.tensor(u))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12)
    assert np.isfinite(dp).all(), dp
    assert np.isfinite(dx[P_POW >= 1]).all(), dx               # (0^-0.5 is a true infinity, as PyTorch's)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)       # x = p = 0 included: 0
    torch_dp = pt.grad.numpy()
    where_defined = X_POW >= 0                                 # PyTorch: 0 at base 0, NaN for a negative base
    np.testing.assert_allclose(dp[where_defined], torch_dp[where_defined], rtol=1e-12, atol=1e-12)
    assert np.isnan(torch_dp[~where_defined]).all()
    np.testing.assert_array_equal(dp[~where_defined], 0.0)     # axon's convention: finite, 0 (documented in power)


def test_power_exponent_gradient_by_hand(rng):
    """d(x^p)/dp = x^p log x where x > 0; 0 at x = 0 (x^p stays 0) and, by convention, for x < 0."""
    u = rng.standard_normal(X_POW.shape)
    with np.errstate(all="ignore"):
        y, _, dp = _power_grads(X_POW, P_POW, u)
    want = np.where(X_POW > 0, u * y * np.log(np.abs(X_POW) + (X_POW == 0)), 0.0)
    np.testing.assert_allclose(dp, want, rtol=1e-12, atol=1e-12)


def test_power_gradients_at_base_zero_match_finite_differences():
    """Base 0 with p > 0: x^p stays 0 as p moves, so d/dp = 0; x^0 is flat in x, so d/dx = 0 at p = 0."""
    base = np.array([0.0, 0.0, 0.5, 2.0, 0.0])
    check_grads(lambda p: Tensor(base) ** p, (np.array([2.0, 0.5, 1.5, 3.0, 1.0]),), order=2)
    check_grads(lambda x: x ** 0.0, (np.array([0.0, 1.5, -2.0]),), order=2)
    check_grads(lambda x: x ** 2.0 + x ** 1.0, (np.array([0.0, 1.5, -2.0]),), order=2)
    # one shared exponent over a batch holding zeros: the summed gradient stays finite (one NaN would poison it)
    check_grads(lambda p: (Tensor(base) ** p).sum(), (np.array(2.5),))


def test_power_float32_stays_float32_at_base_zero():
    x = Tensor(np.array([0.0, 1.0, 2.0], np.float32), requires_grad=True)
    p = Tensor(np.array([0.0, 2.0, 0.5], np.float32), requires_grad=True)
    (x ** p).sum().backward()
    assert x.grad.dtype == p.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, [0.0, 2.0, 0.5 / np.sqrt(2.0)], rtol=1e-6)


# ---- 2. concatenate and stack along negative axes -------------------------------------------------------
@pytest.mark.parametrize("axis", [-1, -2, -3])
def test_concatenate_negative_axis_gradients(rng, axis):
    sizes = (1, 3, 2)                                           # three inputs, different sizes along the axis
    base = [2, 4, 3]
    shapes = [tuple(k if i == axis % 3 else n for i, n in enumerate(base)) for k in sizes]
    xs = tuple(rng.standard_normal(s) for s in shapes)
    check_grads(lambda *xs: ops.concatenate(list(xs), axis=axis), xs)
    Xs = [Tensor(x, requires_grad=True) for x in xs]
    y = ops.concatenate(Xs, axis=axis)
    np.testing.assert_array_equal(y.numpy(), np.concatenate(xs, axis=axis))
    u = rng.standard_normal(y.shape)
    (y * Tensor(u)).sum().backward()
    for X, part in zip(Xs, np.split(u, np.cumsum(sizes)[:-1], axis=axis)):   # by hand: u cut back into pieces
        assert X.grad.shape == X.shape
        np.testing.assert_array_equal(X.grad, part)


@pytest.mark.parametrize("axis", [-1, -2, -3])
def test_stack_negative_axis_gradients(rng, axis):
    xs = tuple(rng.standard_normal((2, 3)) for _ in range(4))   # (2, 3) each: the result has 3 axes
    check_grads(lambda *xs: ops.stack(list(xs), axis=axis), xs)
    Xs = [Tensor(x, requires_grad=True) for x in xs]
    y = ops.stack(Xs, axis=axis)
    np.testing.assert_array_equal(y.numpy(), np.stack(xs, axis=axis))
    u = rng.standard_normal(y.shape)
    (y * Tensor(u)).sum().backward()
    for i, X in enumerate(Xs):                                   # by hand: slice i along the new axis
        assert X.grad.shape == X.shape
        np.testing.assert_array_equal(X.grad, np.take(u, i, axis=axis))


# ---- 4. a layer's output tapped before its relu -----------------------------------------------------------
# The model plan folds a relu into its parent's bias add (kernels.bias_relu) when the relu is the parent's
# only consumer. A parent read by another node too must keep its pre-activation value for that node.
def _dense_tap_model():
    x = axon.input((None, 5))
    h = x.dense(4)
    return axon.add([h.relu(), h]).dense(3)                     # relu(h) + h: the add reads h before the relu


def _dense_tap_by_hand(p, x):
    h = L.dense(x, p["dense_0"]["kernel"], p["dense_0"]["bias"])
    return L.dense(ops.relu(h) + h, p["dense_1"]["kernel"], p["dense_1"]["bias"])


def _conv_tap_model():
    x = axon.input((None, 6, 5, 2))
    h = x.conv(3, kernel_size=3, strides=(1, 2), padding="same")
    r = h.relu().conv(3, kernel_size=2, padding="same", activation="relu")   # a fused pair, sole consumer
    return axon.add([r, h]).flatten().dense(2)                   # h is read by its relu and by the add


def _conv_tap_by_hand(p, x):
    h = L.conv(x, p["conv_0"]["kernel"], p["conv_0"]["bias"], strides=(1, 2), padding="same")
    r = ops.relu(L.conv(ops.relu(h), p["conv_1"]["kernel"], p["conv_1"]["bias"], padding="same"))
    y = r + h
    return L.dense(ops.reshape(y, (y.shape[0], -1)), p["dense_0"]["kernel"], p["dense_0"]["bias"])


def _biased_params(model, rng):
    """Params with nonzero biases, so the bias add (the part fused with the relu) matters."""
    params = model.init(seed=0)
    for layer in params.values():
        if "bias" in layer:
            layer["bias"] = rng.standard_normal(layer["bias"].shape).astype(np.float32)
    return params


@pytest.mark.parametrize("make, by_hand, x_shape, fused", [
    (_dense_tap_model, _dense_tap_by_hand, (7, 5), set()),
    (_conv_tap_model, _conv_tap_by_hand, (3, 6, 5, 2), {"conv_1"}),                 # conv_0 is tapped: not fused
], ids=["dense", "conv"])
def test_pre_activation_tap_predicts_and_trains_as_the_unfused_graph(rng, make, by_hand, x_shape, fused):
    model = make()
    names = model.names()
    assert {names[s.node.id] for s in _plan(model).steps if s.fused} == fused
    params = _biased_params(model, rng)
    x = rng.standard_normal(x_shape).astype(np.float32)
    np.testing.assert_allclose(model.predict(params, x), by_hand(params, Tensor(x)).numpy(), rtol=1e-5, atol=1e-5)
    y_true = rng.standard_normal(model.predict(params, x).shape).astype(np.float32)

    def loss(p, forward):
        return ((forward(p) - y_true) ** 2).mean()

    g = grad(loss)(params, lambda p: axon.apply(model, p, x, training=True)[0])
    g_hand = grad(loss)(params, lambda p: by_hand(p, Tensor(x)))
    for layer in g_hand:
        for name in g_hand[layer]:
            np.testing.assert_allclose(g[layer][name], g_hand[layer][name], rtol=1e-4, atol=1e-6,
                                       err_msg=f"{layer}.{name}")


# ---- 5. evaluate of an objective-form step, batch size not dividing the examples ---------------------------
def test_objective_step_evaluate_with_a_ragged_last_batch_is_the_whole_data_loss(rng):
    x = rng.standard_normal((23, 3))                             # 23 examples: batches of 5 leave 3, of 10 leave 3
    y = rng.standard_normal((23, 1))
    params = {"w": rng.standard_normal((3, 1)), "b": np.array([0.3])}

    def objective(p, x, y):
        y_pred = x @ p["w"] + p["b"]
        return ((y_pred - y) ** 2).mean(), y_pred

    _, step_fn = step((lambda seed: params, objective), axon.optimizers.sgd(0.1),
                      metrics={"mae": lambda t, p: np.abs(t - p).mean()})
    y_pred = x @ params["w"] + params["b"]
    whole = {"loss": np.mean((y_pred - y) ** 2), "mae": np.abs(y - y_pred).mean()}   # by hand, all at once
    for batch_size in (1, 4, 5, 10, 22, 23, 100):
        out = step_fn.evaluate(params, x, y, batch_size=batch_size)
        assert out == pytest.approx(whole, rel=1e-12), batch_size
