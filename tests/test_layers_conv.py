"""Convolution layers: conv, conv_transpose, depthwise and separable, against torch and finite differences."""
import itertools

import numpy as np
import pytest

import axon.functional.layers as L
from axon.autograd import check_grads

from test_layers_helpers import against_torch, keeps_float32, nchw, nhwc


def torch_conv(x, w, strides, pads, kernel_dilation=1, groups=1, input_dilation=1):
    """Reference: a channels-last conv written with torch (zero insertion, F.pad, conv{1,2,3}d)."""
    import torch
    F = torch.nn.functional
    n = x.ndim - 2
    xt = nchw(x)                                               # (N, C, *S)
    if input_dilation > 1:                                     # d - 1 zeros between neighbours
        size = [(s - 1) * input_dilation + 1 for s in xt.shape[2:]]
        xd = xt.new_zeros(xt.shape[:2] + tuple(size))
        xd[(slice(None), slice(None)) + (slice(None, None, input_dilation),) * n] = xt
        xt = xd
    xt = F.pad(xt, [v for lo_hi in reversed(pads) for v in lo_hi])
    wt = w.permute(n + 1, n, *range(n))                        # (*k, I, O) -> (O, I, *k)
    return nhwc(getattr(F, f"conv{n}d")(xt, wt, None, strides, 0, kernel_dilation, groups))


# name: input shape (channels-last), kernel shape, options, the padding torch needs
CONV_CASES = {
    "1d_valid_batch2": ((2, 7, 3), (3, 3, 4), {}, [(0, 0)]),
    "1d_same_stride2_even": ((1, 6, 2), (3, 2, 3), dict(strides=2, padding="same"), [(0, 1)]),
    "1d_same_kernel_dilation": ((1, 7, 2), (3, 2, 2), dict(kernel_dilation=2, padding="same"), [(2, 2)]),
    "2d_same_stride2_odd": ((1, 7, 6, 3), (3, 3, 3, 4), dict(strides=2, padding="same"), [(1, 1), (0, 1)]),
    "2d_explicit_dilated_strided": ((2, 6, 7, 2), (2, 3, 2, 3),
                                    dict(padding=[(1, 2), (0, 1)], kernel_dilation=(2, 1), strides=(1, 2)),
                                    [(1, 2), (0, 1)]),
    "2d_groups_int_padding": ((1, 5, 5, 4), (3, 3, 2, 6), dict(feature_group_size=2, padding=1), [(1, 1), (1, 1)]),
    "2d_input_dilation": ((1, 4, 3, 2), (2, 2, 2, 3), dict(input_dilation=2, padding=[(1, 1), (0, 1)]),
                          [(1, 1), (0, 1)]),
    "3d_strided": ((1, 4, 5, 3, 2), (2, 3, 2, 2, 3), dict(strides=(2, 1, 1)), [(0, 0)] * 3),
}


@pytest.mark.parametrize("channels", ["last", "first"])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_matches_torch(rng, case, channels):
    pytest.importorskip("torch")
    x_shape, k_shape, opts, pads = CONV_CASES[case]
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(k_shape), rng.standard_normal(k_shape[-1])
    n = len(x_shape) - 2
    ref_opts = dict(strides=opts.get("strides", 1), kernel_dilation=opts.get("kernel_dilation", 1),
                    groups=opts.get("feature_group_size", 1), input_dilation=opts.get("input_dilation", 1))
    to_first = nchw if channels == "first" else (lambda a: a)
    from_first = nhwc if channels == "first" else (lambda a: a)
    against_torch(lambda x, w, b: L.conv(x, w, b, channels=channels, **opts),
                  lambda x, w, b: to_first(torch_conv(from_first(x), w, pads=pads, **ref_opts) + b),
                  (to_first(x), w, b))
    assert L.conv_output_shape(to_first(x).shape, k_shape, channels=channels, **opts) == \
        L.conv(to_first(x), w, channels=channels, **opts).shape
    if channels == "last" and n < 3:
        keeps_float32(lambda x, w: L.conv(x, w, **opts), x, w)


@pytest.mark.parametrize("x_shape, k_shape, opts", [
    ((1, 6, 2), (3, 2, 3), dict(strides=2, padding="same")),
    ((1, 3, 3, 4), (2, 2, 2, 4), dict(feature_group_size=2, padding=1, kernel_dilation=(1, 2))),
    ((1, 3, 2, 2), (2, 2, 2, 2), dict(input_dilation=2, padding=[(1, 0), (0, 1)], strides=(2, 1))),
])
def test_conv_finite_differences(rng, x_shape, k_shape, opts):
    args = rng.standard_normal(x_shape), rng.standard_normal(k_shape), rng.standard_normal(k_shape[-1])
    check_grads(lambda x, w, b: L.conv(x, w, b, **opts), args)
    check_grads(lambda x, w: L.conv(x, w, channels="first", **opts), (nchw(args[0]), args[1]))


