"""axon.kernels pooling against a plain-numpy reference, finite differences and PyTorch."""

import numpy as np
import pytest

from axon.autograd import Tensor, check_grads
from axon.kernels import (adaptive_avg_pool, adaptive_max_pool, avg_pool, global_avg_pool, global_max_pool,
                          lp_pool, max_pool)

from axon.kernels import pool as pool_module


def reference_pool(x, bins_per_axis, reduce):
    """Apply ``reduce`` (on an (N, box..., C) array, over the box axes) to each box of the bins."""
    n = x.ndim - 2
    out = np.empty((x.shape[0], *[len(b) for b in bins_per_axis], x.shape[-1]))
    for o in np.ndindex(*out.shape[1:-1]):
        box = x[(slice(None),) + tuple(slice(*bins_per_axis[a][o[a]]) for a in range(n))]
        out[(slice(None),) + o] = reduce(box.reshape(x.shape[0], -1, x.shape[-1]))
    return out


def window_bins(sizes, window, strides, padding):
    """Per axis: the list of (start, stop) of each window, clipped to the input."""
    bins = []
    for n, k, s, (lo, hi) in zip(sizes, window, strides, padding):
        o = (n + lo + hi - k) // s + 1
        bins.append([(max(i * s - lo, 0), min(i * s - lo + k, n)) for i in range(o)])
    return bins


