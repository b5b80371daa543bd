"""Pooling layers: windowed, adaptive and global pools against torch and finite differences."""
import numpy as np
import pytest

import axon.functional.layers as L
from axon.autograd import Tensor, check_grads

from test_layers_helpers import against_torch, keeps_float32, nchw, nhwc


def distinct(rng, shape):
    """Values at least 0.05 apart, so every window has one clear maximum (max is differentiable there)."""
    n = int(np.prod(shape))
    return rng.permutation(np.arange(n) * 0.05 - n * 0.025).reshape(shape)


def torch_pool(kind, x, window, strides, pads, count_include_pad=True):
    """Reference pooling on a channels-last torch tensor: explicit F.pad, then torch's pool without padding."""
    import torch
    F = torch.nn.functional
    n = x.ndim - 2
    flat = [v for lo_hi in reversed(pads) for v in lo_hi]
    xt = nchw(x)
    if kind == "max":
        y = getattr(F, f"max_pool{n}d")(F.pad(xt, flat, value=-np.inf), window, strides)
    elif count_include_pad:
        y = getattr(F, f"avg_pool{n}d")(F.pad(xt, flat), window, strides)
    else:                                                      # symmetric padding only
        y = getattr(F, f"avg_pool{n}d")(xt, window, strides, [lo for lo, _ in pads], count_include_pad=False)
    return nhwc(y)


# name: input shape, options, the padding they resolve to
POOL_CASES = {
    "1d_default_strides": ((2, 7, 3), dict(kernel_size=2), [(0, 0)]),
    "1d_same_stride2": ((1, 6, 2), dict(kernel_size=3, strides=2, padding="same"), [(0, 1)]),
    "2d_overlapping_odd": ((2, 5, 7, 3), dict(kernel_size=(3, 2), strides=(2, 1)), [(0, 0), (0, 0)]),
    "2d_explicit_padding": ((1, 4, 5, 2), dict(kernel_size=3, strides=2, padding=[(1, 1), (2, 0)]), [(1, 1), (2, 0)]),
    "2d_same_batch1": ((1, 5, 5, 1), dict(kernel_size=2, strides=2, padding="same"), [(0, 1), (0, 1)]),
    "3d": ((1, 4, 3, 5, 2), dict(kernel_size=(2, 2, 3), strides=(2, 1, 2)), [(0, 0)] * 3),
}


def _reference_options(opts):
    return opts["kernel_size"], opts.get("strides", opts["kernel_size"])


@pytest.mark.parametrize("channels", ["last", "first"])
@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_window_pools_match_torch(rng, kind, case, channels):
    pytest.importorskip("torch")
    shape, opts, pads = POOL_CASES[case]
    x = distinct(rng, shape)
    window, strides = _reference_options(opts)
    layer = L.max_pool if kind == "max" else L.avg_pool
    to_first = nchw if channels == "first" else (lambda a: a)
    from_first = nhwc if channels == "first" else (lambda a: a)
    against_torch(lambda x: layer(x, channels=channels, **opts),
                  lambda x: to_first(torch_pool(kind, from_first(x), window, strides, pads)), (to_first(x),))
    shape_fn = L.max_pool_output_shape if kind == "max" else L.avg_pool_output_shape
    assert shape_fn(to_first(x).shape, channels=channels, **opts) == layer(to_first(x), channels=channels, **opts).shape
    keeps_float32(lambda x: layer(x, **opts), x)


def test_avg_pool_without_padding_in_the_count(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 5, 4, 3))
    against_torch(lambda x: L.avg_pool(x, 3, strides=2, padding=1, count_include_pad=False),
                  lambda x: torch_pool("avg", x, 3, 2, [(1, 1), (1, 1)], count_include_pad=False), (x,))


