"""axon.training: the step, the loop, validation, callbacks, checkpoints and resuming."""
import os

import numpy as np
import pytest

from axon import random as axrandom
from axon import updates as U
from axon.autograd import Tensor, value_and_grad
from axon.autograd import ops
from axon.training import (TrainState, callbacks as cb, checkpoint, csv_logger, early_stopping, evaluate,
                           load_checkpoint, plot_history, reduce_lr_on_plateau, step, step_key, train)


# ---- a small problem: softmax regression on 3 separable classes, written with engine ops only --------
def make_data(n=96, seed=0):
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, 5)).astype(np.float32)
    w_true = r.standard_normal((5, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[(x @ w_true).argmax(axis=1)]   # (n, 3) one-hot
    return x, y


def init_params(seed):
    r = axrandom.rng(seed, "init")
    return {"w": (0.1 * r.standard_normal((5, 3))).astype(np.float32), "b": np.zeros(3, np.float32)}


def softmax(z):
    e = ops.exp(z - ops.max(z, axis=-1, keepdims=True))             # (N, 3)
    return e / ops.sum(e, axis=-1, keepdims=True)


def cross_entropy(y, p):
    return -ops.sum(y * ops.log(p + 1e-7), axis=-1)                 # (N,) per-example losses


def objective(params, x, y):
    p = softmax(x @ params["w"] + params["b"])
    return cross_entropy(y, p).mean(), p


def accuracy(y_true, y_pred):
    return np.mean(y_true.argmax(-1) == y_pred.argmax(-1))


def adam(lr=0.05):
    return U.chain(U.scale_by_adam(), U.scale(-lr))


def sgd(lr=0.1):
    return U.scale(-lr)


def make_step(opt=None, metrics=None):
    return step((init_params, objective), opt or adam(), metrics={"accuracy": accuracy} if metrics is None else metrics)


def same_tree(a, b):
    if isinstance(a, dict):
        assert set(a) == set(b)
        for k in a:
            same_tree(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same_tree(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b or (a != a and b != b)


# ---- the step ---------------------------------------------------------------------------------------
def test_step_is_value_and_grad_then_the_optimizer():
    x, y = make_data()
    init, step_fn = make_step(opt=adam(0.01))
    state = init(seed=3)
    assert state.step == 0 and state.epoch == 0 and state.seed == 3 and state.lr_scale == 1.0
    # the same three steps by hand
    opt = adam(0.01)
    params, opt_state = init_params(3), opt.init(init_params(3))
    for i in range(3):
        state, metrics = step_fn(state, x[i * 32:(i + 1) * 32], y[i * 32:(i + 1) * 32])
        (loss, p), g = value_and_grad(objective, has_aux=True)(params, x[i * 32:(i + 1) * 32], y[i * 32:(i + 1) * 32])
        updates, opt_state = opt.update(g, opt_state, params)
        params = U.apply_updates(params, updates)
        assert metrics["loss"] == pytest.approx(float(loss), rel=1e-6)
        assert metrics["accuracy"] == pytest.approx(accuracy(y[i * 32:(i + 1) * 32], p.data))
    assert state.step == 3
    for k in params:
        np.testing.assert_allclose(state.params[k], params[k], rtol=1e-6)
        assert state.params[k].dtype == np.float32


def test_lr_scale_scales_the_update():
    x, y = make_data()
    init, step_fn = make_step(opt=sgd(0.1))
    s0 = init(seed=0)
    full, _ = step_fn(s0, x, y)
    half, _ = step_fn(s0._replace(lr_scale=0.5), x, y)
    np.testing.assert_allclose(half.params["w"] - s0.params["w"], 0.5 * (full.params["w"] - s0.params["w"]),
                               rtol=1e-5, atol=1e-7)
    assert half.params["w"].dtype == np.float32


def test_objective_gets_key_and_training_flags():
    seen = []

    def noisy(params, x, y, key=None, training=True):
        seen.append((key, training))
        noise = axrandom.rng(key).standard_normal(x.shape).astype(np.float32) if training else 0.0
        return objective(params, x + noise, y)

    x, y = make_data()
    init, step_fn = step((init_params, noisy), adam(), compile=False)      # side effects and a host draw: eager
    state = init(seed=5)
    state, _ = step_fn(state, x, y)
    state, _ = step_fn(state, x, y)
    step_fn.evaluate(state.params, x, y)
    assert seen == [(step_key(5, 0), True), (step_key(5, 1), True), (None, False)]
    assert len({step_key(s, t) for s in range(3) for t in range(3)}) == 9


def test_params_tree_instead_of_init_function_and_init_with_params():
    x, y = make_data()
    start = init_params(0)
    init, step_fn = step((start, objective), adam(), metrics={"accuracy": accuracy})
    state = init()
    assert state.params["w"] is not start["w"]
    np.testing.assert_array_equal(state.params["w"], start["w"])
    state2 = make_step().init(params=start)
    np.testing.assert_array_equal(state2.params["w"], start["w"])
    no_seed = step((lambda: init_params(9), objective), adam()).init(seed=1)   # an init taking no seed
    np.testing.assert_array_equal(no_seed.params["w"], init_params(9)["w"])
    assert no_seed.seed == 1


def test_step_bad_arguments():
    with pytest.raises(TypeError, match="GradientTransformation"):
        step((init_params, objective), "adam")
    with pytest.raises(TypeError, match="objective form takes no loss"):
        step((init_params, objective), "mse", adam())
    with pytest.raises(TypeError, match="axon model or a pair"):
        step(42, "mse", adam())
    with pytest.raises(TypeError, match="tuple of 3"):
        step((init_params, objective, None), adam())
    with pytest.raises(ValueError, match="used twice"):
        step((init_params, objective), adam(), metrics={"loss": accuracy})
    init, step_fn = step((init_params, lambda p, x, y: (x @ p["w"]).data.sum()), adam())
    x, y = make_data()
    with pytest.raises(TypeError, match="single-element Tensor|must be a Tensor"):
        step_fn(init(), x, y)
    init, step_fn = step((init_params, lambda p, x, y: cross_entropy(y, softmax(x @ p["w"])).mean()), adam(),
                         metrics={"accuracy": accuracy})
    with pytest.raises(ValueError, match=r"return \(loss, y_pred\)"):
        step_fn(init(), x, y)


# ---- the loop -----------------------------------------------------------------------------------------
def test_train_learns_and_records_history():
    x, y = make_data()
    s = make_step()
    state = train(s, x[:64], y[:64], epochs=6, batch_size=20, validation_data=(x[64:], y[64:]), verbose=0)
    assert isinstance(state, TrainState)
    assert state.epoch == 6 and state.step == 6 * 4                  # 64 rows in batches of 20: 20+20+20+4
    assert list(state.history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert all(len(v) == 6 for v in state.history.values())
    assert state.history["loss"][-1] < 0.5 * state.history["loss"][0]
    assert state.history["val_accuracy"][-1] > 0.8
    val = s.step.evaluate(state.params, x[64:], y[64:])
    assert val["loss"] == pytest.approx(state.history["val_loss"][-1])
    loss, p = objective({k: Tensor(v) for k, v in state.params.items()}, x[64:], y[64:])
    assert val["loss"] == pytest.approx(float(loss), rel=1e-5)
    assert val["accuracy"] == accuracy(y[64:], p.data)


def test_epoch_metrics_are_example_weighted_batch_averages():
    x, y = make_data(n=10)
    logged = []

    def spy(params, xb, yb):
        loss = ops.sum(xb[:, :1] * 0.0 + xb.shape[0]) * (1.0 / xb.shape[0]) + 0.0 * params["w"].sum()
        logged.append(xb.shape[0])
        return loss                                                 # the loss is the batch size
    state = train(step((init_params, spy), sgd(), compile=False), x, y, epochs=1, batch_size=4, verbose=0)
    assert logged == [4, 4, 2]
    assert state.history["loss"] == [pytest.approx((4 * 4 + 4 * 4 + 2 * 2) / 10)]


def test_every_example_once_per_epoch_reshuffled_reproducibly():
    n = 23
    x = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 5), np.float32)
    y = np.zeros((n, 3), np.float32)

    def run(shuffle, seed):
        order = []

        def spy(params, xb, yb):
            order.append(xb[:, 0].astype(int).tolist())
            return (params["w"] ** 2).sum()
        spy_step = step((init_params, spy), sgd(), compile=False)     # the spy must run every step
        train(spy_step, x, y, epochs=2, batch_size=5, shuffle=shuffle, seed=seed, verbose=0)
        return order

    order = run(True, 0)
    assert [len(b) for b in order] == [5, 5, 5, 5, 3] * 2
    e1, e2 = sum(order[:5], []), sum(order[5:], [])
    assert sorted(e1) == sorted(e2) == list(range(n))
    assert e1 != e2 and e1 != list(range(n))                      # reshuffled every epoch
    assert run(True, 0) == order and run(True, 1) != order
    assert sum(run(False, 0)[:5], []) == list(range(n))


def test_iterables_of_batches():
    x, y = make_data()
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 96, 32)]
    state = train(make_step(), batches, epochs=2, verbose=0)
    assert state.step == 6 and len(state.history["loss"]) == 2

    def endless():
        while True:
            yield x[:16], y[:16]
    state = train(make_step(), endless(), epochs=3, steps_per_epoch=4, verbose=0)
    assert state.step == 12
    gen = iter(batches)
    with pytest.raises(ValueError, match="one-shot iterator"):
        train(make_step(), gen, epochs=2, verbose=0)
    with pytest.raises(ValueError, match=r"pair \(x, y\)"):
        train(make_step(), [x[:4]], epochs=1, verbose=0)


def test_train_bad_arguments():
    x, y = make_data()
    s = make_step()
    with pytest.raises(ValueError, match="inputs have 96 examples but targets have 95"):
        train(s, x, y[:95], verbose=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        train(s, x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="epochs must be a non-negative int"):
        train(s, x, y, epochs=-1, verbose=0)
    with pytest.raises(ValueError, match="verbose must be 0, 1 or 2"):
        train(s, x, y, verbose=3)
    with pytest.raises(ValueError, match="validation_data must be a pair"):
        train(s, x, y, validation_data=x, verbose=0)
    with pytest.raises(ValueError, match="validation inputs have 96 examples but validation targets have 3"):
        train(s, x, y, validation_data=(x, y[:3]), verbose=0)
    with pytest.raises(ValueError, match="no training examples"):
        train(s, x[:0], y[:0], verbose=0)
    with pytest.raises(TypeError, match="pair returned by axon.training.step"):
        train(objective, x, y, verbose=0)
    with pytest.raises(TypeError, match="state must be a TrainState"):
        train(s, x, y, state={"w": 1}, verbose=0)
    state = s.init(seed=1)
    with pytest.raises(ValueError, match="seed=2 but the state to resume was created with seed 1"):
        train(s, x, y, state=state, seed=2, verbose=0)
    with pytest.raises(ValueError, match="callback names must be unique"):
        train(s, x, y, callbacks=[early_stopping("loss"), early_stopping("accuracy")], verbose=0)
    with pytest.raises(TypeError, match="must be a Callback or a function"):
        train(s, x, y, callbacks=[3], verbose=0)


def test_progress_bar_and_verbose_two(capsys):
    x, y = make_data()
    train(make_step(), x, y, epochs=2, batch_size=32, verbose=1)
    err = capsys.readouterr().err
    assert "Epoch 1/2" in err and "Epoch 2/2" in err and "3/3" in err and "accuracy:" in err
    train(make_step(), x, y, epochs=2, batch_size=32, verbose=2)
    out = capsys.readouterr()
    assert out.out.count("Epoch ") == 2 and "loss:" in out.out and out.err == ""
    train(make_step(), x, y, epochs=1, verbose=0)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_keyboard_interrupt_returns_the_state_reached(capsys):
    x, y = make_data()
    calls = []

    def interrupted(params, xb, yb):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return objective(params, xb, yb)
    s = step((init_params, interrupted), adam(), compile=False, metrics={"accuracy": accuracy})
    state = train(s, x, y, epochs=3, batch_size=32, verbose=1)
    assert state.step == 4 and state.epoch == 1 and state.epoch_step == 1 and len(state.history["loss"]) == 1
    assert "interrupted" in capsys.readouterr().err
    # the state is consistent: the same as four uninterrupted steps
    ref = train(make_step(), x, y, epochs=1, batch_size=32, verbose=0)
    _, step_fn = make_step()
    order = axrandom.rng(0, "shuffle", 1).permutation(96)
    ref, _ = step_fn(ref, x[order[:32]], y[order[:32]])
    np.testing.assert_array_equal(state.params["w"], ref.params["w"])


@pytest.mark.parametrize("with_augment", [False, True])
def test_a_run_interrupted_mid_epoch_resumes_exactly(with_augment, capsys, tmp_path):
    """Ctrl-C in the middle of epoch 2, then train(state=...): the same params as never stopping."""
    x, y = make_data()
    augment = (lambda xb, r: xb + 0.05 * r.standard_normal(xb.shape)) if with_augment else None
    calls = []

    def interrupted(params, xb, yb):
        calls.append(1)
        if len(calls) == 5:                                   # 3 batches per epoch: the 2nd of epoch 2
            raise KeyboardInterrupt
        return objective(params, xb, yb)
    state = train(step((init_params, interrupted), adam(), compile=False), x, y, epochs=3, batch_size=32, verbose=0,
                  augment=augment)
    assert (state.epoch, state.step, state.epoch_step) == (1, 4, 1)
    assert "1 batches of the next" in capsys.readouterr().err
    resumed = train(make_step(), x, y, epochs=3, batch_size=32, verbose=0, augment=augment, state=state)
    if with_augment:                                          # through a checkpoint file: the same again
        path = tmp_path / "ckpt.safetensors"
        calls.clear()
        train(step((init_params, interrupted), adam(), compile=False), x, y, epochs=3, batch_size=32, verbose=0,
              augment=augment, callbacks=[checkpoint(path)])
        saved = load_checkpoint(path)
        assert (saved.epoch, saved.step, saved.epoch_step) == (1, 4, 1)
        again = train(make_step(), x, y, epochs=3, batch_size=32, verbose=0, augment=augment, state=saved)
        np.testing.assert_array_equal(again.params["w"], resumed.params["w"])
    straight = train(make_step(), x, y, epochs=3, batch_size=32, verbose=0, augment=augment)
    assert (resumed.epoch, resumed.step, resumed.epoch_step) == (3, 9, 0)
    np.testing.assert_array_equal(resumed.params["w"], straight.params["w"])
    assert resumed.history["loss"][2] == straight.history["loss"][2]     # the epochs after are the same
    assert resumed.history["loss"][1] != straight.history["loss"][1]     # epoch 2's average: 2 batches, not 3


def test_interrupted_in_validation_resumes_with_aligned_history(capsys):
    """Ctrl-C after an epoch's last batch (during validation): nothing is trained twice, and the
    resumed epoch's lost training averages are NaN, so every history list keeps one value per epoch."""
    x, y = make_data()
    calls = []

    def interrupted(params, xb, yb):
        calls.append(len(xb))
        if len(calls) == 4:                                   # 3 training batches, then epoch 1's validation
            raise KeyboardInterrupt
        return objective(params, xb, yb)
    val = (x[:32], y[:32])
    eager = step((init_params, interrupted), adam(), compile=False, metrics={"accuracy": accuracy})   # it raises
    state = train(eager, x, y, epochs=2, batch_size=32, verbose=0, validation_data=val)
    assert (state.epoch, state.step, state.epoch_step) == (0, 3, 3)
    resumed = train(make_step(), x, y, epochs=2, batch_size=32, verbose=0, validation_data=val, state=state)
    straight = train(make_step(), x, y, epochs=2, batch_size=32, verbose=0, validation_data=val)
    np.testing.assert_array_equal(resumed.params["w"], straight.params["w"])
    assert {k: len(v) for k, v in resumed.history.items()} == {k: 2 for k in straight.history}
    assert np.isnan(resumed.history["loss"][0]) and np.isnan(resumed.history["accuracy"][0])
    assert resumed.history["val_loss"] == straight.history["val_loss"]


def test_a_generator_interrupted_after_its_last_batch_resumes():
    x, y = make_data()
    calls = []

    def interrupted(params, xb, yb):
        calls.append(1)
        if len(calls) == 5:                                   # 4 training batches, then validation
            raise KeyboardInterrupt
        return objective(params, xb, yb)
    batches = ((x[i % 96:i % 96 + 24], y[i % 96:i % 96 + 24]) for i in range(0, 10 ** 6, 24))   # one-shot
    eager = step((init_params, interrupted), adam(), compile=False)                 # it raises at a step
    state = train(eager, batches, epochs=2, steps_per_epoch=4, verbose=0, validation_data=(x[:8], y[:8]))
    assert (state.epoch, state.step, state.epoch_step) == (0, 4, 4)
    resumed = train(make_step(), batches, epochs=2, steps_per_epoch=4, verbose=0, state=state,
                    validation_data=(x[:8], y[:8]))
    assert (resumed.epoch, resumed.step, resumed.epoch_step) == (2, 8, 0)


def test_checkpoint_rejects_a_bad_mode_before_training(tmp_path):
    with pytest.raises(ValueError, match="checkpoint: mode must be"):
        checkpoint(tmp_path / "c.safetensors", mode="lowest")


def test_augment_changes_training_batches_only_and_reproducibly():
    x, y = make_data()
    seen = []

    def spy(params, xb, yb, training=True):
        seen.append((training, xb.copy()))
        return objective(params, xb, yb)

    def flip(xb, r):
        assert isinstance(r, np.random.Generator)
        return -xb if r.random() < 2 else xb                   # always flips, after drawing from r
    spy_step = step((init_params, spy), sgd(), compile=False)     # the spy must run every step
    train(spy_step, x[:32], y[:32], epochs=1, batch_size=32, shuffle=False, verbose=0,
          validation_data=(x[32:64], y[32:64]), augment=flip)
    (t1, xb), (t2, xv) = seen
    assert t1 and not t2
    np.testing.assert_array_equal(xb, -x[:32])                # the training batch was augmented...
    np.testing.assert_array_equal(xv, x[32:64])               # ...the validation batch was not
    draws = []
    for _ in range(2):
        train(make_step(), x, y, epochs=1, batch_size=32, verbose=0, seed=4,
              augment=lambda xb, r: draws.append(r.random()) or xb)
    assert draws[:3] == draws[3:] and len(set(draws[:3])) == 3  # a stream per epoch, the same every run
    with pytest.raises(TypeError, match="augment must be a function"):
        train(make_step(), x, y, augment="shift", verbose=0)


def test_float64_stays_float64():
    x, y = make_data()
    s = step((lambda seed: {k: v.astype(np.float64) for k, v in init_params(seed).items()}, objective), adam(),
             metrics={"accuracy": accuracy})
    state = train(s, x.astype(np.float64), y.astype(np.float64), epochs=1, verbose=0)
    assert state.params["w"].dtype == np.float64


# ---- optimizers chains: clipping and accumulation need nothing from the loop -------------------------
def test_gradient_accumulation_and_clipping_through_the_chain():
    x, y = make_data()
    init, step_fn = step((init_params, objective), U.accumulate_gradients(sgd(0.1), every_k=2))
    state = init(seed=0)
    w0 = state.params["w"]
    state, _ = step_fn(state, x[:32], y[:32])
    np.testing.assert_array_equal(state.params["w"], w0)          # first micro-step: no update yet
    state, _ = step_fn(state, x[32:64], y[32:64])
    g1 = value_and_grad(objective, has_aux=True)(init_params(0), x[:32], y[:32])[1]["w"]
    g2 = value_and_grad(objective, has_aux=True)(init_params(0), x[32:64], y[32:64])[1]["w"]
    np.testing.assert_allclose(state.params["w"], w0 - 0.1 * (g1 + g2) / 2, rtol=1e-5, atol=1e-7)

    init, step_fn = step((init_params, objective), U.chain(U.clip_by_global_norm(1e-3), sgd(1.0)))
    state = init(seed=0)
    new, _ = step_fn(state, x, y)
    delta = [new.params[k] - state.params[k] for k in state.params]
    assert np.sqrt(sum((d.astype(np.float64) ** 2).sum() for d in delta)) == pytest.approx(1e-3, rel=1e-4)


# ---- callbacks ------------------------------------------------------------------------------------------
def _state(history, params=None, **kw):
    return TrainState(params=params or {}, opt_state=(), epoch=len(next(iter(history.values()))), step=0,
                      history=history, seed=0, lr_scale=1.0, callbacks={}, **kw)


def test_early_stopping_counts_patience_and_restores_best():
    es = early_stopping("val_loss", patience=2, min_delta=0.01)
    state = _state({"val_loss": [1.0]}, params={"w": np.array([1.0])})
    state = es.on_epoch_end(state)
    for epoch, (loss, w) in enumerate([(0.995, 2.0), (0.5, 3.0), (0.6, 4.0)], start=2):
        state = state._replace(history={"val_loss": state.history["val_loss"] + [loss]}, epoch=epoch,
                               params={"w": np.array([w])})
        state = es.on_epoch_end(state)
        assert not state.stop_training
    assert state.callbacks["early_stopping"]["best"] == 0.5 and state.callbacks["early_stopping"]["wait"] == 1
    state = state._replace(history={"val_loss": state.history["val_loss"] + [0.7]}, epoch=5,
                           params={"w": np.array([5.0])})
    state = es.on_epoch_end(state)
    assert state.stop_training and state.params["w"][0] == 3.0      # epoch 3's params
    acc = early_stopping("val_accuracy", patience=1)                # "auto": higher is better
    s = acc.on_epoch_end(_state({"val_accuracy": [0.5]}))
    s = acc.on_epoch_end(s._replace(history={"val_accuracy": [0.5, 0.7]}))
    assert not s.stop_training
    with pytest.raises(ValueError, match=r"'val_loss' is not in the history \(val_\* metrics need validation_data=\); "
                                         r"available: \['loss'\]"):
        es.on_epoch_end(_state({"loss": [1.0]}))
    with pytest.raises(ValueError, match="patience must be a positive int"):
        early_stopping(patience=0)
    with pytest.raises(ValueError, match="mode must be"):
        early_stopping(mode="lowest")


def test_early_stopping_in_training():
    # w is pulled to 3; the validation metric |w| can only get worse, so training stops after patience epochs
    x, y = make_data(n=8)
    s = step((lambda seed: {"w": np.zeros(1, np.float32)}, lambda p, x, y: (((p["w"] - 3.0) ** 2).sum(), p["w"] + 0 * x[:, :1])),
             sgd(0.05), metrics={"dist": lambda yt, yp: float(np.abs(yp).mean())})
    state = train(s, x, y, epochs=20, batch_size=8, validation_data=(x, y), verbose=0,
                  callbacks=[early_stopping("val_dist", patience=2)])
    assert state.epoch == 3 and state.stop_training
    np.testing.assert_allclose(state.params["w"], [0.3], rtol=1e-5)   # epoch 1's params: 3 * (1 - 0.9)
    again = train(s, x, y, epochs=20, batch_size=8, validation_data=(x, y), verbose=0,
                  callbacks=[early_stopping("val_dist", patience=2, restore_best=False)])
    assert again.epoch == 3 and again.params["w"][0] > 0.7


def test_reduce_lr_on_plateau_with_cooldown():
    r = reduce_lr_on_plateau("loss", factor=0.5, patience=2, cooldown=1, min_scale=0.2)
    state, scales = _state({"loss": []}), []
    for loss in [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]:
        state = state._replace(history={"loss": state.history["loss"] + [loss]})
        state = r.on_epoch_end(state)
        scales.append(state.lr_scale)
    assert scales == [1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2]
    with pytest.raises(ValueError, match="factor must be in"):
        reduce_lr_on_plateau(factor=1.5)


def test_callback_functions_and_hook_order(tmp_path):
    x, y = make_data()
    seen = []

    def halve_lr(state):
        seen.append(state.epoch)
        return state._replace(lr_scale=state.lr_scale * 0.5)
    state = train(make_step(), x, y, epochs=3, callbacks=[halve_lr, lambda s: None], verbose=0)
    assert seen == [1, 2, 3] and state.lr_scale == 0.125
    with pytest.raises(TypeError, match="returned a int"):
        train(make_step(), x, y, epochs=1, callbacks=[lambda s: 1], verbose=0)

    class Recorder(cb.Callback):
        name = "recorder"

        def on_train_begin(self, state):
            seen.append("begin")

        def after_epoch(self, state):
            seen.append(("after", state.epoch))

        def on_train_end(self, state):
            seen.append("end")
    seen.clear()
    train(make_step(), x, y, epochs=2, callbacks=[Recorder()], verbose=0)
    assert seen == ["begin", ("after", 1), ("after", 2), "end"]


def test_checkpoint_every_n_and_best(tmp_path):
    x, y = make_data()
    path = tmp_path / "ckpt.safetensors"
    saved = []

    def spy(state):
        saved.append((state.epoch, os.path.exists(path)))
    state = train(make_step(), x[:64], y[:64], epochs=4, validation_data=(x[64:], y[64:]), verbose=0,
                  callbacks=[spy, checkpoint(path, every=2, monitor="val_accuracy")])
    assert saved == [(1, False), (2, False), (3, True), (4, True)]
    assert sorted(os.listdir(tmp_path)) == ["ckpt.best.safetensors", "ckpt.safetensors"]   # no temp files left behind
    last, best = load_checkpoint(path), load_checkpoint(tmp_path / "ckpt.best.safetensors")
    assert last.epoch == 4 and last.step == state.step
    same_tree(last.params, state.params)
    same_tree(last.history, state.history)
    accs = state.history["val_accuracy"]
    assert best.epoch == 1 + int(np.argmax(accs))
    assert last.callbacks["checkpoint"]["best"] == max(accs)
    (tmp_path / "other.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="other.safetensors"):
        load_checkpoint(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="does not exist"):
        checkpoint(tmp_path / "missing" / "c.safetensors")


def test_csv_logger(tmp_path):
    x, y = make_data()
    path = tmp_path / "log.csv"
    state = train(make_step(), x, y, epochs=3, callbacks=[csv_logger(path)], verbose=0)
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch,loss,accuracy" and len(lines) == 4
    assert [float(v) for v in lines[3].split(",")[1:]] == [state.history["loss"][2], state.history["accuracy"][2]]


def test_resume_from_checkpoint_matches_an_uninterrupted_run(tmp_path):
    """Stop after 2 epochs, load the checkpoint, train to 4: the same params, optimizer state and history
    as 4 epochs in one go (shuffles, dropout-like noise and callback state all continue exactly)."""
    x, y = make_data()

    def noisy(params, xb, yb, key=None):
        mask = axrandom.rng(key).random(xb.shape) > 0.2 if key is not None else 1.0   # dropout on the inputs
        return objective(params, xb * mask, yb)

    def jitter(xb, r):
        return xb + r.normal(0.0, 0.1, xb.shape).astype(xb.dtype)

    def run(epochs, path, state=None):
        s = step((init_params, noisy), adam(), metrics={"accuracy": accuracy})
        cbs = [early_stopping("val_loss", patience=10), reduce_lr_on_plateau("val_loss", patience=1, factor=0.5),
               checkpoint(path)]
        return train(s, x[:64], y[:64], epochs=epochs, batch_size=16, seed=None if state else 7, state=state,
                     validation_data=(x[64:], y[64:]), callbacks=cbs, verbose=0, augment=jitter)

    full = run(4, tmp_path / "full.safetensors")
    run(2, tmp_path / "half.safetensors")
    resumed_from = load_checkpoint(tmp_path / "half.safetensors")
    assert resumed_from.epoch == 2 and resumed_from.seed == 7
    resumed = run(4, tmp_path / "resumed.safetensors", state=resumed_from)
    assert resumed.step == full.step == 16
    same_tree(resumed.params, full.params)
    same_tree(resumed.opt_state, full.opt_state)
    same_tree(resumed.history, full.history)
    same_tree(resumed.callbacks, full.callbacks)
    assert resumed.lr_scale == full.lr_scale
    assert type(resumed.opt_state[0]) is type(full.opt_state[0])    # optimizer state classes come back


def test_plot_history(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    plot_history({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8]}, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="non-empty history"):
        plot_history({}, path)
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match=r"pip install 'axon\[plot\]'"):
        plot_history({"loss": [1.0]}, path)


# ---- torch: the same training run, step by step -------------------------------------------------------
def test_training_matches_torch():
    torch = pytest.importorskip("torch")
    x, y = make_data()
    s = step((init_params, objective), U.chain(U.scale_by_adam(), U.scale(-0.05)), metrics={"accuracy": accuracy})
    state = train(s, x, y, epochs=3, batch_size=32, shuffle=False, verbose=0)
    p0 = init_params(0)
    w = torch.tensor(p0["w"], requires_grad=True)
    b = torch.tensor(p0["b"], requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05)
    losses = []
    for _ in range(3):
        for i in range(0, 96, 32):
            xb, yb = torch.tensor(x[i:i + 32]), torch.tensor(y[i:i + 32])
            loss = -(yb * torch.log(torch.softmax(xb @ w + b, -1) + 1e-7)).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    np.testing.assert_allclose(state.params["w"], w.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(state.params["b"], b.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert state.history["loss"][0] == pytest.approx(np.mean(losses[:3]), rel=1e-5)


# ---- the model form -------------------------------------------------------------------------------------
def mlp(dropout=0.0, batch_norm=False):
    from axon import model as M
    h = M.input((None, 5)).dense(16)
    if batch_norm:
        h = h.batch_norm()
    h = h.activation("relu")
    if dropout:
        h = h.dropout(rate=dropout)
    return h.dense(3, activation="softmax")


def ce(y_true, y_pred):
    return cross_entropy(y_true, y_pred)                        # per-example: the step averages them


def test_model_form_step_matches_value_and_grad_by_hand():
    from axon.model import apply
    x, y = make_data()
    model = mlp()
    init, step_fn = step(model, ce, adam(0.01), metrics={"accuracy": accuracy})
    state = init(seed=2)
    params, opt = state.params, adam(0.01)
    opt_state = opt.init(params)
    for i in range(3):
        xb, yb = x[i * 32:(i + 1) * 32], y[i * 32:(i + 1) * 32]
        state, metrics = step_fn(state, xb, yb)
        (loss, p), g = value_and_grad(lambda q: (ce(yb, apply(model, q, xb, training=True)[0]).mean(),
                                                 apply(model, q, xb)[0]), has_aux=True)(params)
        updates, opt_state = opt.update(g, opt_state, params)
        params = U.apply_updates(params, updates)
        assert metrics["loss"] == pytest.approx(float(loss), rel=1e-6)
    for layer in params:
        for name in params[layer]:
            np.testing.assert_allclose(state.params[layer][name], params[layer][name], rtol=1e-5, atol=1e-7)
            assert state.params[layer][name].dtype == np.float32


def test_model_form_carries_layer_state_and_keeps_frozen_params():
    from axon.model import apply, freeze
    x, y = make_data()
    model = mlp(batch_norm=True)
    init, step_fn = step(model, ce, adam(0.01))
    state = init(seed=0)
    bn = next(k for k in state.params if k.startswith("batch_norm"))
    assert set(state.opt_state[0].mu) == {k for k in state.params}                   # state in its layer...
    assert set(state.opt_state[0].mu[bn]) == {"gamma", "beta"}                         # ...but not optimized
    _, new_state = apply(model, state.params, x[:32], training=True, key=step_key(0, 0))
    after, _ = step_fn(state, x[:32], y[:32])
    for name in ("mean", "var"):
        np.testing.assert_allclose(after.params[bn][name], new_state[bn][name], rtol=1e-6)
        assert not np.allclose(after.params[bn][name], state.params[bn][name])
    frozen = freeze(model, ["dense_0"])
    init, step_fn = step(frozen, ce, adam(0.01))
    state = init(seed=0)
    after, _ = step_fn(state, x[:32], y[:32])
    np.testing.assert_array_equal(after.params["dense_0"]["kernel"], state.params["dense_0"]["kernel"])
    assert not np.array_equal(after.params["dense_1"]["kernel"], state.params["dense_1"]["kernel"])


def test_model_form_dropout_is_reproducible_from_the_seed_and_resumes_exactly(tmp_path):
    x, y = make_data()
    model = mlp(dropout=0.5)
    s = step(model, ce, adam(0.01), metrics={"accuracy": accuracy})

    def run(epochs, seed=None, state=None, path=None):
        return train(s, x[:64], y[:64], epochs=epochs, batch_size=16, seed=seed, state=state, verbose=0,
                     validation_data=(x[64:], y[64:]), callbacks=[checkpoint(path)] if path else [])
    a, b, c = run(3, seed=1), run(3, seed=1), run(3, seed=2)
    same_tree(a.params, b.params)
    assert not np.array_equal(a.params["dense_0"]["kernel"], c.params["dense_0"]["kernel"])
    run(1, seed=1, path=tmp_path / "one.safetensors")
    resumed = run(3, state=load_checkpoint(tmp_path / "one.safetensors"))
    same_tree(resumed.params, a.params)
    same_tree(resumed.history, a.history)
    # dropout is off when evaluating: the validation numbers are those of plain inference
    val = evaluate(model, a.params, x[64:], y[64:], metrics={"accuracy": accuracy}, loss=ce)
    assert val == {"loss": pytest.approx(a.history["val_loss"][-1]), "accuracy": a.history["val_accuracy"][-1]}


def test_evaluate_is_exact_and_batch_size_independent():
    from axon.model import predict
    x, y = make_data()
    model = mlp()
    params = model.init(seed=0)
    full = evaluate(model, params, x, y, metrics={"accuracy": accuracy}, loss=ce, batch_size=96)
    assert evaluate(model, params, x, y, metrics={"accuracy": accuracy}, loss=ce, batch_size=7) == pytest.approx(full)
    p = predict(model, params, x)
    assert full["accuracy"] == accuracy(y, p)
    assert full["loss"] == pytest.approx(float(ce(y, p).mean().data), rel=1e-6)
    state = step(model, ce, adam()).init(seed=0)
    assert evaluate(model, state, x, y, metrics={"accuracy": accuracy}) == {"accuracy": full["accuracy"]}
    with pytest.raises(ValueError, match="x has 96 examples but y has 95"):
        evaluate(model, params, x, y[:95])
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        evaluate(model, params, x, y, batch_size=0)


def test_model_form_bad_arguments():
    model = mlp()
    with pytest.raises(TypeError, match="needs a loss"):
        step(model, optimizer=adam())
    with pytest.raises(TypeError, match="loss must be a name"):
        step(model, 3, adam())
    with pytest.raises(TypeError, match="GradientTransformation"):
        step(model, ce, None)


def test_model_form_matches_torch():
    torch = pytest.importorskip("torch")
    import axon.optimizers as O
    x, y = make_data()
    model = mlp()
    s = step(model, ce, O.adamw(0.01, weight_decay=0.05))
    state = s.init(seed=0)
    w0, b0 = state.params["dense_0"]["kernel"], state.params["dense_0"]["bias"]
    w1, b1 = state.params["dense_1"]["kernel"], state.params["dense_1"]["bias"]
    state = train(s, x, y, epochs=2, batch_size=32, shuffle=False, verbose=0, state=state)
    tw = [torch.tensor(a, requires_grad=True) for a in (w0, b0, w1, b1)]
    opt = torch.optim.AdamW(tw, lr=0.01, weight_decay=0.05)
    for _ in range(2):
        for i in range(0, 96, 32):
            xb, yb = torch.tensor(x[i:i + 32]), torch.tensor(y[i:i + 32])
            p = torch.softmax(torch.relu(xb @ tw[0] + tw[1]) @ tw[2] + tw[3], -1)
            loss = -(yb * torch.log(p + 1e-7)).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    for got, want in zip((state.params["dense_0"]["kernel"], state.params["dense_0"]["bias"],
                          state.params["dense_1"]["kernel"], state.params["dense_1"]["bias"]), tw):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-4, atol=1e-5)


def test_losses_and_metrics_by_name():
    from axon.functional import losses, metrics
    x, y = make_data()
    model = mlp()
    s = step(model, "categorical_cross_entropy", adam(), metrics=["accuracy"])
    state = train(s, x[:64], y[:64], epochs=2, batch_size=32, validation_data=(x[64:], y[64:]), verbose=0)
    assert list(state.history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    val = evaluate(model, state.params, x[64:], y[64:], metrics=["accuracy"], loss="categorical_cross_entropy")
    p = model.predict(state.params, x[64:])
    assert val["accuracy"] == pytest.approx(float(metrics.accuracy(y[64:], p)))
    assert val["loss"] == pytest.approx(float(np.mean(losses.categorical_cross_entropy(y[64:], p).data)), rel=1e-6)
    assert val["loss"] == pytest.approx(state.history["val_loss"][-1])
    with pytest.raises(ValueError, match="unknown"):
        step(model, "categorical_crossentropy", adam())
    with pytest.raises(ValueError, match="unknown"):
        step(model, "categorical_cross_entropy", adam(), metrics=["acuracy"])


def test_cross_entropy_after_softmax_is_computed_from_the_logits_by_name_or_function():
    """A confident, wrong softmax model: the loss from the logits is exact, the clipped one is capped."""
    import axon
    model = axon.input((None, 2)).dense(2, activation="softmax")
    params = {"dense_0": {"kernel": np.array([[100.0, -100.0], [0.0, 0.0]], np.float32),
                          "bias": np.zeros(2, np.float32)}}
    x, y = np.array([[1.0, 0.0]], np.float32), np.array([[0.0, 1.0]], np.float32)   # logits (100, -100), label 1
    for loss in ("categorical_cross_entropy", axon.losses.categorical_cross_entropy):
        out = axon.training.evaluate(model, params, x, y, loss=loss)
        assert out["loss"] == pytest.approx(200.0, rel=1e-5)                 # log-sum-exp minus the true logit
    clipped = axon.training.evaluate(model, params, x, y, loss=lambda t, p: axon.losses.categorical_cross_entropy(t, p))
    assert clipped["loss"] == pytest.approx(-np.log(1e-7), rel=1e-3)          # a function of one's own: probabilities
