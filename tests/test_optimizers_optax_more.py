"""Optax's rprop, adan, optimistic_adam, polyak_sgd and Adam's nesterov option: torch.optim.Rprop and the
update equations by hand."""
import numpy as np
import pytest

from axon import optimizers as O
from axon import updates as U

r = np.random.default_rng(21)


def run(opt, p, grads, **kw):
    state, out = opt.init(p), []
    for g in grads:
        u, state = opt.update(g, state, p, **kw)
        p = U.apply_updates(p, u)
        out.append(p)
    return out


def test_rprop_matches_torch():
    torch = pytest.importorskip("torch")
    w0 = r.standard_normal(6)
    grads = [r.standard_normal(6) for _ in range(8)]                   # random signs: grows, shrinks, rests
    tw = torch.tensor(w0, requires_grad=True)
    topt = torch.optim.Rprop([tw], lr=0.05, etas=(0.4, 1.3), step_sizes=(1e-3, 0.2))
    got = run(O.rprop(0.05, eta_minus=0.4, eta_plus=1.3, min_step_size=1e-3, max_step_size=0.2), {"w": w0},
              [{"w": g} for g in grads])
    for g, p in zip(grads, got):
        tw.grad = torch.tensor(g)
        topt.step()
        np.testing.assert_allclose(p["w"], tw.detach().numpy(), rtol=1e-12)


def test_adan_by_hand():
    b1, b2, b3, eps, lr, wd = 0.98, 0.92, 0.99, 1e-8, 0.01, 0.1
    w = r.standard_normal(4)
    grads = [r.standard_normal(4) for _ in range(4)]
    got = run(O.adan(lr, weight_decay=wd), {"w": w}, [{"w": g} for g in grads])
    m = v = n = np.zeros(4)
    prev, p = None, w.copy()
    for t, g in enumerate(grads, start=1):
        d = np.zeros(4) if prev is None else g - prev
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * d
        n = b3 * n + (1 - b3) * (g + (1 - b2) * d) ** 2
        direction = (m / (1 - b1 ** t) + (1 - b2) * v / (1 - b2 ** t)) / (np.sqrt(n / (1 - b3 ** t)) + eps)
        p = p - lr * (direction + wd * p)
        prev = g
        np.testing.assert_allclose(got[t - 1]["w"], p, rtol=1e-10)


def test_optimistic_adam_and_nesterov_adam_by_hand():
    b1, b2, eps, lr, optimism = 0.9, 0.999, 1e-8, 0.02, 0.05
    w = r.standard_normal(3)
    grads = [r.standard_normal(3) for _ in range(4)]
    got = run(O.optimistic_adam(lr, optimism), {"w": w}, [{"w": g} for g in grads])
    nesterov = U.scale_by_adam(nesterov=True)
    state = nesterov.init({"w": w})
    m = v = np.zeros(3)
    r_prev, p = None, w.copy()
    for t, g in enumerate(grads, start=1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        m_hat = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1 ** t)
        r_t = m_hat / (np.sqrt(v / (1 - b2 ** t)) + eps)
        u, state = nesterov.update({"w": g}, state)
        np.testing.assert_allclose(u["w"], r_t, rtol=1e-10)
        p = p - (lr * r_t + optimism * (r_t - (r_t if r_prev is None else r_prev)))
        r_prev = r_t
        np.testing.assert_allclose(got[t - 1]["w"], p, rtol=1e-10)


def test_polyak_sgd_by_hand_and_it_needs_the_loss():
    w = r.standard_normal(5)
    a = np.diag(r.uniform(0.5, 2.0, 5))
    opt, p = O.polyak_sgd(max_lr=0.8), {"w": w.copy()}
    state = opt.init(p)
    for _ in range(3):
        f, g = 0.5 * p["w"] @ a @ p["w"], a @ p["w"]                   # a quadratic with least value 0
        u, state = opt.update({"w": g}, state, p, value=f)
        np.testing.assert_allclose(u["w"], -min(0.8, f / (g @ g)) * g, rtol=1e-12)
        p = U.apply_updates(p, u)
    with pytest.raises(ValueError, match=r"scale_by_polyak: update needs the loss at the params"):
        opt.update({"w": w}, state, {"w": w})


def test_new_aliases_keep_float32_and_check_their_settings():
    p = {"w": r.standard_normal(3).astype(np.float32)}
    for opt in (O.rprop(0.1), O.adan(0.1), O.optimistic_adam(0.1)):
        u, _ = opt.update({"w": np.ones(3, np.float32)}, opt.init(p), p)
        assert u["w"].dtype == np.float32
    with pytest.raises(ValueError, match=r"scale_by_rprop: eta_minus must be in \[0, 1\]"):
        O.rprop(0.1, eta_minus=2.0)
    with pytest.raises(ValueError, match=r"scale_by_adan: b3 must be in \[0, 1\]"):
        O.adan(b3=1.5)


def sm3_by_hand(grads_seq, shapes, b1=0.9, eps=1e-8):
    """Optax's SM3 with b2 = 1, a loop over elements (no broadcasting tricks)."""
    mus = [[np.zeros(n) for n in shape] for shape in shapes]
    nus = [np.zeros(shape) for shape in shapes]
    out = []
    for grads in grads_seq:
        step = []
        for k, g in enumerate(grads):
            a = np.empty(g.shape)
            for idx in np.ndindex(g.shape):
                a[idx] = g[idx] ** 2 + min(mus[k][axis][i] for axis, i in enumerate(idx))
            scaled = np.where(a > 0, g / np.sqrt(a + eps), 0.0)
            nus[k] = b1 * nus[k] + (1 - b1) * scaled
            mus[k] = [a.max(axis=tuple(j for j in range(g.ndim) if j != axis)) if g.ndim > 1 else a
                      for axis in range(g.ndim)]
            step.append(nus[k])
        out.append(step)
    return out


def test_sm3_by_hand():
    shapes = [(3, 4), (5,), (2, 3, 2)]
    grads_seq = [[r.standard_normal(s) for s in shapes] for _ in range(4)]
    t = U.scale_by_sm3()
    params = {"a": np.zeros(shapes[0]), "b": np.zeros(shapes[1]), "c": np.zeros(shapes[2])}
    state = t.init(params)
    for grads, want in zip(grads_seq, sm3_by_hand(grads_seq, shapes)):
        u, state = t.update(dict(zip("abc", grads)), state)
        for k, w in zip("abc", want):
            np.testing.assert_allclose(u[k], w, rtol=1e-10)
    opt = O.sm3(0.1)
    p = {"w": np.ones((2, 2), np.float32)}
    u, _ = opt.update({"w": np.ones((2, 2), np.float32)}, opt.init(p), p)
    assert u["w"].dtype == np.float32
    with pytest.raises(ValueError, match="scale_by_sm3: every param needs at least one axis"):
        t.init({"w": np.float32(1.0)})
