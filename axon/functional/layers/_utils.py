"""Option handling shared by every layer: per-axis tuples, padding, the channel axis, shape checks.

The per-axis checks (``spatial_tuple``, explicit padding pairs, ``window_output_size``,
``check_window_fits``) are those of ``axon.kernels._common``, so a layer and the kernel it calls check
an option one way.

Each helper takes the layer's name first, so every error message starts with the layer that was
called (``conv: strides must be ...``) and names the expected and the actual value.

>>> resolve_padding("conv", "same", sizes=(5, 6), windows=(3, 3), strides=(2, 2))
((1, 1), (0, 1))
"""
from __future__ import annotations


import numbers

import numpy as np

from ...autograd import Tensor, as_tensor, transpose
from ...kernels._common import check_window_fits, int_tuple, padding_pairs, window_output_size

# The per-axis option checks are the kernels' (one place for both): an int or one per spatial axis.
spatial_tuple = int_tuple

__all__ = ["tensor", "check_channels", "spatial_tuple", "check_rank", "check_spatial_input", "channel_axis",
           "to_channels_last", "from_channels_last", "shape_to_last", "shape_from_last", "resolve_padding",
           "window_output_size", "check_window_fits", "check_param", "param_shape", "int_indices", "check_int"]


def tensor(layer: str, x, what: str = "input") -> Tensor:
    """``x`` as a floating Tensor (numpy arrays and numbers are wrapped).

    >>> tensor("dense", np.ones(2, np.float32)).dtype
    dtype('float32')
    >>> tensor("dense", np.array([1, 2], np.int32))
    Traceback (most recent call last):
    ...
    TypeError: dense: input must be floating point, got dtype int32
    """
    x = as_tensor(x)
    if x.dtype.kind != "f":
        raise TypeError(f"{layer}: {what} must be floating point, got dtype {x.dtype}")
    return x


def check_channels(layer: str, channels) -> None:
    """``channels`` must be ``"last"`` (N, *spatial, C) or ``"first"`` (N, C, *spatial).

    >>> check_channels("conv", "first")                   # valid: returns None
    >>> check_channels("conv", "NHWC")
    Traceback (most recent call last):
    ...
    ValueError: conv: channels must be "last" or "first", got 'NHWC'
    """
    if channels not in ("last", "first"):
        raise ValueError(f'{layer}: channels must be "last" or "first", got {channels!r}')


