"""axon.updates: the GradientTransformation protocol, combinators, each transformation's equations,
the wrappers (masked, apply_if_finite, accumulate_gradients, ema_params), dtypes, purity, bad input."""
import math

import numpy as np
import pytest

from axon import schedules
from axon.tree import tree_flatten_with_path, tree_leaves, tree_map
from axon.updates import (AccumulateGradientsState, ApplyIfFiniteState, EmaParamsState, EmptyState,
                          GradientTransformation, ScaleByAdamState, TraceState, accumulate_gradients,
                          add_decayed_weights, add_noise, apply_if_finite, apply_updates, centralize, chain, clip,
                          clip_by_block_rms, clip_by_global_norm, ema_params, find_state, global_norm, identity,
                          masked, scale, scale_by_adadelta, scale_by_adam, scale_by_belief, scale_by_factored_rms,
                          scale_by_lion, scale_by_nadam, scale_by_param_block_rms, scale_by_radam, scale_by_rms,
                          scale_by_rss, scale_by_schedule, scale_by_stddev, scale_by_trust_ratio, scale_by_yogi,
                          scale_by_learning_rate, stateful, stateless, trace)


def _params(dtype=np.float64, rng=None):
    r = rng or np.random.default_rng(0)
    return {"dense": {"kernel": r.standard_normal((3, 4)).astype(dtype), "bias": r.standard_normal(4).astype(dtype)},
            "scale": np.asarray(r.standard_normal(), dtype=dtype)}


def _grads_sequence(n, dtype=np.float64, seed=1):
    r = np.random.default_rng(seed)
    return [tree_map(lambda p: r.standard_normal(np.shape(p)).astype(dtype), _params(dtype)) for _ in range(n)]


def _run(t, grads_seq, params=None):
    """Updates of ``t`` for a sequence of gradients (params fixed), and the final state."""
    params = _params() if params is None else params
    state = t.init(params)
    out = []
    for g in grads_seq:
        u, state = t.update(g, state, params)
        out.append(u)
    return out, state


def _allclose(a, b, **kw):
    return all(np.allclose(x, y, **kw) for x, y in zip(tree_leaves(a), tree_leaves(b)))


# ---- the protocol and the combinators ------------------------------------------------------------------
def test_gradient_transformation_is_a_named_tuple_of_init_and_update():
    t = scale(2.0)
    init, update = t
    assert isinstance(t, GradientTransformation) and t._fields == ("init", "update")
    assert init is t.init and update is t.update


COMBINATORS = {                                                    # transform(preceding, *args) == chain(preceding, transform(*args))
    "scale": lambda pre: (scale(pre, -0.1) if pre else scale(-0.1)),
    "scale_by_schedule": lambda pre: (scale_by_schedule(pre, lambda c: 1 / (c + 1)) if pre
                                      else scale_by_schedule(lambda c: 1 / (c + 1))),
    "scale_by_learning_rate": lambda pre: scale_by_learning_rate(pre, 0.1) if pre else scale_by_learning_rate(0.1),
    "scale_by_adam": lambda pre: scale_by_adam(pre, b1=0.8) if pre else scale_by_adam(b1=0.8),
    "scale_by_rms": lambda pre: scale_by_rms(pre, 0.5) if pre else scale_by_rms(0.5),
    "trace": lambda pre: trace(pre, 0.9, nesterov=True) if pre else trace(0.9, nesterov=True),
    "clip": lambda pre: clip(pre, 0.5) if pre else clip(0.5),
    "clip_by_global_norm": lambda pre: clip_by_global_norm(pre, 1.0) if pre else clip_by_global_norm(1.0),
    "centralize": lambda pre: centralize(pre) if pre else centralize(),
    "add_decayed_weights": lambda pre: add_decayed_weights(pre, 0.1) if pre else add_decayed_weights(0.1),
    "add_noise": lambda pre: add_noise(pre, 0.1, seed=3) if pre else add_noise(0.1, seed=3),
    "scale_by_trust_ratio": lambda pre: scale_by_trust_ratio(pre) if pre else scale_by_trust_ratio(),
    "stateless": lambda pre: (stateless(pre, lambda u, p: tree_map(lambda x: x * 3, u)) if pre
                              else stateless(lambda u, p: tree_map(lambda x: x * 3, u))),
}


