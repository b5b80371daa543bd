"""axon.kernels.conv (in axon.kernels.convolution) against a plain-numpy reference, finite differences and PyTorch.

Picked odd cases (``CASES``), then the cross product of the last-axis options that select the kernel's code
paths (stride, padding, dilation; channels per group; one group or two; 1-, 2- and 3-d), each against
PyTorch serially and against the serial run when forced into parallel chunks and small blocks."""
import itertools

import numpy as np
import pytest

from axon.autograd import Tensor, check_grads
from axon.kernels import _common as common_module
from axon.kernels import conv                                 # the function (its module is kernels.convolution)
from axon.kernels import convolution as conv_module


def reference_conv(x, w, strides, padding, dilation, groups):
    """Convolution as a sum over kernel offsets of strided slices of the padded input (float64)."""
    n = x.ndim - 2
    xp = np.pad(x, [(0, 0)] + list(padding) + [(0, 0)])                       # (N, *padded, C)
    windows = [(k - 1) * d + 1 for k, d in zip(w.shape[:n], dilation)]
    out = [(s - k) // st + 1 for s, k, st in zip(xp.shape[1:-1], windows, strides)]
    cg, c_out = w.shape[-2:]
    cog = c_out // groups
    y = np.zeros((x.shape[0], *out, c_out))
    for k in np.ndindex(*w.shape[:n]):
        index = tuple(slice(ki * d, ki * d + (o - 1) * st + 1, st) for ki, d, o, st in zip(k, dilation, out, strides))
        patch = xp[(slice(None),) + index]                                      # (N, *out, C_in)
        for g in range(groups):
            y[..., g * cog:(g + 1) * cog] += patch[..., g * cg:(g + 1) * cg] @ w[k][:, g * cog:(g + 1) * cog]
    return y


# (x shape, kernel spatial shape, strides, padding, dilation, groups, C_out): odd shapes on purpose
CASES = [
    ((2, 7, 3), (3,), (1,), ((1, 1),), (1,), 1, 4),                              # 1-d, "same"
    ((1, 9, 8, 3), (3, 3), (2, 1), ((1, 0), (2, 1)), (1, 2), 1, 5),              # batch 1, stride 2, dilation
    ((3, 6, 5, 4), (3, 2), (1, 1), ((1, 1), (0, 1)), (1, 1), 2, 6),              # groups 2, non-square
    ((2, 5, 5, 4), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 4, 8),              # depthwise (x2 multiplier)
    ((2, 4, 5, 6, 3), (2, 3, 2), (1, 2, 1), ((0, 1), (1, 1), (0, 0)), (1, 1, 2), 1, 4),   # 3-d
    ((2, 9, 7, 8), (3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), 1, 16),             # deep columns: BLAS path
    ((1, 5, 5, 1), (5, 5), (1, 1), ((0, 0), (0, 0)), (1, 1), 1, 3),              # one output pixel
    ((2, 6, 5, 16), (3, 3), (2, 1), ((1, 1), (1, 0)), (1, 1), 2, 6),             # 8 channels per group
    ((1, 7, 7, 8), (3, 3), (1, 1), ((2, 2), (2, 2)), (2, 2), 1, 4),              # dilated, 8 channels
]
# Fewer than 8 channels per group take the transposed-columns path, 8 or more the row path.


def _conv_run(x, w, opts, u, need=(True, True)):
    """y and the gradients of sum(y * u) w.r.t. the inputs in ``need`` (x, w)."""
    X, W = Tensor(x, requires_grad=need[0]), Tensor(w, requires_grad=need[1])
    y = conv(X, W, *opts)
    y.backward(u)
    return y.numpy(), X.grad, W.grad


def _run(x, w, case):
    _, _, strides, padding, dilation, groups, _ = case
    return conv(x, w, strides, padding, dilation, groups)


def _inputs(rng, case, dtype):
    shape, k, _, _, _, groups, c_out = case
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(k + (shape[-1] // groups, c_out)).astype(dtype)
    return x, w


@pytest.mark.parametrize("case", CASES)
def test_conv_matches_numpy_reference(rng, case):
    x, w = _inputs(rng, case, np.float64)
    y = _run(x, w, case)
    np.testing.assert_allclose(y.numpy(), reference_conv(x, w, *case[2:6]), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", CASES)
def test_conv_float32_stays_float32(rng, case):
    x, w = _inputs(rng, case, np.float32)
    X, W = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    y = _run(X, W, case)
    (y * y).sum().backward()
    assert y.dtype == X.grad.dtype == W.grad.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), reference_conv(x.astype(np.float64), w.astype(np.float64), *case[2:6]),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[2], CASES[3]])
def test_conv_gradients_finite_differences(rng, case):
    shape, k, strides, padding, dilation, groups, c_out = case
    small = (min(shape[0], 2),) + tuple(min(s, 5) for s in shape[1:-1]) + (shape[-1],)
    small_case = (small,) + case[1:]
    x, w = _inputs(rng, small_case, np.float64)
    check_grads(lambda x, w: conv(x, w, strides, padding, dilation, groups), (x, w), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_conv_matches_torch(rng, case):
    pytest.importorskip("torch")
    x, w = _inputs(rng, case, np.float32)
    u = rng.standard_normal(_run(x, w, case).shape).astype(np.float32)
    for name, g, t in zip(("y", "dx", "dw"), _conv_run(x, w, case[2:6], u), torch_conv(x, w, *case[2:6], u)):
        np.testing.assert_allclose(g, t, rtol=1e-4, atol=1e-4, err_msg=name)


# ---- the cross product of the options that choose the kernel's paths ----------------------------------
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


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("cg", CHANNELS_PER_GROUP)
@pytest.mark.parametrize("n_sp", [1, 2, 3])
def test_conv_last_axis_stride_padding_dilation_match_torch(rng, torch_one_thread, n_sp, cg, groups):
    for s, pad, d in last_axis_options():
        x_shape, w_shape, *opts = conv_case(n_sp, cg, groups, s, pad, d)
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        u = rng.standard_normal(conv(x, w, *opts).shape)
        for name, g, t in zip(("y", "dx", "dw"), _conv_run(x, w, opts, u), torch_conv(x, w, *opts, u)):
            np.testing.assert_allclose(g, t, rtol=1e-10, atol=1e-10,
                                       err_msg=f"{name}: strides {opts[0]}, padding {opts[1]}, dilation {opts[2]}")


@pytest.mark.parametrize("n_sp", [1, 2, 3])
def test_conv_last_axis_cross_product_without_torch(rng, n_sp):
    """Without PyTorch too: every case's values against the numpy reference, and a few few-channel, strided,
    padded ones against finite differences (which alone cannot see a wrong tap the backward mirrors)."""
    for cg, groups, (s, pad, d) in itertools.product(CHANNELS_PER_GROUP, (1, 2), last_axis_options()):
        x_shape, w_shape, *opts = conv_case(n_sp, cg, groups, s, pad, d)
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        np.testing.assert_allclose(conv(x, w, *opts).numpy(), reference_conv(x, w, *opts), rtol=1e-10, atol=1e-10,
                                   err_msg=f"options {opts}")
    for s, pad, d in [(2, (1, 2), 1), (3, (2, 1), 2)]:
        x_shape, w_shape, *opts = conv_case(n_sp, 1, 2, s, pad, d)
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        check_grads(lambda x, w: conv(x, w, *opts), (x, w), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[5]])
def test_conv_parallel_and_block_paths_agree(rng, monkeypatch, case):
    """Split across threads, in blocks that end mid-image and mid-row, or on one thread: the same numbers.

    In float32, the dtype training uses, so that the suite compiles the parallel kernels only once."""
    x, w = _inputs(rng, case, np.float32)

    def values_and_grads():
        X, W = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
        y = _run(X, W, case)
        (y * y).sum().backward()
        return y.numpy(), X.grad, W.grad

    expected = values_and_grads()                                               # small: one thread, one block
    monkeypatch.setattr(conv_module, "_PARALLEL_MACS", 0)                       # every chunk its own thread
    monkeypatch.setattr(conv_module, "_BLOCK_BYTES", 1)
    monkeypatch.setattr(conv_module, "_MIN_ROWS", 5)                            # blocks of 5 rows
    for threads in (None, 1):
        if threads:
            monkeypatch.setattr(common_module, "num_threads", lambda: threads)
        for got, want in zip(values_and_grads(), expected):                    # float32 sums in another order
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("cg", CHANNELS_PER_GROUP)
@pytest.mark.parametrize("n_sp", [1, 2, 3])
def test_conv_parallel_and_block_paths_agree_over_the_cross_product(rng, monkeypatch, n_sp, cg, groups):
    """Chunks across threads (3: boundaries mid-line) and blocks of 5 rows (starting mid-line), every case.

    float32, the dtype training uses, so the parallel kernels compile once for the suite."""
    cases = []
    for s, pad, d in last_axis_options():
        x_shape, w_shape, *opts = conv_case(n_sp, cg, groups, s, pad, d)
        x, w = rng.standard_normal(x_shape).astype(np.float32), rng.standard_normal(w_shape).astype(np.float32)
        u = rng.standard_normal(conv(x, w, *opts).shape).astype(np.float32)
        cases.append((x, w, opts, u, _conv_run(x, w, opts, u)))          # small: serial, one block
    monkeypatch.setattr(conv_module, "_PARALLEL_MACS", 0)
    monkeypatch.setattr(conv_module, "_BLOCK_BYTES", 1)
    monkeypatch.setattr(conv_module, "_MIN_ROWS", 5)
    for threads in (3, 1):
        monkeypatch.setattr(common_module, "num_threads", lambda: threads)
        for x, w, opts, u, want in cases:
            for name, g, ref in zip(("y", "dx", "dw"), _conv_run(x, w, opts, u), want):
                np.testing.assert_allclose(g, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max(),
                                           err_msg=f"{name}, {threads} chunks: options {opts}")


@pytest.mark.parametrize("n_sp", [1, 2, 3])
def test_conv_gradient_only_where_needed(rng, n_sp):
    """x as data (the first layer) or w frozen: the kernel skips dw or dx, the other one must not change."""
    for cg, groups, (s, pad, d) in itertools.product((1, 8), (1, 2), last_axis_options()):
        x_shape, w_shape, *opts = conv_case(n_sp, cg, groups, s, pad, d)
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        u = rng.standard_normal(conv(x, w, *opts).shape)
        _, dx, dw = _conv_run(x, w, opts, u)
        np.testing.assert_array_equal(_conv_run(x, w, opts, u, need=(True, False))[1], dx)
        np.testing.assert_array_equal(_conv_run(x, w, opts, u, need=(False, True))[2], dw)


def test_conv_bad_arguments_raise_clear_errors(rng):
    x = rng.standard_normal((2, 5, 5, 4)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 8)).astype(np.float32)
    w4 = rng.standard_normal((3, 3, 4, 8)).astype(np.float32)
    with pytest.raises(ValueError, match=r"kernel expects 3 input channels, input has 4"):
        conv(x, w, (1, 1), ((0, 0), (0, 0)), (1, 1))
    with pytest.raises(TypeError, match="same dtype"):
        conv(x, w4.astype(np.float64), (1, 1), ((0, 0), (0, 0)), (1, 1))
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv(x, np.zeros((7, 3, 4, 8), np.float32), (1, 1), ((0, 0), (0, 0)), (1, 1))
    with pytest.raises(ValueError, match="strides must be an int or a sequence of 2 ints"):
        conv(x, w4, (1,), ((0, 0), (0, 0)), (1, 1))
    with pytest.raises(ValueError, match="padding must be non-negative"):
        conv(x, w4, (1, 1), ((0, -1), (0, 0)), (1, 1))
    with pytest.raises(ValueError, match="groups=3 must divide"):
        conv(x, w4, (1, 1), ((0, 0), (0, 0)), (1, 1), groups=3)
    with pytest.raises(TypeError, match="float32 or float64"):
        conv(x.astype(np.int32), w4, (1, 1), ((0, 0), (0, 0)), (1, 1))
    with pytest.raises(ValueError, match="1 to 3 spatial axes"):
        conv(x[0, 0], w4, (1, 1), ((0, 0), (0, 0)), (1, 1))


