"""axon.optimizers: trajectories against torch.optim and against the published update equations,
convergence on Rosenbrock and logistic regression, dtypes, purity, checkpoints, the fused Adam path."""
import io

import numpy as np

import pytest

import axon.optimizers as optimizers
from axon import schedules
from axon.autograd import grad, primitive
from axon.optimizers import (adabelief, adadelta, adafactor, adagrad, adam, adamw, fromage, lamb, lars, lion, nadam,
                             noisy_sgd, radam, rmsprop, sgd, yogi)
from axon.random import rng as axon_rng
from axon.tree import tree_flatten_with_path, tree_leaves, tree_map, tree_map_with_path
from axon.updates import apply_updates


# ---- a small problem: params {"w": (4, 3), "b": (3,)}, loss mean((tanh(x w + b) - t)^2) ------------------
def _problem(dtype=np.float64):
    r = np.random.default_rng(42)
    x = r.standard_normal((16, 4)).astype(dtype)
    t = r.standard_normal((16, 3)).astype(dtype)
    params = {"w": (0.5 * r.standard_normal((4, 3))).astype(dtype), "b": (0.1 * r.standard_normal(3)).astype(dtype)}
    return x, t, params


def _loss(p, x, t):
    return (((x @ p["w"] + p["b"]).tanh() - t) ** 2).mean()


def _trajectory(opt, steps=100, dtype=np.float64):
    """Params after every step of ``opt`` on the small problem, gradients from axon's engine."""
    x, t, params = _problem(dtype)
    grad_fn = grad(_loss)
    state = opt.init(params)
    out = []
    for _ in range(steps):
        updates, state = opt.update(grad_fn(params, x, t), state, params)
        params = apply_updates(params, updates)
        out.append(params)
    return out


def _assert_same_trajectory(ours, theirs, rtol=1e-5, atol=1e-10):
    assert len(ours) == len(theirs)
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for key in ("w", "b"):
            np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=atol, err_msg=f"step {step}, param {key}")


# ---- against torch.optim ---------------------------------------------------------------------------------
TORCH_CASES = {
    "sgd": (lambda: sgd(0.1), "SGD", dict(lr=0.1)),
    "sgd_momentum": (lambda: sgd(0.1, momentum=0.9), "SGD", dict(lr=0.1, momentum=0.9)),
    "sgd_nesterov": (lambda: sgd(0.1, momentum=0.9, nesterov=True), "SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    "adam": (lambda: adam(0.01, fused=False), "Adam", dict(lr=0.01)),
    "adam_betas": (lambda: adam(0.02, b1=0.8, b2=0.99, eps=1e-6, fused=False), "Adam",
                   dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6)),
    "adamw": (lambda: adamw(0.01, weight_decay=0.1, fused=False), "AdamW", dict(lr=0.01, weight_decay=0.1)),
    "adagrad": (lambda: adagrad(0.1), "Adagrad", dict(lr=0.1)),
    "adagrad_init": (lambda: adagrad(0.1, initial_accumulator_value=0.1), "Adagrad",
                     dict(lr=0.1, initial_accumulator_value=0.1)),
    "rmsprop": (lambda: rmsprop(0.01, decay=0.99), "RMSprop", dict(lr=0.01, alpha=0.99)),
    "rmsprop_centered": (lambda: rmsprop(0.01, decay=0.99, centered=True), "RMSprop",
                         dict(lr=0.01, alpha=0.99, centered=True)),
    "rmsprop_momentum": (lambda: rmsprop(0.01, decay=0.9, momentum=0.8), "RMSprop",
                         dict(lr=0.01, alpha=0.9, momentum=0.8)),
    "rmsprop_centered_momentum": (lambda: rmsprop(0.005, decay=0.95, centered=True, momentum=0.9), "RMSprop",
                                  dict(lr=0.005, alpha=0.95, centered=True, momentum=0.9)),
    "radam": (lambda: radam(0.01), "RAdam", dict(lr=0.01)),
    "nadam": (lambda: nadam(0.01), "NAdam", dict(lr=0.01)),
    "adadelta": (lambda: adadelta(1.0), "Adadelta", dict(lr=1.0)),
    "adadelta_rho": (lambda: adadelta(0.5, rho=0.95, eps=1e-5), "Adadelta", dict(lr=0.5, rho=0.95, eps=1e-5)),
}


