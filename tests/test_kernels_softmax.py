"""axon.kernels softmax, log_softmax, logsumexp and softmax_cross_entropy."""

import numpy as np
import pytest

from axon.autograd import Tensor, check_grads
from axon.kernels import log_softmax, logsumexp, softmax, softmax_cross_entropy

from axon.kernels import softmax_family as softmax_module   # (axon.kernels.softmax is the function)


def np_logsumexp(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))).squeeze(axis)


@pytest.mark.parametrize("shape, axis", [((3, 5), -1), ((3, 5), 0), ((2, 3, 4), 1), ((1, 7), -1), ((6,), 0)])
def test_softmax_family_matches_numpy_and_gradients(rng, shape, axis):
    x = rng.standard_normal(shape) * 3
    lse = np_logsumexp(x, axis)
    np.testing.assert_allclose(logsumexp(x, axis).numpy(), lse, rtol=1e-12)
    np.testing.assert_allclose(logsumexp(x, axis, keepdims=True).numpy(), np.expand_dims(lse, axis), rtol=1e-12)
    np.testing.assert_allclose(log_softmax(x, axis).numpy(), x - np.expand_dims(lse, axis), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(softmax(x, axis).numpy(), np.exp(x - np.expand_dims(lse, axis)), rtol=1e-12)
    for f in (lambda x: softmax(x, axis), lambda x: log_softmax(x, axis), lambda x: logsumexp(x, axis),
              lambda x: logsumexp(x, axis, keepdims=True)):
        check_grads(f, (x,))


def test_softmax_family_large_inputs_split_rows(rng, monkeypatch):
    """The parallel path (rows split across threads), forward and backward, agrees with the serial one."""
    x = rng.standard_normal((37, 11)).astype(np.float32)                      # float32: compiled once
    labels = rng.integers(0, 11, 37)
    fs = (softmax, log_softmax, logsumexp, lambda x: softmax_cross_entropy(x, labels))

    def values_and_grads(f):
        X = Tensor(x, requires_grad=True)
        y = f(X)
        (y * y).sum().backward()
        return y.numpy(), X.grad

    serial = [values_and_grads(f) for f in fs]
    monkeypatch.setattr(softmax_module, "PARALLEL_MIN", 1)
    for f, want in zip(fs, serial):
        for got, w in zip(values_and_grads(f), want):
            np.testing.assert_allclose(got, w, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("vector_exp_min", [1 << 30, 0])
@pytest.mark.parametrize("parallel_min", [1 << 30, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_both_ways_matches_float64_numpy(rng, monkeypatch, dtype, parallel_min, vector_exp_min):
    """The one-pass kernel and the three passes around numpy's exp (from VECTOR_EXP_MIN elements), serial
    and split rows: both equal a float64 reference, large logits and all -inf rows included."""
    x = (rng.standard_normal((23, 3, 9)) * 4).astype(dtype)
    x[0, 0] = [1000.0, -1000.0, 999.0] * 3                    # |x| ~ 1000: float32 keeps x - m, not x - lse
    x[1, :, 2] = -np.inf                                       # an all -inf row along axis 1
    x[2, 1] = -np.inf                                          # an all -inf row along axis 2
    monkeypatch.setattr(softmax_module, "PARALLEL_MIN", parallel_min)
    monkeypatch.setattr(softmax_module, "VECTOR_EXP_MIN", vector_exp_min)
    x64 = x.astype(np.float64)
    tol = 2e-6 if dtype == np.float32 else 1e-12
    with np.errstate(invalid="ignore"):                        # -inf - -inf in the reference's all -inf rows
        for a in (1, 2, (1, 2)):
            lse = np_logsumexp(np.where(np.isinf(x64).all(axis=a, keepdims=True), 0.0, x64), a)
            lse = np.where(np.isinf(x64).all(axis=a), -np.inf, lse)
            kept = np.expand_dims(lse, a)
            want = {"logsumexp": lse, "log_softmax": np.where(np.isinf(kept), np.nan, x64 - kept),   # nan as torch
                    "softmax": np.where(np.isinf(kept), np.nan, np.exp(x64 - kept))}
            got = {"logsumexp": logsumexp(x, a), "log_softmax": log_softmax(x, a), "softmax": softmax(x, a)}
            for name, y in got.items():
                y = y.numpy()
                assert y.dtype == dtype and y.shape == want[name].shape, (name, a)
                np.testing.assert_allclose(y, want[name], rtol=tol, atol=tol, err_msg=f"{name} axis {a}")
    check_grads(lambda x: softmax(x, -1), (rng.standard_normal((4, 5)),))   # the VJP is the same either way


def test_softmax_is_stable_and_keeps_float32():
    x = np.array([[1000.0, -1000.0, 999.0], [-1000.0, -1000.0, -1000.0]], np.float32)
    for y in (softmax(x), log_softmax(x), logsumexp(x), softmax_cross_entropy(x, np.array([0, 2]))):
        assert y.dtype == np.float32 and np.isfinite(y.numpy()).all()
    np.testing.assert_allclose(softmax(x).numpy()[1], [1 / 3] * 3, rtol=1e-6)
    np.testing.assert_allclose(logsumexp(x).numpy(), [1000 + np.log1p(np.exp(-1.0)), -1000 + np.log(3)], rtol=1e-6)
    assert logsumexp(np.array([-np.inf, -np.inf])).numpy() == -np.inf


@pytest.mark.parametrize("kind", ["labels", "probabilities"])
def test_softmax_cross_entropy_matches_reference_and_gradients(rng, kind):
    x = rng.standard_normal((5, 4)) * 2
    if kind == "labels":
        t = np.array([0, 3, 1, 1, 2])
        want = np_logsumexp(x, -1) - x[np.arange(5), t]
        check_grads(lambda x: softmax_cross_entropy(x, t), (x,), order=1)
    else:
        t = rng.dirichlet(np.ones(4), size=5)
        want = -(t * (x - np_logsumexp(x, -1)[:, None])).sum(-1)
        check_grads(softmax_cross_entropy, (x, t))                            # w.r.t. logits and targets
    np.testing.assert_allclose(softmax_cross_entropy(x, t).numpy(), want, rtol=1e-12)


def test_softmax_cross_entropy_large_logits():
    x = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]])
    loss = softmax_cross_entropy(x, np.array([0, 0])).numpy()
    np.testing.assert_allclose(loss, [0.0, 2000.0])
    X = Tensor(x, requires_grad=True)
    softmax_cross_entropy(X, np.array([[1.0, 0.0], [1.0, 0.0]])).sum().backward()
    np.testing.assert_allclose(X.grad, [[0.0, 0.0], [-1.0, 1.0]])


def test_softmax_family_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal((6, 10)) * 5).astype(np.float32)
    u = rng.standard_normal((6, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 6)
    probs = rng.dirichlet(np.ones(10), size=6).astype(np.float32)
    cases = [
        (lambda t: softmax(t, 0), lambda t: torch.softmax(t, 0), u),
        (lambda t: log_softmax(t), lambda t: torch.log_softmax(t, -1), u),
        (lambda t: logsumexp(t, 1), lambda t: torch.logsumexp(t, 1), u[:, 0]),
        (lambda t: softmax_cross_entropy(t, labels),
         lambda t: torch.nn.functional.cross_entropy(t, torch.tensor(labels), reduction="none"), u[:, 0]),
        (lambda t: softmax_cross_entropy(t, probs),
         lambda t: torch.nn.functional.cross_entropy(t, torch.tensor(probs), reduction="none"), u[:, 0]),
    ]
    for ours, theirs, dy in cases:
        X = Tensor(x, requires_grad=True)
        y = ours(X)
        y.backward(dy)
        xt = torch.tensor(x, requires_grad=True)
        yt = theirs(xt)
        yt.backward(torch.tensor(dy))
        np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(X.grad, xt.grad.numpy(), rtol=1e-5, atol=1e-6)
        assert y.dtype == X.grad.dtype == np.float32


def test_softmax_bad_arguments_raise_clear_errors():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="labels must be in \\[0, 4\\)"):
        softmax_cross_entropy(x, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="integer labels must have shape \\(3,\\)"):
        softmax_cross_entropy(x, np.array([0, 1]))
    with pytest.raises(ValueError, match="targets must be labels"):
        softmax_cross_entropy(x, np.zeros((3, 5), np.float32))
    with pytest.raises(TypeError, match="same dtype"):
        softmax_cross_entropy(x, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="logits must be \\(N, K\\)"):
        softmax_cross_entropy(x[0], np.array([1]))
    with pytest.raises(ValueError, match=r"softmax: axis 2 is out of range for a Tensor of shape \(3, 4\)"):
        softmax(x, axis=2)
    with pytest.raises(ValueError, match="axis must be an int or a tuple of ints"):
        softmax(x, axis="last")