def check_int(layer: str, name: str, value, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``: a TypeError for anything but an int (2.5, "4", True), else a ValueError.

    >>> check_int("dense", "units", 4)
    4
    >>> check_int("dense", "units", 2.5)
    Traceback (most recent call last):
    ...
    TypeError: dense: units must be an int, got 2.5 (float)
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{layer}: {name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{layer}: {name} must be >= {minimum}, got {value!r}")
    return int(value)


def check_rank(layer: str, shape, ranks, what: str = "input", layout: str = "") -> None:
    """Raise ValueError unless ``len(shape)`` is one of ``ranks`` (a range up to 32 reads "rank >= k").

    >>> check_rank("conv", (2, 8, 8, 3), (3, 4, 5))        # fine: returns None
    >>> check_rank("conv", (8, 8), (3, 4, 5), layout="batch, spatial, channels")
    Traceback (most recent call last):
    ...
    ValueError: conv: expects input of rank 3, 4 or 5 (batch, spatial, channels), got shape (8, 8)
    """
    ranks = tuple(ranks)
    if len(shape) in ranks:
        return
    if len(ranks) > 5:
        want = f">= {ranks[0]}"
    else:
        want = ranks[0] if len(ranks) == 1 else ", ".join(map(str, ranks[:-1])) + f" or {ranks[-1]}"
    why = f" ({layout})" if layout else ""
    raise ValueError(f"{layer}: expects {what} of rank {want}{why}, got shape {tuple(shape)}")


def check_spatial_input(layer: str, shape, channels: str) -> None:
    """Check ``channels``, then that ``shape`` is a batch, 1 to 3 spatial axes and the channels (rank 3 to 5).

    >>> check_spatial_input("max_pool", (2, 8, 8, 3), "last")   # fine: returns None
    >>> check_spatial_input("max_pool", (8, 8), "last")
    Traceback (most recent call last):
    ...
    ValueError: max_pool: expects input of rank 3, 4 or 5 (batch, 1 to 3 spatial axes, channels), got shape (8, 8)
    """
    check_channels(layer, channels)
    check_rank(layer, shape, (3, 4, 5), layout="batch, 1 to 3 spatial axes, channels")


def channel_axis(ndim: int, channels: str) -> int:
    """Index of the channel axis: the last one, or 1 for channels-first.

    >>> channel_axis(4, "last"), channel_axis(4, "first")
    (3, 1)
    """
    return ndim - 1 if channels == "last" else 1


def to_channels_last(x: Tensor, channels: str) -> Tensor:
    """(N, C, *spatial) -> (N, *spatial, C) when ``channels == "first"``; unchanged otherwise.

    >>> to_channels_last(np.zeros((2, 3, 8, 8)), "first").shape
    (2, 8, 8, 3)
    """
    if channels == "last":
        return x
    return transpose(x, (0, *range(2, x.ndim), 1))


def from_channels_last(y: Tensor, channels: str) -> Tensor:
    """Undo ``to_channels_last``: (N, *spatial, C) -> (N, C, *spatial) for channels-first.

    >>> from_channels_last(np.zeros((2, 8, 8, 3)), "first").shape
    (2, 3, 8, 8)
    """
    if channels == "last":
        return y
    return transpose(y, (0, y.ndim - 1, *range(1, y.ndim - 1)))


def shape_to_last(shape, channels: str) -> tuple:
    """The channels-last shape of a shape in ``channels`` layout.

    >>> shape_to_last((None, 3, 28, 28), "first")
    (None, 28, 28, 3)
    """
    shape = tuple(shape)
    return shape if channels == "last" else (shape[0], *shape[2:], shape[1])


def shape_from_last(shape, channels: str) -> tuple:
    """A channels-last shape back in ``channels`` layout.

    >>> shape_from_last((None, 28, 28, 3), "first")
    (None, 3, 28, 28)
    """
    shape = tuple(shape)
    return shape if channels == "last" else (shape[0], shape[-1], *shape[1:-1])


def resolve_padding(layer: str, padding, sizes, windows, strides) -> tuple:
    """Padding as ``((lo, hi), ...)``, one pair per spatial axis.

    - ``"valid"``: no padding; windows only where they fit.
    - ``"same"``: as TensorFlow/JAX/Axon, the output has ``ceil(n / s)`` positions; the total
      ``max((ceil(n / s) - 1) s + k - n, 0)`` is split with the extra one at the end.
    - an int ``p``: ``(p, p)`` on every axis; a sequence: per axis, an int or a ``(lo, hi)`` pair.

    ``sizes`` are the input's spatial sizes, ``windows`` the effective (dilated) window sizes.

    >>> resolve_padding("conv", "same", sizes=(5, 6), windows=(3, 3), strides=(2, 2))
    ((1, 1), (0, 1))
    >>> resolve_padding("conv", [1, (0, 2)], sizes=(5, 6), windows=(3, 3), strides=(1, 1))
    ((1, 1), (0, 2))
    """
    n = len(sizes)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * n
        if padding == "same":
            pads = []
            for size, k, s in zip(sizes, windows, strides):
                total = max((-(-size // s) - 1) * s + k - size, 0)   # ceil(size / s) outputs
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
        raise ValueError(f'{layer}: padding must be "valid", "same", an int or (lo, hi) pairs, got {padding!r}')
    return padding_pairs(layer, padding, n, also='"valid", "same", ')


def param_shape(ndim: int, axes, sizes) -> tuple:
    """Shape that broadcasts a parameter of ``sizes`` along ``axes`` of an ``ndim``-array: 1 elsewhere.

    >>> param_shape(4, (3,), (16,)), param_shape(4, (1,), (3,))       # channels last, channels first
    ((1, 1, 1, 16), (1, 3, 1, 1))
    """
    shape = [1] * ndim
    for a, n in zip(axes, sizes):
        shape[a] = n
    return tuple(shape)


def check_param(layer: str, name: str, p, shape) -> Tensor | None:
    """``p`` (or None) as a Tensor of exactly ``shape``, else a ValueError naming both shapes.

    >>> check_param("dense", "bias", np.zeros(4), (4,)).shape
    (4,)
    >>> check_param("dense", "bias", np.zeros(3), (4,))
    Traceback (most recent call last):
    ...
    ValueError: dense: bias must have shape (4,), got (3,)
    """
    if p is None:
        return None
    p = as_tensor(p)
    if p.shape != tuple(shape):
        raise ValueError(f"{layer}: {name} must have shape {tuple(shape)}, got {p.shape}")
    return p


def int_indices(layer: str, x, what: str = "input") -> Tensor:
    """An integer index Tensor from an array, a list or a Tensor (a Tensor stays on its device).

    >>> int_indices("embedding", [[2, 0]]).numpy().tolist()
    [[2, 0]]
    >>> int_indices("embedding", [0.5])
    Traceback (most recent call last):
    ...
    TypeError: embedding: input must hold integer indices, got dtype float64
    """
    idx = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{layer}: {what} must hold integer indices, got dtype {idx.dtype}")
    return idx