def _torch_trajectory(torch, name, kwargs, steps=100, lr_lambda=None):
    x, t, params = _problem()
    p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    xt, tt = torch.tensor(x), torch.tensor(t)
    opt = getattr(torch.optim, name)([p["w"], p["b"]], **kwargs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda) if lr_lambda else None
    out = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ((torch.tanh(xt @ p["w"] + p["b"]) - tt) ** 2).mean()
        loss.backward()
        opt.step()
        if sched:
            sched.step()
        out.append({k: v.detach().numpy().copy() for k, v in p.items()})
    return out


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_trajectory_matches_torch(case):
    torch = pytest.importorskip("torch")
    make, name, kwargs = TORCH_CASES[case]
    _assert_same_trajectory(_trajectory(make()), _torch_trajectory(torch, name, kwargs))


def test_schedule_matches_torch_lambda_lr():
    """An lr schedule equals torch's LambdaLR: step k of both uses lr(k)."""
    torch = pytest.importorskip("torch")
    lr = schedules.exponential_decay(0.05, 0.5, transition_steps=20)
    ours = _trajectory(sgd(lr, momentum=0.9))
    theirs = _torch_trajectory(torch, "SGD", dict(lr=0.05, momentum=0.9), lr_lambda=lambda k: lr(k) / 0.05)
    _assert_same_trajectory(ours, theirs)


# ---- against the published update equations, written here from the papers --------------------------
def _norm(a):
    return np.sqrt(np.sum(a * a))


def _reference_run(step_fn, init_fn, steps=100):
    """Run a per-leaf reference optimizer ``step_fn(t, key, x, g, state) -> x`` on the small problem."""
    x_data, t_data, params = _problem()
    grad_fn = grad(_loss)
    params = {k: v.copy() for k, v in params.items()}
    states = {k: init_fn(v) for k, v in params.items()}
    out = []
    for t in range(1, steps + 1):
        g = grad_fn(params, x_data, t_data)
        params = {k: step_fn(t, k, params[k], g[k], states[k]) for k in params}
        out.append(params)
    return out


def test_adabelief_follows_the_paper():
    """Zhuang et al. 2020, Algorithm 2: s_t = b2 s + (1 - b2)(g - m_t)^2 + eps; step m_hat / (sqrt(s_hat) + eps)."""
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8

    def step(t, key, x, g, st):
        st["m"] = b1 * st["m"] + (1 - b1) * g
        st["s"] = b2 * st["s"] + (1 - b2) * (g - st["m"]) ** 2 + eps
        m_hat, s_hat = st["m"] / (1 - b1 ** t), st["s"] / (1 - b2 ** t)
        return x - lr * m_hat / (np.sqrt(s_hat) + eps)
    ref = _reference_run(step, lambda p: {"m": np.zeros_like(p), "s": np.zeros_like(p)})
    _assert_same_trajectory(_trajectory(adabelief(lr, eps=eps, eps_root=eps)), ref, rtol=1e-9)


def test_yogi_follows_the_paper():
    """Zaheer et al. 2018: v_t = v - (1 - b2) sign(v - g^2) g^2 (v_0 = 1e-6), with Adam's bias correction."""
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-3

    def step(t, key, x, g, st):
        st["m"] = b1 * st["m"] + (1 - b1) * g
        st["v"] = st["v"] - (1 - b2) * np.sign(st["v"] - g ** 2) * g ** 2
        m_hat, v_hat = st["m"] / (1 - b1 ** t), st["v"] / (1 - b2 ** t)
        return x - lr * m_hat / (np.sqrt(v_hat) + eps)
    ref = _reference_run(step, lambda p: {"m": np.zeros_like(p), "v": np.full_like(p, 1e-6)})
    _assert_same_trajectory(_trajectory(yogi(lr)), ref, rtol=1e-9)


