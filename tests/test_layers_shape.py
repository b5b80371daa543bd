"""Shape layers: flatten, reshape, transpose, pad, resize (against torch's interpolate), concatenate."""
import numpy as np
import pytest

import axon.functional.layers as L
from axon.autograd import check_grads

from test_layers_helpers import against_torch, keeps_float32, nchw, nhwc


def test_flatten_reshape_transpose(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    np.testing.assert_array_equal(L.flatten(x).numpy(), x.reshape(2, 60))
    np.testing.assert_array_equal(L.reshape(x, (2, 12, -1)).numpy(), x.reshape(2, 12, 5))
    np.testing.assert_array_equal(L.transpose(x).numpy(), x.transpose(0, 3, 2, 1))
    np.testing.assert_array_equal(L.transpose(x, (0, 3, 1, 2)).numpy(), x.transpose(0, 3, 1, 2))
    check_grads(lambda x: L.transpose(L.reshape(L.flatten(x), (2, 4, 15)), (0, 2, 1)) * x.reshape(2, 15, 4)[:1],
                (x,), order=2)
    assert L.reshape_output_shape((None, 784), (None, 28, 28, 1)) == (None, 28, 28, 1)
    assert L.reshape_output_shape((None, 784), (-1, 28, 28)) == (None, 28, 28)
    keeps_float32(L.flatten, x)


@pytest.mark.parametrize("channels", ["last", "first"])
def test_pad(rng, channels):
    x = rng.standard_normal((2, 3, 4, 2))
    width = [(1, 0), (2, 3)]
    y = L.pad(x, width, value=1.5, channels=channels).numpy()
    full = [(0, 0), *width, (0, 0)] if channels == "last" else [(0, 0), (0, 0), *width]
    np.testing.assert_array_equal(y, np.pad(x, full, constant_values=1.5))
    assert L.pad_output_shape(x.shape, width, channels=channels) == y.shape
    assert L.pad(x, 1).shape == (2, 5, 6, 2)
    check_grads(lambda x: L.pad(x, width, channels=channels), (x,), order=2)


# (input size, output size) per spatial axis: up, down, odd ratios, unchanged
RESIZE_CASES = [((5,), (9,)), ((8,), (3,)), ((3, 4), (7, 2)), ((4, 5), (4, 10)), ((2, 3, 3), (4, 2, 5))]


@pytest.mark.parametrize("sizes, size", RESIZE_CASES)
@pytest.mark.parametrize("method", ["nearest", "bilinear"])
def test_resize_matches_torch(rng, sizes, size, method):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, *sizes, 3))
    mode = "nearest-exact" if method == "nearest" else {1: "linear", 2: "bilinear", 3: "trilinear"}[len(sizes)]
    extra = {} if method == "nearest" else {"align_corners": False}
    ref = lambda x: torch.nn.functional.interpolate(x, size=size, mode=mode, **extra)
    against_torch(lambda x: L.resize(x, size, method), lambda x: nhwc(ref(nchw(x))), (x,))
    against_torch(lambda x: L.resize(x, size, method, channels="first"), ref, (nchw(x),))
    assert L.resize_output_shape((None, *sizes, 3), size) == (None, *size, 3)
    keeps_float32(lambda x: L.resize(x, size, method), x)


def test_resize_finite_differences(rng):
    check_grads(lambda x: L.resize(x, (5, 2), "bilinear"), (rng.standard_normal((1, 3, 3, 2)),), order=2)
    check_grads(lambda x: L.resize(x, 7, "nearest"), (rng.standard_normal((1, 3, 2)),))


def test_concatenate(rng):
    a, b = rng.standard_normal((2, 3, 1)), rng.standard_normal((2, 3, 4))
    np.testing.assert_array_equal(L.concatenate([a, b]).numpy(), np.concatenate([a, b], axis=-1))
    np.testing.assert_array_equal(L.concatenate([a, a], axis=1).numpy(), np.concatenate([a, a], axis=1))
    check_grads(lambda a, b: L.concatenate([a, b]), (a, b), order=2)
    assert L.concatenate_output_shape([(None, 3, 1), (None, 3, 4)]) == (None, 3, 5)


@pytest.mark.parametrize("call, match", [
    (lambda: L.reshape(np.ones((2, 6)), (2, 5)), r"reshape: cannot reshape an input of shape \(2, 6\) \(12 elements\)"),
    (lambda: L.transpose(np.ones((2, 3, 4)), (0, 1)), r"transpose: axes must be a permutation of \(0, 1, 2\)"),
    (lambda: L.pad(np.ones((2, 3)), 1), r"pad: expects input of rank 3, 4 or 5"),
    (lambda: L.pad(np.ones((2, 3, 4)), [(1, 1), (1, 1)]), r"pad: padding must be .* 1 \(lo, hi\) pairs"),
    (lambda: L.pad(np.ones((2, 3, 4)), [(-1, 1)]), r"pad: padding must be non-negative"),
    (lambda: L.resize(np.ones((2, 3, 4)), 5, "cubic"), r"resize: method must be one of"),
    (lambda: L.resize(np.ones((2, 3, 4, 1)), (5,)), r"resize: size must be an int or a sequence of 2 ints"),
    (lambda: L.concatenate([np.ones((2, 3)), np.ones((3, 3))]), r"concatenate: input shapes .* must agree"),
    (lambda: L.concatenate([np.ones((2, 3)), np.ones((2, 3))], axis=0), r"concatenate: axis must be a non-batch axis"),
])
def test_shape_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
