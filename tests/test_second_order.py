"""axon.second_order: Hessian-vector products, the L-BFGS two-loop recursion, convergence of L-BFGS and
Newton-CG on Rosenbrock and logistic regression."""

import numpy as np
import pytest

import axon.second_order as second_order
from axon.autograd import grad
from axon.second_order import LbfgsState, hessian_vector_product, lbfgs, newton_cg_step
from axon.tree import tree_leaves
from axon.updates import apply_updates


def rosenbrock(p):
    x, y = p["xy"][0], p["xy"][1]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def rosenbrock_hessian(xy):
    x, y = xy
    return np.array([[1200 * x * x - 400 * y + 2, -400 * x], [-400 * x, 200.0]])


def _logistic_problem():
    r = np.random.default_rng(0)
    x = r.standard_normal((64, 5))
    y = (r.random((64, 1)) < 1 / (1 + np.exp(-x @ r.standard_normal((5, 1))))).astype(float)   # not separable
    return x, y


def _logistic_loss(x, y):
    def loss(p):
        z = x @ p["w"] + p["b"]                                    # (N, 1)
        return ((1 + (-z.abs()).exp()).log() + z.relu() - y * z).mean()   # log(1 + e^z) - y z, stably
    return loss


# ---- Hessian-vector products ----------------------------------------------------------------------
def test_hvp_matches_the_analytic_rosenbrock_hessian(rng):
    for _ in range(3):
        xy, v = rng.standard_normal(2), rng.standard_normal(2)
        hv = hessian_vector_product(rosenbrock, {"xy": xy}, {"xy": v})["xy"]
        np.testing.assert_allclose(hv, rosenbrock_hessian(xy) @ v, rtol=1e-10)


def test_hvp_matches_finite_differences_of_the_gradient_on_nested_params(rng):
    x = rng.standard_normal((6, 3))

    def f(p):
        h = (x @ p["l1"]["w"] + p["l1"]["b"]).tanh()               # (6, 4)
        return ((h @ p["l2"]["w"]) ** 2).mean()
    params = {"l1": {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}, "l2": {"w": rng.standard_normal((4, 2))}}
    v = {"l1": {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}, "l2": {"w": rng.standard_normal((4, 2))}}
    eps = 1e-6
    shifted = lambda s: {k: {n: params[k][n] + s * v[k][n] for n in params[k]} for k in params}
    g_plus, g_minus = grad(f)(shifted(eps)), grad(f)(shifted(-eps))
    hv = hessian_vector_product(f, params, v)
    for a, gp, gm in zip(tree_leaves(hv), tree_leaves(g_plus), tree_leaves(g_minus)):
        np.testing.assert_allclose(a, (gp - gm) / (2 * eps), rtol=1e-5, atol=1e-8)


def test_hvp_rejects_a_mismatched_vector():
    with pytest.raises(ValueError, match=r"hessian_vector_product: params and v differ at 'xy'"):
        hessian_vector_product(rosenbrock, {"xy": np.zeros(2)}, {"xy": np.zeros(3)})


# ---- Newton-CG ------------------------------------------------------------------------------------
def test_newton_cg_solves_a_quadratic_in_one_step(rng):
    a = rng.standard_normal((4, 4))
    a = a @ a.T + 4 * np.eye(4)                                    # positive definite
    b = rng.standard_normal(4)
    f = lambda p: 0.5 * (p["x"] * (p["x"] @ a)).sum() - (p["x"] * b).sum()
    new = newton_cg_step(f, {"x": np.zeros(4)}, cg_tol=1e-12)
    np.testing.assert_allclose(new["x"], np.linalg.solve(a, b), rtol=1e-8)


@pytest.mark.parametrize("cg_tol, steps", [(1e-8, 30), (None, 100)])
def test_newton_cg_minimises_rosenbrock(cg_tol, steps):
    params = {"xy": np.array([-1.2, 1.0])}
    for _ in range(steps):
        params = newton_cg_step(rosenbrock, params, cg_tol=cg_tol)
    np.testing.assert_allclose(params["xy"], [1.0, 1.0], atol=1e-6)


def test_newton_cg_minimises_logistic_regression():
    x, y = _logistic_problem()
    loss = _logistic_loss(x, y)
    params = {"w": np.zeros((5, 1)), "b": np.zeros(1)}
    for _ in range(8):
        params = newton_cg_step(loss, params, cg_tol=1e-10)
    g = grad(loss)(params)
    assert max(np.abs(a).max() for a in tree_leaves(g)) < 1e-9


def test_newton_cg_takes_a_descent_step_at_a_saddle():
    f = lambda p: (p["x"][0] ** 2 - p["x"][1] ** 2 + 0.1 * p["x"][1] ** 4)   # saddle at the origin
    start = {"x": np.array([0.5, 0.01])}
    new = newton_cg_step(f, start)
    assert float(f(new)) < float(f(start))


def test_newton_cg_keeps_float32():
    f = lambda p: ((p["w"] - 2.0) ** 2).sum()
    out = newton_cg_step(f, {"w": np.zeros(3, np.float32)})
    assert out["w"].dtype == np.float32
    np.testing.assert_allclose(out["w"], 2.0, rtol=1e-6)


