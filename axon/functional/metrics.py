"""Metrics ``metric(y_true, y_pred, ...) -> numpy scalar``: how well a model does, in plain terms.

Metrics need no gradients: they take numpy arrays or Tensors (read without recording a graph) and
return numpy scalars. On a device (``device="cuda"``) the accuracy, the binary counts (``precision``,
``recall``, ...) and ``mean_absolute_error`` are reduced where the arrays live, and only their few
numbers come back to the host (one copy), not the batch's predictions and targets; the other metrics
copy their inputs to the host. Names and options follow Elixir Axon's ``Axon.Metrics``; ``running_average``
and ``running_sum`` accumulate a metric over batches; ``get(name)`` resolves a name.

>>> import numpy as np
>>> float(accuracy(np.array([1, 0, 2]), np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.5, 0.3, 0.2]])))
0.6666666666666666
>>> int(true_positives(np.array([1, 0, 1, 1]), np.array([0.8, 0.6, 0.4, 0.9])))
2

The binary metrics count a prediction as positive when it is above ``threshold`` (0.5), and a target
as positive when it is above 0.5 (so 0/1, booleans and -1/1 labels all work).
"""
from __future__ import annotations

import numpy as np

from ..autograd import apply, ops, primitive
from ..autograd.engine import no_grad
from ..autograd.tensor import Tensor
from ..backend import backend_of, is_host, to_device, to_host
from ._registry import getter

__all__ = [
    "accuracy", "precision", "recall", "f1", "true_positives", "true_negatives", "false_positives",
    "false_negatives", "sensitivity", "specificity", "mean_absolute_error", "top_k_categorical_accuracy",
    "running_average", "running_sum", "get",
]

_KINDS = ("binary", "categorical", "sparse")


def _array(x) -> np.ndarray:
    """The values of a Tensor, array, list or number as a host numpy array (never part of a graph).

    Metrics are computed on the host: a batch's predictions are small, and what comes back is a number.
    """
    return to_host(x.data if isinstance(x, Tensor) else x)


def _on_device(*xs) -> list | None:
    """``xs`` as Tensors on one device when any of them is a device array (host ones moved there), else None.

    Then a metric reduces on that device and brings back only its result (a few numbers, one copy).
    Empty arrays stay on the host path (nothing to reduce; numpy's empty-array rules).

    >>> _on_device(np.ones(2), [1, 0]) is None
    True
    """
    arrays = [x.data if isinstance(x, Tensor) else x for x in xs]
    device = next((a for a in arrays if not is_host(a)), None)
    if device is None or any(getattr(a, "size", 1) == 0 for a in arrays):
        return None
    name = backend_of(device).name
    return [Tensor._wrap(a if not is_host(a) else to_device(np.asarray(a), name)) for a in arrays]


def _counts_forward(y_true, y_pred, kind, cut):
    """``metrics.counts`` on numpy arrays: four float64 numbers (see ``_COUNTS``)."""
    if kind == "binary":
        actual, predicted = y_true > 0.5, y_pred > cut
        return np.array([np.count_nonzero(actual & predicted), np.count_nonzero(~actual & predicted),
                         np.count_nonzero(~actual & ~predicted), np.count_nonzero(actual & ~predicted)], np.float64)
    K = y_pred.shape[-1]
    guess = np.argmax(y_pred.reshape(-1, K), -1)                             # (R,)
    if kind == "sparse":
        return np.array([np.count_nonzero(y_true.reshape(-1) == guess), 0, 0, 0], np.float64)
    t = y_true.reshape(-1, K)                                                # (R, K)
    return np.array([np.count_nonzero(np.argmax(t, -1) == guess), t.min(), t.max(),
                     np.abs(t.sum(-1, dtype=np.float64) - 1).max()], np.float64)


# One pass over a batch's targets and predictions that leaves four numbers (float64), a primitive so each
# backend has one kernel for it (axon.cuda: one launch), and only the four numbers come to the host:
#   kind="binary" (y_true, y_pred of one shape; cut: y_pred's threshold): true/false positives, true/false
#   negatives; kind="sparse" (labels (R,), y_pred (R, K)): [label == argmax, 0, 0, 0]; kind="categorical"
#   (both (R, K)): [argmax == argmax, min y_true, max y_true, max over rows |sum y_true - 1|] (the last
#   three: whether y_true's rows are one-hot or distributions). Never differentiated.
_COUNTS = primitive("metrics.counts", _counts_forward)


