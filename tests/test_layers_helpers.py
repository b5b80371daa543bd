"""Helpers shared by the ``test_layers_*`` files: comparing a layer with PyTorch, values and gradients.

Layers are channels-last, PyTorch is channels-first: ``nchw``/``nhwc`` move the channel axis of an
array or a torch tensor (any number of spatial axes).
"""
import numpy as np
import pytest

from axon.autograd import Tensor


def nchw(a):
    """(N, *S, C) -> (N, C, *S), for numpy arrays and torch tensors."""
    axes = (0, a.ndim - 1, *range(1, a.ndim - 1))
    return np.transpose(a, axes) if isinstance(a, np.ndarray) else a.permute(*axes)


def nhwc(a):
    """(N, C, *S) -> (N, *S, C), for numpy arrays and torch tensors."""
    axes = (0, *range(2, a.ndim), 1)
    return np.transpose(a, axes) if isinstance(a, np.ndarray) else a.permute(*axes)


def against_torch(f, f_torch, args, rtol=1e-6, atol=1e-8):
    """``f`` (axon) and ``f_torch`` agree in value and in the gradients of ``sum(y * dy)`` for a random dy.

    ``args`` are float64 arrays, or None (passed through); gradients are compared for every array.
    """
    torch = pytest.importorskip("torch")
    ts = [None if a is None else torch.tensor(a, requires_grad=True) for a in args]
    y_t = f_torch(*ts)
    dy = np.random.default_rng(3).standard_normal(tuple(y_t.shape))
    y_t.backward(torch.tensor(dy))
    xs = [None if a is None else Tensor(np.array(a), requires_grad=True) for a in args]
    y = f(*xs)
    assert y.shape == tuple(y_t.shape), f"shape {y.shape} vs torch {tuple(y_t.shape)}"
    np.testing.assert_allclose(y.numpy(), y_t.detach().numpy(), rtol=rtol, atol=atol)
    y.backward(dy)
    for i, (x, t) in enumerate(zip(xs, ts)):
        if x is not None:
            assert x.grad is not None, f"argument {i} got no gradient"
            np.testing.assert_allclose(x.grad, t.grad.numpy(), rtol=rtol, atol=atol,
                                       err_msg=f"gradient of argument {i}")


def keeps_float32(f, *args):
    """``f`` on float32 versions of ``args`` returns float32."""
    y = f(*[a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in args])
    y = y[0] if isinstance(y, tuple) else y
    assert y.dtype == np.float32, f"got {y.dtype}"


def test_channel_moves_are_inverse():
    a = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    assert nchw(a).shape == (2, 5, 3, 4)
    np.testing.assert_array_equal(nhwc(nchw(a)), a)