# ---- L-BFGS ----------------------------------------------------------------------------------------
def test_two_loop_equals_the_explicit_bfgs_inverse_hessian(rng):
    n, m = 5, 3
    s, y = rng.standard_normal((m, n)), rng.standard_normal((m, n))
    y += 3 * s                                                     # keep s.y > 0
    rho = 1 / np.einsum("ij,ij->i", s, y)
    gamma = float(s[-1] @ y[-1] / (y[-1] @ y[-1]))
    h = gamma * np.eye(n)
    for i in range(m):                                             # H <- (I - rho s y^T) H (I - rho y s^T) + rho s s^T
        v = np.eye(n) - rho[i] * np.outer(y[i], s[i])
        h = v.T @ h @ v + rho[i] * np.outer(s[i], s[i])
    g = rng.standard_normal(n)
    np.testing.assert_allclose(second_order._two_loop(g, s, y, rho, gamma), h @ g, rtol=1e-10)
    empty = np.zeros((2, n))                                       # empty rows change nothing
    padded = second_order._two_loop(g, np.vstack([empty, s]), np.vstack([empty, y]), np.r_[0, 0, rho], gamma)
    np.testing.assert_allclose(padded, h @ g, rtol=1e-10)


def _minimise(opt, loss, params, steps):
    grad_fn = grad(loss)
    state = opt.init(params)
    for _ in range(steps):
        updates, state = opt.update(grad_fn(params), state, params)
        params = apply_updates(params, updates)
    return params, state


def test_lbfgs_with_a_fixed_step_follows_torch():
    torch = pytest.importorskip("torch")
    r = np.random.default_rng(42)
    x, t = r.standard_normal((16, 4)), r.standard_normal((16, 3))
    params = {"w": 0.5 * r.standard_normal((4, 3)), "b": 0.1 * r.standard_normal(3)}
    loss = lambda p: (((x @ p["w"] + p["b"]).tanh() - t) ** 2).mean()
    w = torch.tensor(params["w"], requires_grad=True)                # torch starts from the same params
    b = torch.tensor(params["b"], requires_grad=True)
    opt, grad_fn, ours = lbfgs(lr=0.5, memory_size=4), grad(loss), []
    state = opt.init(params)
    for _ in range(40):
        updates, state = opt.update(grad_fn(params), state, params)
        params = apply_updates(params, updates)
        ours.append(params)
    topt = torch.optim.LBFGS([w, b], lr=0.5, max_iter=1, history_size=4, tolerance_grad=-1.0, tolerance_change=0.0)
    xt, tt = torch.tensor(x), torch.tensor(t)

    def closure():
        topt.zero_grad()
        value = ((torch.tanh(xt @ w + b) - tt) ** 2).mean()
        value.backward()
        return value
    for step in range(40):
        topt.step(closure)
        np.testing.assert_allclose(ours[step]["w"], w.detach().numpy(), rtol=1e-5, atol=1e-10, err_msg=f"step {step}")
        np.testing.assert_allclose(ours[step]["b"], b.detach().numpy(), rtol=1e-5, atol=1e-10, err_msg=f"step {step}")


def test_lbfgs_with_backtracking_minimises_rosenbrock():
    params, state = _minimise(lbfgs(memory_size=5, loss_fn=rosenbrock), rosenbrock, {"xy": np.array([-1.2, 1.0])}, 60)
    np.testing.assert_allclose(params["xy"], [1.0, 1.0], atol=1e-6)
    assert isinstance(state, LbfgsState) and state.s.shape == (5, 2) and int(state.count) == 60


def test_lbfgs_with_a_fixed_step_minimises_logistic_regression():
    x, y = _logistic_problem()
    loss = _logistic_loss(x, y)
    params, _ = _minimise(lbfgs(lr=1.0, memory_size=10), loss, {"w": np.zeros((5, 1)), "b": np.zeros(1)}, 40)
    g = grad(loss)(params)
    assert max(np.abs(a).max() for a in tree_leaves(g)) < 1e-7


def test_lbfgs_accepts_a_schedule_and_keeps_float32():
    f = lambda p: (((p["w"] - 1.0) * np.arange(1.0, 4.0, dtype=np.float32)) ** 2).sum()
    opt = lbfgs(lr=lambda count: 1.0 if count else 0.5)
    params, state = _minimise(opt, f, {"w": np.zeros(3, np.float32)}, 15)
    assert params["w"].dtype == np.float32 and state.s.dtype == np.float32
    np.testing.assert_allclose(params["w"], 1.0, rtol=1e-4)


def test_lbfgs_rejects_mismatched_grads_and_bad_arguments():
    opt = lbfgs()
    params = {"w": np.zeros((2, 3)), "b": np.zeros(3)}
    with pytest.raises(ValueError, match=r"lbfgs: params and grads differ at 'w': shape \(2, 3\) vs \(3, 2\)"):
        opt.update({"w": np.zeros((3, 2)), "b": np.zeros(3)}, opt.init(params), params)
    with pytest.raises(ValueError, match="needs params"):
        opt.update(params, opt.init(params))
    with pytest.raises(ValueError, match="memory_size"):
        lbfgs(memory_size=0)
    with pytest.raises(TypeError, match="loss_fn"):
        lbfgs(loss_fn=3)


def test_lbfgs_does_not_change_its_inputs():
    opt = lbfgs(loss_fn=rosenbrock)
    params = {"xy": np.array([-1.2, 1.0])}
    _, state = _minimise(opt, rosenbrock, params, 3)
    g = grad(rosenbrock)(params)
    before = [np.copy(a) for a in tree_leaves((params, g, state))]
    opt.update(g, state, params)
    assert all(np.array_equal(a, b) for a, b in zip(before, tree_leaves((params, g, state))))
