"""The kernels' backward primitives: the gradients they give, and that every kernel runs through the seam.

Each kernel's VJP calls a backward primitive (``kernels.<name>_backward``) whose forward is the numba
code. Here: (1) that primitive is what a plain backward pass runs, and its gradient equals the
Tensor-operation rule (recorded under ``create_graph``) or finite differences; (2) on a test-only
backend whose arrays are not numpy arrays (and refuse to become one), every kernel, forward and
backward, gives the CPU's results: nothing in the kernels computes on a Tensor's data outside a
primitive's forward.
"""
import numpy as np
import pytest

from axon import backend as B
from axon import kernels
from axon.autograd import PRIMITIVES, Tensor, check_grads, implement

BACKWARD_PRIMITIVES = ["kernels.bias_relu_backward", "kernels.conv_backward", "kernels.batch_norm_backward",
                       "kernels.max_pool_backward", "kernels.sum_pool_backward", "kernels.take_along_axis_backward",
                       "kernels.softmax_backward", "kernels.softmax_cross_entropy_backward",
                       "kernels.ctc_loss_backward"]
SAME = ((1, 1), (1, 1))


def _cases(rng):
    """name -> (function of Tensors, input arrays, the backward primitive it must run)."""
    x4 = rng.standard_normal((2, 6, 6, 3))
    w = rng.standard_normal((3, 3, 3, 4))
    logits, labels = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    probs = rng.dirichlet(np.ones(4), 5)
    lp = np.log(rng.dirichlet(np.ones(3), (2, 5)))                                  # (B, T, C) log-probabilities
    return {
        "bias_relu": (lambda x, b: kernels.bias_relu(x, b), (x4, rng.standard_normal(3)),
                      "kernels.bias_relu_backward"),
        "conv": (lambda x, w: kernels.conv(x, w, (1, 2), SAME, (1, 1)), (x4, w), "kernels.conv_backward"),
        "batch_norm": (lambda x, g, b: kernels.batch_norm_train(x, g, b, 1e-3)[0],
                       (x4 * 2 + 1, rng.standard_normal(3), rng.standard_normal(3)), "kernels.batch_norm_backward"),
        "max_pool": (lambda x: kernels.max_pool(x, (2, 2), (2, 2), ((0, 0), (0, 0))), (x4,),
                     "kernels.max_pool_backward"),
        "avg_pool": (lambda x: kernels.avg_pool(x, (3, 3), (2, 2), SAME), (x4,), "kernels.sum_pool_backward"),
        "lp_pool": (lambda x: kernels.lp_pool(x * x + 0.5, 3, (2, 2), (1, 1), ((0, 0), (0, 0))), (x4,),
                    "kernels.sum_pool_backward"),
        "max_with_indices": (lambda x: kernels.max_with_indices(x, 2)[0], (x4,), "kernels.take_along_axis_backward"),
        "softmax": (lambda x: kernels.softmax(x, (1, 2)), (x4,), "kernels.softmax_backward"),
        "log_softmax": (lambda x: kernels.log_softmax(x), (x4,), "kernels.softmax_backward"),
        "logsumexp": (lambda x: kernels.logsumexp(x, 1), (x4,), "kernels.softmax_backward"),
        "xent_labels": (lambda x: kernels.softmax_cross_entropy(x, labels), (logits,),
                        "kernels.softmax_cross_entropy_backward"),
        "xent_probs": (lambda x, t: kernels.softmax_cross_entropy(x, t), (logits, probs),
                       "kernels.softmax_cross_entropy_backward"),
        "ctc": (lambda lp: kernels.ctc_loss(lp, np.array([[1, 2], [2, 0]]), np.array([5, 4]), np.array([2, 1]),
                                            blank=0), (lp,), "kernels.ctc_loss_backward"),
    }


CASES = sorted(_cases(np.random.default_rng(0)))


