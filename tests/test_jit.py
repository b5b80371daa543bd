"""axon.jit (axon/tracing.py): a traced plan replays the eager computation bit for bit; host reads of traced values are errors.

Bit for bit is the claim of the plan as traced; fusion (axon.fusion, on by default) rewrites it to
agree to rounding, which tests/test_fusion.py checks. Here it is off.
"""
import numpy as np
import pytest

import axon
from axon import fusion
from axon.autograd import Tensor, ops
from axon.tracing import TraceError, jit
from axon.tree import tree_leaves


@pytest.fixture(autouse=True)
def unfused(monkeypatch):
    monkeypatch.setattr(fusion, "ENABLED", False)


def same(a, b) -> bool:
    la, lb = tree_leaves(a), tree_leaves(b)
    return len(la) == len(lb) and all(np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y)
                                      for x, y in zip(la, lb))


def mlp_params(rng):
    return {"w1": rng.standard_normal((20, 16)).astype(np.float32) * 0.3, "b1": np.zeros(16, np.float32),
            "w2": rng.standard_normal((16, 4)).astype(np.float32) * 0.3, "b2": np.zeros(4, np.float32)}


def mlp_loss(p, x, y):                                          # engine ops only: softmax cross-entropy by hand
    h = ops.tanh(x @ p["w1"] + p["b1"])                         # (B, 20) -> (B, 16)
    z = h @ p["w2"] + p["b2"]                                   # (B, 4)
    z = z - z.max(axis=1, keepdims=True)
    lse = ops.log(ops.exp(z).sum(axis=1, keepdims=True))        # (B, 1)
    return -((z - lse) * y).sum(axis=1).mean()


def batch(rng, n):
    return rng.standard_normal((n, 20)).astype(np.float32), np.eye(4, dtype=np.float32)[rng.integers(0, 4, n)]


def test_replay_is_bit_identical_to_eager_and_each_shape_is_traced_once():
    rng = np.random.default_rng(0)
    p = mlp_params(rng)
    eager, compiled = axon.value_and_grad(mlp_loss), jit(axon.value_and_grad(mlp_loss))
    for n in (8, 8, 8, 5, 8, 5):                                # a last partial batch traces its own plan
        x, y = batch(rng, n)
        assert same(compiled(p, x, y), eager(p, x, y))
        p = {k: v - 0.1 * g for (k, v), g in zip(p.items(), eager(p, x, y)[1].values())}
    assert len(compiled.plans) == 2


def test_the_plan_runs_no_engine_code(monkeypatch):
    rng = np.random.default_rng(1)
    p, (x, y) = mlp_params(rng), batch(rng, 6)
    f = jit(axon.value_and_grad(mlp_loss))
    expected = f(p, x, y)
    import axon.autograd.engine as engine

    def no_apply(*args, **kwargs):
        raise AssertionError("the replay went through engine.apply")
    monkeypatch.setattr(engine, "apply", no_apply)
    monkeypatch.setattr(engine, "backprop", no_apply)
    monkeypatch.setattr(Tensor, "_wrap", no_apply)
    assert same(f(p, x, y), expected)


def test_python_reading_a_traced_value_is_an_error_naming_the_primitive():
    x = np.ones(3, np.float32)
    for read in (float, bool, int, lambda t: t.item(), lambda t: t.numpy(), np.asarray):
        with pytest.raises(TraceError, match="primitive 'sum'.*static_argnums"):
            jit(lambda a: read(Tensor(a).sum()))(x)
    with pytest.raises(TraceError, match="argument 0"):
        jit(lambda a: np.exp(a))(x)                             # numpy on an argument
    with pytest.raises(TraceError, match=r"argument 1 at \['w'\]\[0\]"):   # where in a nested argument
        jit(lambda a, p: float(p["w"][0]))(x, {"w": [x]})
    with pytest.raises(TraceError, match="primitive 'greater'"):
        jit(lambda a: Tensor(a) * 2 if (Tensor(a) > 0).sum() > 1 else Tensor(a))(x)