def torch_conv_transpose_kernel(k):
    """Our (*k, C_in, C_out) kernel as torch's conv_transpose weight (C_in, C_out, *k), flipped."""
    n = k.ndim - 2
    return k.flip(list(range(n))).permute(n, n + 1, *range(n)).contiguous()   # (torch's backward wants it so)


@pytest.mark.parametrize("x_shape, k_shape, stride, padding, output_padding, dilation", [
    ((2, 5, 3), (3, 3, 2), 2, 1, 1, 1),
    ((1, 4, 5, 2), (3, 2, 2, 3), (2, 1), (1, 0), (1, 0), 1),
    ((1, 3, 4, 2), (2, 3, 2, 2), 3, 0, 2, (2, 1)),
    ((1, 2, 3, 2, 2), (2, 2, 3, 2, 1), 2, 0, 0, 1),
])
def test_conv_transpose_matches_torch(rng, x_shape, k_shape, stride, padding, output_padding, dilation):
    torch = pytest.importorskip("torch")
    n = len(x_shape) - 2
    s, p, q, d = (np.broadcast_to(v, (n,)).tolist() for v in (stride, padding, output_padding, dilation))
    pads = [(di * (k - 1) - pi, di * (k - 1) - pi + qi) for k, pi, qi, di in zip(k_shape[:n], p, q, d)]
    fn = getattr(torch.nn.functional, f"conv_transpose{n}d")
    x, k, b = rng.standard_normal(x_shape), rng.standard_normal(k_shape), rng.standard_normal(k_shape[-1])
    against_torch(lambda x, k, b: L.conv_transpose(x, k, b, strides=s, padding=pads, kernel_dilation=d),
                  lambda x, k, b: nhwc(fn(nchw(x), torch_conv_transpose_kernel(k), b, s, p, q, 1, d)), (x, k, b))
    against_torch(lambda x, k: L.conv_transpose(x, k, strides=s, padding=pads, kernel_dilation=d, channels="first"),
                  lambda x, k: fn(x, torch_conv_transpose_kernel(k), None, s, p, q, 1, d), (nchw(x), k))


# leading axes of the cross-product cases: (size, kernel, stride, padding, output padding, dilation)
LEAD_T = {1: [], 2: [(3, 2, 2, 0, 1, 1)], 3: [(2, 2, 1, 1, 0, 2), (3, 2, 2, 0, 1, 1)]}


@pytest.mark.parametrize("c_in", [1, 3])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_conv_transpose_last_axis_cross_product_matches_torch(rng, torch_one_thread, n, c_in):
    """Every last-axis stride, padding, output padding and kernel dilation, with few channels (the kernel runs
    them at stride 1 on the input with zeros inserted, through its transposed-columns path)."""
    fn = getattr(torch_one_thread.nn.functional, f"conv_transpose{n}d")
    for s, p, q, d in itertools.product((1, 2, 3), (0, 1, 2), (0, 1), (1, 2)):
        if q >= max(s, d):                                     # torch: output padding < stride or dilation
            continue
        size, ks, ss, ps, qs, ds = (tuple(a) for a in zip(*LEAD_T[n], (4, 3, s, p, q, d)))
        pads = [(di * (ki - 1) - pi, di * (ki - 1) - pi + qi) for ki, pi, qi, di in zip(ks, ps, qs, ds)]
        x, k = rng.standard_normal((2, *size, c_in)), rng.standard_normal((*ks, c_in, 2))
        against_torch(lambda x, k: L.conv_transpose(x, k, strides=ss, padding=pads, kernel_dilation=ds),
                      lambda x, k: nhwc(fn(nchw(x), torch_conv_transpose_kernel(k), None, ss, ps, qs, 1, ds)), (x, k))


@pytest.mark.parametrize("n, k, s", [(5, 3, 2), (4, 2, 2), (3, 1, 3), (6, 4, 3), (1, 3, 1)])
def test_conv_transpose_same_and_valid_sizes(rng, n, k, s):
    x, w = rng.standard_normal((1, n, 2)), rng.standard_normal((k, 2, 3))
    assert L.conv_transpose(x, w, strides=s, padding="same").shape == (1, n * s, 3)
    assert L.conv_transpose(x, w, strides=s, padding="valid").shape == (1, n * s + max(k - s, 0), 3)
    assert L.conv_transpose_output_shape((None, n, 2), w.shape, strides=s, padding="same") == (None, n * s, 3)


