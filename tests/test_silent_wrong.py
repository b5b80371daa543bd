"""Behaviours that give wrong numbers without an error if broken, each pinned to an independent reference.

PyTorch (where installed), finite differences (``check_grads``) or a computation by hand:

1. ``x ** p``: the gradients at base 0 (and for negative bases) are finite and PyTorch's;
2. ``concatenate`` / ``stack`` along a negative axis: each input gets its own slice of the gradient;
3. convolutions with stride, padding and dilation on the last spatial axis and few channels per group,
   1-, 2- and 3-d, forward and backward, over the cross product of the options that select the kernel's
   code paths (and the transposed convolution, which runs on the same kernel);
4. a model whose dense/conv output feeds its relu *and* another node: no fusion may swallow the tap;
5. ``evaluate`` of an objective-form step with a batch size that does not divide the examples.
"""
import itertools

import numpy as np
import pytest

import axon
import axon.functional.layers as L
from axon.autograd import Tensor, check_grads, grad, ops
from axon.kernels import conv as kernel_conv
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


# ---- 3. convolutions: the cross product of the options that choose the kernel's paths -------------------
# The kernel (axon/kernels/conv.py) picks, per call: transposed columns (fewer than 8 channels per group) or
# rows (8 or more); within rows, one contiguous copy per kernel row (one group, kernel dilation 1 along W,
# window inside the input) or a per-tap loop; one group or several (a copy per group); and, along the last
# axis, the outputs whose taps fall in the input (_valid_run), which stride, padding and dilation decide.
# Leading axes get fixed, non-trivial options; the last axis takes every combination below.
LAST_STRIDES = (1, 2, 3)
LAST_PADS = ((0, 0), (1, 2), (2, 1))
LAST_DILATIONS = (1, 2)
CHANNELS_PER_GROUP = (1, 2, 4, 8)
LEAD = {1: ((), (), (), (), ()),                               # (sizes, kernel, strides, padding, dilation)
        2: ((4,), (2,), (2,), ((1, 0),), (1,)),
        3: ((3, 4), (2, 2), (1, 2), ((0, 1), (1, 0)), (2, 1))}
W_SIZE, KW = 7, 3


def conv_case(n_sp, cg, groups, s, pad, d):
    """(x shape, w shape, strides, padding, dilation, groups) of one case, channels-last."""
    sizes, k, strides, padding, dilation = LEAD[n_sp]
    c_out = 3 * groups
    return ((2, *sizes, W_SIZE, cg * groups), (*k, KW, cg, c_out), strides + (s,), padding + (pad,),
            dilation + (d,), groups)


def last_axis_options():
    return itertools.product(LAST_STRIDES, LAST_PADS, LAST_DILATIONS)


def torch_conv(x, w, strides, padding, dilation, groups, u):
    """The channels-last convolution by PyTorch: y and the gradients of sum(y * u) (numpy, channels-last)."""
    import torch
    F = torch.nn.functional
    n = x.ndim - 2
    xt = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)                        # (N, C, *S)
    wt = torch.tensor(np.moveaxis(np.moveaxis(w, -1, 0), -1, 1), requires_grad=True)   # (C_out, Cg, *k)
    pads = [p for lo_hi in reversed(padding) for p in lo_hi]
    yt = getattr(F, f"conv{n}d")(F.pad(xt, pads), wt, stride=strides, dilation=dilation, groups=groups)
    yt.backward(torch.tensor(np.moveaxis(u, -1, 1)))
    return (np.moveaxis(yt.detach().numpy(), 1, -1), np.moveaxis(xt.grad.numpy(), 1, -1),
            np.moveaxis(np.moveaxis(wt.grad.numpy(), 1, -1), 0, -1))


