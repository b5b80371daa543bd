"""Optax's aliases that axon adds (adamax, adamaxw, amsgrad, nadamw, novograd, sign_sgd, signum,
optimistic_gradient_descent): trajectories against torch.optim where PyTorch has the same algorithm,
else against the update equations written here from Optax's documentation and the papers."""
import numpy as np
import pytest

from axon.optimizers import (adamax, adamaxw, amsgrad, nadamw, novograd, optimistic_gradient_descent, sign_sgd,
                             signum)
from axon.tree import tree_leaves

from test_optimizers import _assert_same_trajectory, _reference_run, _torch_trajectory, _trajectory

TORCH_CASES = {
    "adamax": (lambda: adamax(0.01), "Adamax", dict(lr=0.01)),
    "adamax_betas": (lambda: adamax(0.02, b1=0.8, b2=0.99, eps=1e-6), "Adamax",
                     dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6)),
    "nadamw": (lambda: nadamw(0.01, weight_decay=0.1), "NAdam",
               dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
}


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_trajectory_matches_torch(case):
    torch = pytest.importorskip("torch")
    make, name, kwargs = TORCH_CASES[case]
    _assert_same_trajectory(_trajectory(make()), _torch_trajectory(torch, name, kwargs))


def test_adamaxw_is_adamax_plus_decoupled_decay():
    """x -= lr (m_hat / u + wd x), u = max(b2 u, |g| + eps)."""
    lr, b1, b2, eps, wd = 0.01, 0.9, 0.999, 1e-8, 0.05

    def step(t, key, x, g, st):
        st["m"] = b1 * st["m"] + (1 - b1) * g
        st["u"] = np.maximum(b2 * st["u"], np.abs(g) + eps)
        return x - lr * (st["m"] / (1 - b1 ** t) / st["u"] + wd * x)
    ref = _reference_run(step, lambda p: {"m": np.zeros_like(p), "u": np.zeros_like(p)})
    _assert_same_trajectory(_trajectory(adamaxw(lr, weight_decay=wd)), ref, rtol=1e-9)


def test_amsgrad_keeps_the_largest_corrected_second_moment():
    """Optax's form: v_max = max(v_max, v / (1 - b2^t)); x -= lr m_hat / (sqrt(v_max) + eps)."""
    lr, b1, b2, eps = 0.01, 0.9, 0.99, 1e-8

    def step(t, key, x, g, st):
        st["m"] = b1 * st["m"] + (1 - b1) * g
        st["v"] = b2 * st["v"] + (1 - b2) * g * g
        st["v_max"] = np.maximum(st["v_max"], st["v"] / (1 - b2 ** t))
        return x - lr * (st["m"] / (1 - b1 ** t)) / (np.sqrt(st["v_max"]) + eps)
    ref = _reference_run(step, lambda p: {"m": np.zeros_like(p), "v": np.zeros_like(p), "v_max": np.zeros_like(p)})
    ours = _trajectory(amsgrad(lr, b2=b2))
    _assert_same_trajectory(ours, ref, rtol=1e-9)
    plain = _reference_run(lambda t, k, x, g, st: x - 0.0 * g, lambda p: {})
    assert not np.allclose(ours[-1]["w"], plain[-1]["w"])        # it moved


def test_novograd_follows_the_paper():
    """Ginsburg et al. 2019: n = ||g||^2 (first), then b2 n + (1 - b2) ||g||^2 per layer;
    m = b1 m + g / (sqrt(n) + eps) + wd x (m_1 = that bracket); x -= lr m."""
    lr, b1, b2, eps, wd = 0.01, 0.9, 0.25, 1e-6, 0.01

    def step(t, key, x, g, st):
        g2 = float(np.sum(g * g))
        st["n"] = g2 if t == 1 else b2 * st["n"] + (1 - b2) * g2
        bracket = g / (np.sqrt(st["n"]) + eps) + wd * x
        st["m"] = bracket if t == 1 else b1 * st["m"] + bracket
        return x - lr * st["m"]
    ref = _reference_run(step, lambda p: {"m": np.zeros_like(p), "n": 0.0})
    _assert_same_trajectory(_trajectory(novograd(lr, weight_decay=wd)), ref, rtol=1e-9)


def test_sign_sgd_and_signum():
    lr, beta = 0.01, 0.9
    ref = _reference_run(lambda t, k, x, g, st: x - lr * np.sign(g), lambda p: {})
    _assert_same_trajectory(_trajectory(sign_sgd(lr)), ref, rtol=1e-12)

    def step(t, key, x, g, st):
        st["m"] = beta * st["m"] + (1 - beta) * g
        return x - lr * np.sign(st["m"])
    ref = _reference_run(step, lambda p: {"m": np.zeros_like(p)})
    _assert_same_trajectory(_trajectory(signum(lr, beta)), ref, rtol=1e-12)


def test_optimistic_gradient_descent_uses_the_previous_gradient():
    """x -= lr ((alpha + beta) g - beta g_prev), g_prev = g at the first step."""
    lr, alpha, beta = 0.05, 1.0, 0.5

    def step(t, key, x, g, st):
        prev = g if st["prev"] is None else st["prev"]
        st["prev"] = g
        return x - lr * ((alpha + beta) * g - beta * prev)
    ref = _reference_run(step, lambda p: {"prev": None})
    _assert_same_trajectory(_trajectory(optimistic_gradient_descent(lr, alpha, beta)), ref, rtol=1e-12)


def test_bilinear_game_converges_with_optimism_but_not_plain_descent():
    """min_x max_y x*y: simultaneous gradient descent-ascent spirals out, the optimistic one comes in."""
    def run(opt, steps=1000):
        p = {"x": np.array(1.0), "y": np.array(1.0)}
        state = opt.init(p)
        for _ in range(steps):
            g = {"x": p["y"], "y": -p["x"]}                   # descent on x, ascent on y
            u, state = opt.update(g, state, p)
            p = {k: p[k] + u[k] for k in p}
        return float(np.hypot(p["x"], p["y"]))
    from axon.optimizers import sgd
    assert run(optimistic_gradient_descent(0.1)) < 0.05 < 1.5 < run(sgd(0.1))   # both start at sqrt(2)


@pytest.mark.parametrize("make", [lambda: adamax(0.01), lambda: adamaxw(0.01), lambda: amsgrad(0.01),
                                  lambda: nadamw(0.01), lambda: novograd(0.01, weight_decay=0.1),
                                  lambda: sign_sgd(0.01), lambda: signum(0.01),
                                  lambda: optimistic_gradient_descent(0.01)])
def test_float32_stays_float32(make):
    out = _trajectory(make(), steps=3, dtype=np.float32)
    assert all(a.dtype == np.float32 for a in tree_leaves(out[-1]))


def test_bad_hyperparameters_name_the_argument():
    with pytest.raises(ValueError, match="scale_by_adamax: b1 must be in"):
        adamax(0.1, b1=1.5)
    with pytest.raises(ValueError, match="adamaxw: weight_decay must be in"):
        adamaxw(0.1, weight_decay=-1.0)
    with pytest.raises(TypeError, match="scale_by_novograd: b2 must be a number"):
        novograd(0.1, b2="0.2")
