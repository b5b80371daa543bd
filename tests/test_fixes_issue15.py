"""Issue 15: wrong results, crashes and unclear errors that a peer test suite and a bad-input sweep found.

Each test failed before its fix: a wrong value, an internal error (ZeroDivisionError, IndexError,
"mismatch", "'Axon' object is not iterable"), or bad input silently accepted.
"""
import numpy as np
import pytest

import axon
from axon import layers, losses, metrics, optimizers
from axon.autograd import Tensor, check_grads, primitive, PRIMITIVES
from axon.autograd import ops
from axon.updates import apply_updates


# ---- adam/adamw: the fused path and the reference path agree on every input ----------------------------
@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_fused_and_reference_agree_on_a_0d_param(name):
    make = getattr(optimizers, name)
    p = {"x": np.array(1.0, np.float32)}
    out = {}
    for fused in (None, False):
        opt = make(0.1, fused=fused)
        updates, state = opt.update({"x": 2 * p["x"]}, opt.init(p), p)   # 2 * a 0-d array: a numpy scalar
        out[fused] = (np.asarray(updates["x"]), np.asarray(state[0].mu["x"]))
    np.testing.assert_allclose(out[None][0], out[False][0], rtol=1e-6)
    np.testing.assert_allclose(out[None][0], -0.1 - (0.1 * 0.01 if name == "adamw" else 0.0), rtol=1e-5)
    assert out[None][1].dtype == out[False][1].dtype == np.float32


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_float64_grads_for_float32_params_keep_float32_on_both_paths(name):
    make = getattr(optimizers, name)
    r = np.random.default_rng(0)
    params = {"w": r.standard_normal((3, 4)).astype(np.float32)}
    grads = [{"w": r.standard_normal((3, 4))} for _ in range(3)]          # float64
    results = {}
    for fused in (None, False):
        opt, p = make(0.01, fused=fused), params
        state = opt.init(p)
        for g in grads:
            updates, state = opt.update(g, state, p)
            p = apply_updates(p, updates)
        results[fused] = p, state
    (p_fused, s_fused), (p_ref, s_ref) = results[None], results[False]
    np.testing.assert_allclose(p_fused["w"], p_ref["w"], rtol=1e-5, atol=1e-6)
    assert p_fused["w"].dtype == p_ref["w"].dtype == np.float32
    assert s_fused[0].mu["w"].dtype == s_ref[0].mu["w"].dtype == np.float32     # the state keeps it too
    assert s_fused[0].nu["w"].dtype == s_ref[0].nu["w"].dtype == np.float32


def test_adam_fused_still_names_a_shape_mismatch():
    opt = optimizers.adam(0.1)
    p = {"w": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match="'w'"):
        opt.update({"w": np.zeros(4, np.float32)}, opt.init(p), p)


# ---- radam: a threshold under 4 would take the square root of a negative number -----------------------
def test_radam_threshold_below_4_is_rejected_up_front():
    with pytest.raises(ValueError, match="threshold"):
        optimizers.radam(1e-3, threshold=2.0)


def test_radam_threshold_4_runs_and_stays_finite():
    opt = optimizers.radam(0.1, threshold=4.0)
    p = {"w": np.ones(2, np.float32)}
    state = opt.init(p)
    for _ in range(8):
        u, state = opt.update({"w": 2 * p["w"]}, state, p)
        p = apply_updates(p, u)
    assert np.isfinite(p["w"]).all()


# ---- model creation: sizes must be ints ------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["784", (None, 3.7), (None, "4"), (None, True), 784])
def test_input_shape_must_hold_ints(shape):
    with pytest.raises(TypeError, match="input: shape"):
        axon.input(shape)


def test_input_shape_negative_size():
    with pytest.raises(ValueError, match="input: shape"):
        axon.input((None, -2))


@pytest.mark.parametrize("units, error", [(2.5, TypeError), ("4", TypeError), (True, TypeError), (-1, ValueError),
                                          (0, ValueError)])
def test_dense_units_must_be_a_positive_int(units, error):
    with pytest.raises(error, match="dense: units"):
        axon.input((None, 3)).dense(units)


def test_dense_on_an_unknown_feature_size_names_the_shape():
    with pytest.raises(ValueError, match=r"dense: .*\(None, None\)"):
        axon.input((None, None)).dense(3)