def adaptive_bins(sizes, out):
    return [[(i * n // o, -(-(i + 1) * n // o)) for i in range(o)] for n, o in zip(sizes, out)]


# (x shape, window, strides, padding)
CASES = [
    ((2, 7, 3), (2,), (2,), ((0, 0),)),                                          # 1-d
    ((1, 6, 5, 3), (2, 2), (2, 2), ((0, 0), (0, 1))),                            # batch 1, odd width
    ((2, 5, 7, 2), (3, 2), (1, 2), ((1, 1), (1, 0))),                            # overlapping, padded
    ((1, 3, 5, 4, 2), (2, 3, 2), (2, 1, 2), ((1, 0), (1, 1), (0, 1))),          # 3-d
]


@pytest.mark.parametrize("case", CASES)
def test_max_pool_matches_reference_and_gradients(rng, case):
    shape, window, strides, padding = case
    x = rng.standard_normal(shape)
    y = max_pool(x, window, strides, padding)
    want = reference_pool(x, window_bins(shape[1:-1], window, strides, padding), lambda b: b.max(axis=1))
    np.testing.assert_allclose(y.numpy(), want, rtol=0, atol=0)
    check_grads(lambda x: max_pool(x, window, strides, padding), (x,))         # distinct values: smooth


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("include", [True, False])
def test_avg_pool_matches_reference_and_gradients(rng, case, include):
    shape, window, strides, padding = case
    x = rng.standard_normal(shape)
    y = avg_pool(x, window, strides, padding, count_include_pad=include)
    size = np.prod(window)
    mean = (lambda b: b.sum(axis=1) / size) if include else (lambda b: b.mean(axis=1))
    want = reference_pool(x, window_bins(shape[1:-1], window, strides, padding), mean)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-12, atol=1e-12)
    check_grads(lambda x: avg_pool(x, window, strides, padding, count_include_pad=include), (x,))


@pytest.mark.parametrize("p", [1, 2, 3.5])
def test_lp_pool_matches_reference_and_gradients(rng, p):
    shape, window, strides, padding = CASES[2]
    x = rng.uniform(0.5, 2.0, shape)                                            # positive: any p is defined
    y = lp_pool(x, p, window, strides, padding)
    want = reference_pool(x, window_bins(shape[1:-1], window, strides, padding),
                          lambda b: (b ** p).sum(axis=1) ** (1 / p))
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-12)
    check_grads(lambda x: lp_pool(x, p, window, strides, padding), (x,))


@pytest.mark.parametrize("shape, out", [((2, 7, 3), (3,)), ((1, 5, 7, 2), (2, 3)), ((2, 5, 4, 3, 2), (3, 2, 2)),
                                        ((2, 3, 3, 2), (5, 4))])               # more bins than inputs too
def test_adaptive_pools_match_reference_and_gradients(rng, shape, out):
    x = rng.standard_normal(shape)
    bins = adaptive_bins(shape[1:-1], out)
    np.testing.assert_allclose(adaptive_max_pool(x, out).numpy(), reference_pool(x, bins, lambda b: b.max(axis=1)))
    np.testing.assert_allclose(adaptive_avg_pool(x, out).numpy(), reference_pool(x, bins, lambda b: b.mean(axis=1)),
                               rtol=1e-12)
    check_grads(lambda x: adaptive_avg_pool(x, out), (x,))
    check_grads(lambda x: adaptive_max_pool(x, out), (x,))


@pytest.mark.parametrize("case", CASES[1:])
def test_parallel_path_agrees_with_serial(rng, monkeypatch, case):
    shape, window, strides, padding = case
    x = rng.standard_normal(shape).astype(np.float32)                         # float32: parallel kernels compile once
    pools = [lambda t: max_pool(t, window, strides, padding), lambda t: avg_pool(t, window, strides, padding),
             lambda t: lp_pool(t, 3, window, strides, padding),
             lambda t: adaptive_max_pool(t, (2,) * (x.ndim - 2)), lambda t: adaptive_avg_pool(t, (3,) * (x.ndim - 2))]

    def values_and_grads(f):
        X = Tensor(np.abs(x) + np.float32(0.1), requires_grad=True)            # positive, for lp_pool
        y = f(X)
        (y * y).sum().backward()
        return y.numpy(), X.grad

    expected = [values_and_grads(f) for f in pools]
    monkeypatch.setattr(pool_module, "PARALLEL_MIN", 0)
    for f, want in zip(pools, expected):
        for g, w in zip(values_and_grads(f), want):
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def test_global_pools(rng):
    x = rng.standard_normal((3, 4, 5, 2)).astype(np.float32)
    np.testing.assert_allclose(global_avg_pool(x).numpy(), x.mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_array_equal(global_max_pool(x).numpy(), x.max(axis=(1, 2)))
    assert global_avg_pool(x).dtype == global_max_pool(x).dtype == np.float32
    check_grads(global_avg_pool, (x.astype(np.float64),))


def test_max_pool_padding_never_wins_and_nan_propagates():
    x = np.full((1, 2, 2, 1), -5.0, np.float32)
    y = max_pool(x, (2, 2), (1, 1), ((1, 1), (1, 1)))
    assert (y.numpy() == -5.0).all()                                           # never the padding's 0 or -inf
    x = np.array([[[1.0], [np.nan], [3.0], [2.0]]], np.float32)
    np.testing.assert_array_equal(max_pool(x, (2,), (2,), ((0, 0),)).numpy().ravel(), [np.nan, 3.0])


def test_max_pool_gradient_goes_to_the_maximum():
    x = Tensor(np.array([[[1.0], [4.0], [2.0], [3.0]]], np.float32), requires_grad=True)
    max_pool(x, (2,), (1,), ((0, 0),)).sum().backward()                       # windows [1,4] [4,2] [2,3]
    np.testing.assert_array_equal(x.grad.ravel(), [0, 2, 0, 1])
    assert x.grad.dtype == np.float32


@pytest.mark.parametrize("case", CASES[1:3])
def test_pools_match_torch(rng, case):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    shape, window, strides, padding = case
    x = rng.standard_normal(shape).astype(np.float32)
    sym = tuple(lo for lo, _ in padding)
    # torch pads symmetrically: compare on the symmetric part, cropped to the same output
    pads = tuple((lo, lo) for lo in sym)
    for ours, theirs in [
        (lambda t: max_pool(t, window, strides, pads), lambda t: F.max_pool2d(t, window, strides, sym)),
        (lambda t: avg_pool(t, window, strides, pads), lambda t: F.avg_pool2d(t, window, strides, sym)),
        (lambda t: avg_pool(t, window, strides, pads, count_include_pad=False),
         lambda t: F.avg_pool2d(t, window, strides, sym, count_include_pad=False)),
        (lambda t: adaptive_max_pool(t, (2, 3)), lambda t: F.adaptive_max_pool2d(t, (2, 3))),
        (lambda t: adaptive_avg_pool(t, (3, 2)), lambda t: F.adaptive_avg_pool2d(t, (3, 2))),
    ]:
        X = Tensor(x, requires_grad=True)
        y = ours(X)
        u = rng.standard_normal(y.shape).astype(np.float32)
        y.backward(u)
        xt = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)
        yt = theirs(xt)
        yt.backward(torch.tensor(np.moveaxis(u, -1, 1)))
        np.testing.assert_allclose(y.numpy(), np.moveaxis(yt.detach().numpy(), 1, -1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(X.grad, np.moveaxis(xt.grad.numpy(), 1, -1), rtol=1e-5, atol=1e-6)
        assert X.grad.dtype == np.float32


def test_lp_pool_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.uniform(0.1, 2.0, (2, 6, 5, 3)).astype(np.float32)
    X = Tensor(x, requires_grad=True)
    y = lp_pool(X, 3, (2, 2), (2, 1), ((0, 0), (0, 0)))
    y.sum().backward()
    xt = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)
    yt = torch.nn.functional.lp_pool2d(xt, 3, (2, 2), (2, 1))
    yt.sum().backward()
    np.testing.assert_allclose(y.numpy(), np.moveaxis(yt.detach().numpy(), 1, -1), rtol=1e-5)
    np.testing.assert_allclose(X.grad, np.moveaxis(xt.grad.numpy(), 1, -1), rtol=1e-4, atol=1e-6)


def test_pool_bad_arguments_raise_clear_errors(rng):
    x = rng.standard_normal((2, 4, 4, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"padding \(\(2, 0\), \(0, 0\)\) must be smaller than the window \(2, 2\)"):
        max_pool(x, (2, 2), (2, 2), ((2, 0), (0, 0)))
    with pytest.raises(ValueError, match="window must be an int or a sequence of 2 ints"):
        max_pool(x, (2,), (2, 2), ((0, 0), (0, 0)))
    with pytest.raises(ValueError, match="larger than the padded input"):
        avg_pool(x, (5, 2), (1, 1), ((0, 0), (0, 0)))
    with pytest.raises(ValueError, match=r"output_size must be >= 1, got \(2, 0\)"):
        adaptive_avg_pool(x, (2, 0))
    with pytest.raises(ValueError, match="norm must be a positive number"):
        lp_pool(x, 0, (2, 2), (2, 2), ((0, 0), (0, 0)))
    with pytest.raises(ValueError, match="1 to 3 spatial axes"):
        global_max_pool(x[0, 0])
    with pytest.raises(TypeError, match="float32 or float64"):
        max_pool(x.astype(np.int64), (2, 2), (2, 2), ((0, 0), (0, 0)))
