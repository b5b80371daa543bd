"""The CUDA backend against its CPU twin: every forward, the VJPs through the engine, a few training steps.

Without a GPU these tests run on numba's CUDA simulator, as CI does, in a pytest run of their own:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_cuda.py -q

(the simulator runs every GPU thread as a Python thread, so the shapes are small and odd). In an
ordinary run without a GPU and without the simulator the device tests skip, saying why; the two
tests of how the backend loads run everywhere.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import axon
from axon import kernels
from axon.autograd import PRIMITIVES, Tensor
from axon.backend import to_device

try:
    import axon.cuda as acuda
    REASON = None
except RuntimeError as e:                                       # no numba-cuda, no driver, no device
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":           # the simulator was asked for: it must load
        raise
    acuda, REASON = None, str(e)

needs_cuda = pytest.mark.skipif(acuda is None, reason=f"the CUDA backend cannot run here: {REASON}")
FLOATS = [np.float32, np.float64]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True, scope="module")
def _fast_thread_switches():
    """The simulator's threads meet at barriers: switch between Python threads often (restored after)."""
    old = sys.getswitchinterval()
    if acuda is not None and acuda.SIMULATOR:
        sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


def dev(*arrays):
    """Host arrays on the device (one array, or a list)."""
    out = [to_device(np.asarray(a), "cuda") for a in arrays]
    return out[0] if len(out) == 1 else out


def host(x):
    if isinstance(x, Tensor):
        return x.numpy()
    return np.asarray(x) if isinstance(x, (np.ndarray, np.generic)) else x.copy_to_host()


def assert_twin(out, ref, dtype=None, tol=None):
    """Same shape, same dtype, values equal to rounding (float32: 1e-5 relative)."""
    out, ref = host(out), host(ref)
    assert out.shape == ref.shape and out.dtype == ref.dtype, (out.shape, out.dtype, ref.shape, ref.dtype)
    if tol is None:
        tol = 2e-5 if (dtype or ref.dtype) == np.float32 else 1e-10
    if ref.dtype.kind == "f":
        np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)
    else:
        np.testing.assert_array_equal(out, ref)


# ---- loading ------------------------------------------------------------------------------------------
def _python(code, **env_changes):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)


def test_import_axon_does_not_load_the_cuda_backend():
    r = _python("import sys, axon; import axon.backend as b; "
                "print('axon.cuda' in sys.modules, 'numba.cuda' in sys.modules, b.get_backend())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False", "cpu"]


def test_asking_for_cuda_without_a_gpu_is_one_clear_error():
    r = _python("import axon.backend as b\ntry:\n    b.backend('cuda')\nexcept RuntimeError as e:\n"
                "    print('ERROR', e)\nelse:\n    print('LOADED')")
    assert r.returncode == 0, r.stderr
    if r.stdout.startswith("LOADED"):
        pytest.skip("a usable GPU is present: there is no error to see")
    assert r.stdout.startswith("ERROR the 'cuda' backend"), r.stdout
    assert "cannot start" in r.stdout or "needs numba-cuda" in r.stdout


# ---- elementwise and comparisons ----------------------------------------------------------------------
UNARY = ["neg", "exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu", "sign"]
BINARY = ["add", "sub", "mul", "div", "power", "maximum", "minimum", "less", "less_equal", "greater",
          "greater_equal", "equal", "not_equal"]


@needs_cuda
@pytest.mark.parametrize("dtype", FLOATS)
def test_unary_forwards_equal_the_cpu(dtype, rng):
    x = rng.standard_normal((3, 5)).astype(dtype)
    x[0, 0], x[1, 1] = 0.0, np.nan                                    # zero and NaN go through as numpy's
    x_pos = np.abs(x) + 0.5
    for name in UNARY:
        a = x_pos if name in ("log", "sqrt") else x
        ref = PRIMITIVES[name].forwards["cpu"](a)
        assert_twin(PRIMITIVES[name].forwards["cuda"](dev(a)), ref, dtype)


@needs_cuda
@pytest.mark.parametrize("dtype", FLOATS)
def test_binary_forwards_broadcast_as_the_cpu(dtype, rng):
    a = rng.standard_normal((2, 1, 5)).astype(dtype)                  # (2, 1, 5) with (3, 1): (2, 3, 5)
    b = (rng.standard_normal((3, 1)) + 2.0).astype(dtype)
    b[1, 0] = a[0, 0, 0]                                              # a tie for the comparisons
    for name in BINARY:
        p, q = (np.abs(a) + 0.1, b) if name == "power" else (a, b)
        assert_twin(PRIMITIVES[name].forwards["cuda"](*dev(p, q)), PRIMITIVES[name].forwards["cpu"](p, q), dtype)


@needs_cuda
def test_scalars_logic_where_clip_astype(rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    t = Tensor(dev(x))
    assert_twin(t * 2.0 + 1, Tensor(x) * 2.0 + 1)                      # scalars stay float32
    assert_twin((t > 0) & ~(t > 1) | (t < -1), (Tensor(x) > 0) & ~(Tensor(x) > 1) | (Tensor(x) < -1))
    assert_twin(axon.autograd.where(t > 0, t, 0.5 * t), axon.autograd.where(Tensor(x) > 0, Tensor(x), 0.5 * Tensor(x)))
    assert_twin(t.clip(-0.5, None), Tensor(x).clip(-0.5, None))
    assert_twin(t.astype(np.float64), Tensor(x).astype(np.float64))
    assert_twin(t.astype(np.int32), Tensor(x).astype(np.int32))
    assert_twin((t > 0).astype(np.float32) * t, (Tensor(x) > 0).astype(np.float32) * Tensor(x))


@needs_cuda
@pytest.mark.parametrize("dtype", FLOATS)
def test_the_functional_apis_primitives(dtype, rng):
    x = rng.standard_normal((3, 4, 5)).astype(dtype)
    for name in ("log1p", "expm1", "softplus", "erf", "kernels.erf"):
        if name in PRIMITIVES:
            a = np.abs(x) if name == "log1p" else x
            assert_twin(PRIMITIVES[name].forwards["cuda"](dev(a)), PRIMITIVES[name].forwards["cpu"](a), dtype)
    elu = PRIMITIVES["elu"].forwards
    assert_twin(elu["cuda"](dev(x), 1.5, 2.0), elu["cpu"](x, 1.5, 2.0), dtype)
    for name in ("standardize", "rms_normalize"):
        for axes in ((2,), (1, 2)):
            out, ref = PRIMITIVES[name].forwards["cuda"](dev(x), axes, 1e-5), PRIMITIVES[name].forwards["cpu"](x, axes, 1e-5)
            assert_twin(out[0], ref[0], dtype, tol=1e-4 if dtype == np.float32 else None)
            assert_twin(out[1], ref[1], dtype, tol=1e-4 if dtype == np.float32 else None)


@needs_cuda
def test_shape_errors_are_the_cpus(rng):
    with pytest.raises(ValueError, match="add: shapes"):
        Tensor(dev(np.ones((2, 3)))) + Tensor(dev(np.ones((4,))))
    with pytest.raises(ValueError, match="matmul: shapes"):
        Tensor(dev(np.ones((2, 3)))) @ Tensor(dev(np.ones((4, 2))))
    with pytest.raises(ValueError, match="reshape: cannot reshape"):
        Tensor(dev(np.ones((2, 3)))).reshape(4, 2)
    with pytest.raises(ValueError, match="different devices"):
        Tensor(dev(np.ones(3))) + Tensor(np.ones(3))


# ---- reductions -----------------------------------------------------------------------------------------
@needs_cuda
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis, keepdims", [(None, False), (0, True), ((0, 2), False), (-1, False), ((1,), True)])
def test_reductions_equal_the_cpu(dtype, axis, keepdims, rng):
    x = rng.standard_normal((3, 4, 5)).astype(dtype)
    for name in ("sum", "max", "min"):
        ref = PRIMITIVES[name].forwards["cpu"](x, axis=axis, keepdims=keepdims)
        assert_twin(PRIMITIVES[name].forwards["cuda"](dev(x), axis=axis, keepdims=keepdims), ref, dtype)


@needs_cuda
def test_reductions_nan_ints_and_empty():
    x = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, -6.0]], np.float32)
    assert_twin(Tensor(dev(x)).max(axis=1), Tensor(x).max(axis=1))      # NaN wins, as numpy
    i = np.arange(12, dtype=np.int32).reshape(3, 4)
    assert_twin(PRIMITIVES["sum"].forwards["cuda"](dev(i), axis=0, keepdims=False), i.sum(axis=0))  # int64, as numpy
    e = np.zeros((0, 3), np.float32)
    assert_twin(Tensor(dev(e)).sum(axis=0), Tensor(e).sum(axis=0))
    assert_twin(Tensor(dev(x)).mean(), Tensor(x).mean())


# ---- layout ops --------------------------------------------------------------------------------------------
INDEXES = [
    (1,), (slice(None, None, -1), 2), (Ellipsis, None, slice(1, 4)), (slice(1, None), [0, 2, 2]),
    (np.array([2, 0, 2]),), (np.array([[0, 1], [2, 2]]), slice(None), np.array([4, 0])),
    (np.array([True, False, True]),), (slice(None), 1, -1),
]


@needs_cuda
@pytest.mark.parametrize("dtype", FLOATS)
def test_layout_ops_equal_the_cpu(dtype, rng):
    x = rng.standard_normal((3, 4, 5)).astype(dtype)
    X, C = Tensor(dev(x)), Tensor(x)
    assert_twin(X.reshape(5, -1), C.reshape(5, -1))
    assert_twin(X.transpose(2, 0, 1), C.transpose(2, 0, 1))
    assert_twin(X.T, C.T)
    assert_twin(axon.autograd.broadcast_to(X[:, :1], (2, 3, 4, 5)), axon.autograd.broadcast_to(C[:, :1], (2, 3, 4, 5)))
    for index in INDEXES:
        assert_twin(X[index], C[index])
    assert_twin(axon.autograd.concatenate([X, X[:, :1]], axis=1), axon.autograd.concatenate([C, C[:, :1]], axis=1))
    assert_twin(axon.autograd.stack([X, X * 2], axis=-1), axon.autograd.stack([C, C * 2], axis=-1))
    assert_twin(axon.autograd.pad(X, ((1, 0), (0, 2), (1, 1)), value=0.5), axon.autograd.pad(C, ((1, 0), (0, 2), (1, 1)), value=0.5))