def _counts(y_true: Tensor, y_pred: Tensor, kind: str, cut=0.5) -> np.ndarray:
    """``metrics.counts`` where the arrays live; its four numbers on the host (one copy)."""
    if kind == "binary":                                 # the threshold in y_pred's dtype, as numpy compares
        cut = y_pred.dtype.type(cut) if y_pred.dtype.kind == "f" else np.float64(cut)
    with no_grad():
        return to_host(apply(_COUNTS, y_true, y_pred, kind=kind, cut=cut).data)


def _device_accuracy(y_true: Tensor, y_pred: Tensor, threshold, from_logits, kind) -> np.float64:
    """``accuracy`` reduced on the device (``metrics.counts``: one pass, four numbers back), not the arrays."""
    if kind is None and y_true.shape == y_pred.shape and y_pred.ndim > 1 and y_pred.shape[-1] > 1:
        hits, low, high, off = _counts(y_true, y_pred, "categorical")
        _accuracy_kind(y_true, y_pred, lambda: bool(low >= 0 and high <= 1 and off <= 1e-6 + 1e-5))
        return np.float64(hits / (y_true.size // y_true.shape[-1]))
    if kind is None:
        kind = _accuracy_kind(y_true, y_pred, lambda: False)          # (shapes decide: never asked here)
    if kind == "binary":
        if y_true.shape != y_pred.shape and y_pred.shape[-1:] == (1,) and y_true.shape == y_pred.shape[:-1]:
            y_pred = y_pred.reshape(y_pred.shape[:-1])                # (N, 1) predictions for (N,) targets
        _same_shape_of("accuracy", y_true, y_pred)
        tp, _, tn, _ = _counts(y_true, y_pred, "binary", _cut("accuracy", threshold, from_logits))
        return np.float64((tp + tn) / y_true.size)
    if kind == "categorical":
        _same_shape_of("accuracy", y_true, y_pred)
        return np.float64(_counts(y_true, y_pred, "categorical")[0] / (y_true.size // y_true.shape[-1]))
    labels = _sparse_labels("accuracy", y_true, y_pred)
    return np.float64(_counts(labels, y_pred, "sparse")[0] / labels.size)


def _same_shape(name, y_true, y_pred):
    """Both as arrays, or a ValueError naming both shapes."""
    y_true, y_pred = _array(y_true), _array(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{name}: y_true and y_pred must have the same shape, "
                         f"got y_true {y_true.shape} and y_pred {y_pred.shape}")
    return y_true, y_pred


def _is_distribution(y: np.ndarray) -> bool:
    """Rows over the last axis are one-hot vectors or probability distributions."""
    return bool(np.all((y >= 0) & (y <= 1)) and np.allclose(y.sum(-1), 1.0, atol=1e-6))


def _accuracy_kind(y_true, y_pred, is_distribution=None) -> str:
    """Binary, categorical or sparse, from the shapes (and, for equal 2-D+ shapes, the targets' values).

    ``is_distribution()`` says whether ``y_true``'s rows are one-hot or distributions (default: read from
    the host array, ``_is_distribution``).
    """
    if y_pred.ndim == 0:
        raise ValueError(f"accuracy: y_pred needs at least one axis, got shape {y_pred.shape}")
    batch, k = y_pred.shape[:-1], y_pred.shape[-1]
    if y_true.shape == y_pred.shape:
        if y_pred.ndim == 1 or k == 1:
            return "binary"
        if (is_distribution or (lambda: _is_distribution(y_true)))():
            return "categorical"
        raise ValueError(f"accuracy: y_true and y_pred both have shape {y_pred.shape} but the rows of y_true "
                         f"are not one-hot (multi-label targets?); pass kind='binary' to threshold each "
                         f"element or kind='categorical' to compare argmaxes")
    if k > 1 and y_true.shape in (batch, batch + (1,)):
        return "sparse"
    if k == 1 and y_true.shape == batch:
        return "binary"
    raise ValueError(f"accuracy: cannot match y_true shape {y_true.shape} with y_pred shape {y_pred.shape}; "
                     f"expected equal shapes (binary or one-hot), or labels of shape {batch} for "
                     f"predictions over {k} classes (sparse)")


def accuracy(y_true, y_pred, *, threshold=0.5, from_logits=False, kind=None):
    """Fraction of correct predictions; binary, categorical or sparse, detected from the shapes.

    - binary: y_pred 1-D, or a last axis of size 1, same shape as y_true: correct when
      (y_pred > threshold) == (y_true > 0.5); with ``from_logits`` y_pred is first put through a sigmoid.
    - categorical: both (..., K) with one-hot (or probability) rows: argmax(y_true) == argmax(y_pred).
    - sparse: integer labels (...) or (..., 1) and y_pred (..., K): label == argmax(y_pred).

    Equal shapes (..., K>1) with targets that are not one-hot are ambiguous (multi-label binary or
    categorical?) and raise ValueError; ``kind=`` ("binary", "categorical", "sparse") settles it.

    >>> float(accuracy(np.array([[1], [0], [0]]), np.array([[0.7], [0.6], [0.1]])))      # binary
    0.6666666666666666
    >>> float(accuracy(np.array([[0, 1], [1, 0]]), np.array([[0.2, 0.8], [0.3, 0.7]])))  # categorical
    0.5
    """
    if kind is not None and kind not in _KINDS:
        raise ValueError(f"accuracy: kind must be one of 'binary', 'categorical', 'sparse' or None, got {kind!r}")
    on_device = _on_device(y_true, y_pred)
    if on_device is not None:
        return _device_accuracy(*on_device, threshold, from_logits, kind)
    y_true, y_pred = _array(y_true), _array(y_pred)
    if kind is None:
        kind = _accuracy_kind(y_true, y_pred)
    elif kind not in _KINDS:
        raise ValueError(f"accuracy: kind must be one of 'binary', 'categorical', 'sparse' or None, got {kind!r}")
    if kind == "binary":
        if y_true.shape != y_pred.shape and y_pred.shape[-1:] == (1,) and y_true.shape == y_pred.shape[:-1]:
            y_pred = y_pred[..., 0]                            # (N, 1) predictions for (N,) targets
        y_true, y_pred = _same_shape("accuracy", y_true, y_pred)
        return np.mean(_predicted("accuracy", y_pred, threshold, from_logits) == (y_true > 0.5))
    if kind == "categorical":
        y_true, y_pred = _same_shape("accuracy", y_true, y_pred)
        return np.mean(np.argmax(y_true, -1) == np.argmax(y_pred, -1))
    return np.mean(_sparse_labels("accuracy", y_true, y_pred) == np.argmax(y_pred, -1))


def _same_shape_of(name, y_true, y_pred) -> None:
    """A ValueError naming both shapes when they differ (``_same_shape`` for arrays that stay where they are)."""
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{name}: y_true and y_pred must have the same shape, "
                         f"got y_true {y_true.shape} and y_pred {y_pred.shape}")


def _sparse_labels(name, y_true, y_pred):
    """Labels of shape ``y_pred.shape[:-1]`` (a trailing 1 is dropped), or a ValueError naming both shapes."""
    batch = y_pred.shape[:-1]
    if y_true.shape not in (batch, batch + (1,)):
        raise ValueError(f"{name}: sparse labels must have shape {batch} or {batch + (1,)} for y_pred "
                         f"{y_pred.shape}, got y_true {y_true.shape}")
    return y_true.reshape(batch)


def _cut(name, threshold, from_logits=False):
    """What y_pred is compared with: ``threshold``, or with ``from_logits`` the logit of the threshold."""
    if from_logits:                                            # sigmoid(x) > t  <=>  x > log(t / (1 - t))
        if not 0 < threshold < 1:
            raise ValueError(f"{name}: threshold must be in (0, 1) with from_logits=True, got {threshold}")
        return np.log(threshold / (1 - threshold))
    return threshold


def _predicted(name, y_pred, threshold, from_logits=False):
    """Boolean positive predictions: y_pred > threshold (on sigmoid(y_pred) with ``from_logits``)."""
    return y_pred > _cut(name, threshold, from_logits)


def _confusion(name, y_true, y_pred, threshold):
    """(true positives, false positives, true negatives, false negatives) as int64 counts.

    On a device the four counts are sums there, and come back in one copy.
    """
    on_device = _on_device(y_true, y_pred)
    if on_device is not None:                                  # one pass on the device, four numbers back
        y_true, y_pred = on_device
        _same_shape_of(name, y_true, y_pred)
        return tuple(np.int64(c) for c in _counts(y_true, y_pred, "binary", threshold))
    y_true, y_pred = _same_shape(name, y_true, y_pred)
    actual, predicted = y_true > 0.5, _predicted(name, y_pred, threshold)
    tp = np.count_nonzero(actual & predicted)
    fp = np.count_nonzero(~actual & predicted)
    tn = np.count_nonzero(~actual & ~predicted)
    fn = np.count_nonzero(actual & ~predicted)
    return np.int64(tp), np.int64(fp), np.int64(tn), np.int64(fn)


def _ratio(num, den) -> np.float64:
    """num / den, and 0.0 when den is 0 (no positives to be right or wrong about)."""
    return np.float64(num / den) if den else np.float64(0.0)


def true_positives(y_true, y_pred, *, threshold=0.5):
    """Number of positives predicted positive: #(y_true > 0.5 and y_pred > threshold).

    >>> int(true_positives(np.array([1, 0, 1, 1, 0, 1, 0]), np.array([0.8, 0.6, 0.4, 0.2, 0.8, 0.2, 0.2])))
    1
    """
    return _confusion("true_positives", y_true, y_pred, threshold)[0]


def false_positives(y_true, y_pred, *, threshold=0.5):
    """Number of negatives predicted positive.

    >>> int(false_positives(np.array([1, 0, 1, 1, 0, 1, 0]), np.array([0.8, 0.6, 0.4, 0.2, 0.8, 0.2, 0.2])))
    2
    """
    return _confusion("false_positives", y_true, y_pred, threshold)[1]


def true_negatives(y_true, y_pred, *, threshold=0.5):
    """Number of negatives predicted negative.

    >>> int(true_negatives(np.array([1, 0, 1, 1, 0, 1, 0]), np.array([0.8, 0.6, 0.4, 0.2, 0.8, 0.2, 0.2])))
    1
    """
    return _confusion("true_negatives", y_true, y_pred, threshold)[2]


def false_negatives(y_true, y_pred, *, threshold=0.5):
    """Number of positives predicted negative.

    >>> int(false_negatives(np.array([1, 0, 1, 1, 0, 1, 0]), np.array([0.8, 0.6, 0.4, 0.2, 0.8, 0.2, 0.2])))
    3
    """
    return _confusion("false_negatives", y_true, y_pred, threshold)[3]


def precision(y_true, y_pred, *, threshold=0.5):
    """Precision tp / (tp + fp): of the predicted positives, the fraction that are positive (0 if none).

    >>> float(precision(np.array([0, 1, 1, 1]), np.array([1, 0, 1, 1])))
    0.6666666666666666
    """
    tp, fp, _, _ = _confusion("precision", y_true, y_pred, threshold)
    return _ratio(tp, tp + fp)


def _true_positive_rate(name, y_true, y_pred, threshold):
    """tp / (tp + fn), errors naming ``name``: recall and sensitivity are one quantity under two names."""
    tp, _, _, fn = _confusion(name, y_true, y_pred, threshold)
    return _ratio(tp, tp + fn)


def recall(y_true, y_pred, *, threshold=0.5):
    """Recall tp / (tp + fn): of the positives, the fraction predicted positive (0 if none).

    >>> float(recall(np.array([0, 1, 1, 1]), np.array([1, 0, 1, 1])))
    0.6666666666666666
    """
    return _true_positive_rate("recall", y_true, y_pred, threshold)


def sensitivity(y_true, y_pred, *, threshold=0.5):
    """Sensitivity (true positive rate), the same as recall: tp / (tp + fn).

    >>> float(sensitivity(np.array([0, 1, 1, 1]), np.array([1, 0, 1, 1])))
    0.6666666666666666
    """
    return _true_positive_rate("sensitivity", y_true, y_pred, threshold)


def specificity(y_true, y_pred, *, threshold=0.5):
    """Specificity (true negative rate): tn / (tn + fp).

    >>> float(specificity(np.array([0, 1, 1, 0]), np.array([1, 0, 1, 0])))
    0.5
    """
    _, fp, tn, _ = _confusion("specificity", y_true, y_pred, threshold)
    return _ratio(tn, tn + fp)


def f1(y_true, y_pred, *, threshold=0.5):
    """F1 score, the harmonic mean of precision and recall: 2 tp / (2 tp + fp + fn) (0 if no positives).

    >>> float(f1(np.array([0, 1, 1, 1]), np.array([1, 0, 1, 1])))
    0.6666666666666666
    """
    tp, fp, _, fn = _confusion("f1", y_true, y_pred, threshold)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def mean_absolute_error(y_true, y_pred):
    """Mean of |y_true - y_pred| over every element.

    >>> float(mean_absolute_error(np.array([[0.0, 1.0], [0.0, 0.0]]), np.array([[1.0, 1.0], [1.0, 0.0]])))
    0.5
    """
    on_device = _on_device(y_true, y_pred)
    if on_device is not None:                                  # reduced on the device: one number back
        y_true, y_pred = on_device
        _same_shape_of("mean_absolute_error", y_true, y_pred)
        with no_grad():
            return to_host(ops.mean(ops.abs(y_true - y_pred)).data)[()]
    y_true, y_pred = _same_shape("mean_absolute_error", y_true, y_pred)
    return np.mean(np.abs(y_true - y_pred))


def top_k_categorical_accuracy(y_true, y_pred, *, k=5, sparse=None):
    """Fraction of rows whose true class is among the ``k`` highest-scored classes.

    y_pred is (..., K); y_true one-hot (..., K) or, with ``sparse=True`` (detected from the shape when
    None), labels (...) or (..., 1). A class tied with the k-th score counts as in the top k.

    >>> y_pred = np.array([[0.1, 0.4, 0.7], [0.1, 0.4, 0.7]])
    >>> float(top_k_categorical_accuracy(np.array([[0, 1, 0], [1, 0, 0]]), y_pred, k=2))
    0.5
    """
    name = "top_k_categorical_accuracy"
    y_true, y_pred = _array(y_true), _array(y_pred)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{name}: k must be a positive int, got {k!r}")
    if y_pred.ndim == 0:
        raise ValueError(f"{name}: y_pred needs a class axis, got shape {y_pred.shape}")
    if sparse is None:
        sparse = y_true.shape != y_pred.shape
    if sparse:
        labels = _sparse_labels(name, y_true, y_pred)
        n_classes = y_pred.shape[-1]
        bad = (labels < 0) | (labels >= n_classes) | (labels != np.round(labels))          # (...)
        if bad.any():
            raise ValueError(f"{name}: sparse labels must be class indices in [0, {n_classes}) for y_pred "
                             f"{y_pred.shape}, got {labels[bad].ravel()[0]}")
        labels = labels.astype(np.intp)
    else:
        labels = np.argmax(_same_shape(name, y_true, y_pred)[0], -1)
    true_score = np.take_along_axis(y_pred, labels[..., None], -1)       # (..., 1)
    rank = np.sum(y_pred > true_score, axis=-1)                          # (...,) classes scored higher
    return np.mean(rank < k)


def running_average(*args):
    """Average of per-batch values, updated one batch at a time: (avg * i + value) / (i + 1).

    ``running_average(avg, value, i)`` folds the value of batch ``i`` (counting from 0) into the
    average of the ``i`` before it. ``running_average(metric)`` is Axon's form: it returns
    ``update(avg, (y_true, y_pred), i)`` which computes ``metric(y_true, y_pred)`` and folds it in.

    >>> avg = 0.0
    >>> for i, v in enumerate([0.5, 1.0, 0.0]):
    ...     avg = running_average(avg, v, i)
    >>> float(avg)
    0.5
    >>> update = running_average(accuracy)
    >>> float(update(0.5, (np.array([[0, 1], [1, 0]]), np.array([[0, 1], [1, 0]])), 1))
    0.75
    """
    if len(args) == 1 and callable(args[0]):
        metric = args[0]
        return lambda avg, inputs, i: running_average(avg, metric(*inputs), i)
    if len(args) != 3:
        raise TypeError("running_average takes (avg, value, i) or a single metric function, "
                        f"got {len(args)} arguments")
    avg, value, i = args
    return (np.asarray(avg) * i + np.asarray(value)) / (i + 1)


def running_sum(*args):
    """Sum of per-batch values, updated one batch at a time: total + value.

    ``running_sum(total, value, i)`` (``i`` is accepted for symmetry with ``running_average``);
    ``running_sum(metric)`` is Axon's form: it returns ``update(total, (y_true, y_pred), i)``.

    >>> count = running_sum(false_positives)
    >>> int(count(12, (np.array([0, 1, 0, 1]), np.array([1, 1, 0, 1])), 2))
    13
    """
    if len(args) == 1 and callable(args[0]):
        metric = args[0]
        return lambda total, inputs, i=None: running_sum(total, metric(*inputs), i)
    if len(args) not in (2, 3):
        raise TypeError(f"running_sum takes (total, value[, i]) or a single metric function, got {len(args)} arguments")
    return np.asarray(args[0]) + np.asarray(args[1])


get = getter("metric", globals(), [n for n in __all__ if n not in ("running_average", "running_sum")])