def test_lion_follows_the_paper():
    """Chen et al. 2023, Algorithm 2: c = b1 m + (1-b1) g; x -= lr (sign(c) + wd x); m = b2 m + (1-b2) g."""
    lr, b1, b2, wd = 0.003, 0.9, 0.99, 0.1

    def step(t, key, x, g, st):
        c = b1 * st["m"] + (1 - b1) * g
        st["m"] = b2 * st["m"] + (1 - b2) * g
        return x - lr * (np.sign(c) + wd * x)
    ref = _reference_run(step, lambda p: {"m": np.zeros_like(p)})
    _assert_same_trajectory(_trajectory(lion(lr, b1, b2, weight_decay=wd)), ref, rtol=1e-9)


def test_lamb_follows_the_paper():
    """You et al. 2019, Algorithm 2: r = m_hat / (sqrt(v_hat) + eps) + wd x; x -= lr ||x|| / ||r|| r per layer."""
    lr, b1, b2, eps, wd = 0.01, 0.9, 0.999, 1e-6, 0.01

    def step(t, key, x, g, st):
        st["m"] = b1 * st["m"] + (1 - b1) * g
        st["v"] = b2 * st["v"] + (1 - b2) * g * g
        r = (st["m"] / (1 - b1 ** t)) / (np.sqrt(st["v"] / (1 - b2 ** t)) + eps) + wd * x
        return x - lr * _norm(x) / _norm(r) * r
    ref = _reference_run(step, lambda p: {"m": np.zeros_like(p), "v": np.zeros_like(p)})
    _assert_same_trajectory(_trajectory(lamb(lr, b1, b2, eps, weight_decay=wd)), ref, rtol=1e-9)


def test_lars_follows_the_paper():
    """You et al. 2017, Algorithm 1: local_lr = eta ||x|| / ||g + wd x||; v = m v + lr local_lr (g + wd x); x -= v."""
    lr, eta, wd, mom = 0.5, 0.01, 0.001, 0.9

    def step(t, key, x, g, st):
        gw = g + wd * x
        st["v"] = mom * st["v"] + lr * (eta * _norm(x) / _norm(gw)) * gw
        return x - st["v"]
    ref = _reference_run(step, lambda p: {"v": np.zeros_like(p)})
    _assert_same_trajectory(_trajectory(lars(lr, weight_decay=wd, trust_coefficient=eta, momentum=mom)), ref,
                            rtol=1e-9)


def test_fromage_follows_the_paper():
    """Bernstein et al. 2020, Algorithm 1: x <- (x - lr ||x|| / ||g|| g) / sqrt(1 + lr^2), per layer."""
    lr = 0.01

    def step(t, key, x, g, st):
        return (x - lr * _norm(x) / _norm(g) * g) / np.sqrt(1 + lr ** 2)
    ref = _reference_run(step, lambda p: {})
    _assert_same_trajectory(_trajectory(fromage(lr)), ref, rtol=1e-9)


def test_noisy_sgd_follows_the_paper():
    """Neelakantan et al. 2015: x -= lr (g + N(0, eta / (1 + t)^gamma)), the noise from rng(seed, "add_noise", t)."""
    lr, eta, gamma, seed = 0.05, 0.01, 0.55, 3

    def step(t, key, x, g, st):                                    # leaves in tree order: "w" then "b"
        if key == "w":
            st["gen"] = axon_rng(seed, "add_noise", t - 1)
        noise = st["gen"].standard_normal(x.shape) * np.sqrt(eta / t ** gamma)
        return x - lr * (g + noise)
    shared = {}
    ref = _reference_run(step, lambda p: shared)
    _assert_same_trajectory(_trajectory(noisy_sgd(lr, eta, gamma, seed=seed)), ref, rtol=1e-9)


def test_noisy_sgd_noise_has_the_annealed_variance():
    opt = noisy_sgd(1.0, eta=0.5, gamma=0.55, seed=0)
    params = {"w": np.zeros(20000)}
    state = opt.init(params)
    for t in range(3):
        updates, state = opt.update({"w": np.zeros(20000)}, state, params)
        assert abs(updates["w"].var() / (0.5 / (1 + t) ** 0.55) - 1) < 0.05