def test_embedding_builder_rejects_fractional_and_nan_indices():
    model = axon.input((None, 2)).embedding(3, 2)
    params = axon.init(model)
    whole = axon.predict(model, params, np.array([[0.0, 2.0]], np.float32))    # whole floats are indices
    np.testing.assert_array_equal(whole[0], params["embedding_0"]["kernel"][[0, 2]])
    with pytest.raises(TypeError, match="embedding: indices must be integers.*0.7"):
        axon.predict(model, params, np.array([[0.7, 1.9]]))
    with pytest.raises(ValueError, match="embedding: .*NaN"):
        axon.predict(model, params, np.array([[np.nan, 1.0]]))
    with pytest.raises(TypeError, match="embedding: vocab_size"):
        axon.input((None, 2)).embedding(3.5, 2)


@pytest.mark.parametrize("lr, error", [(float("nan"), ValueError), ("0.1", TypeError)])
def test_fromage_lr_is_checked(lr, error):
    with pytest.raises(error, match="fromage: lr"):
        optimizers.fromage(lr)


# ---- metrics ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("label", [-1, 3, 5, 1.5])
def test_top_k_rejects_labels_outside_the_classes(label):
    y_pred = np.array([[0.1, 0.2, 0.7]], np.float32)
    with pytest.raises(ValueError, match=r"top_k_categorical_accuracy: .*\[0, 3\)"):
        metrics.top_k_categorical_accuracy(np.array([label]), y_pred, k=2)


def test_top_k_valid_labels_still_work():
    y_pred = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]], np.float32)
    assert float(metrics.top_k_categorical_accuracy(np.array([0, 1]), y_pred, k=2)) == 0.5


# ---- zero channels, zero groups, zero examples ------------------------------------------------------------
def test_batch_norm_with_no_channels_is_a_value_error():
    z = np.zeros(0, np.float32)
    with pytest.raises(ValueError, match="batch_norm: the input has no channels"):
        layers.batch_norm(np.ones((2, 0), np.float32), z, z, z, z, training=True)


def test_conv_with_no_input_channels_is_a_value_error():
    with pytest.raises(ValueError, match="conv: the input has no channels"):
        layers.conv(np.ones((1, 4, 4, 0), np.float32), np.ones((3, 3, 0, 2), np.float32))
    with pytest.raises(ValueError, match="conv: the input has no channels"):
        axon.input((None, 4, 4, 0)).conv(2, kernel_size=3)


@pytest.mark.parametrize("groups, error", [(0, ValueError), (-2, ValueError), (1.0, TypeError)])
def test_conv_builder_feature_group_size_is_checked(groups, error):
    with pytest.raises(error, match="conv: feature_group_size"):
        axon.input((None, 4, 4, 2)).conv(2, kernel_size=3, feature_group_size=groups)


def test_evaluate_on_no_examples_is_a_value_error():
    model = axon.input((None, 3)).dense(2, activation="softmax")
    x, y = np.zeros((0, 3), np.float32), np.zeros((0, 2), np.float32)
    with pytest.raises(ValueError, match="evaluate: no examples"):
        axon.training.evaluate(model, axon.init(model), x, y, metrics=["accuracy"])


# ---- predict is differentiable in every argument ------------------------------------------------------------
def _small_model():
    model = axon.input((None, 3)).dense(4, activation="tanh").dense(2)
    params = axon.init(model, seed=1, dtype="float64")
    return model, params


def test_grad_through_predict_with_respect_to_the_inputs():
    model, params = _small_model()
    x = np.random.default_rng(0).standard_normal((2, 3))
    g = axon.grad(lambda x: (axon.predict(model, params, x) ** 2).sum())(x)
    assert g.shape == x.shape and np.abs(g).max() > 0
    check_grads(lambda x: (axon.predict(model, params, x) ** 2).sum(), (x,))
    check_grads(lambda x: (model.predict(params, x) ** 2).sum(), (x,))        # the method too


def test_predict_given_a_tensor_that_requires_grad_returns_a_tensor():
    model, params = _small_model()
    x = Tensor(np.ones((1, 3)), requires_grad=True)
    y = axon.predict(model, params, x)
    assert isinstance(y, Tensor)
    y.sum().backward()
    assert x.grad.shape == (1, 3)
    assert isinstance(axon.predict(model, params, np.ones((1, 3))), np.ndarray)   # plain arrays: numpy


# ---- training --------------------------------------------------------------------------------------------
def _data(n=64, seed=0):
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, 4)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[(x[:, 0] > 0).astype(int)]
    return x, y


def _mlp_step(opt):
    model = axon.input((None, 4)).dense(2, activation="softmax")
    return axon.training.step(model, "categorical_cross_entropy", opt)


def test_steps_per_epoch_is_honoured_for_array_data():
    x, y = _data()
    state = axon.training.train(_mlp_step(optimizers.sgd(0.1)), x, y, epochs=3, batch_size=8, steps_per_epoch=2,
                                verbose=0)
    assert state.step == 6 and state.epoch == 3
    with pytest.raises(ValueError, match="steps_per_epoch=9"):
        axon.training.train(_mlp_step(optimizers.sgd(0.1)), x, y, batch_size=8, steps_per_epoch=9, verbose=0)


