"""Every fast path has a slow twin: each is forced here and must give the twin's numbers.

Which path runs is decided by thresholds (serial below ``PARALLEL_MIN`` / ``_PARALLEL_MACS`` / ``_SPLIT_MIN``,
column blocks of ``_BLOCK_BYTES``), by the inputs (the convolution's transposed columns for few channels
per group), or by the graph (the model plan folds a lone relu into its layer's bias add; a cross-entropy
after a softmax is computed from the logits; Adam runs one fused kernel). Tests elsewhere force some of
them (``test_kernels_*``: batch norm, bias_relu, reductions, pools, softmax, matmul, Adam's in-place
kernel, the convolution's chunks and blocks over the cross product of its options and its backward
computing only dx or only dw; ``test_optimizers``: the fused Adam against the numpy chain); this file
forces the rest:

- the model plan's fusion decisions (which layers get the relu epilogue);
- a model-form step whose cross-entropy is taken from the logits, against the same loss on the
  probabilities (values, one training step, ``evaluate``);
- the fused Adam(W) update (out of place, as the optimizer calls it) split across threads;
- the fused LSTM and GRU kernels (forward and backward) split across threads.
"""
import importlib

import numpy as np
import pytest

import axon
import axon.functional.layers as L
from axon.autograd import Tensor, ops
from axon.model.run import _plan
from axon.training import evaluate, step
from axon.updates import apply_updates

adam_module = importlib.import_module("axon.kernels.adam")
recurrent_module = importlib.import_module("axon.kernels.recurrent")


# ---- the model plan: which relus are folded into their layer ----------------------------------------------
def test_plan_fuses_a_relu_only_into_a_layer_it_alone_reads():
    """The decisions themselves, and the fused model's outputs against the same layers called one by one."""
    x = axon.input((None, 6, 6, 2))
    a = x.conv(3, kernel_size=3, padding="same", activation="relu")          # fused: the relu is its one reader
    b = a.conv(3, kernel_size=3, padding="same")                              # read by its relu and the add
    c = axon.add([b.relu(), b]).flatten().dense(4, activation="relu")         # fused
    d = c.dense(4, use_bias=False).relu()                                     # no bias: nothing to fuse into
    e = x.conv(3, kernel_size=1, channels="first").relu()                     # channels-first: not fusable
    model = axon.container({"d": d, "e": e})
    steps = _plan(model).steps
    assert {s.node.id for s in steps if s.fused} == {a.parents[0].id, c.parents[0].id}
    assert {s.node.id for s in steps if s.by_parent} == {a.id, c.id}

    r = np.random.default_rng(1)
    params = model.init(seed=0)
    for layer in params.values():
        if "bias" in layer:
            layer["bias"] = r.standard_normal(layer["bias"].shape).astype(np.float32)
    xs = r.standard_normal((2, 6, 6, 2)).astype(np.float32)
    p = params
    h = ops.relu(L.conv(xs, p["conv_0"]["kernel"], p["conv_0"]["bias"], padding="same"))
    h = L.conv(h, p["conv_1"]["kernel"], p["conv_1"]["bias"], padding="same")
    h = ops.relu(L.dense(ops.reshape(ops.relu(h) + h, (2, -1)), p["dense_0"]["kernel"], p["dense_0"]["bias"]))
    want_d = ops.relu(L.dense(h, p["dense_1"]["kernel"])).numpy()
    want_e = ops.relu(L.conv(xs, p["conv_2"]["kernel"], p["conv_2"]["bias"], channels="first")).numpy()
    out = model.predict(params, xs)
    np.testing.assert_allclose(out["d"], want_d, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["e"], want_e, rtol=1e-5, atol=1e-5)


