"""Windowed pools with window_dilations and max pooling padded up to the window (Axon's options)."""
import itertools

import numpy as np
import pytest

from axon.autograd import Tensor, check_grads
from axon.functional import layers as L
from axon.functional.layers import pooling as P

r = np.random.default_rng(11)


def pool_by_hand(x, window, strides, dilations, pads, reduce, fill):
    """A loop over outputs and taps, channels-last (N, *S, C): the definition, independently of axon."""
    xp = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=fill)
    span = [d * (k - 1) + 1 for k, d in zip(window, dilations)]
    out = [(n - e) // s + 1 for n, e, s in zip(xp.shape[1:-1], span, strides)]
    y = np.empty((x.shape[0], *out, x.shape[-1]))
    for o in itertools.product(*(range(n) for n in out)):
        taps = [xp[(slice(None), *(oi * s + j * d for oi, s, j, d in zip(o, strides, js, dilations)), slice(None))]
                for js in itertools.product(*(range(k) for k in window))]
        y[(slice(None), *o, slice(None))] = reduce(np.stack(taps))
    return y


def test_max_pool_dilations_match_torch_values_and_grads():
    torch = pytest.importorskip("torch")
    x = r.standard_normal((2, 11, 9, 3))                                # (N, H, W, C)
    for k, s, d, p in [(3, 1, 2, 0), (2, 2, 3, 1), (3, 2, 2, 1)]:
        tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
        ty = torch.nn.functional.max_pool2d(tx, k, stride=s, padding=p, dilation=d)
        xt = Tensor(x, requires_grad=True)
        y = L.max_pool(xt, k, strides=s, padding=p, window_dilations=d)
        np.testing.assert_allclose(y.numpy(), ty.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-12)
        dy = r.standard_normal(y.shape)
        (y * dy).sum().backward()
        ty.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
        np.testing.assert_allclose(xt.grad, tx.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-12)
        assert L.max_pool_output_shape(x.shape, k, strides=s, padding=p, window_dilations=d) == y.shape


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_and_lp_pool_dilations_by_hand(count_include_pad):
    x = r.uniform(0.1, 2.0, (2, 10, 3))                                 # (N, W, C), positive for lp
    window, strides, dilations, pads = (3,), (2,), (2,), ((2, 1),)
    total = pool_by_hand(x, window, strides, dilations, pads, lambda t: t.sum(0), 0.0)
    count = pool_by_hand(np.ones_like(x), window, strides, dilations, pads, lambda t: t.sum(0), 0.0)
    want = total / (3 if count_include_pad else count)
    got = L.avg_pool(x, 3, strides=2, padding=[(2, 1)], window_dilations=2, count_include_pad=count_include_pad)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    lp = L.lp_pool(x, 3, strides=2, padding=[(2, 1)], norm=3, window_dilations=2)
    np.testing.assert_allclose(lp.numpy(), pool_by_hand(x, window, strides, dilations, pads,
                                                        lambda t: (t ** 3).sum(0) ** (1 / 3), 0.0), rtol=1e-12)
    check_grads(lambda x: L.avg_pool(x, 3, strides=2, padding=[(2, 1)], window_dilations=2,
                                     count_include_pad=count_include_pad), (x,), order=1)
    check_grads(lambda x: L.lp_pool(x, 3, strides=2, norm=3, window_dilations=2), (x,), order=1)


def test_max_pool_padding_up_to_the_window():
    x = r.standard_normal((1, 5, 4, 2))
    y = L.max_pool(x, 2, padding=[(2, 2), (1, 2)])                      # whole windows of padding: -inf
    want = pool_by_hand(x, (2, 2), (2, 2), (1, 1), ((2, 2), (1, 2)), lambda t: t.max(0), -np.inf)
    np.testing.assert_array_equal(y.numpy(), want)
    assert np.isneginf(y.numpy()[0, 0]).all() and np.isfinite(y.numpy()[0, 1]).all()
    check_grads(lambda x: L.max_pool(x, 2, padding=[(1, 2), (2, 1)], strides=1)[:, 1:-1, 1:-1], (x,), order=1)
    assert L.max_pool_output_shape((None, 5, 4, 2), 2, padding=[(2, 2), (1, 2)]) == (None, 4, 3, 2)
    with pytest.raises(ValueError, match=r"max_pool: padding \(\(3, 0\),\) must be at most the window \(2,\)"):
        L.max_pool(x[:, :, 0], 2, padding=[(3, 0)])
    with pytest.raises(ValueError, match=r"avg_pool: padding \(\(2, 0\),\) must be smaller than the window"):
        L.avg_pool(x[:, :, 0], 2, padding=[(2, 0)])
    with pytest.raises(ValueError, match=r"window_dilations must be >= 1, got 0"):
        L.max_pool(x, 2, window_dilations=0)


def test_the_slice_path_equals_the_kernels_where_both_apply():
    x = r.standard_normal((2, 7, 6, 3)).astype(np.float32)
    window, strides, dilations, pads = (3, 2), (2, 1), (1, 1), ((1, 1), (0, 1))
    out = P._dilated_geometry("max_pool", x.shape, window, strides, pads, "last")[-1]
    taps = list(P._taps(Tensor(x), window, strides, dilations, pads, out, -np.inf))
    np.testing.assert_array_equal(np.max([t.numpy() for t in taps], 0),
                                  L.max_pool(x, window, strides=strides, padding=pads).numpy())
    y = L.max_pool(x, window, strides=strides, padding=pads, window_dilations=(2, 1))
    assert y.dtype == np.float32 and L.avg_pool(x, 2, window_dilations=2).dtype == np.float32


def test_channels_first_and_the_model_builder():
    import axon
    x = r.standard_normal((2, 3, 9)).astype(np.float32)                 # (N, C, W)
    first = L.max_pool(x, 2, strides=1, window_dilations=3, channels="first").numpy()
    last = L.max_pool(x.transpose(0, 2, 1), 2, strides=1, window_dilations=3).numpy()
    np.testing.assert_array_equal(first, last.transpose(0, 2, 1))
    model = axon.input((None, 9, 3)).avg_pool(kernel_size=2, strides=1, window_dilations=3)
    assert model.shape == (None, 6, 3)
    np.testing.assert_allclose(axon.predict(model, {}, x.transpose(0, 2, 1)),
                               L.avg_pool(x.transpose(0, 2, 1), 2, strides=1, window_dilations=3).numpy(), rtol=1e-6)