def test_adafactor_follows_the_paper():
    """Shazeer and Stern 2018, Algorithms 4 and 5 with update clipping d and relative step size."""
    d, eps1, eps2 = 1.0, 1e-30, 1e-3

    def rms(a):
        return np.sqrt(np.mean(a * a))

    def step(t, key, x, g, st):
        rho = min(1e-2, 1 / np.sqrt(t))
        alpha = max(eps2, rms(x)) * rho
        beta = 1 - t ** -0.8
        g2 = g * g + eps1
        if x.ndim == 2:                                            # factored: sums over rows and columns
            st["R"] = beta * st["R"] + (1 - beta) * g2.sum(axis=1)
            st["C"] = beta * st["C"] + (1 - beta) * g2.sum(axis=0)
            v = np.outer(st["R"], st["C"]) / st["R"].sum()
        else:
            st["V"] = beta * st["V"] + (1 - beta) * g2
            v = st["V"]
        u = g / np.sqrt(v)
        u = u / max(1.0, rms(u) / d)
        return x - alpha * u

    def init(p):
        return {"R": np.zeros(p.shape[0]), "C": np.zeros(p.shape[1])} if p.ndim == 2 else {"V": np.zeros_like(p)}
    ref = _reference_run(step, init)
    _assert_same_trajectory(_trajectory(adafactor(min_dim_size_to_factor=2)), ref, rtol=1e-9)


def test_adafactor_keeps_factored_state_small():
    state = adafactor(min_dim_size_to_factor=2).init({"w": np.zeros((50, 40)), "b": np.zeros(40)})
    sizes = sum(np.size(x) for x in tree_leaves(state))
    assert sizes < 50 * 40                                          # rows + cols, not the full matrix


# ---- convergence: Rosenbrock and logistic regression ----------------------------------------------------
def _rosenbrock(p):
    x, y = p["xy"]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def _rosenbrock_grad(p):
    x, y = p["xy"]
    return {"xy": np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])}


def test_rosenbrock_gradient_is_right():
    p = {"xy": np.array([-1.2, 1.0])}
    f = lambda q: (1 - q["xy"][0]) ** 2 + 100 * (q["xy"][1] - q["xy"][0] ** 2) ** 2
    np.testing.assert_allclose(_rosenbrock_grad(p)["xy"], grad(f)(p)["xy"])


ROSENBROCK = {                                                     # optimizer, steps: f(-1.2, 1) = 24.2
    "adabelief": (lambda: adabelief(0.05), 1500),
    "adadelta": (lambda: adadelta(0.1, rho=0.9), 4000),
    "adafactor": (lambda: adafactor(schedules.exponential_decay(0.1, 0.5, 400)), 2500),
    "adagrad": (lambda: adagrad(1.0), 2500),
    "adam": (lambda: adam(0.05), 1500),
    "adamw": (lambda: adamw(0.05, weight_decay=1e-4), 1500),
    "fromage": (lambda: fromage(schedules.cosine_decay(0.05, 2500, alpha=0.01)), 2500),
    "lamb": (lambda: lamb(schedules.exponential_decay(0.05, 0.5, 400)), 2500),
    "lars": (lambda: lars(0.1, trust_coefficient=0.01), 2500),
    "lion": (lambda: lion(schedules.cosine_decay(3e-3, 2000, alpha=0.02)), 2000),
    "nadam": (lambda: nadam(0.02), 2000),
    "noisy_sgd": (lambda: noisy_sgd(1.9e-3, eta=1e-4), 3000),
    "radam": (lambda: radam(schedules.piecewise_constant([6], [1e-3, 0.05])), 1500),
    "rmsprop": (lambda: rmsprop(1e-3, momentum=0.9), 1500),
    "rmsprop_centered": (lambda: rmsprop(1e-3, centered=True, momentum=0.9), 1500),
    "sgd": (lambda: sgd(1e-3, momentum=0.9), 1500),
    "sgd_nesterov": (lambda: sgd(1e-3, momentum=0.9, nesterov=True), 1500),
    "yogi": (lambda: yogi(0.05), 1500),
}