@pytest.mark.parametrize("name", sorted(COMBINATORS))
def test_a_preceding_transformation_chains(name):
    make = COMBINATORS[name]
    grads = _grads_sequence(4)
    combined, _ = _run(make(scale_by_rss()), grads)
    chained, _ = _run(chain(scale_by_rss(), make(None)), grads)
    assert _allclose(combined, chained, rtol=0, atol=0)


def test_combinator_adam_equals_the_chain():
    grads = _grads_sequence(5)
    a, _ = _run(scale(scale_by_adam(), -0.01), grads)
    b, _ = _run(chain(scale_by_adam(), scale(-0.01)), grads)
    assert _allclose(a, b, rtol=0, atol=0)


def test_chain_runs_in_order_and_keeps_a_tuple_of_states():
    t = chain(scale(2.0), trace(0.5), scale(-1.0))
    state = t.init(_params())
    assert isinstance(state, tuple) and [type(s) for s in state] == [EmptyState, TraceState, EmptyState]
    g = {"w": np.array([1.0])}
    t2 = chain(scale(2.0), clip(1.5))                              # clip after scaling: 2 -> 1.5
    assert t2.update(g, t2.init(g))[0]["w"] == 1.5
    t3 = chain(clip(1.5), scale(2.0))                              # scaling after clip: 1 -> 2
    assert t3.update(g, t3.init(g))[0]["w"] == 2.0


def test_chain_rejects_bad_arguments_and_states():
    with pytest.raises(TypeError, match="chain: argument 1"):
        chain(scale(1.0), lambda g: g)
    t = chain(scale(1.0), trace(0.9))
    with pytest.raises(ValueError, match="chain: expected a state tuple of 2"):
        t.update({"w": np.ones(1)}, (EmptyState(),))


def test_identity_and_stateful():
    g = {"w": np.arange(3.0)}
    assert identity().update(g, identity().init(g))[0] is g
    counter = stateful(lambda params: np.asarray(0), lambda u, n, params: (tree_map(lambda x: x * (n + 1), u), n + 1))
    state = counter.init(g)
    for expected in (1, 2, 3):
        u, state = counter.update(g, state)
        np.testing.assert_array_equal(u["w"], expected * g["w"])
    pre = stateful(scale(10.0), counter.init, counter.update)      # a preceding transformation
    np.testing.assert_array_equal(pre.update(g, pre.init(g))[0]["w"], 10 * g["w"])


def test_apply_updates_keeps_dtypes_and_is_pure():
    params = _params(np.float32)
    updates = tree_map(lambda p: np.ones(np.shape(p)), params)     # float64 updates
    before = tree_map(np.copy, params)
    new = apply_updates(params, updates)
    assert all(x.dtype == np.float32 for x in tree_leaves(new))
    assert _allclose(new, tree_map(lambda p: p + 1, before))
    assert _allclose(params, before, rtol=0, atol=0)


def test_apply_updates_names_the_mismatching_path():
    params = _params()
    bad = tree_map(np.copy, params)
    bad["dense"]["kernel"] = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"apply_updates: .*'dense.kernel'.*shape \(3, 4\) vs \(4, 3\)"):
        apply_updates(params, bad)
    del bad["dense"]["bias"]
    with pytest.raises(ValueError, match=r"'dense'.*missing \['bias'\]"):
        apply_updates(params, bad)


# ---- each transformation against its equations ----------------------------------------------------------
def test_scale_by_adam_equations():
    b1, b2, eps = 0.8, 0.9, 1e-3
    gs = _grads_sequence(3)
    out, state = _run(scale_by_adam(b1, b2, eps), gs)
    m = v = 0
    for t, g in enumerate(gs, 1):
        k = g["dense"]["kernel"]
        m, v = b1 * m + (1 - b1) * k, b2 * v + (1 - b2) * k * k
        np.testing.assert_allclose(out[t - 1]["dense"]["kernel"],
                                   (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps), rtol=1e-12)
    assert int(state.count) == 3 and state.count.dtype == np.int64


def test_scale_by_adam_first_step_is_the_sign():
    g = {"w": np.array([1e-3, -50.0, 7.0])}
    u, _ = scale_by_adam(eps=0.0).update(g, scale_by_adam().init(g))
    np.testing.assert_allclose(u["w"], np.sign(g["w"]), rtol=1e-12)