@needs_cuda
@pytest.mark.parametrize("dtype", FLOATS)
def test_scatter_add_accumulates_repeats_with_atomics(dtype, rng):
    dy = rng.standard_normal((4, 3)).astype(dtype)
    for index, shape in [((np.array([0, 2, 2, 0]),), (3, 3)), ((slice(1, 5),), (6, 3)),
                         ((np.array([1, 1, 1, 1]), np.array([0, 1, 0, 0])), (2, 2, 3))]:
        target = np.zeros(shape, dtype)[index]
        d = np.broadcast_to(dy[: target.shape[0]], target.shape).copy() if target.shape != dy.shape else dy
        ref = PRIMITIVES["scatter_add"].forwards["cpu"](d, index, shape)
        assert_twin(PRIMITIVES["scatter_add"].forwards["cuda"](dev(d), index, shape), ref, dtype, tol=1e-5)


# ---- matmul ----------------------------------------------------------------------------------------------
@needs_cuda
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("a_shape, b_shape", [((5, 7), (7, 3)), ((2, 1, 3, 9), (4, 9, 2)), ((9,), (9, 2)),
                                              ((3, 9), (9,)), ((17, 1), (1, 11))])
def test_matmul_equals_numpy(dtype, a_shape, b_shape, rng):
    a, b = rng.standard_normal(a_shape).astype(dtype), rng.standard_normal(b_shape).astype(dtype)
    assert_twin(PRIMITIVES["matmul"].forwards["cuda"](*dev(a, b)), np.matmul(a, b), dtype, tol=1e-4)


@needs_cuda
def test_kernels_matmul_reads_transposes_in_place(rng):
    a, b = rng.standard_normal((6, 5)).astype(np.float32), rng.standard_normal((7, 6)).astype(np.float32)
    out = PRIMITIVES["kernels.matmul"].forwards["cuda"](*dev(a, b), transpose_a=True, transpose_b=True)
    assert_twin(out, (a.T @ b.T).astype(np.float32), tol=1e-4)


# ---- VJPs through the engine: the same gradients on both backends ------------------------------------
def _grads(f, arrays, on_device):
    leaves = [Tensor(dev(a) if on_device else a, requires_grad=True) for a in arrays]
    y = f(*leaves)
    y.backward()
    return y, [t.grad for t in leaves]


def assert_same_grads(f, *arrays, tol=None):
    y_d, g_d = _grads(f, arrays, True)
    y_c, g_c = _grads(f, arrays, False)
    assert y_d.device == "cuda" and all(not isinstance(g, np.ndarray) for g in g_d)   # never left the device
    assert_twin(y_d, y_c, tol=tol)
    for gd, gc in zip(g_d, g_c):
        assert_twin(gd, gc, tol=tol)


@needs_cuda
@pytest.mark.parametrize("dtype", FLOATS)
def test_vjps_of_the_engines_ops_run_on_the_device(dtype, rng):
    ag = axon.autograd
    x = rng.standard_normal((3, 4)).astype(dtype)
    w = rng.standard_normal((4, 5)).astype(dtype)
    b = rng.standard_normal((5,)).astype(dtype)

    def f(x, w, b):
        h = ag.tanh(x @ w + b) * ag.sigmoid(x[:, :1]) - ag.relu(-(x @ w)) / (1.0 + ag.abs(b))
        h = ag.maximum(h, ag.minimum(b, 0.2)) + ag.exp(ag.clip(h, -1.0, 0.5)) ** 2
        g = ag.concatenate([h, ag.sqrt(ag.abs(h) + 1.0)], axis=1)[[0, 2, 2], ::2]
        s = ag.stack([g.max(axis=1), g.min(axis=1), ag.log(g.sum(axis=1) ** 2 + 1.0)], axis=0)
        return ag.where(s > 0, s, 0.1 * s).mean() + ag.pad(x.T, ((1, 0), (0, 1))).reshape(-1).sum()

    assert_same_grads(f, x, w, b, tol=1e-4 if dtype == np.float32 else 1e-9)


# ---- the fused kernels ---------------------------------------------------------------------------------
CONVS = [  # x shape, w shape, strides, padding, dilation, groups
    ((2, 7, 3), (3, 3, 4), (2,), ((1, 1),), (1,), 1),
    ((1, 5, 6, 4), (3, 2, 2, 6), (1, 2), ((1, 0), (0, 2)), (2, 1), 2),
    ((2, 4, 5, 3), (3, 3, 3, 2), (1, 1), ((1, 1), (1, 1)), (1, 1), 1),
    ((1, 3, 4, 3, 2), (2, 2, 2, 2, 3), (1, 2, 1), ((0, 1), (1, 0), (0, 0)), (1, 1, 2), 1),
]


@needs_cuda
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("x_shape, w_shape, strides, padding, dilation, groups", CONVS)
def test_conv_forward_equals_the_cpu(dtype, x_shape, w_shape, strides, padding, dilation, groups, rng):
    x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    run = lambda x, w: kernels.conv(x, w, strides, padding, dilation, groups)   # noqa: E731
    assert_twin(run(*dev(x, w)), run(x, w), dtype, tol=1e-4 if dtype == np.float32 else None)


@needs_cuda
@pytest.mark.parametrize("dtype", FLOATS)
def test_pooling_forwards_equal_the_cpu(dtype, rng):
    x = rng.standard_normal((2, 5, 7, 3)).astype(dtype)
    x[0, 1, 1, 0] = np.nan
    pools = [lambda x: kernels.max_pool(x, (2, 3), (2, 2), ((1, 0), (1, 1))),
             lambda x: kernels.avg_pool(x, (3, 2), (2, 1), ((1, 1), (0, 1)), count_include_pad=False),
             lambda x: kernels.avg_pool(x, (2, 2), (1, 2), ((0, 1), (1, 0))),
             lambda x: kernels.adaptive_max_pool(x, (2, 3)), lambda x: kernels.adaptive_avg_pool(x, (3, 2)),
             lambda x: kernels.global_avg_pool(x)]
    for pool in pools:
        assert_twin(pool(dev(x)), pool(x), dtype)
    a = np.abs(x[:, :, :, :2]) + 0.1
    assert_twin(kernels.lp_pool(dev(a), 3, (2, 2), (2, 2), ((0, 0), (0, 0))),
                kernels.lp_pool(a, 3, (2, 2), (2, 2), ((0, 0), (0, 0))), dtype)


@needs_cuda
@pytest.mark.parametrize("dtype", FLOATS)
def test_softmax_family_and_cross_entropy_equal_the_cpu(dtype, rng):
    x = (rng.standard_normal((3, 4, 5)) * 3).astype(dtype)
    X = dev(x)
    for axis in (-1, 0, (0, 2)):
        assert_twin(kernels.softmax(X, axis), kernels.softmax(x, axis), dtype)
        assert_twin(kernels.log_softmax(X, axis), kernels.log_softmax(x, axis), dtype)
        assert_twin(kernels.logsumexp(X, axis, keepdims=True), kernels.logsumexp(x, axis, keepdims=True), dtype)
    assert_twin(kernels.logsumexp(X, 1), kernels.logsumexp(x, 1), dtype)
    logits = x[:, :, 0].T.copy()                                             # (4, 3)
    t = rng.dirichlet(np.ones(3), 4).astype(dtype)
    assert_twin(kernels.softmax_cross_entropy(dev(logits), dev(t)), kernels.softmax_cross_entropy(logits, t), dtype)
    labels = np.array([2, 0, 1, 2])
    xent = PRIMITIVES["kernels.softmax_cross_entropy"].forwards
    assert_twin(xent["cuda"](dev(logits), None, labels), xent["cpu"](logits, np.empty((0, 0), dtype), labels), dtype)


@needs_cuda
@pytest.mark.parametrize("dtype", FLOATS)
def test_batch_norm_and_bias_relu_forwards_equal_the_cpu(dtype, rng):
    x = rng.normal(2.0, 3.0, (5, 3, 4)).astype(dtype)
    gamma, beta = rng.standard_normal(4).astype(dtype), rng.standard_normal(4).astype(dtype)
    bn = PRIMITIVES["kernels.batch_norm_train"].forwards
    mean, invstd = x.reshape(-1, 4).mean(0), 1 / np.sqrt(x.reshape(-1, 4).var(0) + 1e-5)
    assert_twin(bn["cuda"](*dev(x, gamma, beta), mean, invstd), bn["cpu"](x, gamma, beta, mean, invstd), dtype)
    assert_twin(kernels.bias_relu(*dev(x, beta)), kernels.bias_relu(x, beta), dtype)


@needs_cuda
def test_reduce_kernels(rng):
    x = rng.standard_normal((3, 4, 2)).astype(np.float32)
    assert_twin(kernels.reduce_sum(dev(x), 1), kernels.reduce_sum(x, 1))
    index = np.argmax(x, axis=1)                                             # (A, B) for axis 1
    take = PRIMITIVES["kernels.take_along_axis"].forwards
    assert_twin(take["cuda"](dev(x), index, 1, False), take["cpu"](x, index, 1, False))


@needs_cuda
@pytest.mark.parametrize("dtype", FLOATS)
def test_dropout_masks_are_drawn_on_the_device(dtype):
    """``random.keep_mask`` on the device: its own bits (not the CPU's), a valid keep rate, one mask per key and salt."""
    from axon.functional.layers import dropout
    x = Tensor(dev(np.ones((20, 25), dtype)))
    forward = PRIMITIVES["random.keep_mask"].forwards["cuda"]
    assert forward is acuda.kernels.keep_mask                                # not the host's draw copied over
    y = dropout(x, key=7, rate=0.25)                                         # kept: 1 / (1 - 0.25)
    assert y.device == "cuda" and y.dtype == dtype
    m = host(y)
    assert set(np.unique(m)) == {0.0, dtype(4 / 3)}
    assert 0.68 < (m > 0).mean() < 0.82                                      # 500 draws: about 3 in 4 kept
    assert np.array_equal(m, host(dropout(x, key=7, rate=0.25)))             # the same key: the same mask
    assert not np.array_equal(m, host(dropout(x, key=8, rate=0.25)))         # another key, another mask
    key = dev(np.asarray(7, np.uint64))
    like = dev(np.zeros(1, dtype))
    a, b = (host(forward(key, like, (salt,), (20, 25), 0.25, 1.0)) for salt in ("dropout_0", "dropout_1"))
    assert set(np.unique(a)) == {0.0, 1.0} and not np.array_equal(a, b)    # the salt separates the layers
    rows = host(dropout(x, key=3, rate=0.5, noise_shape=(20, 1)))            # one decision per row
    assert (rows == rows[:, :1]).all() and 0 < rows[:, 0].sum() < 40


