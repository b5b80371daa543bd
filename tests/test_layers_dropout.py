"""Dropout layers: explicit keys, inverted scaling, masks shared along the right axes, alpha dropout's
mean and variance, identity at inference."""
import numpy as np
import pytest

import axon.functional.layers as L
from axon.autograd import Tensor, check_grads

from test_layers_helpers import keeps_float32

ALPHA_P = -1.0507009873554804934193349852946 * 1.6732632423543772848170429916717     # -scale * alpha


def test_dropout_keeps_with_probability_and_scales(rng):
    x = rng.standard_normal((200, 300))
    y = L.dropout(x, key=1, rate=0.3).numpy()
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], x[kept] / 0.7)


def test_dropout_same_key_same_mask_and_generators(rng):
    x = rng.standard_normal((4, 50))
    a, b, c = (L.dropout(x, key=k, rate=0.5).numpy() for k in (7, 7, 8))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(L.dropout(x, g1).numpy(), L.dropout(x, g2).numpy())


def test_dropout_gradient_is_the_mask(rng):
    x = Tensor(rng.standard_normal((3, 8)), requires_grad=True)
    y = L.dropout(x, key=0, rate=0.25)
    dy = rng.standard_normal(y.shape)
    y.backward(dy)
    np.testing.assert_allclose(x.grad, dy * (y.numpy() != 0) / 0.75)
    check_grads(lambda x: L.dropout(x, key=0, rate=0.25), (x.numpy(),), order=2)


def test_dropout_identity_at_inference_and_rate_zero(rng):
    x = rng.standard_normal((3, 4))
    for layer in (L.dropout, L.alpha_dropout):
        np.testing.assert_array_equal(layer(x, 0, rate=0.9, training=False).numpy(), x)
        np.testing.assert_array_equal(layer(x, 0, rate=0.0).numpy(), x)
    for layer in (L.spatial_dropout, L.feature_alpha_dropout):
        np.testing.assert_array_equal(layer(x[None], 0, training=False).numpy(), x[None])


def test_dropout_noise_shape_broadcasts(rng):
    x = rng.standard_normal((2, 30, 4)) + 5.0                  # never zero by chance
    y = L.dropout(x, key=3, rate=0.5, noise_shape=(2, 1, 4)).numpy()
    dropped = y == 0
    assert (dropped == dropped[:, :1]).all()                   # one decision per (example, feature)
    assert dropped.any() and not dropped.all()


@pytest.mark.parametrize("channels", ["last", "first"])
def test_spatial_dropout_drops_whole_feature_maps(rng, channels):
    x = rng.standard_normal((3, 4, 5, 6)) + 5.0
    y = L.spatial_dropout(x, key=2, rate=0.5, channels=channels).numpy()
    dropped = (y == 0)
    per_map = dropped.all(axis=(1, 2)) if channels == "last" else dropped.all(axis=(2, 3))
    any_map = dropped.any(axis=(1, 2)) if channels == "last" else dropped.any(axis=(2, 3))
    np.testing.assert_array_equal(per_map, any_map)            # a map is dropped entirely or not at all
    assert per_map.any() and not per_map.all()
    np.testing.assert_allclose(y[~dropped], x[~dropped] * 2)
    keeps_float32(lambda x: L.spatial_dropout(x, 0), x)
    check_grads(lambda x: L.spatial_dropout(x, key=2, channels=channels), (x[:1, :2],), order=2)


def _alpha_constants(rate):
    a = ((1 - rate) * (1 + rate * ALPHA_P ** 2)) ** -0.5
    return a, -a * ALPHA_P * rate


def test_alpha_dropout_formula_and_statistics(rng):
    x = rng.standard_normal(200_000)
    rate = 0.2
    y = L.alpha_dropout(x, key=4, rate=rate).numpy()
    a, b = _alpha_constants(rate)
    dropped = np.isclose(y, a * ALPHA_P + b) & ~np.isclose(y, a * x + b)
    np.testing.assert_allclose(y[~dropped], a * x[~dropped] + b)
    assert abs(dropped.mean() - rate) < 0.01
    assert abs(y.mean()) < 0.01 and abs(y.std() - 1) < 0.01     # self-normalizing: mean 0, variance 1
    keeps_float32(lambda x: L.alpha_dropout(x, 0), x[:10])
    check_grads(lambda x: L.alpha_dropout(x, key=1, rate=0.3), (x[:12],), order=2)


def test_alpha_dropout_constants_match_torch(rng):
    """Torch draws its own mask, but every output must be either a x + b or a alpha' + b, with its a and b."""
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(5000)
    rate = 0.35
    a, b = _alpha_constants(rate)
    y_t = torch.nn.functional.alpha_dropout(torch.tensor(x), rate, training=True).numpy()
    assert (np.isclose(y_t, a * x + b) | np.isclose(y_t, a * ALPHA_P + b)).all()
    assert (~np.isclose(y_t, a * x + b)).any()


@pytest.mark.parametrize("channels", ["last", "first"])
def test_feature_alpha_dropout_per_channel(rng, channels):
    x = rng.standard_normal((4, 6, 7)) + 10.0
    rate = 0.4
    y = L.feature_alpha_dropout(x, key=5, rate=rate, channels=channels).numpy()
    a, b = _alpha_constants(rate)
    dropped = np.isclose(y, a * ALPHA_P + b)
    per_channel = dropped.all(axis=1) if channels == "last" else dropped.all(axis=2)
    np.testing.assert_array_equal(per_channel, dropped.any(axis=1) if channels == "last" else dropped.any(axis=2))
    assert per_channel.any() and not per_channel.all()
    np.testing.assert_allclose(y[~dropped], a * x[~dropped] + b)
    check_grads(lambda x: L.feature_alpha_dropout(x, key=5, rate=rate, channels=channels), (x[:2, :3, :3],),
                order=2)


@pytest.mark.parametrize("call, match", [
    (lambda: L.dropout(np.ones(3), 0, rate=1.0), r"dropout: rate must be a number in \[0, 1\), got 1.0"),
    (lambda: L.dropout(np.ones(3), 0, rate=-0.1), r"dropout: rate must be"),
    (lambda: L.dropout(np.ones((2, 3)), 0, noise_shape=(2, 2)),
     r"dropout: noise_shape \(2, 2\) does not broadcast to the input shape \(2, 3\)"),
    (lambda: L.alpha_dropout(np.ones(3), 0, rate=1.5), r"alpha_dropout: rate must be"),
    (lambda: L.spatial_dropout(np.ones((1, 2, 2, 3)), 0, rate=1.5), r"^spatial_dropout: rate must be"),
    (lambda: L.spatial_dropout(np.ones((2, 3)), 0), r"spatial_dropout: expects input of rank 3, 4 or 5"),
    (lambda: L.feature_alpha_dropout(np.ones((2, 3, 4)), 0, channels="left"), r"feature_alpha_dropout: channels must"),
])
def test_dropout_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_dropout_rejects_a_bad_key():
    with pytest.raises(TypeError, match="random key"):
        L.dropout(np.ones(3), "seed")
