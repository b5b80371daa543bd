"""The training loop's events (Elixir Axon's Axon.Loop): order, every=N filters, running metrics, halting."""
import numpy as np
import pytest

from axon import updates as U
from axon.training import EVENTS, callbacks as cb, handle_event, step, train


def make_data(n=48, seed=0):
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3 * r.standard_normal(n)     # (n,) float64 targets
    return x, y


def objective(p, x, y):
    return ((x @ p["w"] - y) ** 2).mean()                               # mean squared error


def make_step(lr=0.05):
    return step((lambda seed: {"w": np.zeros(3)}, objective), U.scale(-lr))


class Recorder(cb.Callback):
    """Records every event and legacy hook, with the step and epoch it saw."""
    name = "recorder"

    def __init__(self):
        self.seen = []

    def handle(self, event, state, metrics):
        self.seen.append((event, state.epoch, state.step))
        return super().handle(event, state, metrics)

    def on_train_begin(self, state):
        self.seen.append(("on_train_begin", state.epoch, state.step))

    def on_epoch_end(self, state):
        self.seen.append(("on_epoch_end", state.epoch, state.step))

    def on_train_end(self, state):
        self.seen.append(("on_train_end", state.epoch, state.step))


def test_events_fire_in_axons_order_and_the_old_hooks_map_onto_them():
    x, y = make_data(16)
    rec = Recorder()
    train(make_step(), x, y, epochs=2, batch_size=8, verbose=0, callbacks=[rec])
    expected = [("started", 0, 0), ("on_train_begin", 0, 0)]
    for e in range(2):
        expected.append(("epoch_started", e, 2 * e))
        for b in range(2):
            s = 2 * e + b
            expected += [("iteration_started", e, s), ("iteration_completed", e, s + 1)]
        expected += [("epoch_completed", e + 1, 2 * e + 2), ("on_epoch_end", e + 1, 2 * e + 2)]
    expected += [("completed", 2, 4), ("on_train_end", 2, 4)]
    assert rec.seen == expected
    assert set(EVENTS) >= {event for event, _, _ in rec.seen if not event.startswith("on_")}


def test_every_n_counts_steps_and_epochs_over_the_whole_run_and_across_a_resume():
    x, y = make_data(40)                                               # 5 batches of 8 per epoch
    steps, epochs = [], []
    handlers = [handle_event("iteration_completed", lambda s: steps.append(s.step), every=3),
                handle_event("epoch_completed", lambda s: epochs.append(s.epoch), every=2)]
    train(make_step(), x, y, epochs=4, batch_size=8, verbose=0, callbacks=handlers)
    assert steps == [3, 6, 9, 12, 15, 18] and epochs == [2, 4]
    steps.clear(), epochs.clear()
    state = train(make_step(), x, y, epochs=1, batch_size=8, verbose=0, callbacks=handlers)
    train(make_step(), x, y, epochs=4, batch_size=8, verbose=0, callbacks=handlers, state=state)
    assert steps == [3, 6, 9, 12, 15, 18] and epochs == [2, 4]
    started = []
    train(make_step(), x, y, epochs=1, batch_size=8, verbose=0,
          callbacks=[handle_event("iteration_started", lambda s: started.append(s.step), every=2)])
    assert started == [1, 3]                                           # the 2nd and 4th step are about to run


def test_iteration_metrics_are_the_epochs_running_means_by_hand():
    x, y = make_data(44)                                               # batches of 12, 12, 12, 8
    before, running, final = [], [], []

    def record_params(state):
        before.append(state.params["w"].copy())

    def record(state, metrics):
        running.append(metrics["loss"])
    train(make_step(), x, y, epochs=1, batch_size=12, shuffle=False, verbose=0,
          callbacks=[handle_event("iteration_started", record_params), handle_event("iteration_completed", record),
                     handle_event("epoch_completed", lambda s, m: final.append(m))])
    losses, sizes = [], []
    for i, w in enumerate(before):                                     # each batch's loss before its step, in numpy
        xb, yb = x[12 * i:12 * i + 12], y[12 * i:12 * i + 12]
        losses.append(np.mean((xb @ w - yb) ** 2))
        sizes.append(len(xb))
    want = np.cumsum(np.multiply(losses, sizes)) / np.cumsum(sizes)   # example-weighted running means
    np.testing.assert_allclose(running, want, rtol=1e-12)
    assert final[0]["loss"] == pytest.approx(want[-1], rel=1e-12)


def test_halt_epoch_ends_each_epoch_early_and_fires_epoch_halted():
    x, y = make_data(48)                                               # 6 batches of 8
    halted = []
    state = train(make_step(), x, y, epochs=3, batch_size=8, verbose=0,
                  callbacks=[handle_event("iteration_completed", lambda s: ("halt_epoch", s),
                                          filter=lambda s: s.step % 2 == 0),    # after 2 batches of each epoch
                             handle_event("epoch_halted", lambda s, m: halted.append((s.epoch, s.step, m["loss"])))])
    assert state.step == 6 and state.epoch == 3 and len(state.history["loss"]) == 3
    assert [(e, s) for e, s, _ in halted] == [(0, 2), (1, 4), (2, 6)]
    assert state.history["loss"] == [loss for _, _, loss in halted]   # each epoch's mean over the 2 batches it ran
    with_status = train(make_step(), x, y, epochs=1, batch_size=8, verbose=0,
                        callbacks=[handle_event("epoch_started", lambda s: ("halt_epoch", s))])
    assert with_status.step == 0 and with_status.epoch == 1 and np.isnan(with_status.history["loss"][0])


