"""Normalization layers: layer/rms/group/instance/batch norm against torch, finite differences, errors."""
import numpy as np
import pytest

import axon.functional.layers as L
from axon.autograd import Tensor, check_grads

from test_layers_helpers import against_torch, keeps_float32, nchw, nhwc


def test_layer_norm_matches_torch(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, g, b = rng.standard_normal((3, 5)), rng.standard_normal(5), rng.standard_normal(5)
    against_torch(L.layer_norm, lambda x, g, b: F.layer_norm(x, (5,), g, b, 1e-5), (x, g, b))
    x, g, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    against_torch(lambda x, g, b: L.layer_norm(x, g, b, axis=(-2, -1), epsilon=1e-3),
                  lambda x, g, b: F.layer_norm(x, (3, 4), g, b, 1e-3), (x, g, b))
    x, g = rng.standard_normal((2, 4, 3)), rng.standard_normal(4)            # channels-first: axis 1
    against_torch(lambda x, g: L.layer_norm(x, g, channels="first"),
                  lambda x, g: F.layer_norm(x.transpose(1, 2), (4,), g).transpose(1, 2), (x, g))
    keeps_float32(L.layer_norm, x, rng.standard_normal(3), None)


def test_layer_norm_second_order(rng):
    check_grads(lambda x, g, b: L.layer_norm(x, g, b, epsilon=0.1), (rng.standard_normal((2, 3)),
                rng.standard_normal(3), rng.standard_normal(3)), order=2)
    check_grads(lambda x: L.layer_norm(x, axis=(0, 2)), (rng.standard_normal((3, 2, 5)),), order=2)


def test_rms_norm_matches_torch(rng):
    torch = pytest.importorskip("torch")
    if not hasattr(torch.nn.functional, "rms_norm"):
        pytest.skip("torch without rms_norm")
    x, g = rng.standard_normal((2, 3, 6)), rng.standard_normal(6)
    against_torch(lambda x, g: L.rms_norm(x, g, epsilon=1e-6),
                  lambda x, g: torch.nn.functional.rms_norm(x, (6,), g, eps=1e-6), (x, g))
    keeps_float32(L.rms_norm, x, g)


def test_rms_norm_second_order(rng):
    check_grads(lambda x, g: L.rms_norm(x, g, epsilon=0.1), (rng.standard_normal((2, 4)), rng.standard_normal(4)),
                order=2)


@pytest.mark.parametrize("shape, groups", [((2, 5, 6), 3), ((1, 3, 3, 4), 2), ((2, 2, 2, 3, 4), 4), ((3, 6), 6)])
def test_group_norm_matches_torch(rng, shape, groups):
    torch = pytest.importorskip("torch")
    c = shape[-1]
    x, g, b = rng.standard_normal(shape), rng.standard_normal(c), rng.standard_normal(c)
    torch_gn = lambda x, g, b: nhwc(torch.nn.functional.group_norm(nchw(x), groups, g, b, 1e-5))
    against_torch(lambda x, g, b: L.group_norm(x, g, b, num_groups=groups), torch_gn, (x, g, b))
    against_torch(lambda x, g, b: L.group_norm(x, g, b, num_groups=groups, channels="first"),
                  lambda x, g, b: torch.nn.functional.group_norm(x, groups, g, b, 1e-5), (nchw(x), g, b))
    keeps_float32(lambda x: L.group_norm(x, num_groups=groups), x)


def test_group_norm_second_order(rng):
    check_grads(lambda x, g, b: L.group_norm(x, g, b, num_groups=2), (rng.standard_normal((1, 3, 4)),
                rng.standard_normal(4), rng.standard_normal(4)), order=2)


@pytest.mark.parametrize("shape", [(2, 5, 3), (1, 3, 4, 2), (2, 2, 3, 2, 3)])
def test_instance_norm_matches_torch(rng, shape):
    torch = pytest.importorskip("torch")
    c = shape[-1]
    x, g, b = rng.standard_normal(shape), rng.standard_normal(c), rng.standard_normal(c)
    # Channels-first only: torch 2.13's instance_norm backward is wrong for a channels-last-strided
    # gradient (what permuting its output back to NHWC gives); channels-last is checked against it below.
    against_torch(lambda x, g, b: L.instance_norm(x, g, b, channels="first"),
                  lambda x, g, b: torch.nn.functional.instance_norm(x, weight=g, bias=b, eps=1e-5), (nchw(x), g, b))
    np.testing.assert_allclose(L.instance_norm(x, g, b).numpy(),
                               nhwc(L.instance_norm(nchw(x), g, b, channels="first").numpy()), atol=1e-12)
    keeps_float32(L.instance_norm, x)


def test_instance_norm_second_order(rng):
    check_grads(lambda x, g: L.instance_norm(x, g, None), (rng.standard_normal((1, 5, 2)), rng.standard_normal(2)),
                order=2)


def _bn_state(rng, c):
    return rng.standard_normal(c), np.abs(rng.standard_normal(c)) + 0.5


@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 3), (1, 3, 3, 2)])
def test_batch_norm_inference_matches_torch(rng, shape):
    torch = pytest.importorskip("torch")
    c = shape[-1]
    x, g, b = rng.standard_normal(shape), rng.standard_normal(c), rng.standard_normal(c)
    m, v = _bn_state(rng, c)
    bn_t = lambda x, g, b: torch.nn.functional.batch_norm(x, torch.tensor(m), torch.tensor(v), g, b, False, 0.1, 1e-5)
    against_torch(lambda x, g, b: L.batch_norm(x, g, b, m, v), lambda x, g, b: nhwc(bn_t(nchw(x), g, b)), (x, g, b))
    against_torch(lambda x, g, b: L.batch_norm(x, g, b, m, v, channels="first"), bn_t, (nchw(x), g, b))
    against_torch(lambda x: L.batch_norm(x, None, None, m, v),
                  lambda x: nhwc(torch.nn.functional.batch_norm(nchw(x), torch.tensor(m), torch.tensor(v))), (x,))
    check_grads(lambda x, g, b: L.batch_norm(x, g, b, m, v), (x, g, b), order=2)
    keeps_float32(lambda x: L.batch_norm(x, None, None, m.astype(np.float32), v.astype(np.float32)), x)


