"""A property-based sweep of the public API (issue 15): random shapes, dtypes, NaN/inf, empty batches and
wrong types. Every call must give a correct result or a ValueError/TypeError that names the function.

Correct results are checked against numpy where that is cheap (shapes, dtypes, values of simple layers);
an error must be one of the two types and mention the function (or the argument) it came from, never an
IndexError, ZeroDivisionError or numpy's own message alone.
"""
import math

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

import axon  # noqa: E402
from axon import layers, metrics, optimizers  # noqa: E402
from axon.autograd import Tensor, ops  # noqa: E402

SWEEP = settings(max_examples=40, deadline=None, derandomize=True)

# values a user might pass where an int, a number or a shape is expected
ANYTHING = st.one_of(st.integers(-3, 6), st.floats(allow_nan=True, allow_infinity=True, width=32),
                     st.text(max_size=3), st.none(), st.booleans(), st.tuples(st.integers(0, 3)))


def _clean_error(e: Exception, *names: str) -> None:
    """The error is a ValueError/TypeError and its message mentions one of ``names``."""
    assert isinstance(e, (ValueError, TypeError)), f"{type(e).__name__}: {e}"
    assert any(n in str(e) for n in names), f"message names none of {names}: {e}"


def _call(fn, *names):
    try:
        return fn(), None
    except Exception as e:                                     # noqa: BLE001  (the sweep inspects every error)
        _clean_error(e, *names)
        return None, e


# ---- model creation: sizes and rates -----------------------------------------------------------------
@SWEEP
@given(units=ANYTHING)
def test_dense_units(units):
    node, err = _call(lambda: axon.input((None, 3)).dense(units), "dense")
    if err is None:                                            # accepted: only a positive int
        assert isinstance(units, int) and not isinstance(units, bool) and units >= 1 and node.shape == (None, units)


@SWEEP
@given(size=ANYTHING)
def test_input_shape_sizes(size):
    node, err = _call(lambda: axon.input((None, size)), "input")
    if err is None:
        assert size is None or (isinstance(size, int) and not isinstance(size, bool) and size >= 0)
        assert node.shape == (None, size)


@SWEEP
@given(rate=ANYTHING)
def test_dropout_rate(rate):
    node, err = _call(lambda: axon.input((None, 3)).dropout(rate), "dropout")
    if err is None:
        assert isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 <= rate < 1


@SWEEP
@given(units=ANYTHING, groups=ANYTHING)
def test_conv_units_and_groups(units, groups):
    _call(lambda: axon.input((None, 6, 6, 2)).conv(units, kernel_size=3, feature_group_size=groups), "conv")


@SWEEP
@given(vocab=ANYTHING, size=ANYTHING)
def test_embedding_sizes(vocab, size):
    _call(lambda: axon.input((None, 4)).embedding(vocab, size), "embedding")


@SWEEP
@given(lr=ANYTHING)
def test_optimizer_learning_rates(lr):
    for make in (optimizers.fromage, optimizers.sgd, optimizers.adam, optimizers.radam):
        opt, err = _call(lambda: make(lr), make.__name__, "lr", "step_size", "scale")
        if err is None:
            p = {"w": np.ones(2, np.float32)}
            _call(lambda: opt.update({"w": p["w"]}, opt.init(p), p), make.__name__)


# ---- functional layers on random shapes, dtypes and values -------------------------------------------
def _arrays(min_dims=0, max_dims=3):
    shapes = st.lists(st.integers(0, 4), min_size=min_dims, max_size=max_dims).map(tuple)
    dtypes = st.sampled_from([np.float32, np.float64, np.int32, np.bool_])
    fill = st.sampled_from([0.5, np.nan, np.inf, -1.0])
    def make(t):
        with np.errstate(invalid="ignore"):                    # NaN cast to an int dtype: any value will do
            return np.full(t[0], t[2]).astype(t[1])
    return st.tuples(shapes, dtypes, fill).map(make)


@SWEEP
@given(x=_arrays(), axis=ANYTHING)
def test_sum_over_any_axis(x, axis):
    y, err = _call(lambda: ops.sum(Tensor(x), axis=axis), "sum", "axis", "Tensor")
    if err is None:
        np.testing.assert_array_equal(y.data, np.sum(x, axis=axis))