@pytest.mark.parametrize("fn", ["softmax", "log_softmax", "logsumexp"])
def test_softmax_family_over_several_axes_and_second_order(rng, fn):
    """Tuple axes flatten into one row axis; under create_graph the VJPs are built from ops (grad of grad)."""
    from axon.autograd import check_grads
    from axon import kernels
    f = getattr(kernels, fn)
    x = rng.standard_normal((2, 3, 4))
    got = f(x, axis=(0, 2)).numpy()
    m = x.max(axis=(0, 2), keepdims=True)
    lse = m + np.log(np.exp(x - m).sum(axis=(0, 2), keepdims=True))
    want = {"softmax": np.exp(x - lse), "log_softmax": x - lse, "logsumexp": lse.squeeze((0, 2))}[fn]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    check_grads(lambda x: f(x, axis=(0, 2)), (x,), order=2)
    check_grads(lambda x: f(x, axis=-1), (x,), order=2)


def test_softmax_cross_entropy_second_order(rng):
    from axon.autograd import check_grads
    x, t = rng.standard_normal((3, 4)), rng.random((3, 4))
    check_grads(lambda x, t: softmax_cross_entropy(x, t), (x, t / t.sum(1, keepdims=True)), order=2)
    labels = np.array([0, 3, 1])
    check_grads(lambda x: softmax_cross_entropy(x, labels), (x,), order=2)