@pytest.mark.parametrize("case", sorted(ROSENBROCK))
def test_minimises_rosenbrock(case):
    make, steps = ROSENBROCK[case]
    opt = make()
    params = {"xy": np.array([-1.2, 1.0])}
    state = opt.init(params)
    for _ in range(steps):
        updates, state = opt.update(_rosenbrock_grad(params), state, params)
        params = apply_updates(params, updates)
    assert _rosenbrock(params) < 1e-2, (case, params["xy"])
    assert np.abs(params["xy"] - 1).max() < 0.15, (case, params["xy"])


def _logistic_problem():
    r = np.random.default_rng(0)
    x = r.standard_normal((64, 5))
    y = (r.random((64, 1)) < 1 / (1 + np.exp(-x @ r.standard_normal((5, 1))))).astype(float)   # not separable
    return x, y


def _logistic_loss(p, x, y):
    z = x @ p["w"] + p["b"]
    return float(np.mean(np.logaddexp(0, z) - y * z))


def _logistic_grad(p, x, y):
    r = (1 / (1 + np.exp(-(x @ p["w"] + p["b"]))) - y) / len(x)     # (N, 1)
    return {"w": x.T @ r, "b": r.sum(axis=0)}


def _logistic_optimum(x, y):
    """The minimum loss, by Newton's method in numpy."""
    a = np.hstack([x, np.ones((len(x), 1))])
    theta = np.zeros((a.shape[1], 1))
    for _ in range(30):
        s = 1 / (1 + np.exp(-a @ theta))
        theta -= np.linalg.solve(a.T @ (a * (s * (1 - s))), a.T @ (s - y))
    return _logistic_loss({"w": theta[:-1], "b": theta[-1]}, x, y)


LOGISTIC = {
    "adabelief": lambda: adabelief(0.05), "adadelta": lambda: adadelta(3.0),
    "adafactor": lambda: adafactor(schedules.cosine_decay(0.1, 300, 0.01)), "adagrad": lambda: adagrad(0.5),
    "adam": lambda: adam(0.05), "adamw": lambda: adamw(0.05, weight_decay=1e-4),
    "fromage": lambda: fromage(schedules.cosine_decay(0.1, 300, 0.01)),
    "lamb": lambda: lamb(schedules.cosine_decay(0.1, 300, 0.01)),
    "lars": lambda: lars(schedules.cosine_decay(2.0, 300, 0.01), trust_coefficient=0.1),
    "lion": lambda: lion(schedules.cosine_decay(0.05, 300, 0.01)), "nadam": lambda: nadam(0.05),
    "noisy_sgd": lambda: noisy_sgd(1.0, eta=1e-3), "radam": lambda: radam(0.1),
    "rmsprop": lambda: rmsprop(0.01, momentum=0.9),
    "rmsprop_centered": lambda: rmsprop(0.01, centered=True, momentum=0.9),
    "sgd": lambda: sgd(0.5, momentum=0.9), "sgd_nesterov": lambda: sgd(0.5, momentum=0.9, nesterov=True),
    "yogi": lambda: yogi(0.05),
}


@pytest.mark.parametrize("case", sorted(LOGISTIC))
def test_minimises_logistic_regression(case):
    x, y = _logistic_problem()
    best = _logistic_optimum(x, y)
    opt = LOGISTIC[case]()
    params = {"w": np.full((5, 1), 0.1), "b": np.full(1, 0.1)}
    start = _logistic_loss(params, x, y)
    state = opt.init(params)
    for _ in range(300):
        updates, state = opt.update(_logistic_grad(params, x, y), state, params)
        params = apply_updates(params, updates)
    assert _logistic_loss(params, x, y) - best < 1e-3 * (start - best), case