def test_conv_transpose_valid_is_torch_without_padding(rng):
    """For k >= s, "valid" is torch's conv_transpose with padding 0 (and the kernel flipped)."""
    torch = pytest.importorskip("torch")
    x, k = rng.standard_normal((2, 4, 3, 2)), rng.standard_normal((3, 3, 2, 4))
    against_torch(lambda x, k: L.conv_transpose(x, k, strides=2),
                  lambda x, k: nhwc(torch.nn.functional.conv_transpose2d(nchw(x), torch_conv_transpose_kernel(k),
                                                                         stride=2)), (x, k))


def test_conv_transpose_finite_differences(rng):
    args = rng.standard_normal((1, 3, 2, 2)), rng.standard_normal((3, 2, 2, 3)), rng.standard_normal(3)
    check_grads(lambda x, k, b: L.conv_transpose(x, k, b, strides=(2, 1), padding="same"), args)
    keeps_float32(lambda x, k: L.conv_transpose(x, k, strides=2), *args[:2])


@pytest.mark.parametrize("channels", ["last", "first"])
def test_depthwise_conv_matches_torch(rng, channels):
    torch = pytest.importorskip("torch")
    x, k, b = rng.standard_normal((2, 5, 6, 3)), rng.standard_normal((3, 2, 1, 6)), rng.standard_normal(6)
    opts = dict(strides=2, padding="same", kernel_dilation=(1, 2))      # H: n 5, k 3 -> (1, 1); W: n 6, k' 3 -> (0, 1)
    ref = lambda x, k, b: torch_conv(x, k, (2, 2), [(1, 1), (0, 1)], (1, 2), groups=3) + b
    if channels == "last":
        against_torch(lambda x, k, b: L.depthwise_conv(x, k, b, **opts), ref, (x, k, b))
    else:
        against_torch(lambda x, k, b: L.depthwise_conv(x, k, b, channels="first", **opts),
                      lambda x, k, b: nchw(ref(nhwc(x), k, b)), (nchw(x), k, b))
    check_grads(lambda x, k: L.depthwise_conv(x, k, strides=2), (x[:1, :3, :3], k))


def _outer_kernel(ks):
    """The depthwise kernel (*k, 1, C) that a chain of per-axis kernels (k_j along axis j) amounts to."""
    full = ks[0]
    for k in ks[1:]:
        full = full * k                                        # broadcasting: size-1 axes pick up k_j
    return full


@pytest.mark.parametrize("channels", ["last", "first"])
def test_separable_conv2d_is_depthwise_with_outer_kernel(rng, channels):
    x = rng.standard_normal((2, 7, 6, 2))
    k1, k2 = rng.standard_normal((3, 1, 1, 4)), rng.standard_normal((1, 2, 1, 4))
    b1, b2 = rng.standard_normal(4), rng.standard_normal(4)
    opts = dict(strides=(2, 3), padding="same", kernel_dilation=(2, 1), channels=channels)
    xc = nchw(x) if channels == "first" else x
    y = L.separable_conv2d(xc, k1, None, k2, None, **opts)
    np.testing.assert_allclose(y.numpy(), L.depthwise_conv(xc, _outer_kernel([k1, k2]), **opts).numpy(), atol=1e-12)
    assert L.separable_conv2d_output_shape(xc.shape, k1.shape, k2.shape, **opts) == y.shape
    # without padding, the first bias goes through the second (width) convolution: b1 * sum(k2), then + b2
    opts["padding"] = "valid"
    added = L.separable_conv2d(xc, k1, b1, k2, b2, **opts).numpy() - L.separable_conv2d(xc, k1, None, k2, None,
                                                                                         **opts).numpy()
    bias = b1 * k2.sum(axis=(0, 1, 2)) + b2                     # (4,) per output channel
    np.testing.assert_allclose(added, np.broadcast_to(bias.reshape((-1, 1, 1) if channels == "first" else -1),
                                                      added.shape), atol=1e-12)


def test_separable_conv2d_finite_differences(rng):
    args = (rng.standard_normal((1, 4, 3, 2)), rng.standard_normal((2, 1, 1, 2)), rng.standard_normal(2),
            rng.standard_normal((1, 2, 1, 2)), rng.standard_normal(2))
    check_grads(lambda x, k1, b1, k2, b2: L.separable_conv2d(x, k1, b1, k2, b2, padding=[(1, 0), (0, 1)]), args)