# ---- the fused kernels' VJPs: their backward primitives on the device ------------------------------------
def needs_backward(name):
    """Skip unless ``axon.kernels`` defines the backward primitive (the VJPs on arrays live there)."""
    return pytest.mark.skipif(name not in PRIMITIVES, reason=f"this tree's axon.kernels has no {name} primitive")


def _weighted(y):
    """A scalar from y with a different weight per element (so every gradient entry is tested)."""
    y = y[0] if isinstance(y, tuple) else y
    w = np.linspace(0.5, 1.5, y.size).reshape(y.shape).astype(y.dtype)
    return (y * Tensor(to_device(w, y.device))).sum()


@needs_cuda
@needs_backward("kernels.conv_backward")
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("x_shape, w_shape, strides, padding, dilation, groups", CONVS[:4])   # to 3-D
def test_conv_vjp_on_the_device(dtype, x_shape, w_shape, strides, padding, dilation, groups, rng):
    x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    assert_same_grads(lambda x, w: _weighted(kernels.conv(x, w, strides, padding, dilation, groups)), x, w,
                      tol=1e-4 if dtype == np.float32 else 1e-9)


@needs_cuda
@needs_backward("kernels.max_pool_backward")
@pytest.mark.parametrize("dtype", FLOATS)
def test_pooling_vjps_on_the_device(dtype, rng):
    x = rng.standard_normal((2, 5, 6, 2)).astype(dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-9
    assert_same_grads(lambda x: _weighted(kernels.max_pool(x, (2, 3), (1, 2), ((1, 0), (1, 1)))), x, tol=tol)
    assert_same_grads(lambda x: _weighted(kernels.avg_pool(x, (3, 2), (2, 1), ((1, 1), (0, 1)))), x, tol=tol)
    assert_same_grads(lambda x: _weighted(kernels.lp_pool(x, 2, (2, 2), (2, 2), ((0, 0), (0, 0)))),
                      np.abs(x) + 0.1, tol=tol)


@needs_cuda
@needs_backward("kernels.softmax_backward")
@pytest.mark.parametrize("dtype", FLOATS)
def test_softmax_and_cross_entropy_vjps_on_the_device(dtype, rng):
    x = rng.standard_normal((3, 4, 5)).astype(dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-9
    assert_same_grads(lambda x: _weighted(kernels.softmax(x, (0, 2))), x, tol=tol)
    assert_same_grads(lambda x: _weighted(kernels.log_softmax(x, 1)), x, tol=tol)
    assert_same_grads(lambda x: _weighted(kernels.logsumexp(x, -1)), x, tol=tol)
    logits, t = x[:, :, 0].T.copy(), rng.dirichlet(np.ones(3), 4).astype(dtype)
    assert_same_grads(lambda x, t: _weighted(kernels.softmax_cross_entropy(x, t)), logits, t, tol=tol)
    assert_same_grads(lambda x: _weighted(kernels.softmax_cross_entropy(x, np.array([2, 0, 1, 1]))), logits, tol=tol)


@needs_cuda
@needs_backward("kernels.batch_norm_backward")
@pytest.mark.parametrize("dtype", FLOATS)
def test_batch_norm_bias_relu_and_adam_on_the_device(dtype, rng):
    x = rng.normal(1.0, 2.0, (6, 2, 3)).astype(dtype)
    gamma, beta = rng.standard_normal(3).astype(dtype), rng.standard_normal(3).astype(dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-9
    assert_same_grads(lambda x, g, b: _weighted(kernels.batch_norm_train(x, g, b, 1e-5)), x, gamma, beta, tol=tol)
    assert_same_grads(lambda x, b: _weighted(kernels.bias_relu(x, b)), x, beta, tol=tol)
    assert_same_grads(lambda x: _weighted(kernels.max_with_indices(x, 1)), x, tol=tol)


@needs_cuda
@needs_backward("kernels.adam_step")
@pytest.mark.parametrize("dtype", FLOATS)
def test_fused_adam_step_on_the_device(dtype, rng):
    import inspect
    from axon.kernels.adam import adam_scalars
    p, g, m, v = (rng.standard_normal((5, 3)).astype(dtype) for _ in range(4))
    v = np.abs(v)
    settings = dict(lr=1e-2, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01, step=4)
    forwards = PRIMITIVES["kernels.adam_step"].forwards
    if "scalars" in inspect.signature(forwards["cpu"]).parameters:          # the settings as adam_scalars
        settings = {"scalars": adam_scalars(dtype, **settings)}
    for out, ref in zip(forwards["cuda"](*dev(p, g, m, v), **settings), forwards["cpu"](p, g, m, v, **settings)):
        assert_twin(out, ref, tol=1e-6 if dtype == np.float32 else 1e-12)


@needs_cuda
@needs_backward("kernels.adam_step_at")
@pytest.mark.parametrize("dtype", FLOATS)
def test_fused_adam_with_its_step_number_on_the_device(dtype, rng):
    p, g, m, v = (rng.standard_normal((5, 3)).astype(dtype) for _ in range(4))
    v = np.abs(v)
    t, lr = np.asarray(4, np.int64), np.asarray(1e-2, np.float64)       # 0-d arrays: moved to the device too
    settings = dict(b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01)
    forwards = PRIMITIVES["kernels.adam_step_at"].forwards
    cpu = forwards["cpu"](p, g, m, v, t, lr, **settings)
    for out, ref in zip(forwards["cuda"](*dev(p, g, m, v, t, lr), **settings), cpu):
        assert_twin(out, ref, tol=1e-6 if dtype == np.float32 else 1e-12)


# ---- a few training steps on the device equal the CPU's -----------------------------------------------
def _mlp_loss(params, x, labels):
    ag = axon.autograd
    h = ag.relu(x @ params["w1"] + params["b1"])                            # (N, 784') -> (N, H)
    z = h @ params["w2"] + params["b2"]                                     # (N, K) logits
    m = z.max(axis=1, keepdims=True)
    lse = m + ag.log(ag.exp(z - m).sum(axis=1, keepdims=True))              # (N, 1)
    return (lse.reshape(-1) - z[np.arange(z.shape[0]), labels]).mean()


def _sgd_steps(loss_fn, params, batches, lr, on_device):
    """Plain SGD by hand: Tensor leaves, backward, ``p - lr g`` as Tensor ops (no host round trip)."""
    params = to_device(params, "cuda" if on_device else "cpu")
    losses = []
    for x, labels in batches:
        leaves = {k: Tensor(v, requires_grad=True) for k, v in params.items()}
        xb = Tensor(to_device(x, "cuda") if on_device else x)
        loss = loss_fn(leaves, xb, labels)
        loss.backward()
        with axon.no_grad():
            params = {k: (Tensor(v) - lr * Tensor(leaves[k].grad)).data for k, v in params.items()}
        losses.append(float(loss))
    return params, losses


@needs_cuda
def test_mlp_training_steps_on_the_device_equal_the_cpus(rng):
    params = {"w1": (rng.standard_normal((12, 8)) * 0.3).astype(np.float32), "b1": np.zeros(8, np.float32),
              "w2": (rng.standard_normal((8, 5)) * 0.3).astype(np.float32), "b2": np.zeros(5, np.float32)}
    batches = [(rng.standard_normal((6, 12)).astype(np.float32), rng.integers(0, 5, 6))] * 3   # fit one batch
    p_dev, l_dev = _sgd_steps(_mlp_loss, params, batches, 0.5, True)
    p_cpu, l_cpu = _sgd_steps(_mlp_loss, params, batches, 0.5, False)
    assert all(isinstance(v, acuda.ARRAY_TYPES) for v in p_dev.values())   # params stayed device arrays
    np.testing.assert_allclose(l_dev, l_cpu, rtol=1e-4, atol=1e-4)
    assert l_cpu[-1] < l_cpu[0]
    for k in params:
        np.testing.assert_allclose(host(p_dev[k]), p_cpu[k], rtol=1e-4, atol=1e-4)


def _cnn_loss(params, x, labels):
    h = kernels.bias_relu(kernels.conv(x, params["k"], (1, 1), ((1, 1), (1, 1)), (1, 1)), params["c"])  # (N, 6, 6, 4)
    h = kernels.max_pool(h, (2, 2), (2, 2), ((0, 0), (0, 0)))                                            # (N, 3, 3, 4)
    z = h.reshape(h.shape[0], -1) @ params["w"] + params["b"]                                            # (N, 3)
    return kernels.softmax_cross_entropy(z, labels).mean()


@needs_cuda
@needs_backward("kernels.conv_backward")
def test_cnn_training_steps_on_the_device_equal_the_cpus(rng):
    params = {"k": (rng.standard_normal((3, 3, 2, 4)) * 0.3).astype(np.float32), "c": np.zeros(4, np.float32),
              "w": (rng.standard_normal((36, 3)) * 0.2).astype(np.float32), "b": np.zeros(3, np.float32)}
    batches = [(rng.standard_normal((3, 6, 6, 2)).astype(np.float32), np.array([0, 2, 1]))] * 3
    p_dev, l_dev = _sgd_steps(_cnn_loss, params, batches, 0.3, True)
    p_cpu, l_cpu = _sgd_steps(_cnn_loss, params, batches, 0.3, False)
    assert all(isinstance(v, acuda.ARRAY_TYPES) for v in p_dev.values())
    np.testing.assert_allclose(l_dev, l_cpu, rtol=1e-4, atol=1e-4)
    assert l_cpu[-1] < l_cpu[0]
    for k in params:
        np.testing.assert_allclose(host(p_dev[k]), p_cpu[k], rtol=1e-4, atol=1e-4)


PUBLIC_MODELS = {   # (no dropout: its masks are drawn on the device, with other bits than the CPU's)
    "mlp": lambda: axon.input((None, 12)).dense(8, activation="relu").dense(4, activation="softmax"),
    "cnn": lambda: (axon.input((None, 6, 6, 1)).conv(3, kernel_size=3, padding="same", activation="relu")
                    .max_pool(kernel_size=2).flatten().dense(4, activation="softmax")),
}


@needs_cuda
@needs_backward("kernels.softmax_cross_entropy_backward")
@pytest.mark.parametrize("name", list(PUBLIC_MODELS))
def test_training_with_device_cuda_equals_the_cpu(name, rng):
    """``train(..., device="cuda")``: params and Adam's moments stay device arrays, and end as on the CPU."""
    x = rng.random((16, 6, 6, 1) if name == "cnn" else (16, 12), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 16)]
    model = PUBLIC_MODELS[name]()
    s = axon.training.step(model, "categorical_cross_entropy", axon.optimizers.adam(0.01), metrics=["accuracy"])
    cpu = axon.training.train(s, x, y, epochs=1, batch_size=8, verbose=0, seed=1)
    dev = axon.training.train(s, x, y, epochs=1, batch_size=8, verbose=0, seed=1, device="cuda")
    leaves = axon.tree.tree_leaves(dev.params)
    assert leaves and all(isinstance(v, acuda.ARRAY_TYPES) for v in leaves)
    assert s.step.compiled is not None and not s.step.compiled_grads.plans     # the whole step traced, both devices
    np.testing.assert_allclose(dev.history["loss"], cpu.history["loss"], rtol=1e-4)
    for a, b in zip(axon.tree.tree_leaves(cpu.params), leaves):
        np.testing.assert_allclose(host(b), a, rtol=1e-4, atol=1e-4)


@needs_cuda
@needs_backward("kernels.softmax_cross_entropy_backward")
def test_a_schedule_in_the_traced_step_on_the_device(rng):
    """AdamW with a schedule: the op schedules.value runs the Python schedule at each replay, on either device."""
    x = rng.random((16, 12), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 16)]
    optimizer = axon.optimizers.adamw(axon.schedules.warmup_cosine_decay(0.0, 0.02, 2, 6), weight_decay=0.1)
    s = axon.training.step(PUBLIC_MODELS["mlp"](), "categorical_cross_entropy", optimizer)
    cpu = axon.training.train(s, x, y, epochs=2, batch_size=4, verbose=0, seed=1)
    dev = axon.training.train(s, x, y, epochs=2, batch_size=4, verbose=0, seed=1, device="cuda")
    assert s.step.compiled is not None and not s.step.compiled_grads.plans     # the whole step traced
    ops_run = {op.name for plan in s.step.compiled.plans.values() for op in plan.ops}
    assert "schedules.value" in ops_run
    np.testing.assert_allclose(dev.history["loss"], cpu.history["loss"], rtol=1e-4)
    for a, b in zip(axon.tree.tree_leaves(cpu.params), axon.tree.tree_leaves(dev.params)):
        np.testing.assert_allclose(host(b), a, rtol=1e-4, atol=1e-4)


@needs_cuda
def test_the_next_batch_is_copied_to_the_device_ahead_of_its_step(rng, monkeypatch):
    """``train(..., device="cuda")`` copies batch i + 1 while step i runs: the steps get device arrays, in order."""
    x = rng.random((17, 5), dtype=np.float32)                                # 17 = 6 + 6 + 5: a smaller last batch
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 17)]
    init, step_fn = axon.training.step(axon.input((None, 5)).dense(3, activation="softmax"),
                                       "categorical_cross_entropy", axon.optimizers.sgd(0.1))
    started, seen = [], []
    copy_ahead = acuda.BACKEND.copy_ahead

    def watched_copy(batch):                                                 # how many steps ran when each copy began
        started.append(len(seen))
        return copy_ahead(batch)

    def watched_step(state, xb, yb):
        seen.append((type(xb), host(xb), host(yb)))
        return step_fn(state, xb, yb)
    monkeypatch.setitem(axon.backend._BACKENDS, "cuda", acuda.BACKEND._replace(copy_ahead=watched_copy))
    dev_state = axon.training.train((init, watched_step), x, y, epochs=1, batch_size=6, verbose=0, seed=3,
                                    device="cuda")
    assert started == [0, 0, 1]                                              # batch 2's copy began before step 1
    slots = [slot for slot in acuda._runtime._SLOTS if slot is not None]
    assert slots and all(slot.kind == ("blocking" if acuda.SIMULATOR else "non-blocking") for slot in slots)
    assert all(issubclass(t, acuda.ARRAY_TYPES) for t, _, _ in seen) and [len(b) for _, b, _ in seen] == [6, 6, 5]
    order = axon.random.rng(3, "shuffle", 0).permutation(17)                 # the epoch's shuffle, as on the CPU
    for i, (_, xb, yb) in enumerate(seen):
        np.testing.assert_array_equal(xb, x[order[6 * i:6 * i + 6]])
        np.testing.assert_array_equal(yb, y[order[6 * i:6 * i + 6]])
    cpu_state = axon.training.train((init, step_fn), x, y, epochs=1, batch_size=6, verbose=0, seed=3)
    np.testing.assert_allclose(dev_state.history["loss"], cpu_state.history["loss"], rtol=1e-5)