def test_static_argnums_and_python_numbers_are_part_of_the_signature():
    f = jit(lambda x, n: Tensor(x) * float(n), static_argnums=1)
    x = np.arange(3, dtype=np.float32)
    assert np.array_equal(f(x, 2), x * 2) and np.array_equal(f(x, 3), x * 3) and len(f.plans) == 2
    g = jit(lambda x, scale: Tensor(x) * scale)                 # a Python number: static without asking
    assert np.array_equal(g(x, 0.5), x * 0.5) and np.array_equal(g(x, 0.25), x * 0.25) and len(g.plans) == 2
    with pytest.raises(TypeError, match="hashable"):
        jit(lambda x, d: x, static_argnums=1)(x, {"a": 1})


def test_constants_and_trees_in_and_out():
    c = np.array([1.0, 2.0], np.float32)
    f = jit(lambda t: {"y": (Tensor(t["a"]) + c, None), "n": 3, "z": np.zeros(2, np.float32)})
    out1 = f({"a": np.ones(2, np.float32)})
    out2 = f({"a": np.full(2, 5.0, np.float32)})
    assert np.array_equal(out2["y"][0], [6.0, 7.0]) and out2["y"][1] is None and out2["n"] == 3
    assert out1["z"] is not out2["z"]                           # a constant result is a fresh array each call
    assert "2 constants" in str(next(iter(f.plans.values())))    # c and the zeros


def test_dropout_draws_a_new_mask_from_each_calls_key_bit_identical_to_eager():
    x = np.ones((4, 50), np.float32)

    def f(x, key):
        return axon.layers.dropout(x, key=key, rate=0.5)
    compiled = jit(f)
    for k in (0, 1, 2**40 + 3):
        key = np.asarray(k, np.uint64)
        assert np.array_equal(compiled(x, key), f(x, k).numpy())
    assert len(compiled.plans) == 1
    assert not np.array_equal(compiled(x, np.asarray(0, np.uint64)), compiled(x, np.asarray(1, np.uint64)))


def test_a_host_draw_from_a_traced_key_is_an_error():
    with pytest.raises(TraceError, match="argument 1"):
        jit(lambda x, key: axon.random.rng(key).random(2))(np.ones(2), np.asarray(3, np.uint64))


def test_a_tensor_kept_from_a_trace_is_an_error_when_used_later():
    kept = []
    jit(lambda x: kept.append(Tensor(x) * 2) or x)(np.ones(2, np.float32))
    with pytest.raises(TraceError, match="after its trace ended"):
        float(kept[0])


def test_jit_inside_a_trace_joins_the_outer_plan():
    inner = jit(lambda x: Tensor(x) * 2.0)
    outer = jit(lambda x: ops.exp(inner(x)))
    x = np.arange(3, dtype=np.float32)
    assert np.array_equal(outer(x), np.exp(x * np.float32(2.0))) and not inner.plans


# ---- the compiled training step ----------------------------------------------------------------------------
def _models():
    x = axon.input((None, 8, 8, 1))
    h = x.flatten().dense(16, activation="relu")
    return {
        "mlp": x.flatten().dense(32, activation="relu").dense(10, activation="softmax"),
        "cnn": x.conv(4, 3, padding="same", activation="relu").max_pool(2).flatten().dense(10, activation="softmax"),
        "residual": axon.add([h, h.dense(16, activation="relu")]).dense(10, activation="softmax"),
        "dropout": x.flatten().dense(32, activation="relu").dropout(0.3).dense(10, activation="softmax"),
        "batch_norm": x.conv(4, 3).batch_norm().relu().flatten().dense(10, activation="softmax"),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_compiled_model_step_is_bit_identical_to_eager_over_epochs_with_a_partial_batch(name, recwarn):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 8, 8, 1)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 50)]
    model, runs = _models()[name], []
    for compile in (False, True):
        init, step_fn = axon.training.step(model, "categorical_cross_entropy", axon.optimizers.adam(1e-2),
                                           metrics=["accuracy"], compile=compile)
        state, history = init(seed=1), []
        for _ in range(2):                                      # batches of 16, 16, 16 and a last one of 2
            for lo in range(0, 50, 16):
                state, metrics = step_fn(state, x[lo:lo + 16], y[lo:lo + 16])
                history.append(metrics)
        runs.append((state, history, step_fn))
    (eager, eager_history, _), (compiled, compiled_history, step_fn) = runs
    assert same(eager.params, compiled.params) and same(eager.opt_state, compiled.opt_state)
    assert eager_history == compiled_history
    assert step_fn.compiled is not None and len(step_fn.compiled.plans) == 2, [str(w.message) for w in recwarn]
    assert not step_fn.compiled_grads.plans                    # the whole step traced, not the gradient alone