@SWEEP
@given(x=_arrays(1, 3), units=st.integers(1, 3))
def test_dense_layer(x, units):
    kernel = np.ones((x.shape[-1] if x.ndim else 1, units), np.float32)
    y, err = _call(lambda: layers.dense(x, kernel), "dense", "matmul")
    if err is None:
        assert y.shape == x.shape[:-1] + (units,)


@SWEEP
@given(x=_arrays(2, 4))
def test_batch_norm_training(x):
    c = x.shape[-1] if x.ndim else 0
    ones, zeros = np.ones(c, np.float32), np.zeros(c, np.float32)
    out, err = _call(lambda: layers.batch_norm(x, ones, zeros, zeros, ones, training=True), "batch_norm")
    if err is None:
        assert out[0].shape == x.shape


@SWEEP
@given(x=_arrays(3, 3), c_out=st.integers(0, 3))
def test_conv_layer(x, c_out):
    kernel = np.ones((1, x.shape[-1], c_out), x.dtype if x.dtype.kind == "f" else np.float32)
    y, err = _call(lambda: layers.conv(x, kernel), "conv")
    if err is None:
        assert y.shape == x.shape[:-1] + (c_out,)


@SWEEP
@given(n=st.integers(0, 3), k=st.integers(0, 4), fill=st.sampled_from([0.0, np.nan, np.inf]))
def test_cross_entropy_from_logits(n, k, fill):
    logits = np.full((n, k), fill, np.float32)
    y_true = np.eye(max(k, 1), dtype=np.float32)[np.zeros(n, int)][:, :k]
    loss, err = _call(lambda: axon.losses.categorical_cross_entropy(y_true, logits, from_logits=True),
                      "cross_entropy", "cross-entropy")
    if err is None:
        assert loss.shape == (n,)


@SWEEP
@given(labels=st.lists(st.one_of(st.integers(-2, 5), st.floats(allow_nan=True, width=32)), min_size=1, max_size=4),
       k=st.integers(1, 4))
def test_top_k_labels(labels, k):
    y_pred = np.tile(np.array([0.1, 0.2, 0.7], np.float32), (len(labels), 1))
    value, err = _call(lambda: metrics.top_k_categorical_accuracy(np.array(labels), y_pred, k=k),
                       "top_k_categorical_accuracy")
    if err is None:
        assert all(isinstance(v, int) or float(v).is_integer() for v in labels)
        assert all(0 <= v < 3 for v in labels) and 0.0 <= float(value) <= 1.0


@SWEEP
@given(x=_arrays(1, 3), pairs=st.lists(st.tuples(st.integers(-1, 2), st.integers(0, 2)), min_size=0, max_size=4))
def test_pad_widths(x, pairs):
    y, err = _call(lambda: ops.pad(Tensor(x), tuple(pairs)), "pad")
    if err is None:
        want = np.pad(x, np.broadcast_to(np.asarray(pairs, int), (x.ndim, 2)))
        assert y.shape == want.shape


@SWEEP
@given(n=st.integers(0, 3), fill=st.sampled_from([0.5, np.nan]))
def test_evaluate_and_train_on_small_or_empty_data(n, fill):
    model = axon.input((None, 2)).dense(2, activation="softmax")
    x = np.full((n, 2), fill, np.float32)
    y = np.eye(2, dtype=np.float32)[np.zeros(n, int)]
    result, err = _call(lambda: axon.training.evaluate(model, axon.init(model), x, y, metrics=["accuracy"]),
                        "evaluate")
    if err is None:
        assert n > 0 and 0.0 <= result["accuracy"] <= 1.0
    s = axon.training.step(model, "categorical_cross_entropy", optimizers.sgd(0.1))
    with pytest.warns(RuntimeWarning) if (n and math.isnan(fill)) else _no_warning():
        state, err = _call(lambda: axon.training.train(s, x, y, epochs=2, batch_size=2, verbose=0), "train")
    if err is None:
        assert n > 0 and (state.epoch == 2 or math.isnan(fill))


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