def test_scale_by_rms_stddev_rss_equations():
    gs = _grads_sequence(3)
    rms, _ = _run(scale_by_rms(0.7, eps=0.0), gs)
    std, _ = _run(scale_by_stddev(0.7, eps=0.0), gs)
    rss, _ = _run(scale_by_rss(eps=0.0), gs)
    m = v = s = 0
    for i, g in enumerate(gs):
        b = g["dense"]["bias"]
        m, v, s = 0.7 * m + 0.3 * b, 0.7 * v + 0.3 * b * b, s + b * b
        np.testing.assert_allclose(rms[i]["dense"]["bias"], b / np.sqrt(v))
        np.testing.assert_allclose(std[i]["dense"]["bias"], b / np.sqrt(v - m * m))
        np.testing.assert_allclose(rss[i]["dense"]["bias"], b / np.sqrt(s))


def test_scale_by_radam_switches_from_momentum_to_adaptive():
    b2 = 0.999
    rho_inf = 2 / (1 - b2) - 1
    rho = [rho_inf - 2 * t * b2 ** t / (1 - b2 ** t) for t in range(1, 8)]
    first_adaptive = next(t for t, r in enumerate(rho, 1) if r > 5)
    assert first_adaptive == 6
    gs = _grads_sequence(7)
    out, _ = _run(scale_by_radam(b1=0.9, b2=b2), gs)
    m = 0
    for t, g in enumerate(gs[:first_adaptive - 1], 1):             # momentum only
        m = 0.9 * m + 0.1 * g["scale"]
        np.testing.assert_allclose(out[t - 1]["scale"], m / (1 - 0.9 ** t))


def test_trace_heavy_ball_and_nesterov():
    gs = [{"w": np.array([1.0])}, {"w": np.array([2.0])}, {"w": np.array([-1.0])}]
    heavy, _ = _run(trace(0.5), gs, params={"w": np.zeros(1)})
    nesterov, _ = _run(trace(0.5, nesterov=True), gs, params={"w": np.zeros(1)})
    buf = 0.0
    for i, g in enumerate(gs):
        buf = 0.5 * buf + g["w"][0]
        assert heavy[i]["w"][0] == buf
        assert nesterov[i]["w"][0] == g["w"][0] + 0.5 * buf


def test_clip_and_clip_by_global_norm():
    g = {"a": np.array([3.0, -4.0]), "b": np.array([[12.0]])}     # global norm 13
    np.testing.assert_array_equal(clip(3.5).update(g, EmptyState())[0]["a"], [3.0, -3.5])
    u, _ = clip_by_global_norm(6.5).update(g, EmptyState())
    assert math.isclose(global_norm(u), 6.5) and _allclose(u, tree_map(lambda x: x / 2, g))
    same, _ = clip_by_global_norm(20.0).update(g, EmptyState())
    assert same is g                                               # below the bound: unchanged


def test_clip_by_block_rms_and_param_block_rms():
    u = {"w": np.array([4.0, -4.0]), "b": np.array([0.5])}
    out, _ = clip_by_block_rms(2.0).update(u, EmptyState())
    np.testing.assert_allclose(out["w"], [2.0, -2.0])             # rms 4 > 2: divided by 2
    np.testing.assert_allclose(out["b"], [0.5])                   # rms 0.5 <= 2: kept
    p = {"w": np.array([3.0, 4.0]), "b": np.array([1e-6])}
    out, _ = scale_by_param_block_rms(1e-3).update(u, EmptyState(), p)
    np.testing.assert_allclose(out["w"], u["w"] * math.sqrt(12.5))
    np.testing.assert_allclose(out["b"], u["b"] * 1e-3)           # a tiny param: min_scale


