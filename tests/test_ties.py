"""The one rule for gradients at ties (axon.autograd.ops, "Gradients at ties"), asserted for each kind.

dy goes to the elements the forward picked, in equal shares. Reductions (global max pooling among them)
pick every tied element and split dy evenly, maximum/minimum give half to each side; max pooling over
windows, whichever path (kernel, dilated or over-padded Tensor ops) runs, and kernels.max_with_indices
record one index, the first maximum, which gets all of dy.
"""
import numpy as np
import pytest

from axon import kernels, layers
from axon.autograd import Tensor, ops


def _grad(f, x):
    x = Tensor(np.asarray(x, np.float32), requires_grad=True)
    f(x).sum().backward()
    return x.grad


ROWS = np.array([[1.0, 3.0, 3.0, 3.0, 2.0], [5.0, 0.0, 5.0, 1.0, 1.0]], np.float32)   # ties of 3 and of 2


@pytest.mark.parametrize("reduce, extreme", [
    (lambda x: ops.max(x, axis=1), np.max), (lambda x: x.max(axis=1), np.max),
    (lambda x: ops.min(x, axis=1), np.min), (lambda x: x.min(axis=1), np.min)])
def test_reductions_split_evenly_among_ties(reduce, extreme):
    x = ROWS if extreme is np.max else -ROWS
    hit = (x == extreme(x, 1, keepdims=True)).astype(np.float32)              # (2, 5): 3 tied, then 2 tied
    np.testing.assert_allclose(_grad(reduce, x), hit / hit.sum(1, keepdims=True), rtol=1e-6)


@pytest.mark.parametrize("pool", [layers.global_max_pool, kernels.global_max_pool], ids=["layers", "kernels"])
def test_global_max_pool_is_a_reduction_and_splits_evenly(pool):
    """One name, one gradient: both global max pools are ``max`` over the spatial axes."""
    x = np.array([[[2.0], [7.0], [7.0], [1.0]]], np.float32)                       # (N, W, C) = (1, 4, 1)
    np.testing.assert_allclose(_grad(pool, x).ravel(), [0, 0.5, 0.5, 0])
    zeros = np.zeros((1, 2, 2, 1), np.float32)                                     # four tied: a quarter each
    np.testing.assert_allclose(_grad(pool, zeros).ravel(), [0.25] * 4)


@pytest.mark.parametrize("op", [ops.maximum, ops.minimum])
def test_maximum_and_minimum_give_half_to_each_side(op):
    a = Tensor(np.array([1.0, 3.0, 5.0], np.float32), requires_grad=True)
    b = Tensor(np.array([2.0, 3.0, 4.0], np.float32), requires_grad=True)
    op(a, b).sum().backward()
    wins_a = np.array([0.0, 0.5, 1.0]) if op is ops.maximum else np.array([1.0, 0.5, 0.0])
    np.testing.assert_allclose(a.grad, wins_a)
    np.testing.assert_allclose(b.grad, 1 - wins_a)


X_TIES = np.array([[[1.0], [3.0], [3.0], [3.0], [2.0], [2.0], [0.0]]], np.float32)   # (1, 7, 1)


def _torch_pool(name, *args, pad=0, **kwargs):
    def run(t):
        F = __import__("torch").nn.functional
        t = F.pad(t, (pad, pad), value=-np.inf) if pad else t
        return getattr(F, name)(t, *args, **kwargs)
    return run


# x = [1, 3, 3, 3, 2, 2, 0]: each case's gradient worked out by hand (a window's dy to its first maximum)
@pytest.mark.parametrize("pool, expected, reference", [
    (lambda x: kernels.max_pool(x, (3,), (2,), ((0, 0),)), [0, 1, 1, 0, 1, 0, 0],
     _torch_pool("max_pool1d", 3, stride=2)),
    (lambda x: layers.max_pool(x, 3, strides=2), [0, 1, 1, 0, 1, 0, 0],                            # kernel
     _torch_pool("max_pool1d", 3, stride=2)),
    (lambda x: layers.max_pool(x, 2, strides=1, window_dilations=2), [0, 1, 2, 1, 1, 0, 0],        # Tensor ops
     _torch_pool("max_pool1d", 2, stride=1, dilation=2)),
    (lambda x: layers.max_pool(x, 2, strides=1, padding=[(2, 2)]), [1, 2, 1, 1, 1, 1, 1],          # Tensor ops
     _torch_pool("max_pool1d", 2, stride=1, pad=2)),
    (lambda x: layers.adaptive_max_pool(x, (2,)), [0, 1, 0, 1, 0, 0, 0], _torch_pool("adaptive_max_pool1d", 2)),
], ids=["kernels.max_pool", "max_pool", "max_pool-dilated", "max_pool-padded", "adaptive"])
def test_max_pools_give_each_window_to_its_first_maximum(pool, expected, reference):
    g = _grad(pool, X_TIES)
    np.testing.assert_array_equal(g.ravel(), expected)
    torch = pytest.importorskip("torch")
    t = torch.tensor(X_TIES.transpose(0, 2, 1), requires_grad=True)                  # (N, W, C) -> (N, C, W)
    reference(t).sum().backward()
    np.testing.assert_array_equal(g, t.grad.numpy().transpose(0, 2, 1))


def test_torch_agrees_on_reductions_and_maximum():
    torch = pytest.importorskip("torch")
    t = torch.tensor(ROWS, requires_grad=True)
    torch.amax(t, 1).sum().backward()
    np.testing.assert_allclose(_grad(lambda x: ops.max(x, axis=1), ROWS), t.grad.numpy(), rtol=1e-6)
    a, b = (torch.tensor([3.0, 1.0], requires_grad=True) for _ in range(2))
    torch.maximum(a, b).sum().backward()
    np.testing.assert_allclose(_grad(lambda x: ops.maximum(x, Tensor([3.0, 1.0])), [3.0, 1.0]), a.grad.numpy())


@pytest.mark.parametrize("axis", [0, 1])
def test_max_with_indices_gives_dy_to_the_index_it_returns(axis):
    """A reduction that returns where its maximum is: the first maximum, all of dy (as torch.max(x, dim))."""
    x = Tensor(ROWS, requires_grad=True)                            # ties of 3 and of 5 along axis 1
    values, indices = kernels.max_with_indices(x, axis=axis)
    (values * Tensor(np.arange(1.0, values.shape[0] + 1, dtype=np.float32))).sum().backward()
    expected = np.zeros_like(ROWS)
    first = np.argmax(ROWS, axis=axis)                              # numpy's argmax: the first maximum
    for i, j in enumerate(first):
        expected[(j, i) if axis == 0 else (i, j)] = i + 1
    np.testing.assert_array_equal(indices.numpy(), first)
    np.testing.assert_array_equal(x.grad, expected)
    torch = pytest.importorskip("torch")
    t = torch.tensor(ROWS, requires_grad=True)
    v, i = torch.max(t, axis)
    (v * torch.arange(1.0, v.shape[0] + 1)).sum().backward()
    np.testing.assert_array_equal(i.numpy(), first)
    np.testing.assert_array_equal(x.grad, t.grad.numpy())
