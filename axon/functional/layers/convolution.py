"""Convolutions: ``conv``, ``conv_transpose``, ``depthwise_conv``, ``separable_conv2d``, ``separable_conv3d``.

Layouts, as in Axon and JAX: the input is channels-last (N, *spatial, C_in) by default, or
channels-first (N, C_in, *spatial) with ``channels="first"``; 1, 2 or 3 spatial axes, told apart by the
input's rank. The kernel is always (*kernel_size, C_in // groups, C_out) ("HWIO"), whatever the
input's layout; the bias is (C_out,) or None.

Options take an int (every spatial axis) or one int per axis:

- ``strides``: step between windows.
- ``padding``: ``"valid"`` (none), ``"same"`` (``ceil(n / s)`` outputs, as TensorFlow/JAX), an int, or
  one int or ``(lo, hi)`` pair per axis.
- ``kernel_dilation``: gaps between kernel taps; the effective size is ``(k - 1) d + 1``.
- ``input_dilation``: ``d - 1`` zeros inserted between input positions (a fractionally strided
  convolution; ``conv_transpose`` is built on it).
- ``feature_group_size``: grouped convolution; input and output channels split into that many groups.

The arithmetic is the numba kernel ``axon.kernels.conv`` (channels-last); this module resolves the
options, checks shapes and moves the channel axis.

>>> import numpy as np
>>> x = np.ones((1, 5, 5, 2), np.float32)                 # (N, H, W, C_in)
>>> w = np.ones((3, 3, 2, 4), np.float32)                 # (kh, kw, C_in, C_out)
>>> conv(x, w, strides=2, padding="same").shape
(1, 3, 3, 4)
"""
from __future__ import annotations

import numbers

from ... import kernels
from ...kernels.convolution import dilate
from ._utils import (check_channels, check_param, check_rank, check_spatial_input, check_window_fits,
                     from_channels_last, resolve_padding, shape_from_last, shape_to_last, spatial_tuple, tensor,
                     to_channels_last, window_output_size)

__all__ = ["conv", "conv_transpose", "depthwise_conv", "separable_conv2d", "separable_conv3d",
           "conv_output_shape", "conv_transpose_output_shape", "depthwise_conv_output_shape",
           "separable_conv2d_output_shape", "separable_conv3d_output_shape", "conv_transpose_padding"]


# ---- geometry: options -> padding pairs and output shape, shared by the layers and shape inference ----
def _geometry(layer, input_shape, kernel_shape, strides, padding, input_dilation, kernel_dilation,
              feature_group_size, channels):
    """Check the shapes and options of a convolution; return (strides, pads, input_dilation,
    kernel_dilation, groups, output shape in ``channels`` layout)."""
    input_shape, kernel_shape = tuple(input_shape), tuple(kernel_shape)
    check_spatial_input(layer, input_shape, channels)
    if len(kernel_shape) != len(input_shape):
        raise ValueError(f"{layer}: expects kernel of rank {len(input_shape)} (*kernel_size, in_channels // groups, "
                         f"out_channels) for input shape {input_shape}, got kernel shape {kernel_shape}")
    last = shape_to_last(input_shape, channels)                # (N, *spatial, C_in)
    n = len(last) - 2
    strides = spatial_tuple(layer, "strides", strides, n)
    input_dilation = spatial_tuple(layer, "input_dilation", input_dilation, n)
    kernel_dilation = spatial_tuple(layer, "kernel_dilation", kernel_dilation, n)
    groups = feature_group_size
    if not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"{layer}: feature_group_size must be a positive int, got {groups!r}")
    c_in, (k_in, c_out) = last[-1], kernel_shape[n:]
    detail = f"input shape {input_shape}, kernel shape {kernel_shape}"
    if c_in == 0:
        raise ValueError(f"{layer}: the input has no channels ({detail})")
    if c_in % groups or c_out % groups:
        raise ValueError(f"{layer}: feature_group_size {groups} must divide the input channels ({c_in}) "
                         f"and the output channels ({c_out}) ({detail})")
    if k_in * groups != c_in:
        per_group = f" ({k_in} per group x {groups} groups)" if groups > 1 else ""
        raise ValueError(f"{layer}: kernel expects {k_in * groups} input channels{per_group}, input has {c_in} "
                         f"({detail})")
    sizes = tuple(max((s - 1) * d + 1, 0) for s, d in zip(last[1:-1], input_dilation))   # after input dilation
    windows = tuple((k - 1) * d + 1 for k, d in zip(kernel_shape[:n], kernel_dilation))
    pads = resolve_padding(layer, padding, sizes, windows, strides)
    check_window_fits(layer, sizes, windows, pads, f"{detail}, padding {pads}")
    out = tuple(window_output_size(s, k, st, p) for s, k, st, p in zip(sizes, windows, strides, pads))
    return strides, pads, input_dilation, kernel_dilation, int(groups), shape_from_last((last[0], *out, c_out), channels)