@pytest.mark.parametrize("case", ["1d_default_strides", "2d_overlapping_odd", "3d"])
def test_lp_pool_matches_torch(rng, case):
    torch = pytest.importorskip("torch")
    shape, opts, _ = POOL_CASES[case]
    n = len(shape) - 2
    fn = getattr(torch.nn.functional, f"lp_pool{n}d", None)
    if fn is None:
        pytest.skip(f"torch without lp_pool{n}d")
    x = np.abs(rng.standard_normal(shape)) + 0.1
    window, strides = _reference_options(opts)
    for norm in (2, 3.0):
        against_torch(lambda x: L.lp_pool(x, norm=norm, **opts), lambda x: nhwc(fn(nchw(x), norm, window, strides)),
                      (x,))


def test_lp_pool_with_padding_adds_zeros(rng):
    x = np.abs(rng.standard_normal((1, 5, 2))) + 0.1
    y = L.lp_pool(x, 2, strides=2, padding="same", norm=2).numpy()       # pads (0, 1)
    xp = np.pad(x, [(0, 0), (0, 1), (0, 0)])
    np.testing.assert_allclose(y, np.sqrt((xp ** 2).reshape(1, 3, 2, 2).sum(axis=2)))


@pytest.mark.parametrize("kind", ["max", "avg", "lp"])
def test_window_pools_finite_differences(rng, kind):
    layer = {"max": L.max_pool, "avg": L.avg_pool, "lp": L.lp_pool}[kind]
    x = distinct(rng, (1, 5, 4, 2)) + (3.0 if kind == "lp" else 0.0)
    check_grads(lambda x: layer(x, 2, strides=(2, 1), padding="same"), (x,))
    check_grads(lambda x: layer(x, 3, strides=2, channels="first"), (nchw(x),))


# input spatial sizes -> output sizes: divisible, uneven, larger than the input, None keeps a size
ADAPTIVE_CASES = [((6,), (3,)), ((7,), (3,)), ((5, 7), (2, 3)), ((3, 4), (5, 4)), ((4, 5, 3), (2, 3, 2))]