def test_dpsgd_through_step_uses_per_example_gradients():
    x, y = _data(16)
    # no noise, a clip no gradient reaches: the mean of the per-example gradients is the batch gradient
    dp_init, dp_step = _mlp_step(optimizers.dpsgd(0.5, l2_norm_clip=1e6, noise_multiplier=0.0))
    sgd_init, sgd_step = _mlp_step(optimizers.sgd(0.5))
    dp_state, sgd_state = dp_init(seed=0), sgd_init(seed=0)
    for _ in range(3):
        dp_state, dp_metrics = dp_step(dp_state, x, y)
        sgd_state, sgd_metrics = sgd_step(sgd_state, x, y)
    np.testing.assert_allclose(dp_metrics["loss"], sgd_metrics["loss"], rtol=1e-5)
    for layer in sgd_state.params:
        for k in sgd_state.params[layer]:
            np.testing.assert_allclose(dp_state.params[layer][k], sgd_state.params[layer][k], rtol=1e-4, atol=1e-6)


def test_dpsgd_clips_each_example_through_train():
    x, y = _data(32)
    s = _mlp_step(optimizers.dpsgd(0.5, l2_norm_clip=0.1, noise_multiplier=0.5, seed=1))
    state = axon.training.train(s, x, y, epochs=2, batch_size=8, verbose=0)
    assert state.step == 8 and all(np.isfinite(v).all() for v in state.params["dense_0"].values())
    # the objective form too
    objective = lambda p, xb, yb: ((xb @ p["w"] - yb) ** 2).mean()          # noqa: E731
    s = axon.training.step(({"w": np.zeros((4, 2), np.float32)}, objective),
                           optimizers.dpsgd(0.1, l2_norm_clip=1.0, noise_multiplier=0.0))
    assert axon.training.train(s, x, y, epochs=1, batch_size=8, verbose=0).step == 4


def test_train_stops_on_a_nan_loss_and_keeps_the_last_finite_state():
    x, y = _data(16)
    x[9, 1] = np.nan                                            # batch 3 of 4 (batch_size 4, no shuffle)
    s = _mlp_step(optimizers.sgd(0.1))
    with pytest.warns(RuntimeWarning, match="loss is nan at step 3"):
        state = axon.training.train(s, x, y, epochs=3, batch_size=4, shuffle=False, verbose=0)
    assert state.step == 2 and state.epoch == 0 and state.stop_training
    assert all(np.isfinite(v).all() for v in state.params["dense_0"].values())
    kept = axon.training.train(s, x, y, epochs=2, batch_size=4, shuffle=False, verbose=0, terminate_on_nan=False)
    assert kept.step == 8 and np.isnan(kept.history["loss"]).all()


def test_train_rejects_python_lists_with_a_clear_type_error():
    x, y = _data(8)
    s = _mlp_step(optimizers.sgd(0.1))
    with pytest.raises(TypeError, match="train: inputs must be numpy arrays.*np.asarray"):
        axon.training.train(s, x.tolist(), y, verbose=0)
    with pytest.raises(TypeError, match="train: targets must be numpy arrays"):
        axon.training.train(s, x, y.tolist(), verbose=0)


def test_checkpoint_to_a_directory_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        axon.training.callbacks.checkpoint(tmp_path)


# ---- unclear errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", ["0", 1.0, (0, "1"), True])
def test_sum_axis_must_be_ints(axis):
    x = Tensor(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="sum: axis must be"):
        ops.sum(x, axis=axis)
    with pytest.raises(TypeError, match="axis must be"):
        ops.mean(x, axis=axis)


def test_dropout_rate_must_be_a_number():
    with pytest.raises(TypeError, match="dropout: rate"):
        axon.input((None, 3)).dropout("0.5")
    with pytest.raises(TypeError, match="dropout: rate"):
        layers.dropout(np.ones((2, 3), np.float32), key=0, rate="0.5")
    with pytest.raises(ValueError, match="dropout: rate"):
        axon.input((None, 3)).dropout(1.5)


def test_pad_with_more_pairs_than_axes_names_the_shape():
    with pytest.raises(ValueError, match=r"pad: pad_width .*\(2, 3\)"):
        ops.pad(Tensor(np.ones((2, 3))), ((0, 1), (0, 1), (0, 1)))


def test_cross_entropy_from_logits_with_no_classes():
    z = np.zeros((2, 0), np.float32)
    with pytest.raises(ValueError, match="at least one class"):
        losses.categorical_cross_entropy(z, z, from_logits=True)