# ---- cross-entropy from the logits behind a softmax ----------------------------------------------------
@pytest.mark.parametrize("sparse", [False, True])
def test_cross_entropy_from_logits_trains_as_from_the_probabilities(sparse):
    """The model form takes ``categorical_cross_entropy`` after a softmax from the logits (one fused kernel);
    a loss function of one's own gets the probabilities. On moderate logits they agree: the loss, one step,
    and evaluate."""
    from axon.functional import losses
    r = np.random.default_rng(0)
    x = r.standard_normal((13, 5)).astype(np.float32)
    labels = r.integers(0, 3, 13)
    y = labels if sparse else np.eye(3, dtype=np.float32)[labels]
    model = axon.input((None, 5)).dense(4, activation="tanh").dense(3, activation="softmax")
    name = "sparse_categorical_cross_entropy" if sparse else "categorical_cross_entropy"
    on_probabilities = (lambda t, p: losses.sparse_categorical_cross_entropy(t, p)) if sparse else \
        (lambda t, p: losses.categorical_cross_entropy(t, p))
    results = []
    for loss in (name, on_probabilities):
        init, step_fn = step(model, loss, axon.optimizers.sgd(0.5))
        state = init(seed=0)
        state, metrics = step_fn(state, x, y)
        results.append((metrics["loss"], state.params, evaluate(model, state.params, x, y, loss=loss, batch_size=4)))
    (loss_a, params_a, eval_a), (loss_b, params_b, eval_b) = results
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    assert eval_a["loss"] == pytest.approx(eval_b["loss"], rel=1e-5)
    for layer in params_a:
        for k in params_a[layer]:
            np.testing.assert_allclose(params_a[layer][k], params_b[layer][k], rtol=1e-5, atol=1e-6)


def test_softmax_over_another_axis_is_not_taken_from_the_logits():
    """A softmax over axis 1 of (N, 3, 4) outputs is no class-axis softmax: the loss must see its probabilities."""
    from axon.functional import losses
    r = np.random.default_rng(0)
    model = axon.input((None, 3, 5)).dense(4).softmax(axis=1)
    params = model.init(seed=0)
    x = r.standard_normal((6, 3, 5)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[r.integers(0, 4, (6, 3))]                  # one-hot over the last axis
    by_name = evaluate(model, params, x, y, loss="categorical_cross_entropy")
    p = model.predict(params, x)
    assert by_name["loss"] == pytest.approx(float(losses.categorical_cross_entropy(y, p).numpy().mean()), rel=1e-6)


# ---- the fused Adam(W) update, split across threads -------------------------------------------------------
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_fused_adam_split_across_threads_follows_the_reference(rng, monkeypatch, weight_decay):
    params = {"w": rng.standard_normal((37, 11)).astype(np.float32), "b": rng.standard_normal(11).astype(np.float32)}
    fused = axon.optimizers.adamw(0.01, weight_decay=weight_decay, fused=True)
    reference = axon.optimizers.adamw(0.01, weight_decay=weight_decay, fused=False)
    s_fused, s_ref = fused.init(params), reference.init(params)
    monkeypatch.setattr(adam_module, "PARALLEL_MIN", 0)                      # every leaf split into chunks
    for _ in range(5):
        g = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
        u_fused, s_fused = fused.update(g, s_fused, params)
        u_ref, s_ref = reference.update(g, s_ref, params)
        for k in params:
            assert u_fused[k].dtype == np.float32
            np.testing.assert_allclose(u_fused[k], u_ref[k], rtol=1e-5, atol=1e-8)
        params = apply_updates(params, u_fused)


# ---- the fused LSTM and GRU, split across threads --------------------------------------------------------
@pytest.mark.parametrize("H", [5, 8])                        # dh = da U^T in one block of columns (5), in four (8)
def test_recurrent_kernels_split_across_threads_equal_the_serial_loop(rng, monkeypatch, H):
    """One chunk of batch rows per thread (``_PARALLEL_MIN`` 0): the serial kernels' values and gradients."""
    from axon.autograd import value_and_grad
    B, T = 6, 7
    xw, h0, c0 = rng.standard_normal((B, T, 4 * H)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    wh, b = 0.3 * rng.standard_normal((H, 4 * H)), rng.standard_normal(4 * H)
    mask = rng.random((B, T)) > 0.3                           # padding in the middle of rows too

    def f(xw, h0, c0, wh, b):
        lstm = recurrent_module.lstm_sequence(xw, h0, c0, wh, b, mask=mask, reverse=True)
        gru = recurrent_module.gru_sequence(xw[..., :3 * H], h0, wh[:, :3 * H], b[:3 * H], mask=mask)
        return (lstm * 1.5).sum() + (gru ** 2).sum()

    grad = value_and_grad(f, argnums=(0, 1, 2, 3, 4))
    with monkeypatch.context() as m:                          # split first: a row it skipped cannot inherit
        m.setattr(recurrent_module, "_PARALLEL_MIN", 0)       # the serial run's freed memory
        split = grad(xw, h0, c0, wh, b)
    serial = grad(xw, h0, c0, wh, b)
    np.testing.assert_allclose(split[0], serial[0], rtol=1e-12)
    for got, want in zip(split[1], serial[1]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