def _conv(layer, x, kernel, bias, strides, padding, input_dilation, kernel_dilation, feature_group_size, channels):
    """The one path every convolution here takes: check, move channels last, dilate, convolve, add bias."""
    x, kernel = tensor(layer, x), tensor(layer, kernel, "kernel")
    if x.dtype != kernel.dtype:
        raise TypeError(f"{layer}: input and kernel must have the same dtype, got {x.dtype} and {kernel.dtype}; "
                        f"cast with .astype(...)")
    strides, pads, in_dil, k_dil, groups, _ = _geometry(layer, x.shape, kernel.shape, strides, padding,
                                                        input_dilation, kernel_dilation, feature_group_size,
                                                        channels)
    bias = check_param(layer, "bias", bias, kernel.shape[-1:])
    x = to_channels_last(x, channels)                          # (N, *S, C_in)
    if any(d > 1 for d in in_dil):
        x = dilate(x, in_dil)
    y = kernels.conv(x, kernel, strides, pads, k_dil, groups)  # (N, *S_out, C_out)
    if bias is not None:
        y = y + bias
    return from_channels_last(y, channels)


# ---- conv ---------------------------------------------------------------------------------------------------
def conv_output_shape(input_shape, kernel_shape, strides=1, padding="valid", input_dilation=1, kernel_dilation=1,
                      feature_group_size=1, channels="last") -> tuple:
    """Output shape of ``conv``: each spatial axis becomes ``(n' + lo + hi - k') // s + 1`` with
    ``n' = (n - 1) input_dilation + 1`` and ``k' = (k - 1) kernel_dilation + 1``; channels become C_out.

    >>> conv_output_shape((None, 28, 28, 1), (5, 5, 1, 8), strides=2)
    (None, 12, 12, 8)
    """
    return _geometry("conv", input_shape, kernel_shape, strides, padding, input_dilation, kernel_dilation,
                     feature_group_size, channels)[-1]


def conv(x, kernel, bias=None, strides=1, padding="valid", input_dilation=1, kernel_dilation=1,
         feature_group_size=1, channels="last"):
    """N-d convolution (cross-correlation, as every framework): ``y[n, o, c] = sum_{k, i} x[n, o s + k d - lo, i] w[k, i, c] + b[c]``.

    ``x``: (N, *spatial, C_in) (or (N, C_in, *spatial)); ``kernel``: (*kernel_size, C_in // groups, C_out);
    ``bias``: (C_out,) or None. Matches ``torch.nn.functional.conv{1,2,3}d`` with the kernel permuted
    to (C_out, C_in // groups, *kernel_size).

    >>> import numpy as np
    >>> x = np.arange(5.0).reshape(1, 5, 1)                 # a 1-d signal, one channel
    >>> conv(x, np.ones((2, 1, 1)), padding=[(0, 1)]).numpy().ravel()
    array([1., 3., 5., 7., 4.])
    """
    return _conv("conv", x, kernel, bias, strides, padding, input_dilation, kernel_dilation, feature_group_size,
                 channels)


