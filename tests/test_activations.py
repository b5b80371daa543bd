"""Activations: finite differences (1st and 2nd order), torch values and gradients, stability, dtypes."""

import numpy as np
import pytest

from axon.autograd import Tensor, check_grads, grad
from axon.functional import activations as A

r = np.random.default_rng(0)


def away(kinks=(0.0,), shape=(3, 5), lo=-4.0, hi=4.0):
    """Uniform draws at least 0.05 away from every kink, where the function is smooth."""
    x = r.uniform(lo, hi, shape)
    for k in kinks:
        near = np.abs(x - k) < 0.05
        x[near] = k + 0.1 * np.sign(x[near] - k + 1e-12)
    return x


def rnd(*shape):
    return r.standard_normal(shape) * 2


# name -> (axon function, name in torch or a torch callable (None: closed form only), input)
CASES = {
    "celu": (lambda x: A.celu(x, alpha=1.5), lambda F, x: F.celu(x, alpha=1.5), away()),
    "elu": (lambda x: A.elu(x, alpha=0.7), lambda F, x: F.elu(x, alpha=0.7), away()),
    "exp": (A.exp, lambda F, x: x.exp(), rnd(3, 5)),
    "gelu": (A.gelu, lambda F, x: F.gelu(x), rnd(3, 5)),
    "gelu_tanh": (lambda x: A.gelu(x, approximate=True), lambda F, x: F.gelu(x, approximate="tanh"), rnd(3, 5)),
    "hard_sigmoid_torch": (lambda x: A.hard_sigmoid(x, alpha=1 / 6, beta=0.5), lambda F, x: F.hardsigmoid(x),
                           away((-3.0, 3.0), lo=-5, hi=5)),
    "hard_silu_torch": (lambda x: A.hard_silu(x, alpha=1 / 6, beta=0.5), lambda F, x: F.hardswish(x),
                        away((-3.0, 3.0), lo=-5, hi=5)),
    "hard_tanh": (A.hard_tanh, lambda F, x: F.hardtanh(x), away((-1.0, 1.0), lo=-3, hi=3)),
    "leaky_relu": (A.leaky_relu, lambda F, x: F.leaky_relu(x, 0.01), away()),
    "log_sumexp": (A.log_sumexp, lambda F, x: x.logsumexp(-1, keepdim=True), rnd(3, 5)),
    "log_sumexp_axis0_squeezed": (lambda x: A.log_sumexp(x, axis=0, keepdims=False),
                                  lambda F, x: x.logsumexp(0), rnd(3, 5)),
    "log_sigmoid": (A.log_sigmoid, lambda F, x: F.logsigmoid(x), rnd(3, 5)),
    "log_softmax": (A.log_softmax, lambda F, x: F.log_softmax(x, -1), rnd(3, 5)),
    "log_softmax_axis0": (lambda x: A.log_softmax(x, axis=0), lambda F, x: F.log_softmax(x, 0), rnd(3, 5)),
    "mish": (A.mish, lambda F, x: F.mish(x), rnd(3, 5)),
    "relu": (A.relu, lambda F, x: F.relu(x), away()),
    "relu6": (A.relu6, lambda F, x: F.relu6(x), away((0.0, 6.0), lo=-3, hi=9)),
    "selu": (A.selu, lambda F, x: F.selu(x), away()),
    "sigmoid": (A.sigmoid, lambda F, x: x.sigmoid(), rnd(3, 5)),
    "silu": (A.silu, lambda F, x: F.silu(x), rnd(3, 5)),
    "softmax": (A.softmax, lambda F, x: F.softmax(x, -1), rnd(3, 5)),
    "softmax_axis0": (lambda x: A.softmax(x, axis=0), lambda F, x: F.softmax(x, 0), rnd(3, 5)),
    "softplus": (A.softplus, lambda F, x: F.softplus(x), rnd(3, 5)),
    "softsign": (A.softsign, lambda F, x: F.softsign(x), rnd(3, 5)),
    "tanh": (A.tanh, lambda F, x: x.tanh(), rnd(3, 5)),
    "erf": (A.erf, lambda F, x: x.erf(), rnd(3, 5)),
    "log1p": (A.log1p, lambda F, x: x.log1p(), np.abs(rnd(3, 5))),
    "expm1": (A.expm1, lambda F, x: x.expm1(), rnd(3, 5)),
}

# name -> (axon function, numpy closed form, input): functions torch lacks or spells differently
CLOSED_FORM = {
    "linear": (A.linear, lambda x: x, rnd(3, 5)),
    "hard_sigmoid_axon_defaults": (A.hard_sigmoid, lambda x: np.clip(0.2 * x + 0.2, 0, 1), away((-1.0, 4.0))),
    "hard_silu_axon_defaults": (A.hard_silu, lambda x: x * np.clip(0.2 * x + 0.2, 0, 1), away((-1.0, 4.0))),
    "softmax_two_axes": (lambda x: A.softmax(x, axis=(0, 2)),
                         lambda x: np.exp(x) / np.exp(x).sum(axis=(0, 2), keepdims=True), rnd(2, 3, 4)),
    "celu_closed": (lambda x: A.celu(x, 2.0), lambda x: np.where(x > 0, x, 2.0 * np.expm1(x / 2.0)), away()),
    "mish_closed": (A.mish, lambda x: x * np.tanh(np.log1p(np.exp(x))), rnd(3, 5)),
    "log_sumexp_closed": (A.log_sumexp, lambda x: np.log(np.exp(x).sum(-1, keepdims=True)), rnd(3, 5)),
}

# torch's hardsigmoid/hardswish backward multiplies by the float32 constant 1.0f/6.0f, even in float64
GRAD_RTOL = {"hard_sigmoid_torch": 1e-7, "hard_silu_torch": 1e-7}