# ---- add/multiply/subtract/concatenate take two nodes as well as a list --------------------------------------
def test_combinators_take_nodes_one_by_one():
    a, b = axon.input((None, 3), name="a"), axon.input((None, 3), name="b")
    xa, xb = np.array([[1.0, 2.0, 3.0]], np.float32), np.array([[4.0, 5.0, 6.0]], np.float32)
    feed = {"a": xa, "b": xb}
    for fn, want in ((axon.add, xa + xb), (axon.subtract, xa - xb), (axon.multiply, xa * xb),
                     (axon.concatenate, np.concatenate([xa, xb], -1))):
        np.testing.assert_array_equal(axon.predict(fn(a, b), {}, feed), want)
        np.testing.assert_array_equal(axon.predict(fn([a, b]), {}, feed), want)
    assert axon.add(a, b, a.relu()).shape == (None, 3)
    assert axon.concatenate(a, b, axis=-1).shape == a.concatenate(b).shape == (None, 6)


def test_combinators_name_both_shapes_when_they_do_not_broadcast():
    a, b = axon.input((None, 3), name="a"), axon.input((None, 4), name="b")
    with pytest.raises(ValueError, match=r"add layer cannot be applied to 'a' \(None, 3\), 'b' \(None, 4\)"):
        axon.add(a, b)
    with pytest.raises(ValueError, match=r"multiply layer .*'a' \(None, 3\), 'b' \(None, 4\)"):
        axon.multiply(a, b)
    with pytest.raises(TypeError, match="add: give the layers"):
        axon.add([a], b)


# ---- smaller things -------------------------------------------------------------------------------------------
def test_redefining_a_primitive_from_main_replaces_it():
    def forward(x):
        return x * 2
    forward.__module__ = "__main__"                             # as if typed into a Python session
    try:
        primitive("test15.twice", forward, lambda dy, y, x: (dy * 2,))
        def forward3(x):
            return x * 3
        forward3.__module__ = "__main__"
        prim = primitive("test15.twice", forward3, lambda dy, y, x: (dy * 3,))
        assert PRIMITIVES["test15.twice"] is prim
        x = Tensor([1.0], requires_grad=True)
        y = ops.apply(prim, x)
        y.sum().backward()
        assert float(y.data[0]) == 3.0 and float(x.grad[0]) == 3.0
        with pytest.raises(ValueError, match="already in the table"):
            primitive("add", forward, lambda dy, y, x: (dy,))          # a library primitive stays protected
    finally:
        PRIMITIVES.pop("test15.twice", None)


def test_a_library_module_cannot_redefine_a_main_primitive_silently():
    def forward(x):
        return x
    forward.__module__ = "__main__"
    try:
        primitive("test15.same", forward, lambda dy, y, x: (dy,))
        with pytest.raises(ValueError, match="already in the table"):
            primitive("test15.same", lambda x: x, lambda dy, y, x: (dy,))   # this module is not __main__
    finally:
        PRIMITIVES.pop("test15.same", None)


def test_tensor_grad_fn_matches_the_repr():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = x * 2.0
    assert x.grad_fn is None and y.grad_fn is not None
    assert repr(y.grad_fn) == "<mul>" and "grad_fn=<mul>" in repr(y)
    assert y.grad_fn.prim.name == "mul" and y.grad_fn.parents[0] is x


_OPENMP_SCRIPT = r"""
import ctypes, ctypes.util, sys
path = ctypes.util.find_library("gomp")
if path is None:
    print("skip: no libgomp"); sys.exit()
ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)        # as PyTorch loads its libgomp: first, and globally
omp = ctypes.CDLL(None)
omp.omp_set_num_threads(1)                         # as torch.set_num_threads(1) does
import numpy as np
import numba
from axon import kernels
x = np.ones((600, 600), np.float32)
kernels.matmul(x, x)                               # a parallel kernel: numba's pool starts here
if numba.threading_layer() != "omp":
    print("skip: numba does not use OpenMP here"); sys.exit()
print(omp.omp_get_max_threads(), kernels.num_threads())
"""


def test_axon_leaves_a_shared_openmp_runtime_as_it_found_it():
    """Numba's pool binds to an OpenMP runtime already loaded (PyTorch's) and used to reset its thread count."""
    import os
    import subprocess
    import sys
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: numba's pool has one thread too, nothing to reset")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", _OPENMP_SCRIPT], capture_output=True, text=True, timeout=300,
                         cwd=root, env={**os.environ, "PYTHONPATH": root}).stdout.strip()
    if out.startswith("skip"):
        pytest.skip(out)
    omp_threads, axon_threads = map(int, out.split())
    assert omp_threads == 1                          # the other library's setting is back
    assert axon_threads > 1                          # numba's own loops keep their threads