def test_conv_with_no_output_channels_has_zero_gradients():
    """Zero output channels: an empty output, and gradients of the right shapes, all zero (no division by 0)."""
    x = Tensor(np.ones((2, 5, 5, 3)), requires_grad=True)
    w = Tensor(np.ones((3, 3, 3, 0)), requires_grad=True)
    y = conv(x, w, (1, 1), ((1, 1), (1, 1)), (1, 1))
    assert y.shape == (2, 5, 5, 0)
    y.sum().backward()
    assert w.grad.shape == (3, 3, 3, 0) and x.grad.shape == (2, 5, 5, 3) and not x.grad.any()


# ---- grad of grad: under create_graph the VJP is two convolutions (kernels.convolution._conv_vjp_ops) -------
SECOND_ORDER_CASES = [                                        # (x shape, w shape, strides, padding, dilation, groups)
    ((2, 5, 2), (3, 2, 2), (1,), ((1, 1),), (1,), 1),                               # 1-d, "same"
    ((1, 7, 2), (2, 1, 4), (3,), ((2, 1),), (2,), 2),                               # stride 3 > window, groups 2
    ((1, 5, 4, 2), (2, 3, 2, 2), (2, 1), ((1, 0), (0, 2)), (1, 2), 1),               # 2-d, strided, dilated, uneven pads
    ((2, 4, 4, 2), (3, 3, 1, 2), (2, 2), ((1, 1), (1, 1)), (1, 1), 2),               # depthwise, stride 2
    ((1, 3, 4, 3, 2), (2, 2, 2, 2, 2), (1, 2, 1), ((0, 1), (1, 0), (1, 1)), (1, 1, 2), 1),   # 3-d
]