@needs_cuda
def test_training_with_dropout_on_the_device():
    """The compiled step draws each step's masks on the device from the step's key: reproducible, and they vary."""
    rng = np.random.default_rng(0)
    x = rng.random((16, 12), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 16)]
    model = axon.input((None, 12)).dense(8, activation="relu").dropout(rate=0.5).dense(4, activation="softmax")
    s = axon.training.step(model, "categorical_cross_entropy", axon.optimizers.sgd(0.0))   # lr 0: only masks vary
    runs = [axon.training.train(s, x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, seed=1, device="cuda")
            for _ in range(2)]
    assert all(isinstance(v, acuda.ARRAY_TYPES) for v in axon.tree.tree_leaves(runs[0].params))
    assert runs[0].history["loss"] == runs[1].history["loss"]                # the same keys, the same masks
    assert runs[0].history["loss"][0] != runs[0].history["loss"][1]          # a new key each step: new masks
    assert all(np.isfinite(runs[0].history["loss"]))


# ---- the rest of the table: CTC, the fused recurrences, scan, hooks -----------------------------------
# Primitives that need no CUDA forward, each with its reason (empty: every primitive of axon runs there).
WITHOUT_CUDA: dict = {}


def _axon_primitives():
    """Every primitive axon's own modules define (each module imported once; optional ones may be missing)."""
    import importlib
    import pkgutil
    for info in pkgutil.walk_packages(axon.__path__, "axon."):
        if info.name.startswith(("axon.examples", "axon.onnx", "axon.distributed")) and "." in info.name[5:]:
            continue                                                          # programs and optional deps
        try:
            importlib.import_module(info.name)
        except ImportError:                                                   # an optional dependency missing
            continue
    def from_a_test(p):                                                       # defined by a test or a doctest
        module = getattr(p.forwards.get("cpu"), "__module__", None) or ""
        return p.name.startswith("doc.") or module.split(".")[0].startswith(("test", "conftest", "__main__"))
    return {name: p for name, p in PRIMITIVES.items() if not from_a_test(p)}


@needs_cuda
def test_every_primitive_of_the_table_has_a_cuda_forward():
    """A new primitive without a CUDA forward fails here (or joins WITHOUT_CUDA with its reason)."""
    table = _axon_primitives()
    assert len(table) > 75 and "kernels.ctc_loss" in table and "scan" in table
    missing = sorted(name for name, p in table.items() if "cuda" not in p.forwards and name not in WITHOUT_CUDA)
    assert not missing, f"primitives without a CUDA forward (implement them in axon/cuda/): {missing}"
    stale = sorted(name for name in WITHOUT_CUDA if name in table and "cuda" in table[name].forwards)
    assert not stale, f"WITHOUT_CUDA lists primitives that have a CUDA forward now: {stale}"


def _device_and_cpu(f, arrays):
    """``f``'s outputs and every input's gradient, on the device and on the CPU (a weighted sum as the loss)."""
    results = []
    for on_device in (True, False):
        leaves = [Tensor(dev(a) if on_device else a, requires_grad=True) for a in arrays]
        y = f(*leaves)
        _weighted(y).backward()
        results.append([y] + [t.grad for t in leaves])
    return results


@needs_cuda
@pytest.mark.parametrize("dtype", FLOATS)
def test_lstm_and_gru_sequences_and_their_vjps_equal_the_cpu(dtype, rng):
    from axon.kernels.recurrent import gru_sequence, lstm_sequence
    B, T, H = 3, 3, 2                                                         # odd batch, odd steps
    mask = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]], bool)                  # padding at the end, middle, start
    xw = rng.standard_normal((B, T, 4 * H)).astype(dtype)
    h0, c0 = rng.standard_normal((2, B, H)).astype(dtype)
    wh, bias = (rng.standard_normal((H, 4 * H)) * 0.5).astype(dtype), rng.standard_normal(4 * H).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    cases = [(lstm_sequence, (xw, h0, c0, wh, bias), dict(mask=mask, reverse=False)),
             (lstm_sequence, (xw, h0, c0, wh, bias), dict(reverse=True)),
             (gru_sequence, (xw[..., :3 * H], h0, wh[:, :3 * H], bias[:3 * H]), dict(mask=mask, reverse=True)),
             (gru_sequence, (xw[..., :3 * H], h0, wh[:, :3 * H], bias[:3 * H]), dict(reverse=False))]
    for fn, arrays, settings in cases:
        arrays = [np.ascontiguousarray(a) for a in arrays]
        on_device, on_cpu = _device_and_cpu(lambda *xs: fn(*xs, **settings), arrays)
        assert on_device[0].device == "cuda" and all(g.dtype == dtype for g in on_device[1:])
        for out, ref in zip(on_device, on_cpu):
            assert_twin(out, ref, dtype, tol=tol)


@needs_cuda
@pytest.mark.parametrize("layer", ["lstm", "gru"])
def test_recurrent_layers_train_on_the_device_as_on_the_cpu(layer, rng):
    """The model API end to end: zero carries, default biases and padding masks made on the inputs' device."""
    x = rng.standard_normal((3, 4, 2)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[[0, 1, 1]]
    seq = getattr(axon.input((None, 4, 2)), layer)(3)
    model = (seq[0] if isinstance(seq, tuple) else seq).flatten().dense(2, activation="softmax")
    s = axon.training.step(model, "categorical_cross_entropy", axon.optimizers.sgd(0.1))
    cpu = axon.training.train(s, x, y, epochs=2, batch_size=3, verbose=0, seed=0)
    dev_state = axon.training.train(s, x, y, epochs=2, batch_size=3, verbose=0, seed=0, device="cuda")
    np.testing.assert_allclose(dev_state.history["loss"], cpu.history["loss"], rtol=1e-5)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], bool)          # padded sequences
    fn = getattr(axon.functional.layers, layer)
    w, u = rng.standard_normal((2, 4 * 3 if layer == "lstm" else 9)), rng.standard_normal((3, 12 if layer == "lstm" else 9))
    carry = (np.zeros((3, 3)),) * 2 if layer == "lstm" else np.zeros((3, 3))
    y_dev, _ = fn(dev(x.astype(np.float64)), to_device(carry, "cuda"), dev(w), dev(u), mask=mask)
    y_cpu, _ = fn(x.astype(np.float64), carry, w, u, mask=mask)
    assert_twin(y_dev, y_cpu)