def test_separable_conv3d_is_depthwise_with_outer_kernel(rng):
    x = rng.standard_normal((1, 4, 5, 3, 2))
    ks = [rng.standard_normal(s + (1, 2)) for s in [(2, 1, 1), (1, 3, 1), (1, 1, 2)]]
    opts = dict(strides=(1, 2, 1), padding=[(0, 1), (1, 1), (0, 0)])
    y = L.separable_conv3d(x, ks[0], None, ks[1], None, ks[2], None, **opts)
    np.testing.assert_allclose(y.numpy(), L.depthwise_conv(x, _outer_kernel(ks), **opts).numpy(), atol=1e-12)
    check_grads(lambda x, a, b, c: L.separable_conv3d(x, a, None, b, None, c, None), (x[:, :3, :3, :2], *ks))


@pytest.mark.parametrize("call, match", [
    (lambda: L.conv(np.ones((2, 5, 3)), np.ones((3, 4, 8))),
     r"conv: kernel expects 4 input channels, input has 3 \(input shape \(2, 5, 3\), kernel shape \(3, 4, 8\)\)"),
    (lambda: L.conv(np.ones((2, 4, 5)), np.ones((3, 3, 8)), channels="first"),
     r"conv: kernel expects 3 input channels, input has 4 \(input shape \(2, 4, 5\)"),
    (lambda: L.conv(np.ones((2, 5)), np.ones((3, 3, 8))), r"conv: expects input of rank 3, 4 or 5 .*got shape \(2, 5\)"),
    (lambda: L.conv(np.ones((1, 5, 5, 3)), np.ones((3, 3, 8))),
     r"conv: expects kernel of rank 4 .* got kernel shape \(3, 3, 8\)"),
    (lambda: L.conv(np.ones((1, 4, 4, 3)), np.ones((5, 3, 3, 8))),
     r"conv: kernel spatial size \(5, 3\) is larger than the padded input \(4, 4\) \(input shape \(1, 4, 4, 3\), "
     r"kernel shape \(5, 3, 3, 8\)"),
    (lambda: L.conv(np.ones((1, 4, 3)), np.ones((3, 3, 8)), kernel_dilation=2),
     r"conv: kernel spatial size \(5,\) is larger than the padded input \(4,\)"),
    (lambda: L.conv(np.ones((1, 4, 6)), np.ones((3, 2, 6)), feature_group_size=2),
     r"conv: kernel expects 4 input channels \(2 per group x 2 groups\), input has 6"),
    (lambda: L.conv(np.ones((1, 4, 6)), np.ones((3, 2, 5)), feature_group_size=3),
     r"conv: feature_group_size 3 must divide"),
    (lambda: L.conv(np.ones((1, 4, 3)), np.ones((3, 3, 8)), padding="full"), r'conv: padding must be "valid", "same"'),
    (lambda: L.conv(np.ones((1, 4, 3)), np.ones((3, 3, 8)), strides=(1, 2)),
     r"conv: strides must be an int or a sequence of 1 ints"),
    (lambda: L.conv(np.ones((1, 4, 3)), np.ones((3, 3, 8)), strides=0), r"conv: strides must be >= 1"),
    (lambda: L.conv(np.ones((1, 4, 3)), np.ones((3, 3, 8)), np.ones(3)), r"conv: bias must have shape \(8,\), got \(3,\)"),
    (lambda: L.conv_transpose(np.ones((1, 4, 3)), np.ones((3, 2, 8))), r"conv_transpose: kernel expects 2 input channels"),
    (lambda: L.conv_transpose(np.ones((1, 4)), np.ones((3, 2, 8))), r"conv_transpose: expects input of rank 3, 4 or 5"),
    (lambda: L.depthwise_conv(np.ones((1, 4, 3)), np.ones((3, 3, 6))), r"depthwise_conv: expects kernel \(\*kernel_size, 1"),
    (lambda: L.depthwise_conv(np.ones((1, 4, 3)), np.ones((3, 1, 4))),
     r"depthwise_conv: the kernel's output channels \(4\) must be a multiple of the input channels \(3\)"),
    (lambda: L.separable_conv2d(np.ones((1, 4, 4, 2)), np.ones((3, 3, 1, 2)), None, np.ones((1, 3, 1, 2)), None),
     r"separable_conv2d: kernel 1 must have shape \('k', 1, 1, 'C_in \* multiplier'\)"),
    (lambda: L.separable_conv2d(np.ones((1, 4, 2)), np.ones((3, 1, 2)), None, np.ones((1, 3, 2)), None),
     r"separable_conv2d: expects input of rank 4"),
])
def test_conv_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_conv_dtype_mismatch_names_the_layer():
    with pytest.raises(TypeError, match="conv_transpose: input and kernel must have the same dtype, got float32 and float64"):
        L.conv_transpose(np.ones((1, 4, 2), np.float32), np.ones((3, 2, 2)))
