"""Dropout layers: ``dropout``, ``spatial_dropout``, ``alpha_dropout``, ``feature_alpha_dropout``.

Each takes an explicit random ``key`` (an int seed or a numpy Generator, see ``axon.random.rng``):
the same key gives the same mask, so a run can be reproduced. With ``training=False`` each layer is
the identity. The mask is a constant: the gradient is ``dy`` times the same mask and scale.

>>> import numpy as np
>>> x = np.ones((2, 4), np.float32)
>>> dropout(x, key=0, rate=0.5).numpy()          # kept units scaled by 1 / (1 - rate)
array([[0., 0., 0., 2.],
       [2., 2., 2., 2.]], dtype=float32)
>>> dropout(x, key=0, rate=0.5, training=False).numpy().sum()
np.float32(8.0)
"""
from __future__ import annotations

import numbers

import numpy as np

from ...autograd import Tensor, apply, primitive
from ...kernels._common import on_backend_of
from ...random import Key, rng
from ._utils import channel_axis, check_spatial_input, tensor

__all__ = ["dropout", "spatial_dropout", "alpha_dropout", "feature_alpha_dropout", "dropout_output_shape",
           "spatial_dropout_output_shape", "alpha_dropout_output_shape", "feature_alpha_dropout_output_shape"]

# SELU's constants (Klambauer et al., 2017): alpha dropout sets dropped units to SELU's negative
# saturation value -scale * alpha, so the output keeps zero mean and unit variance.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def dropout_output_shape(input_shape, **_) -> tuple:
    """Dropout keeps the shape (also ``spatial_dropout``, ``alpha_dropout``, ``feature_alpha_dropout``).

    >>> dropout_output_shape((None, 28, 28, 3), rate=0.2)
    (None, 28, 28, 3)
    """
    return tuple(input_shape)


spatial_dropout_output_shape = alpha_dropout_output_shape = feature_alpha_dropout_output_shape = \
    dropout_output_shape


def _check_rate(layer, rate) -> float:
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise TypeError(f"{layer}: rate must be a number in [0, 1), got {rate!r} ({type(rate).__name__})")
    if not 0 <= rate < 1:
        raise ValueError(f"{layer}: rate must be a number in [0, 1), got {rate!r}")
    return float(rate)


def _check_noise_shape(layer, noise_shape, x_shape) -> tuple:
    """``noise_shape`` (default: ``x_shape``), which must broadcast to ``x_shape`` axis by axis."""
    noise_shape = tuple(x_shape) if noise_shape is None else tuple(noise_shape)
    if len(noise_shape) != len(x_shape) or any(m not in (1, n) for m, n in zip(noise_shape, x_shape)):
        raise ValueError(f"{layer}: noise_shape {noise_shape} does not broadcast to the input shape {tuple(x_shape)} "
                         f"(each axis must be 1 or the input's size)")
    return noise_shape


def _draw(gen, shape, rate, scale, dtype) -> np.ndarray:
    """``scale`` where a draw from ``gen`` keeps the unit (probability ``1 - rate``), else 0: (shape) in ``dtype``."""
    m = (gen.random(shape, dtype=np.float32) < 1 - rate).astype(dtype)
    return m if scale == 1 else m * dtype.type(scale)


# The key is an input array, so a plan of axon.jit draws a new mask from each call's key; ``like`` (the
# input x) says which backend the mask is made on, and its dtype. Never differentiated: a constant.
_keep_mask_prim = primitive("random.keep_mask", lambda key, like, salt, shape, rate, scale:
                            _draw(rng(int(key), *salt), shape, rate, scale, like.dtype))


def _keep_mask(key, x, rate, noise_shape, scale=1.0) -> Tensor:
    """A mask of ``noise_shape`` in ``x``'s dtype on ``x``'s device: ``scale`` with probability ``1 - rate``, else 0.

    An int key (or a model layer's ``Key``, or a 0-d integer array) is drawn by the primitive
    ``random.keep_mask`` on ``x``'s backend (the CUDA backend draws on the device with its own
    generator: the same key gives the same mask there, not the CPU's bits); a Generator (or None:
    fresh entropy) is drawn on the host from that stream.
    """
    if key is None or isinstance(key, np.random.Generator):
        m = _draw(rng(key), noise_shape, rate, scale, x.dtype)
        return on_backend_of(x, m)                             # drawn on the host: the same mask on every device
    k = key if isinstance(key, Key) else Key(key, ())
    if isinstance(k.key, (int, np.integer)) and not isinstance(k.key, bool):   # a 0-d uint64 Tensor
        k_t = Tensor._wrap(np.asarray(int(k.key) & 0xFFFFFFFFFFFFFFFF, np.uint64))
    elif getattr(k.key, "ndim", None) == 0 and k.key.dtype.kind in "iu":      # an array or Tensor (jit: a placeholder)
        k_t = k.key if isinstance(k.key, Tensor) else Tensor._wrap(k.key)
    else:
        raise TypeError(f"a random key must be an int seed, a numpy Generator or None, got {type(k.key).__name__}")
    return apply(_keep_mask_prim, k_t, x, salt=k.salt, shape=tuple(noise_shape), rate=rate, scale=scale)