# ---- every optimizer: lr forms, dtypes, purity, checkpoints -------------------------------------------
ALL = {
    "adabelief": adabelief, "adadelta": adadelta, "adafactor": lambda lr: adafactor(lr, min_dim_size_to_factor=2),
    "adagrad": adagrad, "adam": adam, "adamw": adamw, "fromage": fromage, "lamb": lambda lr: lamb(lr, weight_decay=0.1),
    "lars": lambda lr: lars(lr, weight_decay=0.1), "lion": lambda lr: lion(lr, weight_decay=0.1), "nadam": nadam,
    "noisy_sgd": noisy_sgd, "radam": radam, "rmsprop": lambda lr: rmsprop(lr, centered=True, momentum=0.9),
    "sgd": lambda lr: sgd(lr, momentum=0.9, nesterov=True), "yogi": yogi,
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_lr_accepts_a_number_or_a_schedule(name):
    with_number = _trajectory(ALL[name](0.01), steps=10)
    with_schedule = _trajectory(ALL[name](schedules.constant(0.01)), steps=10)
    _assert_same_trajectory(with_number, with_schedule, rtol=1e-12, atol=0)
    varying = _trajectory(ALL[name](schedules.linear_decay(0.01, 0.0, transition_steps=5)), steps=10)
    assert not np.allclose(varying[-1]["w"], with_number[-1]["w"])     # the schedule is really used


@pytest.mark.parametrize("name", sorted(ALL))
def test_float32_stays_float32(name):
    opt = ALL[name](0.01)
    x, t, params = _problem(np.float32)
    state = opt.init(params)
    grad_fn = grad(_loss)
    for _ in range(3):
        updates, state = opt.update(grad_fn(params, x, t), state, params)
        assert all(u.dtype == np.float32 for u in tree_leaves(updates)), name
        params = apply_updates(params, updates)
    assert all(p.dtype == np.float32 for p in tree_leaves(params))
    floats = [s for path, s in tree_flatten_with_path(state) if s.dtype.kind == "f" and not path.endswith("mu_product")]
    assert all(s.dtype == np.float32 for s in floats), [(p, s.dtype) for p, s in tree_flatten_with_path(state)]


@pytest.mark.parametrize("name", sorted(ALL))
def test_update_changes_nothing_in_place(name):
    opt = ALL[name](0.01)
    x, t, params = _problem()
    grads = grad(_loss)(params, x, t)
    state = opt.init(params)
    _, state = opt.update(grads, state, params)                    # a state with non-trivial moments
    before = [np.copy(a) for a in tree_leaves((params, grads, state))]
    opt.update(grads, state, params)
    after = tree_leaves((params, grads, state))
    assert all(np.array_equal(a, b) for a, b in zip(before, after)), name


def _savez_roundtrip(state, template):
    """Write ``state`` with np.savez (one entry per path) and read it back into ``template``'s structure."""
    buf = io.BytesIO()
    np.savez(buf, **{path: np.asarray(leaf) for path, leaf in tree_flatten_with_path(state)})
    buf.seek(0)
    data = np.load(buf)
    return tree_map_with_path(lambda path, leaf: data[path], template)


@pytest.mark.parametrize("name", sorted(ALL))
def test_resuming_from_a_saved_state_continues_identically(name):
    opt = ALL[name](0.01)
    x, t, params = _problem()
    grad_fn = grad(_loss)
    state = opt.init(params)
    for step in range(10):
        if step == 5:
            state = _savez_roundtrip(state, opt.init(params))
        updates, state = opt.update(grad_fn(params, x, t), state, params)
        params = apply_updates(params, updates)
    _assert_same_trajectory([params], _trajectory(ALL[name](0.01), steps=10)[-1:], rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(ALL))
def test_mismatched_grads_raise_naming_the_path(name):
    opt = ALL[name](0.01)
    _, _, params = _problem()
    state = opt.init(params)
    bad = {"w": np.zeros((3, 4)), "b": np.zeros(3)}
    with pytest.raises(ValueError, match="'w'.*shape"):
        opt.update(bad, state, params)
    with pytest.raises(ValueError, match="missing"):
        opt.update({"w": np.zeros((4, 3))}, state, params)


def test_bad_hyperparameters_raise():
    with pytest.raises(TypeError, match="lr"):
        adam("0.1")
    with pytest.raises(ValueError, match="b1"):
        adam(0.1, b1=1.5)
    with pytest.raises(ValueError, match="nesterov"):
        sgd(0.1, nesterov=True)


# ---- the fused Adam path ----------------------------------------------------------------------------
def _numpy_adam_step(p, g, m, v, *, lr, b1, b2, eps, weight_decay, step):
    m_new = b1 * m + (1 - b1) * g
    v_new = b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m_new / (1 - b1 ** step), v_new / (1 - b2 ** step)
    return -lr * (m_hat / (np.sqrt(v_hat) + eps) + weight_decay * p), m_new, v_new


class _numpy_adam_kernel:
    """The documented contract of axon.kernels.adam (the primitive ``ADAM_STEP_AT``: arrays in, the step number
    and lr as 0-d arrays, ``(u, m_new, v_new)`` out), in numpy."""
    ADAM_STEP_AT = primitive("test.numpy_adam_step", lambda p, g, m, v, t, lr, **kw: _numpy_adam_step(
        p, g, m, v, lr=float(lr), step=int(t), **kw))                         # vjp=None: never differentiated


@pytest.mark.parametrize("make", [lambda f: adam(0.01, fused=f), lambda f: adamw(0.01, weight_decay=0.1, fused=f),
                                  lambda f: adamw(schedules.cosine_decay(0.02, 50), weight_decay=0.1, fused=f)])
def test_fused_path_follows_the_reference(monkeypatch, make):
    monkeypatch.setattr(optimizers, "_find_adam_kernel", lambda: _numpy_adam_kernel)
    fused, reference = make(None), make(False)
    assert fused.update is not reference.update
    _assert_same_trajectory(_trajectory(fused, steps=50), _trajectory(reference, steps=50), rtol=1e-12)


def test_fused_path_is_pure_and_keeps_the_state_layout(monkeypatch):
    monkeypatch.setattr(optimizers, "_find_adam_kernel", lambda: _numpy_adam_kernel)
    opt, reference = adamw(0.01, fused=True), adamw(0.01, fused=False)
    x, t, params = _problem(np.float32)
    grads = grad(_loss)(params, x, t)
    state = opt.init(params)
    _, state = opt.update(grads, state, params)
    before = [np.copy(a) for a in tree_leaves((params, grads, state))]
    updates, new_state = opt.update(grads, state, params)
    assert all(np.array_equal(a, b) for a, b in zip(before, tree_leaves((params, grads, state))))
    assert all(u.dtype == np.float32 for u in tree_leaves(updates))
    ref_updates, ref_state = reference.update(grads, state, params)       # the reference resumes from it
    tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), (updates, new_state), (ref_updates, ref_state))


def test_fused_true_with_options_the_kernel_lacks_raises():
    with pytest.raises(ValueError, match="fused=True .* eps_root"):
        adam(0.1, eps_root=1e-8, fused=True)
    with pytest.raises(ValueError, match="fused=True .* mask"):
        adamw(0.1, mask={"w": True}, fused=True)
    auto, reference = adam(0.1, eps_root=1e-8), adam(0.1, eps_root=1e-8, fused=False)   # auto: the chain
    _assert_same_trajectory(_trajectory(auto, steps=5), _trajectory(reference, steps=5), rtol=0)


def test_real_fused_kernel_follows_the_reference():
    for dtype, rtol in ((np.float64, 1e-10), (np.float32, 1e-4)):
        ours = _trajectory(adamw(0.01, weight_decay=0.1, fused=True), steps=30, dtype=dtype)
        ref = _trajectory(adamw(0.01, weight_decay=0.1, fused=False), steps=30, dtype=dtype)
        assert ours[-1]["w"].dtype == dtype
        _assert_same_trajectory(ours, ref, rtol=rtol, atol=1e-6 if dtype == np.float32 else 1e-12)