def test_a_trace_records_only_its_own_threads_ops():
    import threading
    started, done = threading.Event(), threading.Event()

    def other_thread():                                         # eager ops while the main thread traces
        started.wait()
        for _ in range(50):
            ops.exp(Tensor(np.ones(3, np.float32)))
        done.set()

    def f(x):
        started.set()
        done.wait(5)
        return Tensor(x) * 2.0
    t = threading.Thread(target=other_thread)
    t.start()
    g = jit(f)
    g(np.ones(2, np.float32))
    t.join()
    assert [op.name for op in next(iter(g.plans.values())).ops] == ["mul"]


def _run_steps(model, optimizer, compile, x, y, steps=2, lr_scale=None):
    init, step_fn = axon.training.step(model, "categorical_cross_entropy", optimizer, compile=compile)
    state, losses = init(seed=2), []
    for i in range(steps):
        for lo in range(0, len(x), 16):
            if lr_scale is not None and i == 1:
                state = state._replace(lr_scale=lr_scale)      # reduce_lr_on_plateau's knob: a static value
            state, metrics = step_fn(state, x[lo:lo + 16], y[lo:lo + 16])
            losses.append(metrics["loss"])
    return state, losses, step_fn


_TRACEABLE = {
    "sgd": lambda: axon.optimizers.sgd(0.05),
    "sgd_momentum_schedule": lambda: axon.optimizers.sgd(axon.schedules.exponential_decay(0.05, 0.9, 3), momentum=0.9,
                                                         nesterov=True),
    "adamw": lambda: axon.optimizers.adamw(1e-2, weight_decay=0.1),
    "adam_warmup_cosine": lambda: axon.optimizers.adam(axon.schedules.warmup_cosine_decay(0.0, 1e-2, 3, 10)),
    "adam_chain": lambda: axon.optimizers.adam(1e-2, fused=False),
}


@pytest.mark.parametrize("name", list(_TRACEABLE))
def test_the_whole_step_with_its_optimizer_is_one_plan_bit_identical_to_eager(name, recwarn):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 8, 8, 1)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 40)]
    model = _models()["dropout"]
    eager, eager_losses, _ = _run_steps(model, _TRACEABLE[name](), False, x, y, steps=3, lr_scale=0.5)
    compiled, losses, step_fn = _run_steps(model, _TRACEABLE[name](), True, x, y, steps=3, lr_scale=0.5)
    assert same(eager.params, compiled.params) and same(eager.opt_state, compiled.opt_state)
    assert losses == eager_losses
    assert step_fn.compiled is not None and not step_fn.compiled_grads.plans, [str(w.message) for w in recwarn]
    assert len(step_fn.compiled.plans) == 4                     # batches of 16 and 8, lr_scale 1 and 0.5
    ops_run = {op.name for plan in step_fn.compiled.plans.values() for op in plan.ops}
    assert ("kernels.adam_step_at" in ops_run) == (name in ("adamw", "adam_warmup_cosine"))   # the fused kernel


def test_an_optimizer_that_reads_values_leaves_only_the_gradient_traced_with_a_warning():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((32, 8, 8, 1)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 32)]
    model = _models()["mlp"]
    make = lambda: axon.optimizers.lamb(1e-2)                  # noqa: E731  (its trust ratio: a host float)
    eager, eager_losses, _ = _run_steps(model, make(), False, x, y)
    with pytest.warns(UserWarning, match="optimizer update cannot be traced"):
        compiled, losses, step_fn = _run_steps(model, make(), True, x, y)
    assert same(eager.params, compiled.params) and same(eager.opt_state, compiled.opt_state) and losses == eager_losses
    assert step_fn.compiled is None and len(step_fn.compiled_grads.plans) == 1