@needs_cuda
@pytest.mark.parametrize("dtype", FLOATS)
def test_ctc_loss_and_its_vjp_equal_the_cpu(dtype, rng):
    from axon.kernels.ctc import ctc_loss
    B, T, C = 3, 5, 4
    x = rng.standard_normal((B, T, C))
    lp = (x - np.log(np.exp(x).sum(-1, keepdims=True))).astype(dtype)      # (B, T, C) log-probabilities
    targets = np.array([[1, 2, 2], [3, 1, 0], [2, 0, 0]])                    # a repeat, a short one, an empty one
    # the second case's first sequence is impossible: "1 2 2" needs 4 steps (a blank between the 2s), it has 3
    for input_lengths, target_lengths in (([5, 4, 2], [3, 2, 0]), ([3, 5, 1], [3, 1, 1])):
        for zero_infinity in (False, True):
            def f(lp):
                return ctc_loss(lp, targets, np.array(input_lengths), np.array(target_lengths), blank=0,
                                zero_infinity=zero_infinity)
            on_device, on_cpu = _device_and_cpu(f, [lp])
            assert on_device[0].dtype == dtype
            impossible = np.isinf(on_cpu[0].numpy())
            assert impossible.tolist() == [input_lengths[0] == 3 and not zero_infinity, False, False]
            for out, ref in zip(on_device, on_cpu):
                assert_twin(out, ref, dtype, tol=1e-6 if dtype == np.float32 else 1e-12)


@needs_cuda
def test_dynamic_unroll_and_backward_hooks_run_on_the_device(rng):
    from axon.functional.layers.recurrent import dynamic_unroll
    x = rng.standard_normal((2, 3, 2))
    mask = np.array([[1, 0, 1], [1, 1, 1]], bool)

    def f(x, w, s0):
        y, s = dynamic_unroll(lambda x_t, s, w: (s * w + x_t, s + x_t * w), x, s0, w, mask=mask)
        return y * 2.0 + (s * s).sum()
    on_device, on_cpu = _device_and_cpu(f, [x, np.array([0.5, -0.7]), rng.standard_normal((2, 2))])
    for out, ref in zip(on_device, on_cpu):
        assert_twin(out, ref)
    seen = []
    model = axon.input((None, 3)).dense(2, name="d").attach_hook(lambda dy: seen.append(dy.device), on="backward")
    params = to_device(axon.init(model, seed=0), "cuda")
    loss = lambda p: axon.apply(model, p, dev(np.ones((4, 3), np.float32)))[0].sum()   # noqa: E731
    grads = axon.value_and_grad(loss)(params)[1]
    assert seen == ["cuda"] and isinstance(grads["d"]["kernel"], acuda.ARRAY_TYPES)


# ---- the docstring examples of axon.cuda run on the device too ---------------------------------------
@needs_cuda
@pytest.mark.parametrize("name", ["axon.cuda", "axon.cuda._runtime", "axon.cuda.factories", "axon.cuda.ops",
                                  "axon.cuda.fused",
                                  "axon.cuda.layout", "axon.cuda.matmul", "axon.cuda.kernels",
                                  "axon.cuda.backward", "axon.cuda.ctc", "axon.cuda.recurrent"])
def test_cuda_docstring_examples(name):
    import doctest
    import importlib
    import inspect
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0 and result.failed == 0, f"{result.failed} of {result.attempted} failed in {name}"
    missing = [n for n in getattr(module, "__all__", []) if (inspect.isfunction(getattr(module, n, None)) or
               inspect.isclass(getattr(module, n, None))) and getattr(module, n).__module__ == name
               and ">>>" not in (inspect.getdoc(getattr(module, n)) or "")]
    assert not missing, f"{name}: public functions without a runnable example: {missing}"


@needs_cuda
def test_conv_grad_of_grad_on_the_device_equals_the_cpu():
    """The recorded conv VJP (two convolutions, a flip, a strided scatter) runs on the device as on the CPU."""
    r = np.random.default_rng(0)
    x, w = r.standard_normal((1, 5, 2)), r.standard_normal((3, 1, 2))
    f = lambda x, w: (kernels.conv(x, w, (2,), ((1, 1),), (1,), 2) ** 2).sum()   # noqa: E731

    def outer(x, w):
        gx, gw = axon.grad(f, argnums=(0, 1))(x, w)
        return (gx * gx).sum() + (gw * gw).sum()

    on_cpu = axon.grad(outer, argnums=(0, 1))(x, w)
    on_device = axon.grad(outer, argnums=(0, 1))(*dev(x, w))
    for a, b in zip(on_device, on_cpu):
        assert_twin(a, b)


@needs_cuda
def test_a_traced_index_array_on_the_device_picks_each_calls_rows(rng):
    from axon.tracing import jit
    w = rng.standard_normal((6, 3)).astype(np.float32)
    loss = lambda w, ids: (w[ids] * 2.0).sum()                  # noqa: E731  (an embedding lookup)
    compiled = jit(axon.value_and_grad(loss))
    for ids in ([0, 2, 2], [5, 1, 1]):
        value, grads = compiled(*dev(w, np.array(ids)))
        want, want_grads = axon.value_and_grad(loss)(w, np.array(ids))
        assert_twin(value, want)
        assert_twin(grads, want_grads)
    assert len(compiled.plans) == 1


# ---- fusion: a CUDA plan's elementwise chains as one generated kernel -----------------------------------
def _fused_and_plain(fn, arrays, monkeypatch):
    """``jit(fn)`` on device ``arrays`` (traced, then replayed), fusion off and on: two (result, plan)s."""
    from axon import fusion
    from axon.tracing import jit
    monkeypatch.setattr(fusion, "FUSE_MIN_SIZE", 1)                       # the simulator's small shapes too
    out = {}
    for enabled in (False, True):
        monkeypatch.setattr(fusion, "ENABLED", enabled)
        f = jit(fn)
        f(*arrays)
        out[enabled] = (f(*arrays), next(iter(f.plans.values())))
    return out[False], out[True]


def _tanh_backward(dy, y):
    return Tensor(dy) * (1.0 - Tensor(y) * Tensor(y))


def _bias_tanh(x, b):
    return axon.autograd.ops.tanh(Tensor(x) + b) * 0.5


def _relu_mask(dy, x):
    return Tensor(dy) * (Tensor(x) > 0.0)


FUSABLE = {   # name -> (function, its arguments' shapes, the fused op it must become)
    "tanh_backward": (_tanh_backward, [(5, 7), (5, 7)], "fused[mul,sub,mul]"),
    "bias_tanh": (_bias_tanh, [(3, 5, 7), (7,)], "fused[add,tanh,mul]"),
    "relu_mask": (_relu_mask, [(5, 7), (5, 7)], "fused[greater,mul]"),
}


@needs_cuda
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", list(FUSABLE))
def test_a_cuda_plans_elementwise_chain_is_one_kernel_with_the_same_numbers(name, dtype, rng, monkeypatch):
    from axon.cuda.fused import FusedKernel
    fn, shapes, fused_name = FUSABLE[name]
    arrays = [rng.standard_normal(s).astype(dtype) for s in shapes]
    (plain, plain_plan), (fused, fused_plan) = _fused_and_plain(fn, dev(*arrays), monkeypatch)
    assert [op.name for op in fused_plan.ops] == [fused_name], str(fused_plan)
    assert not any(op.name.startswith("fused[") for op in plain_plan.ops)
    assert isinstance(fused_plan.ops[0].forward, FusedKernel)
    cpu = fn(*arrays).numpy()
    tol = 1e-6 if dtype == np.float32 else 1e-12
    for ref in (host(plain), cpu):
        assert_twin(fused, ref, tol=tol)


@needs_cuda
def test_a_fused_cuda_kernel_writes_every_escaping_value_and_is_compiled_once(rng, monkeypatch):
    """Two results of one chain, one input read broadcast; the chain on another shape reuses the kernel."""
    def fn(x, b):
        e = Tensor(x) - b
        return e, e * e * 3.0
    kernels_made = []
    for shape in ((4, 6), (2, 3, 6)):
        x, b = rng.standard_normal(shape), rng.standard_normal(6)
        (plain, _), (fused, plan) = _fused_and_plain(fn, dev(x, b), monkeypatch)
        assert [(op.name, op.outputs) for op in plan.ops] == [("fused[sub,mul,mul]", tuple(plan.results))]
        for a, ref in zip(fused, plain):
            assert_twin(a, ref, tol=1e-12)
        kernels_made.append(plan.ops[0].forward.kernel)
    assert kernels_made[0] is kernels_made[1]                                # one source text: compiled once


@needs_cuda
@needs_backward("kernels.softmax_cross_entropy_backward")
def test_a_training_step_on_the_device_is_the_same_fused(rng, monkeypatch):
    """A tanh MLP's whole compiled step on the device (forward, backward, Adam) with fusion on and off."""
    from axon import fusion
    monkeypatch.setattr(fusion, "FUSE_MIN_SIZE", 1)
    x = rng.random((16, 12), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 16)]
    runs = []
    for enabled in (False, True):
        monkeypatch.setattr(fusion, "ENABLED", enabled)
        model = axon.input((None, 12)).dense(8, activation="tanh").dense(4, activation="softmax")
        s = axon.training.step(model, "categorical_cross_entropy", axon.optimizers.adam(0.01))
        result = axon.training.train(s, x, y, epochs=1, batch_size=8, verbose=0, seed=1, device="cuda")
        names = [op.name for plan in s.step.compiled.plans.values() for op in plan.ops]
        runs.append((result, names))
    (plain, plain_names), (fused, fused_names) = runs
    assert any(n.startswith("fused[") for n in fused_names), fused_names
    assert not any(n.startswith("fused[") for n in plain_names)
    assert len(fused_names) < len(plain_names)
    np.testing.assert_allclose(fused.history["loss"], plain.history["loss"], rtol=1e-5)
    for a, b in zip(axon.tree.tree_leaves(fused.params), axon.tree.tree_leaves(plain.params)):
        assert isinstance(a, acuda.ARRAY_TYPES)
        np.testing.assert_allclose(host(a), host(b), rtol=1e-5, atol=1e-5)