@pytest.mark.parametrize("case", SECOND_ORDER_CASES)
def test_conv_check_grads_second_order(rng, case):
    x_shape, w_shape, *opts = case
    check_grads(lambda x, w: conv(x, w, *opts), (rng.standard_normal(x_shape), rng.standard_normal(w_shape)),
                order=2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_sp", [1, 2, 3])
def test_conv_recorded_vjp_equals_the_backward_kernel(rng, n_sp):
    """The Tensor-op rule (grad of grad's path) against the kernel's backward over the last axis's options."""
    from axon.autograd import enable_grad
    for cg, groups, (s, pad, d) in itertools.product((1, 2), (1, 2), last_axis_options()):
        x_shape, w_shape, *opts = conv_case(n_sp, cg, groups, s, pad, d)
        x = Tensor(rng.standard_normal(x_shape), requires_grad=True)
        w = Tensor(rng.standard_normal(w_shape), requires_grad=True)
        y = conv(x, w, *opts)
        dy = Tensor(rng.standard_normal(y.shape))
        geometry = y.grad_fn.params
        fast = conv_module._conv_backward(dy.data, x.data, w.data, **geometry, need_dx=True, need_dw=True)
        with enable_grad():
            recorded = conv_module._conv_vjp_ops(dy, x, w, **geometry)
        for name, a, b in zip(("dx", "dw"), fast, recorded):
            np.testing.assert_allclose(b.numpy(), a, rtol=1e-10, atol=1e-10, err_msg=f"{name}: options {opts}")


@pytest.mark.parametrize("case", SECOND_ORDER_CASES)
def test_conv_grad_of_grad_matches_torch(rng, torch_one_thread, case):
    """d/dx sum(dconv/dw * r) and d/dw sum(dconv/dx * q) (mixed second derivatives) against torch."""
    torch = torch_one_thread
    from axon.autograd import backprop
    F = torch.nn.functional
    x_shape, w_shape, strides, padding, dilation, groups = case
    n = len(x_shape) - 2
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    u = rng.standard_normal(conv(x, w, strides, padding, dilation, groups).shape)
    r, q = rng.standard_normal(w_shape), rng.standard_normal(x_shape)

    X, W = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    y = conv(X, W, strides, padding, dilation, groups)
    grads = dict((id(t), g) for t, g in backprop((y * u).sum(), Tensor(1.0), keep=(X, W), create_graph=True))
    gx, gw = grads[id(X)], grads[id(W)]
    outer = dict((id(t), g) for t, g in backprop((gw * r).sum() + (gx * q).sum(), Tensor(1.0), keep=(X, W)))

    xt = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)                        # (N, C, *S)
    wt = torch.tensor(np.moveaxis(np.moveaxis(w, -1, 0), -1, 1), requires_grad=True)   # (C_out, Cg, *k)
    pads = [p for lo_hi in reversed(padding) for p in lo_hi]
    yt = getattr(F, f"conv{n}d")(F.pad(xt, pads), wt, stride=strides, dilation=dilation, groups=groups)
    gxt, gwt = torch.autograd.grad((yt * torch.tensor(np.moveaxis(u, -1, 1))).sum(), (xt, wt), create_graph=True)
    rt = torch.tensor(np.moveaxis(np.moveaxis(r, -1, 0), -1, 1))
    qt = torch.tensor(np.moveaxis(q, -1, 1))
    hx, hw = torch.autograd.grad((gwt * rt).sum() + (gxt * qt).sum(), (xt, wt))
    np.testing.assert_allclose(outer[id(X)].numpy(), np.moveaxis(hx.numpy(), 1, -1), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(outer[id(W)].numpy(), np.moveaxis(np.moveaxis(hw.numpy(), 1, -1), 0, -1),
                               rtol=1e-10, atol=1e-10)


def test_conv_with_no_input_channels_is_zeros():
    """An empty sum over zero channels: y = 0, and gradients of the empty shapes (once a division by zero)."""
    x = Tensor(np.zeros((2, 5, 5, 0), np.float32), requires_grad=True)
    w = Tensor(np.zeros((3, 3, 0, 4), np.float32), requires_grad=True)
    y = conv(x, w, (1, 1), ((1, 1), (1, 1)), (1, 1))
    assert y.shape == (2, 5, 5, 4) and y.dtype == np.float32 and not y.numpy().any()
    y.sum().backward()
    assert x.grad.shape == x.shape and w.grad.shape == w.shape