# ---- conv_transpose -------------------------------------------------------------------------------------
def conv_transpose_padding(kernel_size, strides, padding, kernel_dilation=1) -> tuple:
    """Padding of the fractionally strided convolution that ``conv_transpose`` runs (as JAX and Axon).

    With the effective kernel ``k = (k - 1) d + 1`` and stride ``s``, per axis:

    - ``"valid"``: ``(k - 1, s - 1 + max(k - s, 0))``, giving ``n s + max(k - s, 0)`` outputs;
    - ``"same"``: ``(k - 1, s - 1)`` if ``s > k - 1`` else ``(ceil((k + s - 2) / 2), floor(...))``, giving ``n s``.

    Explicit padding is returned as pairs, unchanged.

    >>> conv_transpose_padding((3, 3), (2, 2), "same")
    ((2, 1), (2, 1))
    """
    n = len(kernel_size)
    strides = spatial_tuple("conv_transpose", "strides", strides, n)
    dil = spatial_tuple("conv_transpose", "kernel_dilation", kernel_dilation, n)
    if padding not in ("valid", "same"):
        return resolve_padding("conv_transpose", padding, (0,) * n, (1,) * n, strides)
    pads = []
    for k, s, d in zip(kernel_size, strides, dil):
        k = (k - 1) * d + 1
        if padding == "valid":
            total, lo = k + s - 2 + max(k - s, 0), k - 1
        else:
            total = k + s - 2
            lo = k - 1 if s > k - 1 else -(-total // 2)
        pads.append((lo, total - lo))
    return tuple(pads)


def _transpose_options(input_shape, kernel_shape, strides, padding, kernel_dilation, channels):
    check_spatial_input("conv_transpose", input_shape, channels)
    n = len(input_shape) - 2
    if len(kernel_shape) != len(input_shape):
        raise ValueError(f"conv_transpose: expects kernel of rank {len(input_shape)} (*kernel_size, in_channels, "
                         f"out_channels) for input shape {tuple(input_shape)}, got kernel shape {tuple(kernel_shape)}")
    return conv_transpose_padding(tuple(kernel_shape)[:n], strides, padding, kernel_dilation)


def conv_transpose_output_shape(input_shape, kernel_shape, strides=1, padding="valid", kernel_dilation=1,
                                channels="last") -> tuple:
    """Output shape of ``conv_transpose``: ``n s`` per axis for ``"same"``, ``n s + max(k - s, 0)`` for ``"valid"``.

    >>> conv_transpose_output_shape((None, 7, 7, 8), (3, 3, 8, 4), strides=2, padding="same")
    (None, 14, 14, 4)
    """
    pads = _transpose_options(input_shape, kernel_shape, strides, padding, kernel_dilation, channels)
    return _geometry("conv_transpose", input_shape, kernel_shape, 1, pads, strides, kernel_dilation, 1, channels)[-1]


def conv_transpose(x, kernel, bias=None, strides=1, padding="valid", kernel_dilation=1, channels="last"):
    """Transposed convolution ("deconvolution"), as Axon and JAX: a stride-1 convolution of the input
    with ``strides - 1`` zeros inserted between its positions, padded by ``conv_transpose_padding``.

    ``kernel`` is (*kernel_size, C_in, C_out) and is not flipped. ``"same"`` multiplies each spatial size
    by its stride. To reproduce ``torch.nn.functional.conv_transpose2d(x, W, stride=s, padding=p,
    output_padding=q, dilation=d)`` pass the flipped kernel ``W[:, :, ::-1, ::-1]`` permuted to
    (kh, kw, C_in, C_out) and ``padding=[(d (k - 1) - p, d (k - 1) - p + q)] * 2``.

    >>> import numpy as np
    >>> x = np.ones((1, 3, 1), np.float32)
    >>> conv_transpose(x, np.ones((2, 1, 1), np.float32), strides=2).numpy().ravel()
    array([1., 1., 1., 1., 1., 1.], dtype=float32)
    """
    x, kernel = tensor("conv_transpose", x), tensor("conv_transpose", kernel, "kernel")
    pads = _transpose_options(x.shape, kernel.shape, strides, padding, kernel_dilation, channels)
    return _conv("conv_transpose", x, kernel, bias, 1, pads, strides, kernel_dilation, 1, channels)


# ---- depthwise and separable ---------------------------------------------------------------------------------
def _depthwise_groups(layer, input_shape, kernel_shape, channels) -> int:
    """The number of groups of a depthwise convolution (the input channels), after checking the kernel."""
    check_spatial_input(layer, input_shape, channels)
    c_in = shape_to_last(input_shape, channels)[-1]
    detail = f"input shape {tuple(input_shape)}, kernel shape {tuple(kernel_shape)}"
    if len(kernel_shape) == len(input_shape) and kernel_shape[-2] != 1:
        raise ValueError(f"{layer}: expects kernel (*kernel_size, 1, in_channels * multiplier) ({detail})")
    if len(kernel_shape) == len(input_shape) and kernel_shape[-1] % c_in:
        raise ValueError(f"{layer}: the kernel's output channels ({kernel_shape[-1]}) must be a multiple of the "
                         f"input channels ({c_in}) ({detail})")
    return c_in


def depthwise_conv_output_shape(input_shape, kernel_shape, strides=1, padding="valid", input_dilation=1,
                                kernel_dilation=1, channels="last") -> tuple:
    """Output shape of ``depthwise_conv`` (a ``conv`` with one group per input channel).

    >>> depthwise_conv_output_shape((None, 28, 28, 3), (3, 3, 1, 6), padding="same")
    (None, 28, 28, 6)
    """
    groups = _depthwise_groups("depthwise_conv", input_shape, kernel_shape, channels)
    return _geometry("depthwise_conv", input_shape, kernel_shape, strides, padding, input_dilation,
                     kernel_dilation, groups, channels)[-1]


def depthwise_conv(x, kernel, bias=None, strides=1, padding="valid", input_dilation=1, kernel_dilation=1,
                   channels="last"):
    """Depthwise convolution: each input channel has its own ``multiplier`` filters (groups = C_in).

    ``kernel`` is (*kernel_size, 1, C_in * multiplier); output channel ``c m + j`` is filter ``j`` of
    input channel ``c``, as ``torch.nn.functional.conv2d(..., groups=C_in)``.

    >>> import numpy as np
    >>> depthwise_conv(np.ones((1, 4, 4, 3)), np.ones((3, 3, 1, 6))).shape
    (1, 2, 2, 6)
    """
    x, kernel = tensor("depthwise_conv", x), tensor("depthwise_conv", kernel, "kernel")
    groups = _depthwise_groups("depthwise_conv", x.shape, kernel.shape, channels)
    return _conv("depthwise_conv", x, kernel, bias, strides, padding, input_dilation, kernel_dilation, groups,
                 channels)


def _separable_steps(layer, n, input_shape, kernel_shapes, strides, padding, input_dilation, kernel_dilation,
                     channels):
    """Options of the ``n`` depthwise convolutions (step ``j`` strides, pads and dilates axis ``j`` only), every
    step's shapes checked before any runs; returns (steps, the output shape)."""
    check_channels(layer, channels)
    check_rank(layer, tuple(input_shape), (n + 2,), layout=f"batch, {n} spatial axes, channels")
    strides = spatial_tuple(layer, "strides", strides, n)
    in_dil = spatial_tuple(layer, "input_dilation", input_dilation, n)
    dil = spatial_tuple(layer, "kernel_dilation", kernel_dilation, n)
    for j, ks in enumerate(kernel_shapes):
        ks = tuple(ks)
        if len(ks) != n + 2 or any(ks[a] != 1 for a in range(n) if a != j) or ks[n] != 1:
            want = tuple("k" if a == j else 1 for a in range(n)) + (1, "C_in * multiplier")
            raise ValueError(f"{layer}: kernel {j + 1} must have shape {want} (a depthwise kernel along spatial "
                             f"axis {j + 1}), got {ks}")
    if not isinstance(padding, str):                           # explicit: split the pairs between the steps
        padding = resolve_padding(layer, padding, (0,) * n, (1,) * n, strides)
    steps, shape = [], tuple(input_shape)
    for j, ks in enumerate(kernel_shapes):
        step = dict(strides=tuple(s if a == j else 1 for a, s in enumerate(strides)),
                    padding=padding if isinstance(padding, str)
                    else tuple(p if a == j else (0, 0) for a, p in enumerate(padding)),
                    input_dilation=tuple(d if a == j else 1 for a, d in enumerate(in_dil)),
                    kernel_dilation=tuple(d if a == j else 1 for a, d in enumerate(dil)),
                    feature_group_size=_depthwise_groups(layer, shape, ks, channels))
        shape = _geometry(layer, shape, ks, **step, channels=channels)[-1]     # this step's output shape
        steps.append(step)
    return steps, shape


def _separable(layer, n, x, kernels_and_biases, *options, channels):
    """``n`` depthwise convolutions in turn; every shape is checked before the first one runs."""
    x = tensor(layer, x)
    ks = [tensor(layer, k, "kernel") for k, _ in kernels_and_biases]
    steps, _ = _separable_steps(layer, n, x.shape, [k.shape for k in ks], *options, channels)
    for k, (_, b), step in zip(ks, kernels_and_biases, steps):
        x = _conv(layer, x, k, b, **step, channels=channels)
    return x


def separable_conv2d_output_shape(input_shape, k1_shape, k2_shape, strides=1, padding="valid", input_dilation=1,
                                  kernel_dilation=1, channels="last") -> tuple:
    """Output shape of ``separable_conv2d``.

    >>> separable_conv2d_output_shape((None, 28, 28, 3), (3, 1, 1, 6), (1, 3, 1, 6))
    (None, 26, 26, 6)
    """
    return _separable_steps("separable_conv2d", 2, input_shape, [k1_shape, k2_shape], strides, padding,
                            input_dilation, kernel_dilation, channels)[1]


def separable_conv2d(x, k1, b1, k2, b2, strides=1, padding="valid", input_dilation=1, kernel_dilation=1,
                     channels="last"):
    """Spatially separable depthwise convolution (Axon's ``separable_conv2d``): a depthwise convolution
    along the height with ``k1`` (kh, 1, 1, C_in * m), then one along the width with ``k2`` (1, kw, 1, C_in * m).

    Each step strides, pads and dilates (input and kernel) only its own axis, so with zero biases the result equals
    ``depthwise_conv`` with the rank-1 kernel ``k1 * k2`` (kh, kw, 1, C_in * m). (Axon passes the same
    strides to both steps, which strides each axis twice; this does not.) Biases are (C_in * m,) or None.

    >>> import numpy as np
    >>> x = np.ones((1, 5, 5, 2))
    >>> separable_conv2d(x, np.ones((3, 1, 1, 4)), None, np.ones((1, 3, 1, 4)), None, padding="same").shape
    (1, 5, 5, 4)
    """
    return _separable("separable_conv2d", 2, x, [(k1, b1), (k2, b2)], strides, padding, input_dilation,
                      kernel_dilation, channels=channels)


def separable_conv3d_output_shape(input_shape, k1_shape, k2_shape, k3_shape, strides=1, padding="valid",
                                  input_dilation=1, kernel_dilation=1, channels="last") -> tuple:
    """Output shape of ``separable_conv3d``.

    >>> k1, k2, k3 = (3, 1, 1, 1, 4), (1, 3, 1, 1, 4), (1, 1, 3, 1, 4)
    >>> separable_conv3d_output_shape((None, 8, 8, 8, 2), k1, k2, k3, padding="same")
    (None, 8, 8, 8, 4)
    """
    return _separable_steps("separable_conv3d", 3, input_shape, [k1_shape, k2_shape, k3_shape], strides, padding,
                            input_dilation, kernel_dilation, channels)[1]


def separable_conv3d(x, k1, b1, k2, b2, k3, b3, strides=1, padding="valid", input_dilation=1, kernel_dilation=1,
                     channels="last"):
    """Spatially separable 3-d depthwise convolution: depthwise along depth (``k1`` (kd, 1, 1, 1, C_in * m)),
    height (``k2`` (1, kh, 1, 1, C_in * m)) and width (``k3`` (1, 1, kw, 1, C_in * m)); see ``separable_conv2d``.

    >>> import numpy as np
    >>> k = [np.ones(s + (1, 2)) for s in [(2, 1, 1), (1, 2, 1), (1, 1, 2)]]
    >>> separable_conv3d(np.ones((1, 3, 3, 3, 2)), k[0], None, k[1], None, k[2], None).shape
    (1, 2, 2, 2, 2)
    """
    return _separable("separable_conv3d", 3, x, [(k1, b1), (k2, b2), (k3, b3)], strides, padding, input_dilation,
                      kernel_dilation, channels=channels)