# ---- a strict simulator, and batch norm in training (the simulator hid a host-only call there) ----------
@needs_cuda
@pytest.mark.skipif(acuda is None or not acuda.SIMULATOR, reason="only the simulator's arrays need the strict shim")
def test_the_simulators_device_arrays_are_strict():
    """What a real DeviceNDArray lacks (astype, sum, base) fails on the simulator too (tests/cuda_strict.py)."""
    import cuda_strict
    assert cuda_strict.installed()
    a = dev(np.ones((2, 3), np.float32))
    for name in ("astype", "sum", "base", "max"):
        with pytest.raises(AttributeError, match=f"real numba DeviceNDArray has no attribute '{name}'"):
            getattr(a, name)
    assert a.shape == (2, 3) and a.dtype == np.float32 and a.size == 6 and a.copy_to_host().sum() == 6


@needs_cuda
@pytest.mark.parametrize("dtype", FLOATS)
def test_batch_norm_train_on_device_statistics_equals_the_cpu(dtype, rng):
    """``kernels.batch_norm_train`` with its mean and invstd made on the device (as in training), no host cast."""
    x = rng.normal(1.0, 2.0, (5, 3)).astype(dtype)
    gamma, beta = rng.standard_normal(3).astype(dtype), rng.standard_normal(3).astype(dtype)
    out = kernels.batch_norm_train(*dev(x, gamma, beta), 1e-5)
    ref = kernels.batch_norm_train(x, gamma, beta, 1e-5)
    for a, b in zip(out, ref):
        assert a.device == "cuda"
        assert_twin(a, b, dtype, tol=1e-5 if dtype == np.float32 else None)


@needs_cuda
@needs_backward("kernels.batch_norm_backward")
def test_training_a_batch_norm_model_on_the_device_equals_the_cpu(rng):
    """dense -> batch_norm -> relu -> dense, Adam: the traced step on the device ends as on the CPU, running
    statistics included; then inference (training=False: the running statistics) gives the CPU's predictions."""
    x = rng.random((16, 12), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 16)]
    # (no bias before the batch norm: its gradient is 0 up to rounding, which Adam would blow up to lr)
    model = axon.input((None, 12)).dense(8, use_bias=False).batch_norm().relu().dense(4, activation="softmax")
    s = axon.training.step(model, "categorical_cross_entropy", axon.optimizers.adam(0.01))
    cpu = axon.training.train(s, x, y, epochs=2, batch_size=8, verbose=0, seed=1)
    on_dev = axon.training.train(s, x, y, epochs=2, batch_size=8, verbose=0, seed=1, device="cuda")
    assert s.step.compiled is not None and not s.step.compiled_grads.plans     # the whole step traced
    np.testing.assert_allclose(on_dev.history["loss"], cpu.history["loss"], rtol=1e-4)
    leaves = axon.tree.tree_leaves(on_dev.params)                              # running statistics too
    assert len(leaves) == 7 and all(isinstance(v, acuda.ARRAY_TYPES) for v in leaves)
    for a, b in zip(axon.tree.tree_leaves(cpu.params), leaves):
        np.testing.assert_allclose(host(b), a, rtol=1e-4, atol=1e-5)
    p_dev = axon.predict(model, on_dev.params, x[:5], device="cuda")
    p_cpu = axon.predict(model, cpu.params, x[:5])
    np.testing.assert_allclose(host(p_dev), host(p_cpu), rtol=1e-4, atol=1e-5)


# ---- Adam over one flat device buffer: one launch for every parameter ------------------------------------
class _Counted:
    """A CUDA kernel whose launches are counted (``kernel[grid, block](...)``), on a GPU or the simulator."""

    def __init__(self, kernel, counts, name):
        self.kernel, self.counts, self.name = kernel, counts, name

    def __getitem__(self, config):
        launch = self.kernel[config]

        def counted(*args):
            self.counts[self.name] = self.counts.get(self.name, 0) + 1
            return launch(*args)
        return counted


@needs_cuda
def test_flat_join_on_the_device_finds_its_buffer_and_copies_separate_leaves_in_few_launches(rng, monkeypatch):
    from axon import flat
    layout = acuda.layout
    counts = {}
    monkeypatch.setattr(layout, "_join_kernel", _Counted(layout._join_kernel, counts, "join"))
    leaves = [rng.standard_normal(s).astype(np.float32) for s in ((3, 2), (5,), (0,), (1, 1, 4), (2,))]
    f = flat.join(dev(*leaves))
    assert isinstance(f, acuda.ARRAY_TYPES) and counts == {"join": 1}               # one launch for all of them
    assert_twin(f, np.concatenate([a.ravel() for a in leaves]))
    views = flat.split(f, [a.shape for a in leaves])
    assert all(isinstance(v, acuda.ARRAY_TYPES) for v in views)
    assert flat.join(views) is f and counts == {"join": 1}                           # its own views: no copy
    assert flat.join(views[::-1]) is not f and flat.join(views[1:]) is not f         # out of order, a part: copies
    assert_twin(flat.join(views[1:]), np.concatenate([a.ravel() for a in leaves[1:]]))
    monkeypatch.setattr(layout, "JOIN_LEAVES", 2)                                   # 4 non-empty leaves: 2 launches
    counts.clear()
    assert_twin(flat.join(dev(*leaves)), np.concatenate([a.ravel() for a in leaves]))
    assert counts == {"join": 2}


@needs_cuda
def test_can_flatten_takes_every_tree_of_device_arrays():
    from axon import flat
    tree = {"w": np.ones((2, 2), np.float32), "b": np.zeros(2, np.float32)}
    assert not flat.can_flatten(tree, tree)                                          # host: 32 leaves or more
    assert flat.can_flatten(to_device(tree, "cuda"), to_device(tree, "cuda"))
    assert not flat.can_flatten(to_device(tree, "cuda"), to_device({"w": tree["w"], "b": np.zeros(2)}, "cuda"))


@needs_cuda
@needs_backward("kernels.softmax_cross_entropy_backward")
@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_a_compiled_step_on_the_device_updates_every_param_in_one_adam_launch(optimizer, rng, monkeypatch):
    """The traced MLP step on cuda: one Adam kernel launch over one flat buffer (the update added to the params
    in it), params and moments views of one buffer each; the numbers those of the CPU's per-leaf steps."""
    backward = acuda.backward
    counts = {}
    make = backward._adam_at_kernel
    monkeypatch.setattr(backward, "_adam_at_kernel", lambda dtype: _Counted(make(dtype), counts, "adam"))
    monkeypatch.setattr(backward, "_adam_kernel", _Counted(backward._adam_kernel, counts, "adam (host scalars)"))
    x = rng.random((16, 12), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 16)]
    opt = axon.optimizers.adam(0.01) if optimizer == "adam" else axon.optimizers.adamw(0.01, weight_decay=0.1)
    cpu = axon.training.train(axon.training.step(PUBLIC_MODELS["mlp"](), "categorical_cross_entropy", opt),
                              x, y, epochs=2, batch_size=8, verbose=0, seed=1)
    assert not counts
    s = axon.training.step(PUBLIC_MODELS["mlp"](), "categorical_cross_entropy", opt)   # its plans: the device's
    on_dev = axon.training.train(s, x, y, epochs=2, batch_size=8, verbose=0, seed=1, device="cuda")
    assert counts == {"adam": 4}                                                     # 4 steps, one launch each
    ops = [op.name for plan in s.step.compiled.plans.values() for op in plan.ops]
    assert [n for n in ops if "adam" in n] == ["fused[kernels.adam_step_at,add]"], ops
    params, mu = axon.tree.tree_leaves(on_dev.params), axon.tree.tree_leaves(on_dev.opt_state[0].mu)
    for tree in (params, mu):                                                        # views of one buffer each
        cuts = [getattr(a, acuda.layout._CUT) for a in tree]
        assert all(c[0] is cuts[0][0] for c in cuts) and [c[1] for c in cuts] == list(
            np.cumsum([0] + [a.size for a in tree[:-1]]))
    np.testing.assert_allclose(on_dev.history["loss"], cpu.history["loss"], rtol=1e-5)
    for a, b in zip(axon.tree.tree_leaves(cpu.params), params):
        np.testing.assert_allclose(host(b), a, rtol=1e-5, atol=1e-5)
    for a, b in zip(axon.tree.tree_leaves(cpu.opt_state), axon.tree.tree_leaves(on_dev.opt_state)):
        np.testing.assert_allclose(host(b) if not isinstance(b, np.ndarray) else b, a, rtol=1e-5, atol=1e-7)


# ---- chapter 7's device blocks run on the device (here: the simulator) ---------------------------------
@needs_cuda
def test_the_gpu_chapters_device_blocks_run_on_the_device():
    """tutorials/07_gpu.md's ``{.device}`` blocks, in a process of their own, print what their output blocks show."""
    chapter = os.path.join("tutorials", "07_gpu.md")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, os.path.join("tests", "test_docs.py"), "--run-device", chapter], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    with open(os.path.join(ROOT, chapter), encoding="utf-8") as f:
        expected = f.read().count("```python {.device}")
    assert expected >= 7 and f"{chapter}: {expected} device block(s) ran, 0 printed something else" in r.stdout, r.stdout


# ---- only scalars come back: metrics reduced on the device, index arrays read there ---------------------
class _HostCopies:
    """The sizes of the device arrays copied to the host while it is active (on a GPU or the simulator)."""

    def __init__(self, monkeypatch):
        self.sizes = []
        cls = acuda.ARRAY_TYPES[0]
        original = cls.copy_to_host

        def copy_to_host(array, *args, **kwargs):
            self.sizes.append(array.size)
            return original(array, *args, **kwargs)
        monkeypatch.setattr(cls, "copy_to_host", copy_to_host)


METRIC_CASES = {   # name -> (y_true, y_pred, metric keywords): host arrays
    "binary": (np.array([1, 0, 1, 1, 0, 0, 1]), np.array([0.8, 0.6, 0.3, 0.9, 0.1, 0.5, 0.3], np.float32), {}),
    "binary (N, 1)": (np.array([1.0, 0.0, 1.0]), np.array([[0.7], [0.2], [0.3]]), {"threshold": 0.3}),
    "logits": (np.array([1, 0, 1, 0]), np.array([2.0, -1.0, -0.5, 0.1], np.float32), {"from_logits": True}),
    "categorical": (np.eye(4, dtype=np.float32)[[0, 3, 1, 1, 2]],
                    np.random.default_rng(0).random((5, 4)).astype(np.float32), {}),
    "sparse": (np.array([0, 3, 1, 1, 2]), np.random.default_rng(1).random((5, 4)), {}),
    "sparse (N, 1)": (np.array([[0], [3], [2]]), np.random.default_rng(2).random((3, 4)), {}),
    "distributions": (np.random.default_rng(3).dirichlet(np.ones(3), 4), np.random.default_rng(4).random((4, 3)), {}),
    "NaN wins": (np.eye(3)[[2, 0]], np.array([[0.1, np.nan, 0.9], [0.7, 0.2, 0.1]]), {}),
}