@pytest.mark.parametrize("shape", [(6, 3), (2, 5, 3), (1, 3, 4, 2), (2, 2, 3, 2, 3)])
@pytest.mark.parametrize("channels", ["last", "first"])
def test_batch_norm_training_matches_torch(rng, shape, channels):
    torch = pytest.importorskip("torch")
    c = shape[-1]
    x, g, b = rng.standard_normal(shape) * 2 + 1, rng.standard_normal(c), rng.standard_normal(c)
    m, v = _bn_state(rng, c)
    xc = nchw(x) if channels == "first" else x
    out = {}

    def ours(x, g, b):
        y, out["mean"], out["var"] = L.batch_norm(x, g, b, m, v, training=True, momentum=0.2, epsilon=1e-3,
                                                  channels=channels)
        return y

    m_t, v_t = torch.tensor(m), torch.tensor(v)                # torch updates these in place
    bn_t = lambda x, g, b: torch.nn.functional.batch_norm(x, m_t, v_t, g, b, True, 0.2, 1e-3)
    against_torch(ours, bn_t if channels == "first" else lambda x, g, b: nhwc(bn_t(nchw(x), g, b)), (xc, g, b))
    np.testing.assert_allclose(out["mean"], m_t.numpy(), rtol=1e-12)
    np.testing.assert_allclose(out["var"], v_t.numpy(), rtol=1e-12)      # unbiased batch variance, as torch


