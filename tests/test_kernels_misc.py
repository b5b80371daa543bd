"""axon.kernels: batch norm, Adam, matmul, reductions, bias_relu, and how the package compiles and threads."""
import subprocess
import sys

import numpy as np
import pytest

from axon.autograd import Tensor, check_grads
from axon.kernels import (adam_step, adam_update, batch_norm_train, bias_relu, matmul, matmul_loop, max_with_indices,
                          reduce_mean, reduce_sum)
from axon.autograd.engine import PRIMITIVES
from axon.kernels.workspace import scratch

from axon.kernels import activation, norm, reduce
from axon.kernels import adam as adam_module
from axon.kernels import matrix_product as matmul_module

modules = {"norm": norm, "activation": activation, "reduce": reduce}


def test_parallel_paths_agree_with_serial(rng, monkeypatch):
    """Batch norm, bias_relu and the reductions split rows across threads only for large inputs: force it."""
    x, gamma, beta = (rng.standard_normal(s).astype(np.float32) for s in ((7, 5, 3), (3,), (3,)))   # float32 only:
    x += 2                                                                     # parallel kernels compile once

    def run():
        X, G, B = (Tensor(a, requires_grad=True) for a in (x, gamma, beta))
        y, mean, var = batch_norm_train(X, G, B, 1e-3)
        z = bias_relu(y, B) + reduce_sum(y, 1, keepdims=True) + max_with_indices(y, 0, keepdims=True)[0]
        (z * z).sum().backward()
        return z.numpy(), mean, var, X.grad, G.grad, B.grad, max_with_indices(x, 1)[1]

    expected = run()
    for module in modules.values():
        monkeypatch.setattr(module, "PARALLEL_MIN", 0)
    for got, want in zip(run(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ---- batch norm ---------------------------------------------------------------------------------------------
def reference_batch_norm(x, gamma, beta, eps):
    axes = tuple(range(x.ndim - 1))
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta, mean, var


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4, 2), (1, 7, 1)])
def test_batch_norm_matches_reference_and_gradients(rng, shape):
    x = rng.standard_normal(shape) * 2 + 5
    gamma, beta = rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
    y, mean, var = batch_norm_train(x, gamma, beta, 1e-3)
    for got, want in zip((y.numpy(), mean, var), reference_batch_norm(x, gamma, beta, 1e-3)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    check_grads(lambda x, g, b: batch_norm_train(x, g, b, 1e-3)[0], (x, gamma, beta), atol=1e-5)


def test_batch_norm_large_float32_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal((16, 9, 9, 8)) * 3 + 100).astype(np.float32)     # large mean: a cancellation trap
    gamma, beta = rng.standard_normal(8).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    X, G, B = (Tensor(a, requires_grad=True) for a in (x, gamma, beta))
    y, mean, var = batch_norm_train(X, G, B, 1e-5)
    u = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(u)
    assert y.dtype == X.grad.dtype == G.grad.dtype == mean.dtype == var.dtype == np.float32

    xt = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)
    gt, bt = torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
    yt = torch.nn.functional.batch_norm(xt, None, None, gt, bt, training=True, eps=1e-5)
    yt.backward(torch.tensor(np.moveaxis(u, -1, 1)))
    np.testing.assert_allclose(y.numpy(), np.moveaxis(yt.detach().numpy(), 1, -1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(X.grad, np.moveaxis(xt.grad.numpy(), 1, -1), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(G.grad, gt.grad.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(B.grad, bt.grad.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 2), dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(var, x.var(axis=(0, 1, 2), dtype=np.float64), rtol=1e-5)


def test_batch_norm_bad_arguments():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"gamma and beta must have shape \(3,\)"):
        batch_norm_train(x, np.ones(4, np.float32), np.zeros(3, np.float32), 1e-5)
    with pytest.raises(TypeError, match="same dtype"):
        batch_norm_train(x, np.ones(3), np.zeros(3), 1e-5)
    with pytest.raises(ValueError, match="at least 2 axes"):
        batch_norm_train(x[0], np.ones(3, np.float32)[:1], np.zeros(1, np.float32), 1e-5)


# ---- Adam ---------------------------------------------------------------------------------------------------
def reference_adam(p, g, m, v, lr, b1, b2, eps, wd, step):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1 ** step), v / (1 - b2 ** step)
    return p - lr * (m_hat / (np.sqrt(v_hat) + eps) + wd * p), m, v


@pytest.mark.parametrize("size", [7, 1000])
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adam_update_matches_reference(rng, size, wd):
    p, m, v = rng.standard_normal(size), np.zeros(size), np.zeros(size)
    want = (p.copy(), m.copy(), v.copy())
    for step in range(1, 4):
        g = rng.standard_normal(size)
        want = reference_adam(*want[:1], g, *want[1:], 1e-2, 0.9, 0.999, 1e-8, wd, step)
        adam_update(p, g, m, v, lr=1e-2, b1=0.9, b2=0.999, eps=1e-8, weight_decay=wd, step=step)
    for got, w in zip((p, m, v), want):
        np.testing.assert_allclose(got, w, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adam_step_is_the_same_step_without_touching_its_inputs(rng, dtype, wd):
    p, g = rng.standard_normal((5, 7)).astype(dtype), rng.standard_normal((5, 7)).astype(dtype)
    m, v = rng.standard_normal((5, 7)).astype(dtype), rng.random((5, 7)).astype(dtype)
    before = [a.copy() for a in (p, g, m, v)]
    u, m_new, v_new = adam_step(p, g, m, v, lr=1e-2, b1=0.9, b2=0.999, eps=1e-8, weight_decay=wd, step=3)
    for a, b in zip((p, g, m, v), before):
        np.testing.assert_array_equal(a, b)                    # inputs untouched
    adam_update(p, g, m, v, lr=1e-2, b1=0.9, b2=0.999, eps=1e-8, weight_decay=wd, step=3)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(before[0] + u, p, rtol=tol, atol=tol)
    np.testing.assert_array_equal(m_new, m)
    np.testing.assert_array_equal(v_new, v)
    assert u.dtype == m_new.dtype == v_new.dtype == dtype


@pytest.mark.parametrize("wd", [0.0, 0.05])
@pytest.mark.parametrize("split", [False, True])                              # serial, and split across threads
def test_adam_update_float32_matches_torch(rng, monkeypatch, wd, split):
    torch = pytest.importorskip("torch")
    if split:
        monkeypatch.setattr(adam_module, "PARALLEL_MIN", 0)
    p0 = rng.standard_normal((30, 20)).astype(np.float32)
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    pt = torch.tensor(p0, requires_grad=True)
    opt = (torch.optim.AdamW([pt], lr=1e-2, weight_decay=wd) if wd else torch.optim.Adam([pt], lr=1e-2))
    for step in range(1, 6):
        g = rng.standard_normal(p0.shape).astype(np.float32)
        adam_update(p, g, m, v, lr=1e-2, b1=0.9, b2=0.999, eps=1e-8, weight_decay=wd, step=step)
        pt.grad = torch.tensor(g)
        opt.step()
    assert p.dtype == m.dtype == v.dtype == np.float32
    np.testing.assert_allclose(p, pt.detach().numpy(), rtol=1e-6, atol=1e-6)


def test_adam_update_rejects_bad_input_before_changing_anything():
    p, g, m, v = np.ones(3, np.float32), np.ones(3, np.float32), np.zeros(3, np.float32), np.zeros(3, np.float32)
    kw = dict(lr=0.1, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0)
    with pytest.raises(ValueError, match="share one shape and dtype"):
        adam_update(p, np.ones(4, np.float32), m, v, step=1, **kw)
    with pytest.raises(ValueError, match="share one shape and dtype"):
        adam_update(p, g, m, np.zeros(3), step=1, **kw)
    with pytest.raises(ValueError, match="step must be an int >= 1"):
        adam_update(p, g, m, v, step=0, **kw)
    with pytest.raises(ValueError, match="writeable C-contiguous"):
        adam_update(np.ones((3, 2), np.float32).T, np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32),
                    np.zeros((2, 3), np.float32), step=1, **kw)
    with pytest.raises(TypeError, match="numpy array"):
        adam_update(Tensor(p), g, m, v, step=1, **kw)
    assert (p == 1).all() and (m == 0).all() and (v == 0).all()


# ---- matmul -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("f", [matmul_loop, matmul])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 2), (7, 4, 9)])
def test_matmul_kernels_match_numpy_and_gradients(rng, f, shape):
    m, k, n = shape
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    np.testing.assert_allclose(f(a, b).numpy(), a @ b, rtol=1e-12)
    check_grads(f, (a, b), order=2)                                          # VJPs are Tensor ops


def test_matmul_split_rows_path_matches_numpy(rng, monkeypatch):
    """Large products split across threads, one BLAS call each (forced here); the teaching loop agrees."""
    a = rng.standard_normal((67, 130)).astype(np.float32)
    b = rng.standard_normal((130, 45)).astype(np.float32)
    monkeypatch.setattr(matmul_module, "_SPLIT_MIN", 1)
    A, B = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    y = matmul(A, B)
    y.backward(np.ones(y.shape, np.float32))
    assert y.dtype == A.grad.dtype == B.grad.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), a @ b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(matmul_loop(a, b).numpy(), a @ b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(A.grad, np.ones((67, 45), np.float32) @ b.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(B.grad, a.T @ np.ones((67, 45), np.float32), rtol=1e-4, atol=1e-4)
    # second order goes through every transposed product (split rows, split inner dimension, both)
    check_grads(matmul, (rng.standard_normal((5, 4)), rng.standard_normal((4, 3))), order=2)


@pytest.mark.parametrize("k", [3, 200])                      # a^T b: split rows of the result, or split K
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
def test_matmul_every_split_path_equals_numpy(rng, monkeypatch, k, ta, tb):
    monkeypatch.setattr(matmul_module, "_SPLIT_MIN", 1)
    a = rng.standard_normal((k, 37) if ta else (37, k))
    b = rng.standard_normal((11, k) if tb else (k, 11))
    want = (a.T if ta else a) @ (b.T if tb else b)                                  # (37, 11)
    got = PRIMITIVES["kernels.matmul"].forwards["cpu"](a, b, transpose_a=ta, transpose_b=tb)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("f", [matmul_loop, matmul])
@pytest.mark.parametrize("which", ["a", "b"])
def test_matmul_backward_computes_only_the_gradients_asked_for(rng, monkeypatch, f, which):
    """A weight-only gradient (x @ w, x data) runs one product backward, not two."""
    calls = []
    forward = PRIMITIVES[f"kernels.{f.__name__}"].forwards["cpu"]
    monkeypatch.setitem(PRIMITIVES[f"kernels.{f.__name__}"].forwards, "cpu",
                        lambda *args, **kw: calls.append(1) or forward(*args, **kw))
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    A, B = Tensor(a, requires_grad=which == "a"), Tensor(b, requires_grad=which == "b")
    y = f(A, B)
    y.backward(np.ones((3, 2)))
    assert len(calls) == 2                                                     # the forward, then one VJP product
    grad = A.grad if which == "a" else B.grad
    np.testing.assert_allclose(grad, np.ones((3, 2)) @ b.T if which == "a" else a.T @ np.ones((3, 2)), rtol=1e-12)
    assert (B.grad if which == "a" else A.grad) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
def test_stacked_matmul_splits_the_stack_and_equals_numpy(rng, monkeypatch, dtype, ta, tb):
    """The engine's a @ b on stacks of matrices (kernels.stacked_matmul, its CPU forward), transposed
    operands (swapaxes views) read in place; forced onto the threaded path here."""
    monkeypatch.setattr(matmul_module, "_SPLIT_MIN", 1)
    monkeypatch.setattr(matmul_module, "num_threads", lambda: 2)
    a = rng.standard_normal((3, 2, 7, 5) if ta else (3, 2, 5, 7)).astype(dtype)
    b = rng.standard_normal((3, 2, 4, 7) if tb else (3, 2, 7, 4)).astype(dtype)
    A, B = (np.swapaxes(a, -1, -2) if ta else a), (np.swapaxes(b, -1, -2) if tb else b)   # (3, 2, 5, 7) @ (3, 2, 7, 4)
    assert PRIMITIVES["matmul"].forwards["cpu"] is matmul_module.stacked_matmul
    y = matmul_module.stacked_matmul(A, B)
    assert y.dtype == dtype and y.flags.c_contiguous
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, np.matmul(A.astype(np.float64), B.astype(np.float64)), rtol=tol, atol=tol)
    if dtype == np.float64:                                    # the engine's matmul, both orders of grads
        check_grads(lambda x, w: x @ w, (A, B), order=2)


def test_stacked_matmul_leaves_other_products_to_numpy(rng, monkeypatch):
    monkeypatch.setattr(matmul_module, "_SPLIT_MIN", 1)
    monkeypatch.setattr(matmul_module, "num_threads", lambda: 2)
    calls = []
    monkeypatch.setattr(matmul_module, "_stacked_kernel", lambda *args: calls.append(1))
    cases = [(np.ones((2, 3, 4)), np.ones((4, 5))),                        # broadcast batch axes
             (np.ones((2, 3, 4)), np.ones((1, 4, 5))),
             (np.ones((2, 3, 4), np.int64), np.ones((2, 4, 5), np.int64)),   # integers
             (np.ones((3, 4)), np.ones((4, 5))), (np.ones(4), np.ones((2, 4, 5)))]
    for a, b in cases:
        np.testing.assert_array_equal(matmul_module.stacked_matmul(a, b), np.matmul(a, b))
    assert not calls
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3, 4\) and \(2, 5, 6\) do not match"):
        matmul_module.stacked_matmul(np.ones((2, 3, 4)), np.ones((2, 5, 6)))


def test_matmul_bad_shapes():
    with pytest.raises(ValueError, match=r"\(M, K\) and \(K, N\), got shapes \(2, 3\) and \(4, 2\)"):
        matmul_loop(np.ones((2, 3)), np.ones((4, 2)))
    with pytest.raises(TypeError, match="same dtype"):
        matmul(np.ones((2, 3)), np.ones((3, 2), np.float32))


# ---- reductions, bias_relu ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, axis", [((4, 5), 0), ((4, 5), -1), ((2, 3, 4), 1), ((6,), 0)])
def test_reductions_match_numpy_and_gradients(rng, shape, axis):
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(reduce_sum(x, axis).numpy(), x.sum(axis), rtol=1e-12)
    np.testing.assert_allclose(reduce_mean(x, axis, keepdims=True).numpy(), x.mean(axis, keepdims=True), rtol=1e-12)
    values, indices = max_with_indices(x, axis)
    np.testing.assert_array_equal(values.numpy(), x.max(axis))
    np.testing.assert_array_equal(indices, x.argmax(axis))
    check_grads(lambda x: reduce_sum(x, axis), (x,), order=2)
    check_grads(lambda x: reduce_mean(x, axis), (x,))
    check_grads(lambda x: max_with_indices(x, axis)[0], (x,))


def test_max_with_indices_ties_nan_and_float32():
    x = np.array([[1.0, 3.0, 3.0], [np.nan, 2.0, np.nan]], np.float32)
    X = Tensor(x, requires_grad=True)
    values, indices = max_with_indices(X, axis=1)
    np.testing.assert_array_equal(indices, [1, 0])                           # the first maximum, the first NaN
    values.sum().backward()
    np.testing.assert_array_equal(X.grad, [[0, 1, 0], [1, 0, 0]])
    assert values.dtype == X.grad.dtype == np.float32
    assert reduce_sum(np.ones((30, 20), np.float32), 1).dtype == np.float32


def test_bias_relu_matches_numpy_and_gradients(rng):
    x, b = rng.standard_normal((4, 3, 5)), rng.standard_normal(5)
    np.testing.assert_allclose(bias_relu(x, b).numpy(), np.maximum(x + b, 0))
    check_grads(bias_relu, (x, b), order=2)                  # grad of grad: the VJP is recorded as ops
    big = rng.standard_normal((30, 20)).astype(np.float32)
    B = Tensor(np.zeros(20, np.float32), requires_grad=True)
    y = bias_relu(big, B)
    y.sum().backward()
    assert y.dtype == B.grad.dtype == np.float32
    np.testing.assert_allclose(B.grad, (big > 0).sum(axis=0), rtol=1e-6)
    with pytest.raises(ValueError, match=r"b must have shape \(5,\)"):
        bias_relu(x, np.ones(4))


# ---- compile and threads ------------------------------------------------------------------------------------
def test_importing_compiles_nothing():
    code = ("import axon, axon.kernels, importlib, numba\n"
            "names = ('convolution', 'pool', 'softmax_family', 'norm', 'adam', 'matrix_product', 'reduce',\n"
            "         'activation', 'special', 'ctc')\n"
            "kernels = [v for name in names\n"
            "           for v in vars(importlib.import_module('axon.kernels.' + name)).values()\n"
            "           if isinstance(v, numba.core.registry.CPUDispatcher)]\n"
            "assert len(kernels) > 20, len(kernels)\n"
            "assert not any(k.signatures for k in kernels), [k for k in kernels if k.signatures]\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_scratch_buffers_are_reused_and_typed():
    a = scratch("test", (4, 5), np.float32)
    b = scratch("test", (2, 3), np.float32)
    c = scratch("test", (2, 3), np.float64)
    assert np.shares_memory(a, b) and not np.shares_memory(a, c)
    assert b.flags.c_contiguous and b.dtype == np.float32 and c.dtype == np.float64
