"""Polaris' scale_by_state and the options rmsprop(initial_scale=), lamb(min_norm=), adabelief(weight_decay=)."""
import numpy as np
import pytest

from axon import optimizers as O
from axon import serialization
from axon import updates as U

r = np.random.default_rng(3)


def test_scale_by_state_multiplies_by_the_scale_in_the_state():
    g = {"w": r.standard_normal((3, 2)).astype(np.float32), "b": r.standard_normal(2).astype(np.float32)}
    t = U.scale_by_state(-0.3)
    state = t.init(g)
    u, state2 = t.update(g, state)
    for k in g:
        np.testing.assert_allclose(u[k], -0.3 * g[k], rtol=1e-6)
        assert u[k].dtype == np.float32                                  # the float64 scale does not promote
    assert float(state2.scale) == -0.3
    lowered = U.find_state(state, U.ScaleByStateState)._replace(scale=np.asarray(-0.03))
    np.testing.assert_allclose(t.update(g, lowered)[0]["w"], -0.03 * g["w"], rtol=1e-6)
    chained = U.scale_by_state(U.scale_by_adam(), -0.1)                   # combinator form: chain(adam, state scale)
    adam = U.chain(U.scale_by_adam(), U.scale(-0.1))
    np.testing.assert_allclose(chained.update(g, chained.init(g))[0]["w"], adam.update(g, adam.init(g))[0]["w"])
    with pytest.raises(TypeError, match="scale_by_state: step_size must be a number, got str"):
        U.scale_by_state("0.1")


def test_scale_by_state_survives_a_checkpoint(tmp_path):
    state = O.adam(0.1).init({"w": np.zeros(2)}), U.scale_by_state(0.5).init(None)
    serialization.save(tmp_path / "s.npz", state)
    back = serialization.load(tmp_path / "s.npz")
    assert type(back[1]) is U.ScaleByStateState and float(back[1].scale) == 0.5


@pytest.mark.parametrize("centered", [False, True])
def test_rmsprop_initial_scale_starts_the_average_of_squares_there(centered):
    lr, decay, eps, s0 = 0.01, 0.9, 1e-8, 0.7
    p = {"w": r.standard_normal(4)}
    opt = O.rmsprop(lr, decay=decay, eps=eps, centered=centered, initial_scale=s0)
    state = opt.init(p)
    v, m = np.full(4, s0), np.zeros(4)
    for _ in range(3):                                                  # the recurrence by hand
        g = r.standard_normal(4)
        u, state = opt.update({"w": g}, state, p)
        v = decay * v + (1 - decay) * g * g
        m = decay * m + (1 - decay) * g
        want = -lr * g / (np.sqrt(v - m * m if centered else v) + eps)
        np.testing.assert_allclose(u["w"], want, rtol=1e-12)
    with pytest.raises(ValueError, match=r"initial_scale must be in \[0"):
        O.rmsprop(0.1, initial_scale=-1.0)


def test_rmsprop_default_initial_scale_is_torchs():
    torch = pytest.importorskip("torch")
    w0, gs = r.standard_normal(3), r.standard_normal((3, 3))
    tw = torch.tensor(w0, requires_grad=True)
    topt = torch.optim.RMSprop([tw], lr=0.01, alpha=0.9, eps=1e-8)
    opt, p = O.rmsprop(0.01, decay=0.9, eps=1e-8, initial_scale=0.0), {"w": w0.copy()}
    state = opt.init(p)
    for g in gs:
        tw.grad = torch.tensor(g)
        topt.step()
        u, state = opt.update({"w": g}, state, p)
        p = U.apply_updates(p, u)
    np.testing.assert_allclose(p["w"], tw.detach().numpy(), rtol=1e-10)


def test_lamb_min_norm_floors_both_norms():
    g = {"w": np.array([3e-3, -4e-3])}
    zero = {"w": np.zeros(2)}
    adam_step = U.scale_by_adam(eps=1e-6).update(g, U.scale_by_adam().init(zero))[0]["w"]   # step 1: g / |g|
    plain = O.lamb(0.1).update(g, O.lamb(0.1).init(zero), zero)[0]["w"]
    np.testing.assert_allclose(plain, -0.1 * adam_step)                # ||p|| = 0: the ratio is skipped
    floored = O.lamb(0.1, min_norm=0.5).update(g, O.lamb(0.1).init(zero), zero)[0]["w"]
    ratio = max(0.0, 0.5) / max(np.linalg.norm(adam_step), 0.5)        # both norms at least 0.5
    np.testing.assert_allclose(floored, -0.1 * ratio * adam_step, rtol=1e-12)
    assert not np.allclose(floored, plain)


def test_adabelief_weight_decay_is_decoupled():
    p = {"w": r.standard_normal(5), "b": r.standard_normal(2)}
    lr, wd = 0.01, 0.1
    plain, decayed = O.adabelief(lr), O.adabelief(lr, weight_decay=wd)
    s1, s2 = plain.init(p), decayed.init(p)
    b1, b2, eps, eps_root = 0.9, 0.999, 1e-16, 1e-16
    m, s = {k: np.zeros_like(v) for k, v in p.items()}, {k: np.zeros_like(v) for k, v in p.items()}
    for t in range(1, 4):
        g = {k: r.standard_normal(v.shape) for k, v in p.items()}
        u1, s1 = plain.update(g, s1, p)
        u2, s2 = decayed.update(g, s2, p)
        for k in p:                                                    # AdaBelief by hand, then + wd p
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            s[k] = b2 * s[k] + (1 - b2) * (g[k] - m[k]) ** 2 + eps_root
            step = (m[k] / (1 - b1 ** t)) / (np.sqrt(s[k] / (1 - b2 ** t)) + eps)
            np.testing.assert_allclose(u1[k], -lr * step, rtol=1e-9)
            np.testing.assert_allclose(u2[k], -lr * (step + wd * p[k]), rtol=1e-9)
    only_w = O.adabelief(lr, weight_decay=wd, mask={"w": True, "b": False})
    u3, _ = only_w.update(g, only_w.init(p), p)
    first = O.adabelief(lr).update(g, O.adabelief(lr).init(p), p)[0]
    np.testing.assert_allclose(u3["b"], first["b"])
    np.testing.assert_allclose(u3["w"], first["w"] - lr * wd * p["w"])