def test_batch_norm_training_gradients_and_dtypes(rng):
    x, g, b = rng.standard_normal((4, 2, 3)), rng.standard_normal(3), rng.standard_normal(3)
    m, v = _bn_state(rng, 3)
    check_grads(lambda x, g, b: L.batch_norm(x, g, b, m, v, training=True)[0], (x, g, b))
    check_grads(lambda x: L.batch_norm(x, None, None, m, v, training=True, channels="first")[0], (nchw(x),))
    y, new_m, new_v = L.batch_norm(x.astype(np.float32), None, None, m.astype(np.float32), v.astype(np.float32),
                                   training=True)
    assert (y.dtype, new_m.dtype, new_v.dtype) == (np.float32,) * 3
    for s in (new_m, new_v):                                   # state: constant Tensors, on x's backend
        assert isinstance(s, Tensor) and not s.requires_grad and s.device == "cpu"


@pytest.mark.parametrize("layer, call, match", [
    ("layer_norm", lambda: L.layer_norm(np.ones((2, 3)), np.ones(4)), r"layer_norm: gamma must have shape \(3,\), got \(4,\)"),
    ("layer_norm", lambda: L.layer_norm(np.ones((2, 3)), axis=2), r"layer_norm: axis 2 is out of range"),
    ("rms_norm", lambda: L.rms_norm(np.ones((2, 3)), np.ones((2, 3))), r"rms_norm: gamma must have shape \(3,\)"),
    ("group_norm", lambda: L.group_norm(np.ones((2, 3, 4)), num_groups=3),
     r"group_norm: num_groups must be a positive divisor of the 4 channels \(input shape \(2, 3, 4\)\), got 3"),
    ("instance_norm", lambda: L.instance_norm(np.ones((2, 3))), r"instance_norm: expects input of rank 3, 4 or 5"),
    ("batch_norm", lambda: L.batch_norm(np.ones((2, 3)), None, None, np.zeros(4), np.ones(3)),
     r"batch_norm: running_mean must have shape \(3,\) for input shape \(2, 3\), got \(4,\)"),
    ("batch_norm", lambda: L.batch_norm(np.ones((2, 3)), np.ones(2), None, np.zeros(3), np.ones(3)),
     r"batch_norm: gamma must have shape \(3,\), got \(2,\)"),
    ("batch_norm", lambda: L.batch_norm(np.ones((1, 3)), None, None, np.zeros(3), np.ones(3), training=True),
     r"batch_norm: training needs more than one value per channel"),
    ("batch_norm", lambda: L.batch_norm(np.ones(3), None, None, np.zeros(3), np.ones(3)),
     r"batch_norm: expects input of rank"),
])
def test_normalization_errors(layer, call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_channels_option_is_checked():
    with pytest.raises(ValueError, match=r'group_norm: channels must be "last" or "first", got \'middle\''):
        L.group_norm(np.ones((2, 3, 4)), num_groups=2, channels="middle")


@pytest.mark.parametrize("parallel_min", [1 << 30, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axes", [(2,), (1, 2), (0, 1, 2)])
def test_standardize_over_trailing_axes_runs_the_row_kernel(rng, monkeypatch, dtype, axes, parallel_min):
    """Layer norm's standardize (trailing axes) is kernels.norm.standardize_rows: the float64 formula,
    serial and split rows, and the same saved r as the numpy path it replaces."""
    from axon.functional.layers import normalization
    from axon.kernels import norm as norm_kernels
    monkeypatch.setattr(norm_kernels, "PARALLEL_MIN", parallel_min)
    calls = []
    rows = norm_kernels.standardize_rows
    monkeypatch.setattr(norm_kernels, "standardize_rows", lambda *a: calls.append(1) or rows(*a))
    x = (rng.standard_normal((3, 5, 7)) * 4 + 10).astype(dtype)
    y, r = normalization._standardize_forward(x, axes, 1e-5)
    assert calls and y.dtype == r.dtype == dtype
    x64 = x.astype(np.float64)
    xc = x64 - x64.mean(axis=axes, keepdims=True)
    r64 = 1.0 / np.sqrt((xc * xc).mean(axis=axes, keepdims=True) + 1e-5)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    assert r.shape == r64.shape
    np.testing.assert_allclose(r, r64, rtol=tol)
    np.testing.assert_allclose(y, xc * r64, rtol=tol, atol=tol)
    if dtype == np.float64:
        check_grads(lambda x: L.standardize(x, axes), (x64,), order=2)