def _channel_noise_shape(x_shape, channels) -> tuple:
    """(N, 1, ..., 1, C) (or (N, C, 1, ...)): one draw per example and channel."""
    c = channel_axis(len(x_shape), channels)
    return tuple(n if a in (0, c) else 1 for a, n in enumerate(x_shape))


def _inverted(layer, x, key, rate, training, noise_shape):
    """``x m / (1 - rate)``, the 0/1 mask ``m`` of ``noise_shape`` broadcast to ``x`` (the identity unless training)."""
    rate = _check_rate(layer, rate)
    noise_shape = _check_noise_shape(layer, noise_shape, x.shape)
    if not training or rate == 0:
        return x
    return x * _keep_mask(key, x, rate, noise_shape, scale=1 / (1 - rate))    # (noise_shape) broadcasts to x


def dropout(x, key, rate=0.5, training=True, noise_shape=None):
    """Inverted dropout: zero each unit with probability ``rate``, scale the rest by ``1 / (1 - rate)``.

    ``noise_shape`` (default: the input's shape) draws one decision per entry of a smaller shape that
    broadcasts to the input, e.g. ``(N, 1, C)`` drops whole channels of a sequence.

    >>> import numpy as np
    >>> dropout(np.ones((1, 6), np.float32), key=0, rate=0.5).numpy()      # kept: 1 / (1 - 0.5) = 2
    array([[0., 0., 0., 2., 2., 2.]], dtype=float32)
    >>> dropout(np.ones((2, 3), np.float32), key=1, noise_shape=(2, 1)).numpy()   # whole rows
    array([[2., 2., 2.],
           [0., 0., 0.]], dtype=float32)
    """
    return _inverted("dropout", tensor("dropout", x), key, rate, training, noise_shape)


def spatial_dropout(x, key, rate=0.5, training=True, channels="last"):
    """Dropout of whole feature maps: one decision per example and channel, shared over the spatial axes.

    ``x`` is (N, *spatial, C) (or (N, C, *spatial)); kept maps are scaled by ``1 / (1 - rate)``.
    As ``torch.nn.functional.dropout2d`` (channels-first) and Axon's ``spatial_dropout``.

    >>> import numpy as np
    >>> y = spatial_dropout(np.ones((1, 2, 2, 3), np.float32), key=2).numpy()
    >>> [float(v) for v in y[0, 0, 0]], bool((y[0] == y[0, 0, 0]).all())
    ([0.0, 2.0, 2.0], True)
    """
    x = tensor("spatial_dropout", x)
    check_spatial_input("spatial_dropout", x.shape, channels)
    return _inverted("spatial_dropout", x, key, rate, training, _channel_noise_shape(x.shape, channels))


def _alpha(layer, x, key, rate, training, noise_shape):
    """``a (x m + alpha' (1 - m)) + b`` with ``alpha' = -scale alpha`` and ``a``, ``b`` keeping mean 0 and variance 1."""
    rate = _check_rate(layer, rate)
    noise_shape = _check_noise_shape(layer, noise_shape, x.shape)
    if not training or rate == 0:
        return x
    alpha_p = -_SELU_SCALE * _SELU_ALPHA
    a = ((1 - rate) * (1 + rate * alpha_p ** 2)) ** -0.5
    b = -a * alpha_p * rate
    m = _keep_mask(key, x, rate, noise_shape)                  # (noise_shape), broadcasts to x
    return x * (m * x.dtype.type(a)) + ((1 - m) * x.dtype.type(a * alpha_p) + x.dtype.type(b))


def alpha_dropout(x, key, rate=0.5, training=True, noise_shape=None):
    """Alpha dropout for self-normalizing (SELU) networks: dropped units take SELU's saturation value
    ``alpha' = -1.7581`` and an affine map ``a y + b`` restores zero mean and unit variance:

        y = a (x m + alpha' (1 - m)) + b,   a = ((1 - rate)(1 + rate alpha'^2))^(-1/2),   b = -a alpha' rate

    As ``torch.nn.functional.alpha_dropout``.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(100_000)
    >>> y = alpha_dropout(x, key=0, rate=0.3).numpy()
    >>> abs(round(float(y.mean()), 1)), round(float(y.std()), 1)
    (0.0, 1.0)
    """
    return _alpha("alpha_dropout", tensor("alpha_dropout", x), key, rate, training, noise_shape)


def feature_alpha_dropout(x, key, rate=0.5, training=True, channels="last"):
    """Alpha dropout of whole feature maps: one decision per example and channel (see ``alpha_dropout``).

    As ``torch.nn.functional.feature_alpha_dropout`` (channels-first there).

    >>> import numpy as np
    >>> y = feature_alpha_dropout(np.ones((1, 2, 2, 3), np.float32), key=2).numpy()
    >>> np.round(y[0, 0, 0], 4), bool((y[0] == y[0, 0, 0]).all())   # one value per channel, on every pixel
    (array([-0.7792,  1.6656,  1.6656], dtype=float32), True)
    """
    x = tensor("feature_alpha_dropout", x)
    check_spatial_input("feature_alpha_dropout", x.shape, channels)
    return _alpha("feature_alpha_dropout", x, key, rate, training, _channel_noise_shape(x.shape, channels))