def test_the_fused_adam_reads_its_step_number_from_an_input_array():
    p = {"w": np.ones(3, np.float32)}
    opt = axon.optimizers.adam(0.1)
    f = jit(lambda g, s: opt.update(g, s, p))
    state = opt.init(p)
    for k in range(1, 4):                                       # one plan, a new bias correction each replay
        g = {"w": np.array([1.0, -2.0, 0.5], np.float32) * k}
        (u, new), (u_eager, new_eager) = f(g, state), opt.update(g, state, p)
        assert same(u, u_eager) and same(new, new_eager) and int(new[0].count) == k
        state = new
    assert len(f.plans) == 1


def test_a_schedule_is_evaluated_at_each_replays_count():
    lr = axon.schedules.piecewise_constant([2, 4], [1.0, 0.5, 0.1])
    f = jit(lambda count: axon.schedules.value_at(lr, count))
    assert [float(f(np.asarray(c))) for c in range(6)] == [lr(c) for c in range(6)] and len(f.plans) == 1


def test_an_integer_index_array_argument_is_an_input_of_the_plan_values_and_gradients():
    w = np.random.default_rng(5).standard_normal((6, 3)).astype(np.float32)
    loss = lambda w, ids, rows: (w[ids] * 2.0).sum() + (w[rows, 1:] ** 2).sum()   # noqa: E731  (a tuple index)
    compiled = jit(axon.value_and_grad(loss))
    for ids, rows in (([0, 2, 2], [5, 5]), ([1, 1, 3], [0, 4]), ([5, 0, 5], [2, 2])):
        ids, rows = np.array(ids), np.array(rows)
        assert same(compiled(w, ids, rows), axon.value_and_grad(loss)(w, ids, rows))
    assert len(compiled.plans) == 1
    assert {"getitem_at", "scatter_add_at"} <= {op.name for op in next(iter(compiled.plans.values())).ops}


def test_the_objective_form_is_compiled_by_default_with_an_embedding_bit_identical_to_eager():
    rng = np.random.default_rng(6)
    ids, y = rng.integers(0, 20, (24, 5)), np.eye(3, dtype=np.float32)[rng.integers(0, 3, 24)]
    model = axon.input((None, 5)).embedding(20, 4).flatten().dense(3, activation="softmax")

    def objective(p, x, y, key=None):
        return axon.losses.categorical_cross_entropy(y, model.apply(p, x, training=True, key=key)[0]).mean()
    runs = []
    for compile in (False, None):
        init, step_fn = axon.training.step((lambda seed: model.init(seed=seed), objective), axon.optimizers.adam(0.01),
                                           compile=compile)
        state, losses = init(seed=0), []
        for lo in (0, 8, 16, 0):
            state, metrics = step_fn(state, ids[lo:lo + 8], y[lo:lo + 8])
            losses.append(metrics["loss"])
        runs.append((state, losses, step_fn))
    (eager, eager_losses, _), (compiled, losses, step_fn) = runs
    assert same(eager.params, compiled.params) and same(eager.opt_state, compiled.opt_state) and losses == eager_losses
    assert step_fn.compiled is not None and len(step_fn.compiled.plans) == 1


def test_a_step_traced_again_and_again_falls_back_to_the_gradient_with_a_warning(monkeypatch):
    monkeypatch.setattr(axon.training.steps, "MAX_PLANS", 3)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((8, 8, 8, 1)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 8)]
    init, step_fn = axon.training.step(_models()["mlp"], "categorical_cross_entropy", axon.optimizers.sgd(0.1))
    state = init(seed=0)
    with pytest.warns(UserWarning, match="traced 4 times"):
        for i in range(6):                                      # a new lr_scale each step: a new signature
            state, _ = step_fn(state._replace(lr_scale=1.0 / (i + 1)), x, y)
    assert step_fn.compiled is None and len(step_fn.compiled_grads.plans) == 1