@pytest.mark.parametrize("sizes, out", ADAPTIVE_CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_adaptive_pools_match_torch(rng, kind, sizes, out):
    torch = pytest.importorskip("torch")
    x = distinct(rng, (2, *sizes, 3))
    n = len(sizes)
    layer = L.adaptive_max_pool if kind == "max" else L.adaptive_avg_pool
    fn = getattr(torch.nn.functional, f"adaptive_{kind}_pool{n}d")
    against_torch(lambda x: layer(x, out), lambda x: nhwc(fn(nchw(x), out)), (x,))
    against_torch(lambda x: layer(x, out, channels="first"), lambda x: fn(x, out), (nchw(x),))
    assert L.output_shape(f"adaptive_{kind}_pool", (None, *sizes, 3), out) == (None, *out, 3)
    keeps_float32(lambda x: layer(x, out), x)


def _adaptive_lp_reference(x, out, norm):
    """Sum of x^p over PyTorch's bins, one output at a time (channels-last)."""
    sizes = x.shape[1:-1]
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    for o in np.ndindex(*out):
        window = tuple(slice(i * n // m, -(-(i + 1) * n // m)) for i, n, m in zip(o, sizes, out))
        y[(slice(None), *o)] = (x[(slice(None), *window)] ** norm).sum(axis=tuple(range(1, len(sizes) + 1)))
    return y ** (1 / norm)


@pytest.mark.parametrize("sizes, out", ADAPTIVE_CASES[1:3])
def test_adaptive_lp_pool(rng, sizes, out):
    x = np.abs(rng.standard_normal((2, *sizes, 2))) + 0.1
    np.testing.assert_allclose(L.adaptive_lp_pool(x, out, norm=3).numpy(), _adaptive_lp_reference(x, out, 3))
    np.testing.assert_allclose(L.adaptive_lp_pool(nchw(x), out, channels="first").numpy(),
                               nchw(_adaptive_lp_reference(x, out, 2)))
    check_grads(lambda x: L.adaptive_lp_pool(x, out), (x[:1],))


def test_adaptive_pool_none_keeps_size(rng):
    x = rng.standard_normal((1, 6, 5, 2))
    assert L.adaptive_avg_pool(x, (3, None)).shape == (1, 3, 5, 2)


def test_adaptive_pools_finite_differences(rng):
    x = distinct(rng, (1, 5, 4, 2))
    check_grads(lambda x: L.adaptive_max_pool(x, (2, 3)), (x,))
    check_grads(lambda x: L.adaptive_avg_pool(x, (3, 3)), (x,))


@pytest.mark.parametrize("channels", ["last", "first"])
@pytest.mark.parametrize("keep_axes", [False, True])
def test_global_pools(rng, channels, keep_axes):
    x = distinct(rng, (2, 3, 4, 5)) + 3.0
    axes = (1, 2) if channels == "last" else (2, 3)
    for layer, ref in [(L.global_avg_pool, lambda x: x.mean(axes, keepdims=keep_axes)),
                       (L.global_max_pool, lambda x: x.max(axes, keepdims=keep_axes)),
                       (L.global_lp_pool, lambda x: np.sqrt((x ** 2).sum(axes, keepdims=keep_axes)))]:
        y = layer(x, keep_axes=keep_axes, channels=channels)
        np.testing.assert_allclose(y.numpy(), ref(x))
        assert L.output_shape(layer.__name__, x.shape, keep_axes=keep_axes, channels=channels) == y.shape
        check_grads(lambda x: layer(x, keep_axes=keep_axes, channels=channels), (x[:1, :2],), order=2)
        keeps_float32(lambda x: layer(x, channels=channels), x)
    np.testing.assert_allclose(L.global_lp_pool(x, norm=1, channels=channels).numpy(), x.sum(axes))


def test_lp_pools_give_zero_gradient_on_zero_windows():
    x = Tensor(np.zeros((1, 4, 2)), requires_grad=True)
    for y in (L.lp_pool(x, 2), L.adaptive_lp_pool(x, 2), L.global_lp_pool(x)):
        y.sum().backward()
        assert np.isfinite(x.grad).all() and not x.grad.any()
        x.grad = None
    np.testing.assert_allclose(L.global_lp_pool(-np.ones((1, 3, 1)), norm=1).numpy(), [[-3.0]])


@pytest.mark.parametrize("call, match", [
    (lambda: L.max_pool(np.ones((1, 3, 2)), 4), r"max_pool: window spatial size \(4,\) is larger than the padded input \(3,\)"),
    (lambda: L.max_pool(np.ones((1, 3, 2)), 2, padding=[(3, 0)]), r"max_pool: padding \(\(3, 0\),\) must be at most the window"),
    (lambda: L.avg_pool(np.ones((1, 3, 2)), 2, padding=[(2, 0)]), r"avg_pool: padding \(\(2, 0\),\) must be smaller than the window"),
    (lambda: L.avg_pool(np.ones((3, 2)), 2), r"avg_pool: expects input of rank 3, 4 or 5"),
    (lambda: L.lp_pool(np.ones((1, 4, 2)), 2, norm=0), r"lp_pool: norm must be a positive number"),
    (lambda: L.max_pool(np.ones((1, 4, 4, 2)), (2, 2, 2)), r"max_pool: kernel_size must be an int or a sequence of 2 ints"),
    (lambda: L.adaptive_avg_pool(np.ones((1, 4, 4, 2)), (2,)), r"adaptive_avg_pool: output_size must be an int or a sequence of 2"),
    (lambda: L.adaptive_max_pool(np.ones((1, 4, 2)), 0), r"adaptive_max_pool: output_size must be >= 1"),
    (lambda: L.global_avg_pool(np.ones((1, 4))), r"global_avg_pool: expects input of rank 3, 4 or 5"),
])
def test_pooling_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