def _grads(f, arrays, create_graph=False, wrap=Tensor):
    xs = [wrap(a, requires_grad=True) for a in arrays]
    y = f(*xs)
    u = Tensor(np.linspace(-1.0, 1.0, y.size).reshape(y.shape))                    # a fixed upstream gradient
    (y * (u if wrap is Tensor else _boxed_tensor(u.numpy()))).sum().backward(create_graph=create_graph)
    return y, [x.grad for x in xs]


@pytest.mark.parametrize("name", CASES)
def test_plain_backward_runs_the_backward_primitive_and_matches_finite_differences(rng, name, monkeypatch):
    f, arrays, backward = _cases(rng)[name]
    calls = []
    forward = PRIMITIVES[backward].forwards["cpu"]
    monkeypatch.setitem(PRIMITIVES[backward].forwards, "cpu", lambda *a, **k: calls.append(1) or forward(*a, **k))
    _grads(f, arrays)
    assert calls, f"{name}: backward() did not run {backward}"
    check_grads(f, arrays, atol=1e-5)                                             # (runs the same path, float64)


@pytest.mark.parametrize("name", ["bias_relu", "softmax", "log_softmax", "logsumexp", "xent_labels", "xent_probs"])
def test_backward_primitive_equals_the_tensor_op_rule(rng, name):
    """Kernels with a grad-of-grad rule: the backward kernel and the Tensor-op formula give one gradient."""
    f, arrays, _ = _cases(rng)[name]
    _, fast = _grads(f, arrays)
    _, rule = _grads(f, arrays, create_graph=True)                                # the recorded Tensor-op VJP
    for a, b in zip(fast, rule):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_backward_primitives_are_never_differentiated_and_documented():
    for name in BACKWARD_PRIMITIVES:
        prim = PRIMITIVES[name]
        assert prim.vjp is None, name
        module = __import__(prim.forwards["cpu"].__module__, fromlist=["_"])
        assert name in module.__doc__, f"{name}: its signature is missing from {module.__name__}'s docstring"


def test_adam_step_primitive_returns_the_update_and_moments(rng):
    p, g, m, v = (rng.standard_normal(6).astype(np.float32) for _ in range(4))
    v = np.abs(v)
    u, m2, v2 = kernels.adam_step(p, g, m, v, lr=1e-2, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.1, step=2)
    p_ref, m_ref, v_ref = p.copy(), m.copy(), v.copy()
    kernels.adam_update(p_ref, g, m_ref, v_ref, lr=1e-2, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.1, step=2)
    assert u.dtype == np.float32 and u.device == "cpu"
    np.testing.assert_allclose(p + u.numpy(), p_ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(m2.numpy(), m_ref)
    np.testing.assert_array_equal(v2.numpy(), v_ref)
    with pytest.raises(ValueError, match="share one shape"):
        kernels.adam_step(p, g[:3], m, v, lr=1e-2, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, step=1)


# ---- a backend whose arrays are not numpy arrays ---------------------------------------------------------
class Boxed:
    """A host array in a box that refuses to become a numpy array: any numpy call on it fails."""
    __array_ufunc__ = None

    def __init__(self, a):
        self.a = a

    shape = property(lambda self: self.a.shape)
    dtype = property(lambda self: self.a.dtype)
    ndim = property(lambda self: self.a.ndim)
    size = property(lambda self: self.a.size)

    def __array__(self, *args, **kwargs):
        raise TypeError("a Boxed array was handed to numpy outside a primitive's forward")


def _box(out):
    if isinstance(out, tuple):
        return tuple(_box(o) for o in out)
    if isinstance(out, (np.ndarray, np.generic)):
        return Boxed(np.asarray(out))
    return out


def _unbox(a):
    if isinstance(a, tuple):
        return tuple(_unbox(x) for x in a)
    return a.a if isinstance(a, Boxed) else a


def _boxed_forward(cpu_forward):
    return lambda *arrays, **params: _box(cpu_forward(*(_unbox(a) for a in arrays), **params))


def _boxed_tensor(a, requires_grad=False):
    return Tensor(Boxed(np.asarray(a)), requires_grad=requires_grad)


@pytest.fixture
def boxed_backend():
    name = "test.boxed"
    B.register_backend(B.Backend(name, (Boxed,), lambda a: a.a.copy(), lambda a: Boxed(np.array(a)),
                                 lambda shape, value, dtype: Boxed(np.full(shape, value, dtype)),
                                 lambda a: Boxed(a.a.copy())))
    for prim in list(PRIMITIVES.values()):
        if "cpu" in prim.forwards:
            implement(prim.name, name, _boxed_forward(prim.forwards["cpu"]))
    yield name
    for prim in PRIMITIVES.values():
        prim.forwards.pop(name, None)
    B.unregister_backend(name)


@pytest.mark.parametrize("name", CASES)
def test_every_kernel_runs_on_a_backend_that_is_not_numpy(rng, name, boxed_backend):
    f, arrays, _ = _cases(rng)[name]
    arrays = [a.astype(np.float32) for a in arrays]
    y_cpu, g_cpu = _grads(f, arrays)
    y_box, g_box = _grads(f, arrays, wrap=_boxed_tensor)
    assert y_box.device == boxed_backend and all(isinstance(g, Boxed) for g in g_box)
    np.testing.assert_allclose(B.to_host(y_box.data), y_cpu.numpy(), rtol=1e-6, atol=1e-6)
    for got, want in zip(g_box, g_cpu):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got.a, want, rtol=1e-5, atol=1e-6)