@needs_cuda
@pytest.mark.parametrize("case", list(METRIC_CASES))
def test_metrics_on_the_device_equal_the_cpus_and_bring_back_only_numbers(case, monkeypatch):
    from axon.functional import metrics
    y_true, y_pred, options = METRIC_CASES[case]
    copies = _HostCopies(monkeypatch)
    got = metrics.accuracy(*dev(y_true, y_pred), **options)
    assert copies.sizes == [4]                                              # one copy, of four numbers
    assert type(got) is np.float64 and got == metrics.accuracy(y_true, y_pred, **options)
    if case.startswith("binary"):
        flat_pred = y_pred.reshape(y_true.shape)
        for name in ("precision", "recall", "f1", "specificity", "true_positives", "false_negatives"):
            fn = getattr(metrics, name)
            kw = {k: v for k, v in options.items() if k == "threshold"}
            on_device, on_host = fn(*dev(y_true, flat_pred), **kw), fn(y_true, flat_pred, **kw)
            assert type(on_device) is type(on_host) and on_device == on_host, name
        mae = metrics.mean_absolute_error(*dev(y_true.astype(flat_pred.dtype), flat_pred))
        assert_twin(np.asarray(mae), np.asarray(metrics.mean_absolute_error(y_true.astype(flat_pred.dtype), flat_pred)))
    assert all(size <= 4 for size in copies.sizes), copies.sizes


@needs_cuda
def test_metrics_on_the_device_raise_the_cpus_errors():
    from axon.functional import metrics
    multi = np.array([[1, 1, 0], [0, 1, 1]])                                  # not one-hot: ambiguous
    pred = np.full((2, 3), 0.4)
    for y_true, y_pred in ((multi, pred), (np.ones((2, 3)), np.ones((3, 2))), (np.ones(4), np.ones((2, 3)))):
        with pytest.raises(ValueError) as on_host:
            metrics.accuracy(y_true, y_pred)
        with pytest.raises(ValueError) as on_device:
            metrics.accuracy(*dev(y_true, y_pred))
        assert str(on_device.value) == str(on_host.value)
    assert metrics.accuracy(*dev(multi, pred), kind="binary") == metrics.accuracy(multi, pred, kind="binary")


@needs_cuda
@needs_backward("kernels.softmax_cross_entropy_backward")
def test_a_replayed_step_with_accuracy_copies_only_scalars_to_the_host(rng, monkeypatch):
    """train(..., metrics=["accuracy"], device="cuda"): per replayed step, the loss and four numbers come back."""
    x = rng.random((16, 12), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 16)]
    s = axon.training.step(PUBLIC_MODELS["mlp"](), "categorical_cross_entropy", axon.optimizers.adam(0.01),
                           metrics=["accuracy"])
    cpu = axon.training.train(s, x, y, epochs=1, batch_size=8, verbose=0, seed=1)
    axon.training.train(s, x, y, epochs=1, batch_size=8, verbose=0, seed=1, device="cuda")   # traces
    copies = _HostCopies(monkeypatch)
    on_dev = axon.training.train(s, x, y, epochs=1, batch_size=8, verbose=0, seed=1, device="cuda")
    assert sorted(copies.sizes) == [1, 1, 4, 4], copies.sizes                    # 2 steps: loss, accuracy
    assert on_dev.history["accuracy"] == cpu.history["accuracy"]


@needs_cuda
def test_index_arrays_on_the_device_stay_there(rng, monkeypatch):
    """take_along_axis with argmax's index and rows picked by device ids: equal to the CPU, no index copied back."""
    x = rng.standard_normal((3, 4, 2)).astype(np.float32)
    copies = _HostCopies(monkeypatch)
    index = PRIMITIVES["kernels.argmax"].forwards["cuda"](dev(x), axis=1)     # (3, 2) on the device
    take = PRIMITIVES["kernels.take_along_axis"].forwards
    out = take["cuda"](dev(x), index, 1, True)
    assert copies.sizes == []
    assert_twin(out, take["cpu"](x, np.argmax(x, axis=1), 1, True))
    w = rng.standard_normal((6, 3)).astype(np.float32)
    for ids in (np.array([[5, 0], [2, 2]]), np.array([-1, 3, 3, 3])):
        copies.sizes.clear()
        W, I = Tensor(dev(w), requires_grad=True), dev(ids)
        y = W[I] if ids.ndim == 2 else W[I, ...]
        _weighted(y).backward()
        assert copies.sizes == [2, 2]                                          # the ids' min and max, twice
        C = Tensor(w, requires_grad=True)
        _weighted(C[ids]).backward()
        assert_twin(y, C[ids])
        assert_twin(W.grad, C.grad)                                            # repeated rows accumulate
    with pytest.raises(IndexError, match="out of bounds"):
        Tensor(dev(w))[dev(np.array([1, 6]))]


# ---- more twins: the cases the earlier tests leave out (tiny shapes: the simulator is slow) --------------
@needs_cuda
@needs_backward("kernels.max_pool_backward")
@pytest.mark.parametrize("dtype", FLOATS)
def test_adaptive_1d_and_3d_pooling_vjps_on_the_device(dtype, rng):
    tol = 1e-4 if dtype == np.float32 else 1e-9
    x2 = rng.standard_normal((1, 5, 4, 2)).astype(dtype)
    assert_same_grads(lambda x: _weighted(kernels.adaptive_max_pool(x, (2, 3))), x2, tol=tol)
    assert_same_grads(lambda x: _weighted(kernels.adaptive_avg_pool(x, (3, 2))), x2, tol=tol)
    x1 = rng.standard_normal((2, 7, 2)).astype(dtype)                          # (N, W, C)
    assert_same_grads(lambda x: _weighted(kernels.max_pool(x, (3,), (2,), ((1, 0),))), x1, tol=tol)
    assert_same_grads(lambda x: _weighted(kernels.avg_pool(x, (2,), (1,), ((0, 1),), count_include_pad=False)),
                      x1, tol=tol)
    x3 = rng.standard_normal((1, 3, 4, 3, 2)).astype(dtype)                    # (N, D, H, W, C)
    pad3 = ((0, 1), (1, 0), (0, 0))
    assert_same_grads(lambda x: _weighted(kernels.max_pool(x, (2, 2, 2), (1, 2, 1), pad3)), x3, tol=tol)
    assert_same_grads(lambda x: _weighted(kernels.avg_pool(x, (2, 2, 2), (2, 1, 2), pad3)), x3, tol=tol)
    assert_same_grads(lambda x: _weighted(kernels.adaptive_avg_pool(x, (2, 3, 2))), x3, tol=tol)


@needs_cuda
@pytest.mark.parametrize("dtype", FLOATS)
def test_mean_on_the_device_any_axes(dtype, rng):
    x = rng.standard_normal((3, 4, 5)).astype(dtype)
    X, C = Tensor(dev(x)), Tensor(x)
    for axis, keepdims in ((None, False), (None, True), (1, False), ((0, 2), True), (-1, False)):
        assert_twin(X.mean(axis, keepdims), C.mean(axis, keepdims), dtype)
    assert_same_grads(lambda x: x.mean(axis=(0, 2)).sum() + x.mean(), x)


@needs_cuda
@pytest.mark.parametrize("dtype", FLOATS)
def test_kernels_matmul_transposes_in_both_dtypes(dtype, rng):
    a, b = rng.standard_normal((6, 5)).astype(dtype), rng.standard_normal((7, 6)).astype(dtype)
    forward = PRIMITIVES["kernels.matmul"].forwards
    for ta, tb in ((True, True), (True, False), (False, True)):
        a_, b_ = (a, b.T.copy()) if ta and not tb else (a.T.copy(), b) if tb and not ta else (a, b)
        out = forward["cuda"](*dev(a_, b_), transpose_a=ta, transpose_b=tb)
        assert_twin(out, forward["cpu"](a_, b_, transpose_a=ta, transpose_b=tb), dtype,
                    tol=1e-4 if dtype == np.float32 else 1e-10)


@needs_cuda
@pytest.mark.parametrize("dtype", FLOATS)
def test_vjps_of_layout_casts_normalizations_and_activations_on_the_device(dtype, rng):
    from axon.functional import activations as act
    from axon.functional.layers import normalization as norm
    ag = axon.autograd
    tol = 1e-4 if dtype == np.float32 else 1e-9
    x = rng.standard_normal((2, 3, 4)).astype(dtype)
    assert_same_grads(lambda x: _weighted(ag.broadcast_to(x[:, :1], (3, 2, 3, 4))), x, tol=tol)
    assert_same_grads(lambda x: _weighted(x.astype(np.float64 if dtype == np.float32 else np.float32)), x, tol=tol)
    for axes in ((2,), (1, 2)):
        assert_same_grads(lambda x: _weighted(norm.standardize(x, axes)), x, tol=tol)
    assert_same_grads(lambda x: _weighted(norm.rms_norm(x, epsilon=1e-5)), x, tol=tol)
    assert_same_grads(lambda x: _weighted(norm.rms_norm(x, axis=(1, 2), epsilon=1e-5)), x, tol=tol)
    for f in (act.expm1, act.softplus, act.erf, lambda v: act.elu(v, alpha=1.5)):
        assert_same_grads(lambda x: _weighted(f(x)), x, tol=tol)
    assert_same_grads(lambda x: _weighted(act.log1p(x)), np.abs(x), tol=tol)


@needs_cuda
@pytest.mark.parametrize("channels", ["last", "first"])
def test_batch_norm_inference_on_the_device_equals_the_cpu(channels, rng):
    """``batch_norm(training=False)``: the running statistics (host arrays moved to the device), with VJPs."""
    from axon.functional.layers import batch_norm
    x = rng.normal(1.0, 2.0, (4, 3, 2) if channels == "last" else (4, 2, 3)).astype(np.float32)
    gamma, beta = rng.standard_normal(2).astype(np.float32), rng.standard_normal(2).astype(np.float32)
    mean, var = rng.standard_normal(2).astype(np.float32), (rng.random(2) + 0.5).astype(np.float32)
    f = lambda x, g, b: _weighted(batch_norm(x, g, b, mean, var, training=False, channels=channels))   # noqa: E731
    assert_same_grads(f, x, gamma, beta, tol=1e-5)


