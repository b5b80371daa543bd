"""The package as a whole: every layer has a shape function that agrees with running it, and the
examples in the docstrings run."""

import numpy as np
import pytest

import axon.functional.layers as L

r = np.random.default_rng(0)


def a(*shape):
    return r.standard_normal(shape)


# layer name -> (array arguments, options). Shapes are inferred from the arrays (None stays None).
CASES = {
    "dense": ((a(2, 3, 4), a(4, 5), None), {}),
    "bilinear": ((a(2, 3), a(2, 4), a(5, 3, 4), None), {}),
    "embedding": ((np.array([[1, 2, 0]]), a(3, 4)), {}),
    "conv": ((a(2, 7, 6, 3), a(3, 3, 3, 4), None), dict(strides=2, padding="same", input_dilation=(1, 2))),
    "conv_transpose": ((a(1, 5, 3), a(3, 3, 2), None), dict(strides=2, padding="valid", kernel_dilation=2)),
    "depthwise_conv": ((a(1, 2, 5, 6), a(2, 3, 1, 4), None), dict(strides=(1, 2), channels="first")),
    "separable_conv2d": ((a(1, 6, 5, 2), a(3, 1, 1, 2), None, a(1, 2, 1, 2), None), dict(strides=2, padding="same")),
    "separable_conv3d": ((a(1, 4, 4, 4, 2), a(2, 1, 1, 1, 2), None, a(1, 2, 1, 1, 2), None, a(1, 1, 2, 1, 2), None),
                         {}),
    "max_pool": ((a(1, 7, 5, 2),), dict(kernel_size=3, strides=2, padding="same")),
    "avg_pool": ((a(1, 2, 7, 5),), dict(kernel_size=2, channels="first")),
    "lp_pool": ((np.abs(a(1, 7, 2)),), dict(kernel_size=3, strides=1)),
    "adaptive_max_pool": ((a(1, 7, 5, 2),), dict(output_size=(3, 2))),
    "adaptive_avg_pool": ((a(1, 7, 2),), dict(output_size=4)),
    "adaptive_lp_pool": ((np.abs(a(1, 2, 7)),), dict(output_size=2, channels="first")),
    "global_max_pool": ((a(2, 3, 4, 5),), {}),
    "global_avg_pool": ((a(2, 3, 4, 5),), dict(keep_axes=True)),
    "global_lp_pool": ((a(2, 5, 3, 4),), dict(channels="first")),
    "batch_norm": ((a(2, 3, 4), None, None, np.zeros(4), np.ones(4)), {}),
    "layer_norm": ((a(2, 3, 4),), {}),
    "group_norm": ((a(2, 3, 4),), dict(num_groups=2)),
    "instance_norm": ((a(2, 3, 4),), {}),
    "rms_norm": ((a(2, 3, 4),), {}),
    "dropout": ((a(2, 3), 0), {}),
    "alpha_dropout": ((a(2, 3), 0), {}),
    "feature_alpha_dropout": ((a(2, 3, 4), 0), {}),
    "spatial_dropout": ((a(2, 3, 4), 0), {}),
    "flatten": ((a(2, 3, 4),), {}),
    "reshape": ((a(2, 3, 4),), dict(shape=(2, 4, 3))),
    "transpose": ((a(2, 3, 4),), dict(axes=(0, 2, 1))),
    "pad": ((a(2, 3, 4),), dict(padding=[(1, 2)])),
    "resize": ((a(2, 3, 4, 1),), dict(size=(5, 2), method="bilinear")),
    "blur_pool": ((a(2, 3, 4, 2),), {}),
    "concatenate": (([a(2, 3), a(2, 4)],), {}),
}

LAYERS = sorted(n for m in L._MODULES for n in m.__all__ if not n.endswith("_output_shape")
                and n not in ("output_shape", "standardize", "conv_transpose_padding"))


def test_every_layer_has_a_case_and_a_shape_function():
    assert sorted(CASES) == LAYERS
    for name in LAYERS:
        assert callable(getattr(L, f"{name}_output_shape"))


def _shape_arguments(name, args):
    """What a shape function takes: the shapes of the inputs and kernels (no biases, scales, state, keys)."""
    if name == "concatenate":
        return [[x.shape for x in args[0]]]
    n_inputs = {"bilinear": 2}.get(name, 1)
    kernels = [v.shape for v in args[n_inputs:] if isinstance(v, np.ndarray) and v.ndim > 1]
    return [v.shape for v in args[:n_inputs]] + kernels


def _unknown_batch(name, shapes):
    """The same shapes with the inputs' batch size unknown (None)."""
    if name == "concatenate":
        return [[(None,) + s[1:] for s in shapes[0]]]
    n_inputs = {"bilinear": 2}.get(name, 1)
    return [(None,) + s[1:] for s in shapes[:n_inputs]] + shapes[n_inputs:]


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_shape_agrees_with_the_layer(name):
    args, opts = CASES[name]
    y = getattr(L, name)(*args, **opts)
    y = y[0] if isinstance(y, tuple) else y
    shapes = _shape_arguments(name, args)
    assert L.output_shape(name, *shapes, **opts) == y.shape
    if name != "reshape":                                      # reshape's target shape names the batch size
        assert L.output_shape(name, *_unknown_batch(name, shapes), **opts) == (None,) + y.shape[1:]


def test_output_shape_unknown_layer():
    with pytest.raises(ValueError, match="output_shape: unknown layer 'desne'"):
        L.output_shape("desne", (None, 3), (3, 4))