def test_adam_step_runs_on_a_backend_that_is_not_numpy(rng, boxed_backend):
    p, g, m, v = (np.abs(rng.standard_normal(5)).astype(np.float32) for _ in range(4))
    kw = dict(lr=1e-2, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, step=1)
    want = kernels.adam_step(p, g, m, v, **kw)
    got = kernels.adam_step(*(_boxed_tensor(a) for a in (p, g, m, v)), **kw)
    for a, b in zip(got, want):
        assert isinstance(a.data, Boxed)
        np.testing.assert_array_equal(a.data.a, b.numpy())


def _functional_cases(rng):
    """Layers, activations and losses a CNN/MLP uses, each a function of float32 inputs -> a Tensor."""
    import axon.functional.layers as L
    from axon.functional import activations as A, losses
    x = rng.standard_normal((4, 6, 6, 2)).astype(np.float32)
    k = (rng.standard_normal((3, 3, 2, 3)) * 0.3).astype(np.float32)
    c = rng.standard_normal(3).astype(np.float32)
    w = (rng.standard_normal((27, 5)) * 0.3).astype(np.float32)
    onehot = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 4)]
    labels = rng.integers(0, 5, 4)
    ones, zeros = np.ones(3, np.float32), np.zeros(3, np.float32)

    def cnn(x, k, c, w):
        h = A.relu(L.conv(x, k, c, padding="same"))                                # (4, 6, 6, 3)
        h, _, _ = L.batch_norm(h, c, c, zeros, ones, training=True)
        h = L.max_pool(A.gelu(h), 2)                                                  # (4, 3, 3, 3)
        h = L.dropout(L.flatten(h), key=0, rate=0.25)                                 # (4, 27)
        logits = L.dense(A.leaky_relu(h), w)                                          # (4, 5)
        return (losses.categorical_cross_entropy(onehot, logits, from_logits=True, reduction="mean")
                + losses.sparse_categorical_cross_entropy(labels, A.softmax(logits), reduction="mean")
                + losses.huber(onehot, logits, reduction="mean"))
    return cnn, (x, k, c, w)


def test_layers_activations_and_losses_run_on_a_backend_that_is_not_numpy(rng, boxed_backend):
    f, arrays = _functional_cases(rng)
    y_cpu, g_cpu = _grads(f, arrays)
    y_box, g_box = _grads(f, arrays, wrap=_boxed_tensor)
    assert y_box.device == boxed_backend
    np.testing.assert_allclose(B.to_host(y_box.data), y_cpu.numpy(), rtol=1e-5)
    for got, want in zip(g_box, g_cpu):
        np.testing.assert_allclose(got.a, want, rtol=1e-4, atol=1e-6)