# ---- the public entry points with device="cuda" ----------------------------------------------------------
@needs_cuda
def test_init_predict_and_evaluate_with_device_cuda_equal_the_cpu(rng):
    model = axon.input((None, 5)).dense(4, activation="relu").dense(3, activation="softmax")
    x = rng.random((7, 5), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 7)]
    params, cpu_params = axon.init(model, seed=2, device="cuda"), axon.init(model, seed=2)
    leaves = axon.tree.tree_leaves(params)
    assert leaves and all(isinstance(v, acuda.ARRAY_TYPES) for v in leaves)
    assert axon.backend.device_of(params) == "cuda"
    for a, b in zip(leaves, axon.tree.tree_leaves(cpu_params)):
        np.testing.assert_array_equal(host(a), b)                               # the same draws
    want = axon.predict(model, cpu_params, x)
    for got in (axon.predict(model, params, x), axon.predict(model, cpu_params, x, device="cuda")):
        assert isinstance(got, np.ndarray)                                       # predictions come back
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    kw = dict(metrics=["accuracy"], loss="categorical_cross_entropy", batch_size=4)
    on_dev = axon.training.evaluate(model, cpu_params, x, y, device="cuda", **kw)
    on_cpu = axon.training.evaluate(model, cpu_params, x, y, **kw)
    assert on_dev.keys() == on_cpu.keys() == {"loss", "accuracy"}
    assert on_dev["accuracy"] == on_cpu["accuracy"]
    np.testing.assert_allclose(on_dev["loss"], on_cpu["loss"], rtol=1e-5)


@needs_cuda
def test_set_backend_cuda_makes_it_the_default_device():
    model = axon.input((None, 3)).dense(2)
    try:
        axon.set_backend("cuda")
        assert axon.get_backend() == "cuda"
        params = axon.init(model)
        assert all(isinstance(v, acuda.ARRAY_TYPES) for v in axon.tree.tree_leaves(params))
        assert isinstance(to_device(np.ones(2)), acuda.ARRAY_TYPES)                 # the default device
    finally:
        axon.set_backend("cpu")
    assert axon.get_backend() == "cpu" and isinstance(axon.tree.tree_leaves(axon.init(model))[0], np.ndarray)


@needs_cuda
def test_the_axon_backend_environment_variable_picks_cuda():
    code = ("import numpy as np, axon\nfrom axon.backend import get_backend, device_of\n"
            "m = axon.input((None, 3)).dense(2, activation='softmax')\np = axon.init(m)\n"
            "y = np.eye(2, dtype=np.float32)[[0, 1, 1, 0]]\nx = np.ones((4, 3), np.float32)\n"
            "s = axon.training.train(axon.training.step(m, 'categorical_cross_entropy', axon.optimizers.sgd(0.1)),"
            " x, y, epochs=1, batch_size=2, verbose=0)\n"
            "print(get_backend(), device_of(p), device_of(s.params), axon.predict(m, p, x).shape)")
    env = dict(os.environ, AXON_BACKEND="cuda")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["cuda", "cuda", "cuda", "(4,", "2)"], r.stdout


@needs_cuda
def test_the_mnist_example_with_device_cuda(monkeypatch, capsys):
    """``python -m axon.examples.mnist --device cuda`` on 20 images, with a tiny model for the simulator's sake:
    the params end on the device, and the run equals the same run on the CPU."""
    from axon.examples import mnist as example
    tiny = lambda kind: (axon.input((None, 28, 28, 1)).max_pool(kernel_size=7)      # noqa: E731  (N, 4, 4, 1)
                         .flatten().dense(10, activation="softmax"))
    monkeypatch.setattr(example, "build_model", tiny)
    argv = ["--model", "cnn", "--limit", "20", "--epochs", "2", "--batch-size", "9", "--verbose", "0", "--augment", "0"]
    runs = {device: example.main(argv + ["--device", device]) for device in ("cuda", "cpu")}
    assert "Test accuracy:" in capsys.readouterr().out
    state = runs["cuda"]["state"]
    assert all(isinstance(v, acuda.ARRAY_TYPES) for v in axon.tree.tree_leaves(state.params))
    assert state.step == runs["cpu"]["state"].step == 2 * 2                       # 18 training images, batches of 9
    np.testing.assert_allclose(state.history["loss"], runs["cpu"]["state"].history["loss"], rtol=1e-4)
    np.testing.assert_allclose(runs["cuda"]["test_loss"], runs["cpu"]["test_loss"], rtol=1e-4)
    assert runs["cuda"]["test_accuracy"] == runs["cpu"]["test_accuracy"]
    with pytest.raises(SystemExit, match="--device tpu"):
        example.main(["--device", "tpu", "--limit", "20"])


@needs_cuda
def test_the_elementwise_and_reduction_factories_raise_the_cpus_errors():
    """cuda_zip and cuda_reduce share the CPU twin's checks (run on ghosts): the same type and words."""
    ag = axon.autograd
    x = np.ones((2, 3), np.float32)
    cases = [lambda a: ag.where(Tensor(a) > 0, Tensor(a), Tensor(a).reshape(3, 2)),
             lambda a: Tensor(a).max(axis=(0, 0)), lambda a: Tensor(a).sum(axis=(1, -1)),
             lambda a: Tensor(a) * Tensor(a).reshape(3, 2), lambda a: ag.maximum(Tensor(a), Tensor(a).T)]
    for case in cases:
        errors = []
        for a in (x, dev(x)):
            with pytest.raises(Exception) as info:
                case(a)
            errors.append((type(info.value), str(info.value)))
        assert errors[0] == errors[1]
    for name in ("sum", "max", "min"):                                           # the forwards themselves
        with pytest.raises(ValueError) as on_cpu:
            PRIMITIVES[name].forwards["cpu"](x, axis=(0, -2), keepdims=False)
        with pytest.raises(ValueError) as on_device:
            PRIMITIVES[name].forwards["cuda"](dev(x), axis=(0, -2), keepdims=False)
        assert str(on_device.value) == str(on_cpu.value)


# ---- attention, positions and masks on the device -------------------------------------------------------
ATTENTION_MASK = np.array([[True, False, True, True], [False, False, False, False], [True, True, False, True]])


@needs_cuda
@pytest.mark.parametrize("settings", [dict(mask="host"), dict(mask="device"), dict(causal=True),
                                      dict(mask="host", causal=True)], ids=["host mask", "device mask", "causal",
                                                                             "mask and causal"])
def test_masked_and_causal_attention_and_their_vjps_equal_the_cpu(settings, rng):
    """The mask (from the host or made on the device) and the causal triangle join q, k, v on their device."""
    from axon.functional.layers import dot_product_attention
    settings = dict(settings)
    if "mask" in settings:                                     # (B, h, Tq, Tk) = (1, 2, 3, 4): a fully masked row
        settings["mask"] = ATTENTION_MASK if settings["mask"] == "host" else dev(ATTENTION_MASK)
    q, k, v = rng.standard_normal((1, 2, 3, 2)), rng.standard_normal((1, 2, 4, 2)), rng.standard_normal((1, 2, 4, 3))
    on_device, on_cpu = _device_and_cpu(lambda q, k, v: dot_product_attention(q, k, v, **settings), [q, k, v])
    assert on_device[0].device == "cuda"
    for out, ref in zip(on_device, on_cpu):
        assert_twin(out, ref)


@needs_cuda
def test_sinusoidal_and_rotary_embeddings_and_their_vjps_equal_the_cpu(rng):
    from axon.functional.layers import rotary_embedding, sinusoidal_positional_embedding
    x = rng.standard_normal((2, 3, 4))
    for f in (sinusoidal_positional_embedding, rotary_embedding, lambda x: rotary_embedding(x, offset=2)):
        on_device, on_cpu = _device_and_cpu(f, [x])
        assert on_device[0].device == "cuda"
        for out, ref in zip(on_device, on_cpu):
            assert_twin(out, ref)


@needs_cuda
def test_a_causal_transformer_block_with_a_padding_mask_and_its_gradients_equal_the_cpu(rng):
    """The model API: tokens on the device, x.mask made there, a causal block; float64 values and every gradient."""
    from axon.autograd import value_and_grad
    tokens = axon.input((None, 4), name="tokens")
    e = tokens.embedding(6, 4)
    model = e.transformer_block(2, 8, causal=True, mask=tokens.mask(0)).multi_head_attention(1, mask=tokens.mask(0))
    params = axon.tree.tree_map(lambda p: p.astype(np.float64), axon.init(model, seed=3))
    t = np.array([[3, 1, 5, 0], [2, 4, 0, 0], [1, 1, 1, 1]])
    loss = value_and_grad(lambda p, t: _weighted(axon.apply(model, p, t)[0]))
    value_cpu, grads_cpu = loss(params, t)
    value_dev, grads_dev = loss(to_device(params, "cuda"), to_device(t, "cuda"))
    assert_twin(value_dev, value_cpu)
    leaves_dev, leaves_cpu = axon.tree.tree_leaves(grads_dev), axon.tree.tree_leaves(grads_cpu)
    assert len(leaves_dev) == len(leaves_cpu) == 25                       # embedding 1, block 16, attention 8
    assert all(isinstance(g, acuda.ARRAY_TYPES) for g in leaves_dev)
    for g_dev, g_cpu in zip(leaves_dev, leaves_cpu):
        assert_twin(g_dev, g_cpu)


@needs_cuda
def test_a_masked_attention_model_trains_traced_on_the_device_as_on_the_cpu():
    """The traced step on the device: the mask, the causal triangle and the position table are device arrays in it."""
    x = axon.input((None, 4), name="tokens")
    h = axon.nx(x.embedding(6, 4), axon.layers.sinusoidal_positional_embedding)
    model = h.multi_head_attention(2, mask=x.mask(0), causal=True).flatten().dense(2, activation="softmax")
    t = np.array([[3, 1, 5, 0], [2, 4, 0, 0], [1, 1, 1, 1], [5, 0, 0, 0]])
    y = np.eye(2, dtype=np.float32)[[0, 1, 1, 0]]
    s = axon.training.step(model, "categorical_cross_entropy", axon.optimizers.sgd(0.1))
    cpu = axon.training.train(s, t, y, epochs=2, batch_size=2, verbose=0, seed=0)
    on_device = axon.training.train(s, t, y, epochs=2, batch_size=2, verbose=0, seed=0, device="cuda")
    assert s.step.compiled is not None and s.step.compiled.plans          # traced, on both devices
    np.testing.assert_allclose(on_device.history["loss"], cpu.history["loss"], rtol=1e-5)