def test_centralize_removes_the_mean_per_output_unit():
    g = {"kernel": np.random.default_rng(0).standard_normal((2, 3, 5, 4)), "bias": np.arange(4.0)}
    u, _ = centralize().update(g, EmptyState())
    np.testing.assert_allclose(u["kernel"].mean(axis=(0, 1, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(u["kernel"] - g["kernel"], np.broadcast_to(-g["kernel"].mean(axis=(0, 1, 2)), (2, 3, 5, 4)))
    np.testing.assert_array_equal(u["bias"], g["bias"])


def test_add_decayed_weights_constant_schedule_and_mask():
    params = {"kernel": np.array([1.0, 2.0]), "bias": np.array([3.0])}
    g = tree_map(np.zeros_like, params)
    u, _ = add_decayed_weights(0.5).update(g, EmptyState(), params)
    np.testing.assert_array_equal(u["kernel"], [0.5, 1.0])
    t = add_decayed_weights(schedules.piecewise_constant([1], [0.5, 0.25]))
    out, state = _run(t, [g, g], params)
    np.testing.assert_array_equal(out[0]["bias"], [1.5])
    np.testing.assert_array_equal(out[1]["bias"], [0.75])
    assert int(state.count) == 2
    t = add_decayed_weights(0.5, mask=lambda p: tree_map(lambda x: x.size > 1, p))
    u, _ = t.update(g, t.init(params), params)
    np.testing.assert_array_equal(u["kernel"], [0.5, 1.0])
    np.testing.assert_array_equal(u["bias"], [0.0])


def test_scale_by_trust_ratio():
    params = {"a": np.array([3.0, 4.0]), "zero": np.zeros(2)}
    g = {"a": np.array([0.0, 10.0]), "zero": np.array([1.0, 1.0])}
    u, _ = scale_by_trust_ratio(trust_coefficient=0.1).update(g, EmptyState(), params)
    np.testing.assert_allclose(u["a"], 0.1 * 5 / 10 * g["a"])
    np.testing.assert_array_equal(u["zero"], g["zero"])            # zero param norm: unchanged


def test_scale_by_factored_rms_is_rank_one_for_matrices():
    t = scale_by_factored_rms(min_dim_size_to_factor=2)
    g = {"w": np.random.default_rng(0).standard_normal((4, 3)), "b": np.arange(1.0, 4.0)}
    u, state = t.update(g, t.init(g))                               # first step: beta = 0
    g2 = g["w"] ** 2 + 1e-30
    v_hat = np.outer(g2.mean(axis=1), g2.mean(axis=0)) / g2.mean()
    np.testing.assert_allclose(u["w"], g["w"] / np.sqrt(v_hat))
    np.testing.assert_allclose(u["b"], np.sign(g["b"]))           # unfactored first step: g / |g|
    assert state.v["w"] is None and state.v_row["b"] is None


def test_scale_by_schedule_counts():
    t = scale_by_schedule(schedules.piecewise_constant([2], [1.0, 0.1]))
    out, state = _run(t, _grads_sequence(3))
    np.testing.assert_allclose(out[2]["scale"], 0.1 * _grads_sequence(3)[2]["scale"])
    assert int(state.count) == 3


def test_scale_by_learning_rate_rejects_non_numbers():
    with pytest.raises(TypeError, match="scale_by_learning_rate: lr"):
        scale_by_learning_rate("fast")


def test_add_noise_is_reproducible_and_seeded():
    g = {"w": np.zeros(1000, np.float32)}
    a, _ = _run(add_noise(0.1, seed=7), [g, g], params=g)
    b, _ = _run(add_noise(0.1, seed=7), [g, g], params=g)
    c, _ = _run(add_noise(0.1, seed=8), [g, g], params=g)
    assert np.array_equal(a[1]["w"], b[1]["w"]) and not np.array_equal(a[1]["w"], c[1]["w"])
    assert not np.array_equal(a[0]["w"], a[1]["w"]) and a[0]["w"].dtype == np.float32


# ---- wrappers ------------------------------------------------------------------------------------------
def test_masked_applies_inner_only_to_marked_leaves():
    params = _params()
    mask = {"dense": True, "scale": False}                         # a prefix of params' structure
    t = masked(scale_by_adam(), mask)
    state = t.init(params)
    assert state.inner_state.mu["scale"] is None and state.inner_state.mu["dense"]["kernel"].shape == (3, 4)
    gs = _grads_sequence(3)
    out, _ = _run(t, gs, params)
    ref, _ = _run(scale_by_adam(), gs, params)
    assert _allclose(out[-1]["dense"], ref[-1]["dense"], rtol=0, atol=0)
    assert out[-1]["scale"] is gs[-1]["scale"]


def test_masked_accepts_a_function_and_rejects_a_bad_mask():
    params = _params()
    t = masked(scale(0.0), lambda p: tree_map(lambda x: np.ndim(x) == 2, p))
    u, _ = t.update(_grads_sequence(1)[0], t.init(params), params)
    assert (u["dense"]["kernel"] == 0).all() and (u["dense"]["bias"] != 0).all()
    with pytest.raises(ValueError, match="masked: the mask does not match"):
        masked(scale(0.0), {"dense": {"kernel": True}}).init(params)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")        # the bad step applied on purpose
def test_apply_if_finite_skips_bad_steps_and_keeps_the_inner_state():
    params = {"w": np.zeros(2)}
    t = apply_if_finite(scale_by_adam(), max_consecutive_errors=2)
    state = t.init(params)
    good, bad = {"w": np.array([1.0, 2.0])}, {"w": np.array([np.inf, 2.0])}
    _, state = t.update(good, state, params)
    inner_before = state.inner_state
    for expected in (1, 2):
        u, state = t.update(bad, state, params)
        assert (u["w"] == 0).all() and state.inner_state is inner_before
        assert int(state.notfinite_count) == expected and not bool(state.last_finite)
    u, state = t.update(bad, state, params)                        # the third in a row: applied anyway
    assert not np.isfinite(u["w"]).all() and state.inner_state is not inner_before
    u, state = t.update(good, state, params)
    assert int(state.notfinite_count) == 0 and int(state.total_notfinite) == 3 and bool(state.last_finite)
    assert isinstance(state, ApplyIfFiniteState)


def test_apply_if_finite_catches_nan():
    t = apply_if_finite(scale(1.0))
    u, state = t.update({"w": np.array([np.nan])}, t.init({"w": np.zeros(1)}))
    assert u["w"][0] == 0 and int(state.total_notfinite) == 1


def test_accumulate_gradients_updates_with_the_mean_every_k_steps():
    params = _params()
    gs = _grads_sequence(6)
    t = accumulate_gradients(scale_by_adam(), every_k=3)
    out, state = _run(t, gs, params)
    means = [tree_map(lambda a, b, c: (a + b + c) / 3, *gs[i:i + 3]) for i in (0, 3)]
    ref, _ = _run(scale_by_adam(), means, params)
    for i in (0, 1, 3, 4):
        assert all((x == 0).all() for x in tree_leaves(out[i]))
    assert _allclose(out[2], ref[0], rtol=1e-12) and _allclose(out[5], ref[1], rtol=1e-12)
    assert isinstance(state, AccumulateGradientsState) and int(state.mini_step) == 0
    assert int(state.inner_state.count) == 2


def test_accumulate_gradients_rejects_bad_k():
    with pytest.raises(ValueError, match="every_k"):
        accumulate_gradients(scale(1.0), every_k=0)


def test_ema_params_averages_the_new_params():
    opt = chain(scale(-0.1), ema_params(0.9))
    params = _params()
    state = opt.init(params)
    ema = tree_map(np.copy, params)
    for g in _grads_sequence(4):
        updates, state = opt.update(g, state, params)
        params = apply_updates(params, updates)
        ema = tree_map(lambda e, p: 0.9 * e + 0.1 * p, ema, params)
    found = find_state(state, EmaParamsState)
    assert _allclose(found.ema, ema, rtol=1e-12) and int(found.count) == 4
    assert find_state(state, ScaleByAdamState) is None


# ---- every transformation: dtypes, purity, state shapes, bad input -------------------------------------
STATEFUL = {
    "scale_by_adam": scale_by_adam, "scale_by_belief": scale_by_belief, "scale_by_rms": scale_by_rms,
    "scale_by_stddev": scale_by_stddev, "scale_by_radam": scale_by_radam, "scale_by_yogi": scale_by_yogi,
    "scale_by_nadam": scale_by_nadam, "scale_by_adadelta": scale_by_adadelta, "scale_by_lion": scale_by_lion,
    "scale_by_rss": scale_by_rss, "trace": lambda: trace(0.9, nesterov=True),
    "scale_by_factored_rms": lambda: scale_by_factored_rms(min_dim_size_to_factor=2),
    "accumulate_gradients": lambda: accumulate_gradients(scale_by_adam(), 2),
    "ema_params": lambda: ema_params(0.9),
}
STATELESS = {
    "scale": lambda: scale(0.5), "clip": lambda: clip(0.1), "clip_by_global_norm": lambda: clip_by_global_norm(0.1),
    "clip_by_block_rms": lambda: clip_by_block_rms(0.1), "centralize": centralize,
    "add_decayed_weights": lambda: add_decayed_weights(0.1), "add_noise": lambda: add_noise(0.1),
    "scale_by_trust_ratio": scale_by_trust_ratio, "scale_by_param_block_rms": scale_by_param_block_rms,
    "scale_by_schedule": lambda: scale_by_schedule(schedules.cosine_decay(1.0, 10)),
    "masked": lambda: masked(scale_by_adam(), {"dense": True, "scale": False}),
    "apply_if_finite": lambda: apply_if_finite(scale_by_adam()), "identity": identity,
}
EVERY = {**STATEFUL, **STATELESS}


@pytest.mark.parametrize("name", sorted(EVERY))
def test_float32_in_float32_out(name):
    t = EVERY[name]()
    out, state = _run(t, _grads_sequence(3, np.float32), params=_params(np.float32))
    assert all(u.dtype == np.float32 for u in tree_leaves(out)), name
    floats = [(path, s.dtype) for path, s in tree_flatten_with_path(state)
              if s.dtype.kind == "f" and not path.endswith("mu_product")]
    assert all(dt == np.float32 for _, dt in floats), floats


@pytest.mark.parametrize("name", sorted(EVERY))
def test_float64_in_float64_out(name):
    out, _ = _run(EVERY[name](), _grads_sequence(2), params=_params())
    assert all(u.dtype == np.float64 for u in tree_leaves(out)), name


@pytest.mark.parametrize("name", sorted(EVERY))
def test_update_never_changes_its_inputs(name):
    t = EVERY[name]()
    params = _params()
    gs = _grads_sequence(2)
    state = t.init(params)
    _, state = t.update(gs[0], state, params)
    before = [np.copy(x) for x in tree_leaves((params, gs[1], state))]
    t.update(gs[1], state, params)
    assert all(np.array_equal(a, b) for a, b in zip(before, tree_leaves((params, gs[1], state)))), name


@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_grads_that_do_not_match_raise_naming_the_path(name):
    t = STATEFUL[name]()
    params = _params()
    state = t.init(params)
    bad = tree_map(np.copy, params)
    bad["dense"]["bias"] = np.zeros(5)
    with pytest.raises(ValueError, match=r"'dense.bias'.*shape \(4,\) vs \(5,\)"):
        t.update(bad, state, params)
    del bad["dense"]["bias"]
    with pytest.raises(ValueError, match="'dense'.*missing"):
        t.update(bad, state, params)


@pytest.mark.parametrize("make", [lambda: add_decayed_weights(0.1), scale_by_trust_ratio, lambda: ema_params(0.9),
                                  scale_by_param_block_rms])
def test_transformations_that_read_params_need_them(make):
    t = make()
    g = {"w": np.ones(2)}
    with pytest.raises(ValueError, match="needs params"):
        t.update(g, t.init(g))


@pytest.mark.parametrize("bad", [lambda: scale_by_adam(b1=1.5), lambda: scale_by_adam(eps=-1.0),
                                 lambda: scale_by_rms(decay=2.0), lambda: trace(decay=-0.1),
                                 lambda: clip(-1.0), lambda: ema_params(decay=1.1)])
def test_bad_hyperparameters_raise_value_error(bad):
    with pytest.raises(ValueError, match="must be in"):
        bad()


def test_hyperparameters_must_be_numbers():
    with pytest.raises(TypeError, match="scale_by_adam: b1 must be a number"):
        scale_by_adam(b1="0.9")
    with pytest.raises(TypeError, match="scale_by_schedule: schedule must be callable"):
        scale_by_schedule(0.1)
    with pytest.raises(TypeError, match="masked: inner"):
        masked(lambda g: g, {})


def test_numpy_float64_hyperparameters_do_not_promote_float32():
    t = scale_by_adam(b1=np.float64(0.9), b2=np.float64(0.99), eps=np.float64(1e-8))
    out, _ = _run(chain(t, scale(np.float64(-0.1))), _grads_sequence(2, np.float32), params=_params(np.float32))
    assert all(u.dtype == np.float32 for u in tree_leaves(out))


def test_states_round_trip_through_axon_serialization(tmp_path):
    serialization = pytest.importorskip("axon.serialization")
    t = chain(masked(scale_by_adam(), {"kernel": True, "bias": False}), scale_by_factored_rms(min_dim_size_to_factor=2),
              ema_params(0.9), accumulate_gradients(trace(0.9), 2))
    params = _params()["dense"]                                  
    _, state = _run(t, [g["dense"] for g in _grads_sequence(3)], params)
    serialization.save(tmp_path / "state.safetensors", state)
    back = serialization.load(tmp_path / "state.safetensors")
    g = _grads_sequence(1, seed=5)[0]["dense"]
    a, _ = t.update(g, state, params)
    b, _ = t.update(g, back, params)
    assert _allclose(a, b, rtol=0, atol=0)