def axon_conv(x, w, strides, padding, dilation, groups, rng):
    """The kernel's y and the gradients of sum(y * u), and the random u (drawn once y's shape is known)."""
    X, W = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    y = kernel_conv(X, W, strides, padding, dilation, groups)
    u = rng.standard_normal(y.shape).astype(x.dtype)
    y.backward(u)
    return (y.numpy(), X.grad, W.grad), u


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("cg", CHANNELS_PER_GROUP)
@pytest.mark.parametrize("n_sp", [1, 2, 3])
def test_conv_last_axis_stride_padding_dilation_match_torch(rng, n_sp, cg, groups):
    pytest.importorskip("torch")
    for s, pad, d in last_axis_options():
        x_shape, w_shape, *opts = conv_case(n_sp, cg, groups, s, pad, d)
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        got, u = axon_conv(x, w, *opts, rng)
        want = torch_conv(x, w, *opts, u)
        for name, g, t in zip(("y", "dx", "dw"), got, want):
            np.testing.assert_allclose(g, t, rtol=1e-10, atol=1e-10,
                                       err_msg=f"{name}: strides {opts[0]}, padding {opts[1]}, dilation {opts[2]}")


def test_conv_last_axis_gradients_match_finite_differences(rng):
    """Without PyTorch too: the few-channel, strided, padded cases against central differences."""
    for n_sp, (s, pad, d) in itertools.product((1, 2), [(2, (1, 2), 1), (3, (2, 1), 2), (2, (2, 1), 2)]):
        x_shape, w_shape, *opts = conv_case(n_sp, 1, 2, s, pad, d)
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        check_grads(lambda x, w: kernel_conv(x, w, *opts), (x, w), rtol=1e-6, atol=1e-7)


def torch_conv_transpose(x, k, s, p, q, d, u):
    """PyTorch's conv_transpose with axon's (*k, C_in, C_out) kernel flipped into its (C_in, C_out, *k) one."""
    import torch
    n = x.ndim - 2
    xt, kt = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True), torch.tensor(k, requires_grad=True)
    weight = kt.flip(list(range(n))).permute(n, n + 1, *range(n)).contiguous()          # no-flip convention
    yt = getattr(torch.nn.functional, f"conv_transpose{n}d")(xt, weight, None, s, p, q, 1, d)
    yt.backward(torch.tensor(np.moveaxis(u, -1, 1)))
    return np.moveaxis(yt.detach().numpy(), 1, -1), np.moveaxis(xt.grad.numpy(), 1, -1), kt.grad.numpy()


# leading axes of the transposed cases: (size, kernel, stride, padding, output padding, dilation)
LEAD_T = {1: [], 2: [(3, 2, 2, 0, 1, 1)], 3: [(2, 2, 1, 1, 0, 2), (3, 2, 2, 0, 1, 1)]}


@pytest.mark.parametrize("c_in", [1, 3])
@pytest.mark.parametrize("n_sp", [1, 2, 3])
def test_conv_transpose_last_axis_options_match_torch(rng, n_sp, c_in):
    """``conv_transpose`` runs the kernel at stride 1 on the input with zeros inserted: every last-axis
    stride, padding, output padding and dilation, against ``torch.nn.functional.conv_transpose{n}d``."""
    pytest.importorskip("torch")
    for s, p, q, d in itertools.product((1, 2, 3), (0, 1, 2), (0, 1), (1, 2)):
        if q >= max(s, d):                                       # PyTorch needs output padding < stride or dilation
            continue
        axes = LEAD_T[n_sp] + [(4, KW, s, p, q, d)]
        size, ks, ss, ps, qs, ds = (tuple(a) for a in zip(*axes))
        x, k = rng.standard_normal((2, *size, c_in)), rng.standard_normal((*ks, c_in, 2))
        pads = [(di * (ki - 1) - pi, di * (ki - 1) - pi + qi) for ki, pi, qi, di in zip(ks, ps, qs, ds)]
        X, K = Tensor(x, requires_grad=True), Tensor(k, requires_grad=True)
        y = L.conv_transpose(X, K, strides=ss, padding=pads, kernel_dilation=ds)
        u = rng.standard_normal(y.shape)
        y.backward(u)
        want = torch_conv_transpose(x, k, ss, ps, qs, ds, u)
        for name, g, t in zip(("y", "dx", "dkernel"), (y.numpy(), X.grad, K.grad), want):
            np.testing.assert_allclose(g, t, rtol=1e-10, atol=1e-10, err_msg=f"{name}: s {ss}, p {ps}, q {qs}, d {ds}")


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
