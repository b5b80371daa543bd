"""Linear layers: dense, bilinear, embedding (values, gradients, torch, errors)."""
import numpy as np
import pytest

import axon.functional.layers as L
from axon.autograd import Tensor, check_grads

from test_layers_helpers import against_torch, keeps_float32


def test_dense_gradients(rng):
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)
    check_grads(L.dense, (x, w, b), order=2)
    check_grads(lambda x, w: L.dense(x, w), (rng.standard_normal((2, 3, 4)), w))      # leading axes, no bias


@pytest.mark.parametrize("x_shape", [(1, 4), (2, 3, 4), (4,)])
def test_dense_matches_torch(rng, x_shape):
    torch = pytest.importorskip("torch")
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal((4, 3)), rng.standard_normal(3)
    against_torch(L.dense, lambda x, w, b: torch.nn.functional.linear(x, w.T, b), (x, w, b))
    keeps_float32(L.dense, x, w, b)


def test_bilinear_matches_torch_and_gradients(rng):
    torch = pytest.importorskip("torch")
    x1, x2 = rng.standard_normal((3, 2)), rng.standard_normal((3, 4))
    w, b = rng.standard_normal((5, 2, 4)), rng.standard_normal(5)
    against_torch(L.bilinear, torch.nn.functional.bilinear, (x1, x2, w, b))
    x1, x2 = rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 3, 4))              # leading axes
    against_torch(lambda a, c, w: L.bilinear(a, c, w), lambda a, c, w: torch.nn.functional.bilinear(a, c, w),
                  (x1, x2, w))
    keeps_float32(L.bilinear, x1, x2, w, b)


def test_bilinear_check_grads(rng):
    args = (rng.standard_normal((2, 2)), rng.standard_normal((2, 3)), rng.standard_normal((3, 2, 3)),
            rng.standard_normal(3))
    check_grads(L.bilinear, args, order=2)


def test_embedding_values_and_sparse_row_gradient(rng):
    table = rng.standard_normal((7, 3))
    idx = np.array([[1, 4, 1], [6, 1, 0]])
    t = Tensor(table, requires_grad=True)
    y = L.embedding(idx, t)
    np.testing.assert_array_equal(y.numpy(), table[idx])
    dy = rng.standard_normal(y.shape)
    y.backward(dy)
    expected = np.zeros_like(table)
    for (i, j), row in np.ndenumerate(idx):
        expected[row] += dy[i, j]                              # row 1 appears three times: accumulates
    np.testing.assert_allclose(t.grad, expected)
    untouched = [r for r in range(7) if r not in idx]
    assert not t.grad[untouched].any()
    check_grads(lambda tab: L.embedding(idx, tab), (table,), order=2)


def test_embedding_matches_torch(rng):
    torch = pytest.importorskip("torch")
    idx = np.array([3, 0, 3, 2])
    against_torch(lambda tab: L.embedding(Tensor(idx), tab),
                  lambda tab: torch.nn.functional.embedding(torch.tensor(idx), tab), (rng.standard_normal((5, 2)),))
    keeps_float32(lambda tab: L.embedding(idx, tab), rng.standard_normal((5, 2)))


@pytest.mark.parametrize("call, match", [
    (lambda: L.dense(np.ones((2, 3)), np.ones((4, 5))), r"dense: kernel expects 4 input features, input has 3"),
    (lambda: L.dense(np.ones((2, 3)), np.ones((3, 5, 1))), r"dense: expects kernel of rank 2"),
    (lambda: L.dense(np.ones((2, 3)), np.ones((3, 5)), np.ones(4)), r"dense: bias must have shape \(5,\), got \(4,\)"),
    (lambda: L.dense(np.ones(()), np.ones((3, 5))), r"dense: expects input of rank >= 1"),
    (lambda: L.bilinear(np.ones((2, 3)), np.ones((2, 4)), np.ones((5, 3, 3))),
     r"bilinear: kernel expects \(3, 3\) input features, inputs have \(3, 4\)"),
    (lambda: L.bilinear(np.ones((2, 3)), np.ones((3, 4)), np.ones((5, 3, 4))), r"bilinear: inputs must agree"),
    (lambda: L.embedding(np.array([0, 7]), np.ones((7, 2))), r"embedding: index 7 is out of range for a table of 7"),
    (lambda: L.embedding(np.array([-1]), np.ones((7, 2))), r"embedding: index -1 is out of range"),
    (lambda: L.embedding(np.array([0]), np.ones(7)), r"embedding: expects kernel of rank 2"),
])
def test_linear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_embedding_rejects_float_indices():
    with pytest.raises(TypeError, match="embedding: input must hold integer indices, got dtype float64"):
        L.embedding(np.array([0.0, 1.0]), np.ones((3, 2)))