ALL = {**{k: (f, x) for k, (f, _, x) in CASES.items()}, **{k: (f, x) for k, (f, _, x) in CLOSED_FORM.items()}}


@pytest.mark.parametrize("name", sorted(ALL))
def test_grads_match_finite_differences_to_second_order(name):
    f, x = ALL[name]
    check_grads(f, (x,), order=2, atol=1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_and_grads_match_torch(name):
    torch = pytest.importorskip("torch")
    f, tf, x = CASES[name]
    y = f(x)
    xt = torch.tensor(x, requires_grad=True)
    yt = tf(torch.nn.functional, xt)
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    u = r.standard_normal(y.shape)
    (yt * torch.tensor(u)).sum().backward()
    g = grad(lambda x: (f(x) * u).sum())(x)
    np.testing.assert_allclose(g, xt.grad.numpy(), rtol=GRAD_RTOL.get(name, 1e-9), atol=1e-12)


@pytest.mark.parametrize("name", sorted(CLOSED_FORM))
def test_values_match_closed_form(name):
    f, np_f, x = CLOSED_FORM[name]
    np.testing.assert_allclose(f(x).numpy(), np_f(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(ALL))
def test_float32_stays_float32_and_ints_become_float32(name):
    f, x = ALL[name]
    x32 = Tensor(x.astype(np.float32), requires_grad=True)
    y = f(x32)
    assert y.dtype == np.float32
    (y * 1.5).sum().backward()
    assert x32.grad.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), f(x).numpy(), rtol=2e-5, atol=1e-5)
    assert f(np.round(x).astype(np.int64)).dtype == np.float32


STABLE = ["celu", "elu", "gelu", "log_sigmoid", "log_softmax", "log_sumexp", "mish", "selu", "sigmoid",
          "silu", "softmax", "softplus", "softsign", "tanh", "hard_silu", "leaky_relu"]


@pytest.mark.parametrize("name", STABLE)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_values_and_grads_at_plus_minus_1000(name, dtype):
    f = getattr(A, name)
    x = Tensor(np.array([[-1000.0, -30.0, 0.0, 30.0, 1000.0]], dtype=dtype), requires_grad=True)
    y = f(x)
    (y * np.arange(1.0, 6.0, dtype=dtype)).sum().backward()
    assert np.isfinite(y.numpy()).all(), y
    assert np.isfinite(x.grad).all(), x.grad


def test_stable_values_at_extremes():
    big = np.array([-1000.0, 1000.0])
    np.testing.assert_allclose(A.softplus(big).numpy(), [0.0, 1000.0])
    np.testing.assert_allclose(A.log_sigmoid(big).numpy(), [-1000.0, 0.0])
    np.testing.assert_allclose(A.log_softmax(big).numpy(), [-2000.0, 0.0])
    np.testing.assert_allclose(A.softmax(big).numpy(), [0.0, 1.0])
    np.testing.assert_allclose(A.log_sumexp(big).numpy(), [1000.0])
    np.testing.assert_allclose(A.elu(big).numpy(), [-1.0, 1000.0])
    g = grad(lambda x: A.softplus(x).sum())(np.array([0.0, -1000.0, 1000.0]))
    np.testing.assert_allclose(g, [0.5, 0.0, 1.0])                  # exactly sigmoid, also at the kink of |x|


@pytest.mark.parametrize("name", sorted(ALL))
def test_non_contiguous_input(name):
    f, x = ALL[name]
    xt = np.asfortranarray(x)                                        # same values, column-major memory
    np.testing.assert_allclose(f(xt).numpy(), f(x).numpy(), rtol=1e-14)   # sums may add in another order
    if x.ndim == 2:
        np.testing.assert_array_equal(A.gelu(x.T).numpy(), A.gelu(x).numpy().T)


def test_float16_works_for_the_compiled_erf():
    x = np.array([-1.0, 0.5, 2.0], dtype=np.float16)
    for f in (A.erf, A.gelu):
        y = f(x)
        assert y.dtype == np.float16
        np.testing.assert_allclose(y.numpy(), f(x.astype(np.float64)).numpy(), rtol=2e-3)


def test_softmax_rows_sum_to_one_and_log_softmax_matches_log_of_softmax():
    x = rnd(4, 7)
    np.testing.assert_allclose(A.softmax(x).numpy().sum(-1), 1.0)
    np.testing.assert_allclose(A.log_softmax(x).numpy(), np.log(A.softmax(x).numpy()), atol=1e-12)


def test_get_resolves_names_and_lists_the_valid_ones():
    assert A.get("relu") is A.relu
    assert A.get("log_softmax") is A.log_softmax
    assert all(A.get(n) is getattr(A, n) for n in A.__all__ if n != "get")     # model builders rely on it
    f = lambda x: x                                                  # noqa: E731
    assert A.get(f) is f
    with pytest.raises(ValueError, match="unknown activation 'rleu'.*relu.*softmax"):
        A.get("rleu")
    with pytest.raises(TypeError, match="activation must be a name"):
        A.get(3)


def test_bad_input_is_rejected_with_clear_errors():
    with pytest.raises(ValueError, match=r"softmax: axis 2 is out of range for a Tensor of shape \(3, 4\)"):
        A.softmax(np.zeros((3, 4)), axis=2)
    with pytest.raises(ValueError, match="log_softmax: axis -3"):
        A.log_softmax(np.zeros((3, 4)), axis=-3)
    with pytest.raises(ValueError, match="gelu: approximate must be"):
        A.gelu(np.zeros(3), approximate="fast")
    with pytest.raises(ValueError, match="celu: alpha must be positive, got 0.0"):
        A.celu(np.zeros(3), alpha=0.0)