def test_halt_loop_mid_epoch_resumes_exactly_and_fires_halted(capsys):
    x, y = make_data(48)
    rec = Recorder()
    stop = handle_event("iteration_completed", lambda s: s._replace(stop_training=True),
                        filter=lambda s: s.step == 9)                  # batch 3 of epoch 2
    state = train(make_step(), x, y, epochs=3, batch_size=8, verbose=1, callbacks=[stop, rec])
    assert (state.epoch, state.step, state.epoch_step, state.stop_training) == (1, 9, 3, True)
    assert "stopped by a callback at step 9" in capsys.readouterr().err
    events = [e for e, _, _ in rec.seen]
    assert "halted" in events and "completed" not in events and events[-1] == "on_train_end"
    resumed = train(make_step(), x, y, epochs=3, batch_size=8, verbose=0, state=state)
    straight = train(make_step(), x, y, epochs=3, batch_size=8, verbose=0)
    np.testing.assert_array_equal(resumed.params["w"], straight.params["w"])
    assert resumed.step == straight.step == 18
    loop = train(make_step(), x, y, epochs=3, batch_size=8, verbose=0,
                 callbacks=[handle_event("epoch_completed", lambda s: ("halt_loop", s))])
    assert (loop.epoch, loop.step, loop.stop_training) == (1, 6, True)


def test_handle_event_bad_arguments():
    with pytest.raises(ValueError, match=r"event must be one of \['started'"):
        handle_event("iteration_finished", print)
    with pytest.raises(ValueError, match="every must be a positive int, got 0"):
        handle_event("started", print, every=0)
    with pytest.raises(TypeError, match="fn must be a function"):
        handle_event("started", 3)
    x, y = make_data(16)
    with pytest.raises(TypeError, match=r"returned a tuple from iteration_completed; .*\(status, state\)"):
        train(make_step(), x, y, verbose=0, callbacks=[handle_event("iteration_completed", lambda s: ("stop", s))])



# ---- several outputs, a weighted sum of losses (Axon's list of {loss, weight}) ----------------------
def test_a_list_of_loss_weight_pairs_trains_a_two_output_model():
    import axon
    r = np.random.default_rng(4)
    x = r.standard_normal((64, 5)).astype(np.float32)
    labels = (x[:, 0] > 0).astype(int)
    y_cls, y_reg = np.eye(2, dtype=np.float32)[labels], x[:, 1:2] * 2                # (64, 2), (64, 1)
    trunk = axon.input((None, 5)).dense(8, activation="tanh", name="trunk")
    model = axon.container([trunk.dense(2, name="cls", activation="softmax"), trunk.dense(1, name="reg")])
    s = step(model, [("categorical_cross_entropy", 1.0), ("mean_squared_error", 0.5)], U.scale(-0.1))
    state = s.init(seed=0)
    p = state.params
    h = np.tanh(x[:16] @ p["trunk"]["kernel"] + p["trunk"]["bias"])
    z = h @ p["cls"]["kernel"] + p["cls"]["bias"]
    log_p = z - z.max(1, keepdims=True) - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
    reg = h @ p["reg"]["kernel"] + p["reg"]["bias"]
    want = -(y_cls[:16] * log_p).sum(1).mean() + 0.5 * ((reg - y_reg[:16]) ** 2).mean()   # by hand, numpy
    _, metrics = s.step(state, x[:16], (y_cls[:16], y_reg[:16]))
    assert metrics["loss"] == pytest.approx(want, rel=1e-5)
    trained = train(s, x, (y_cls, y_reg), epochs=15, batch_size=16, verbose=0, validation_data=(x, (y_cls, y_reg)))
    assert trained.history["loss"][-1] < 0.5 * trained.history["loss"][0]
    assert trained.history["val_loss"][-1] == pytest.approx(trained.history["loss"][-1], rel=0.3)
    named = axon.container({"cls": model.parents[0], "reg": model.parents[1]})
    s2 = step(named, {"cls": ("categorical_cross_entropy", 1.0), "reg": ("mean_squared_error", 0.5)}, U.scale(-0.1))
    _, m2 = s2.step(s2.init(seed=0), x[:16], {"cls": y_cls[:16], "reg": y_reg[:16]})
    assert m2["loss"] == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match=r"2 \(loss, weight\) pairs need 2 model outputs and targets"):
        s.step(state, x[:16], y_cls[:16])
    with pytest.raises(TypeError, match="each multi-output loss must be a pair"):
        step(model, ["mean_squared_error"], U.scale(-0.1))
