"""Loss functions ``loss(y_true, y_pred, ...) -> Tensor``, differentiable in ``y_pred`` (and in ``y_true``
when it is a Tensor that requires a gradient).

Names, argument order and defaults follow Elixir Axon's ``Axon.Losses``: most losses average over the
last axis and return one value per example; ``reduction`` is ``"none"`` (the default, as in Axon),
``"mean"`` or ``"sum"``.

>>> import numpy as np
>>> y_true = np.array([[0.0, 1.0], [0.0, 0.0]])
>>> y_pred = np.array([[1.0, 1.0], [1.0, 0.0]])
>>> mean_squared_error(y_true, y_pred).numpy()
array([0.5, 0.5])
>>> float(mean_squared_error(y_true, y_pred, reduction="mean"))
0.5

The cross-entropies accept probabilities (clipped to [1e-7, 1 - 1e-7], so 0 and 1 give finite values
and gradients) or, with ``from_logits=True``, raw scores through log_softmax/log_sigmoid (stable for
logits of +-1000). ``get(name)`` resolves a name.
"""
from __future__ import annotations

import math

import numpy as np

from .. import kernels
from ..backend import is_host
from ..kernels._common import in_range, on_backend_of
from ..autograd import ops
from ..autograd.tensor import Tensor
from ..tracing import check
from . import activations as A
from ._registry import getter

__all__ = [
    "binary_cross_entropy", "categorical_cross_entropy", "sparse_categorical_cross_entropy",
    "categorical_hinge", "hinge", "kl_divergence", "log_cosh", "margin_ranking", "mean_absolute_error",
    "mean_squared_error", "poisson", "soft_margin", "cosine_similarity", "huber",
    "connectionist_temporal_classification", "apply_label_smoothing", "label_smoothing", "get",
]

_EPS = 1e-7                                                    # Axon's clipping epsilon
_REDUCTIONS = ("none", "mean", "sum")
_LOG2 = math.log(2.0)


# ---- shared checks -------------------------------------------------------------------------------
def _check_reduction(name: str, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of 'none', 'mean', 'sum', got {reduction!r}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    """Per-example losses as they are (``"none"``), or their mean or sum."""
    if reduction == "mean":
        return ops.mean(loss)
    return ops.sum(loss) if reduction == "sum" else loss


def _target(y, like: Tensor) -> Tensor:
    """``y_true`` as a Tensor of ``like``'s dtype on its backend; a Tensor stays in the graph, an array is a constant."""
    if not isinstance(y, Tensor):
        if is_host(y):
            return on_backend_of(like, np.asarray(y, dtype=like.dtype))
        y = Tensor(y)                                          # a device array stays on its device
    return y if y.dtype == like.dtype else ops.astype(y, like.dtype)


def _prepare(name, y_true, y_pred, reduction, min_rank=1):
    """Validate ``reduction`` and shapes (equal, at least ``min_rank`` axes); return (y_true, y_pred) Tensors."""
    _check_reduction(name, reduction)
    y_pred = A._float(y_pred)                                 # integers become float32
    y_true = _target(y_true, y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{name}: y_true and y_pred must have the same shape, "
                         f"got y_true {y_true.shape} and y_pred {y_pred.shape}")
    if y_pred.ndim < min_rank:
        raise ValueError(f"{name}: y_pred needs at least {min_rank} axis (the last one is averaged over), "
                         f"got shape {y_pred.shape}")
    return y_true, y_pred


def _check_axis(name: str, x: Tensor, axis):
    """Raise ValueError unless every axis in ``axis`` (an int or tuple) exists in ``x``."""
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    for a in axes:
        if not -x.ndim <= a < x.ndim:
            raise ValueError(f"{name}: axis {a} is out of range for a Tensor of shape {x.shape}")
    return axis if isinstance(axis, (int, np.integer)) else axes


def _check_smoothing(name, label_smoothing):
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{name}: label_smoothing must be in [0, 1], got {label_smoothing}")


# ---- cross-entropies -----------------------------------------------------------------------------
def _class_weights(name: str, what: str, w, k: int, like: Tensor) -> Tensor:
    """A weight per class (a number, or one per class of the last axis) as a constant Tensor of ``like``'s dtype."""
    w = np.asarray(w)                                         # a host copy: the weights are a few numbers
    if w.dtype.kind not in "iuf":
        raise TypeError(f"{name}: {what} must be numbers, got dtype {w.dtype}")
    if w.ndim > 1 or (w.ndim == 1 and w.shape[0] != k):
        raise ValueError(f"{name}: {what} must be a number or hold one weight per class ({k} classes, the last "
                         f"axis of y_pred {like.shape}), got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{name}: {what} must be finite and >= 0, got {w.tolist()}")
    return on_backend_of(like, w.astype(like.dtype))


def binary_cross_entropy(y_true, y_pred, *, from_logits=False, label_smoothing=0.0, positive_weight=None,
                         negative_weight=None, reduction="none"):
    """Binary cross-entropy, averaged over the last axis.

    l = mean_j -(y_j log p_j + (1 - y_j) log(1 - p_j)), with p = clip(y_pred, 1e-7, 1 - 1e-7), or with
    ``from_logits=True`` the stable form softplus(x) - y x (x the logits). ``label_smoothing`` s moves
    the targets to y (1 - s) + s / 2.

    ``positive_weight`` w+ and ``negative_weight`` w- (numbers, or one per column of the last axis;
    default 1) weigh the two terms: l = mean_j -(w+ y_j log p_j + w- (1 - y_j) log(1 - p_j)). For
    targets of 0 and 1 this is Axon's weight per target class; w+ alone is PyTorch's
    ``BCEWithLogitsLoss(pos_weight=)``. (Axon also averages a weighted loss over the batch, whatever
    ``reduction`` says; here the reduction applies as for the unweighted loss.)

    >>> round(float(binary_cross_entropy(np.array([[1.0, 0.0]]), np.array([[0.8, 0.4]]), positive_weight=2.0)[0]), 4)
    0.4786

    >>> y_true = np.array([[0, 1], [1, 0], [1, 0]])
    >>> y_pred = np.array([[0.6811, 0.5565], [0.6551, 0.4551], [0.5422, 0.2648]])
    >>> binary_cross_entropy(y_true, y_pred).numpy().round(4)
    array([0.8645, 0.5151, 0.4599])
    >>> float(binary_cross_entropy(np.array([1.0]), np.array([-1000.0]), from_logits=True))
    1000.0
    """
    name = "binary_cross_entropy"
    _check_smoothing(name, label_smoothing)
    y_true, y_pred = _prepare(name, y_true, y_pred, reduction)
    k = y_pred.shape[-1]
    w_pos = None if positive_weight is None else _class_weights(name, "positive_weight", positive_weight, k, y_pred)
    w_neg = None if negative_weight is None else _class_weights(name, "negative_weight", negative_weight, k, y_pred)
    if label_smoothing:
        y_true = y_true * (1 - label_smoothing) + 0.5 * label_smoothing
    if w_pos is None and w_neg is None:
        if from_logits:
            loss = A.softplus(y_pred) - y_true * y_pred       # -y log sigmoid(x) - (1 - y) log sigmoid(-x)
        else:
            p = ops.clip(y_pred, _EPS, 1 - _EPS)
            loss = -(y_true * ops.log(p) + (1 - y_true) * ops.log(1 - p))
        return _reduce(ops.mean(loss, -1), reduction)
    if from_logits:                                           # -log p = softplus(-x), -log(1 - p) = softplus(x)
        pos, neg = A.softplus(-y_pred), A.softplus(y_pred)
    else:
        p = ops.clip(y_pred, _EPS, 1 - _EPS)
        pos, neg = -ops.log(p), -ops.log(1 - p)
    pos = y_true * pos if w_pos is None else w_pos * y_true * pos
    neg = (1 - y_true) * neg if w_neg is None else w_neg * (1 - y_true) * neg
    return _reduce(ops.mean(pos + neg, -1), reduction)


def _weighted_reduce(loss: Tensor, w: Tensor | None, reduction: str) -> Tensor:
    """Per-example losses times their weights; ``"mean"`` divides by the sum of the weights (as torch and Axon)."""
    if w is None:
        return _reduce(loss, reduction)
    loss = w * loss
    return ops.sum(loss) / ops.sum(w) if reduction == "mean" else _reduce(loss, reduction)


def categorical_cross_entropy(y_true, y_pred, *, from_logits=False, label_smoothing=0.0, sparse=False,
                              class_weights=None, reduction="none"):
    """Cross-entropy between target distributions and predicted ones over the last axis (K classes).

    l = -sum_k y_k log p_k with p = clip(y_pred, 1e-7, 1), or log p = log_softmax(x) with
    ``from_logits=True``. ``label_smoothing`` s moves the targets to y (1 - s) + s / K.
    ``sparse=True`` takes integer labels instead (see ``sparse_categorical_cross_entropy``).

    ``class_weights`` (K numbers) weigh each example by the weight of its class, the class of its
    largest target (Axon's ``argmax``; a tie averages the tied classes' weights), and ``"mean"`` then
    divides by the sum of the weights: PyTorch's ``cross_entropy(weight=)`` for one-hot targets.
    (For soft targets PyTorch weighs each term of the sum instead.)

    >>> categorical_cross_entropy(np.array([[0, 1], [1, 0]]), np.array([[0.5, 0.5], [0.9, 0.1]]),
    ...                           class_weights=[1.0, 3.0]).numpy().round(4)
    array([2.0794, 0.1054])

    >>> y_true = np.array([[0, 1, 0], [0, 0, 1]])
    >>> y_pred = np.array([[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    >>> categorical_cross_entropy(y_true, y_pred).numpy().round(4)
    array([0.0513, 2.3026])
    """
    if sparse:
        return sparse_categorical_cross_entropy(y_true, y_pred, from_logits=from_logits, class_weights=class_weights,
                                                label_smoothing=label_smoothing, reduction=reduction)
    name = "categorical_cross_entropy"
    _check_smoothing(name, label_smoothing)
    y_true, y_pred = _prepare(name, y_true, y_pred, reduction)
    w = None
    if class_weights is not None:
        cw = _class_weights(name, "class_weights", class_weights, y_pred.shape[-1], y_pred)
        if cw.ndim == 0:
            raise ValueError(f"{name}: class_weights must hold one weight per class ({y_pred.shape[-1]}), got a number")
        top = ops.astype(ops.equal(y_true, ops.max(y_true, -1, keepdims=True)), y_pred.dtype)   # (..., K) argmax mask
        w = ops.sum(top * cw, -1) / ops.sum(top, -1)                                          # (...,) its weight
    if label_smoothing:
        y_true = y_true * (1 - label_smoothing) + label_smoothing / y_pred.shape[-1]
    if from_logits:                                           # one fused pass: log_softmax, product, sum
        return _weighted_reduce(_softmax_xent(y_pred, y_true), w, reduction)
    return _weighted_reduce(-ops.sum(y_true * ops.log(ops.clip(y_pred, _EPS, 1.0)), -1), w, reduction)


def _softmax_xent(logits: Tensor, targets) -> Tensor:
    """``-sum_k t_k log softmax(x)_k`` per row, through the fused kernel: (..., K) -> (...).

    ``targets`` are probabilities (a Tensor like ``logits``) or integer labels (an array of the
    batch shape); the kernel computes the loss and its gradient in one pass per row each.
    """
    k = logits.shape[-1]
    if k == 0:
        raise ValueError(f"cross-entropy from logits needs at least one class, got y_pred of shape {logits.shape}")
    if logits.ndim == 2:                                                         # already rows (the usual case)
        return kernels.softmax_cross_entropy(logits, targets)
    rows = ops.reshape(logits, (-1, k))                                           # (..., K) -> (M, K)
    targets = ops.reshape(targets, (-1, k) if targets.dtype.kind == "f" else (-1,))   # labels: (...) -> (M,)
    return ops.reshape(kernels.softmax_cross_entropy(rows, targets), logits.shape[:-1])


def _labels(name, y_true, y_pred: Tensor) -> Tensor:
    """Integer class labels of shape ``y_pred.shape[:-1]`` (a trailing axis of 1 is accepted), checked.

    An int64 Tensor on ``y_pred``'s backend, checked where it lives (``kernels._common.in_range``), so
    labels that live on a device stay there.
    """
    labels = y_true if isinstance(y_true, Tensor) else on_backend_of(y_pred, y_true)
    batch = y_pred.shape[:-1]
    if labels.shape not in (batch, batch + (1,)):
        raise ValueError(f"{name}: y_true must hold one class index per row of y_pred, with shape {batch} "
                         f"or {batch + (1,)}; got y_true {labels.shape} and y_pred {y_pred.shape}")
    if labels.dtype.kind not in "iuf":
        raise TypeError(f"{name}: y_true must hold integer class indices, got dtype {labels.dtype}")
    labels = labels if labels.shape == batch else ops.reshape(labels, batch)
    as_int = labels if labels.dtype == np.int64 else ops.astype(labels, np.int64)
    if labels.dtype.kind == "f" and labels.size:
        check(ops.max(ops.astype(as_int, labels.dtype) != labels),
              lambda: ValueError(f"{name}: y_true must hold integer class indices, got non-integer values"))
    k = y_pred.shape[-1]
    in_range(as_int, 0, k, lambda lo, hi: ValueError(
        f"{name}: class indices must be in [0, {k}), got values in [{lo}, {hi}]"))
    return as_int


def sparse_categorical_cross_entropy(y_true, y_pred, *, from_logits=False, label_smoothing=0.0,
                                     class_weights=None, reduction="none"):
    """Categorical cross-entropy with integer labels: l = -log p[label].

    ``y_true`` holds class indices, shape ``y_pred.shape[:-1]`` (or with a trailing 1);
    ``label_smoothing`` s gives l = -(1 - s) log p[label] - s mean_k log p_k. ``class_weights`` (K
    numbers) weigh each example by its label's weight; ``"mean"`` divides by the sum of the weights.

    >>> y_pred = np.array([[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    >>> sparse_categorical_cross_entropy(np.array([1, 2]), y_pred).numpy().round(4)
    array([0.0513, 2.3026])
    >>> sparse_categorical_cross_entropy(np.array([1]), np.array([[1000.0, -1000.0]]), from_logits=True).numpy()
    array([2000.])
    """
    name = "sparse_categorical_cross_entropy"
    _check_reduction(name, reduction)
    _check_smoothing(name, label_smoothing)
    y_pred = A._float(y_pred)
    if y_pred.ndim < 1:
        raise ValueError(f"{name}: y_pred needs a class axis, got shape {y_pred.shape}")
    labels = _labels(name, y_true, y_pred)
    k = y_pred.shape[-1]
    w = None
    if class_weights is not None:
        cw = _class_weights(name, "class_weights", class_weights, k, y_pred)
        if cw.ndim == 0:
            raise ValueError(f"{name}: class_weights must hold one weight per class ({k}), got a number")
        flat = ops.reshape(labels, (-1,))                                    # (M,) labels
        w = ops.reshape(kernels.take_along_axis(ops.broadcast_to(cw, (flat.shape[0], k)), flat, 1),
                        labels.shape)                                        # (...,) each label's weight
    if from_logits and not label_smoothing:                   # the fused kernel takes the labels directly
        return _weighted_reduce(_softmax_xent(y_pred, labels), w, reduction)
    log_p = A.log_softmax(y_pred, -1) if from_logits else ops.log(ops.clip(y_pred, _EPS, 1.0))
    rows = ops.reshape(log_p, (-1, k))                                       # (..., K) -> (M, K)
    picked = ops.reshape(kernels.take_along_axis(rows, ops.reshape(labels, (-1,)), 1), labels.shape)  # log p[label]
    loss = -picked
    if label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * ops.mean(log_p, -1)
    return _weighted_reduce(loss, w, reduction)


def apply_label_smoothing(y_true, y_pred, smoothing=0.1):
    """Targets moved towards the uniform distribution: y (1 - s) + s / K, K the size of y_pred's last axis.

    As Axon's ``Axon.Losses.apply_label_smoothing`` (which takes K from axis 1; the same for
    ``(batch, classes)``). Differentiable in ``y_true`` when it is a Tensor.

    >>> apply_label_smoothing(np.array([[0.0, 1.0, 0.0]]), np.zeros((1, 3)), smoothing=0.3).numpy().round(4)
    array([[0.1, 0.8, 0.1]])
    """
    name = "apply_label_smoothing"
    _check_smoothing(name, smoothing)
    y_pred = A._float(y_pred)
    y_true = _target(y_true, y_pred)
    if y_pred.ndim < 1 or y_true.shape[-1:] != y_pred.shape[-1:]:
        raise ValueError(f"{name}: y_true and y_pred must share the class axis (the last one), "
                         f"got y_true {y_true.shape} and y_pred {y_pred.shape}")
    return y_true * (1 - smoothing) + smoothing / y_pred.shape[-1]


def label_smoothing(loss, smoothing=0.1):
    """The loss ``loss`` (a function or a name) computed on smoothed targets: ``loss(apply_label_smoothing(y, p), p)``.

    As Axon's ``Axon.Losses.label_smoothing(loss_fun, smoothing: s)``; with the categorical
    cross-entropy it equals its own ``label_smoothing=s`` option.

    >>> smoothed = label_smoothing("categorical_cross_entropy", smoothing=0.2)
    >>> y, p = np.array([[0.0, 1.0]]), np.array([[0.3, 0.7]])
    >>> bool(np.allclose(smoothed(y, p).numpy(), categorical_cross_entropy(y, p, label_smoothing=0.2).numpy()))
    True
    """
    fn = get(loss)
    _check_smoothing("label_smoothing", smoothing)

    def smoothed(y_true, y_pred, **options):
        return fn(apply_label_smoothing(y_true, y_pred, smoothing), y_pred, **options)
    smoothed.__name__ = f"label_smoothed_{getattr(fn, '__name__', 'loss')}"
    return smoothed


# ---- margins -------------------------------------------------------------------------------------
def categorical_hinge(y_true, y_pred, *, reduction="none"):
    """Categorical hinge: max(0, 1 + max_k (1 - y_k) p_k - sum_k y_k p_k) over the last axis.

    >>> y_true = np.array([[1, 0, 0], [0, 0, 1]])
    >>> y_pred = np.array([[0.05300799, 0.21617081, 0.68642382], [0.3754382, 0.08494169, 0.13442067]])
    >>> categorical_hinge(y_true, y_pred).numpy().round(4)
    array([1.6334, 1.241 ])
    """
    y_true, y_pred = _prepare("categorical_hinge", y_true, y_pred, reduction)
    pos = ops.sum(y_true * y_pred, -1)                         # score of the true class
    neg = ops.max((1 - y_true) * y_pred, -1)                   # best score among the others
    return _reduce(ops.relu(neg - pos + 1), reduction)


def hinge(y_true, y_pred, *, reduction="none"):
    """Hinge loss for labels in {-1, 1}: mean_j max(0, 1 - y_j p_j) over the last axis.

    >>> hinge(np.array([[1, 1, -1]]), np.array([[0.4544, 0.3147, 0.6792]])).numpy().round(4)
    array([0.97])
    """
    y_true, y_pred = _prepare("hinge", y_true, y_pred, reduction)
    return _reduce(ops.mean(ops.relu(1 - y_true * y_pred), -1), reduction)


def margin_ranking(y_true, y_pred, *, margin=0.0, reduction="none"):
    """Margin ranking: max(0, -y (p1 - p2) + margin), element-wise; ``y_pred`` is the pair (p1, p2).

    y = 1 says p1 should rank above p2, y = -1 the opposite.

    >>> y_true = np.array([1.0, 1.0, 1.0])
    >>> p1, p2 = np.array([0.6934, -0.7239, 1.1954]), np.array([-0.4691, 0.2670, -1.7452])
    >>> margin_ranking(y_true, (p1, p2)).numpy().round(4)
    array([0.    , 0.9909, 0.    ])
    """
    name = "margin_ranking"
    if not isinstance(y_pred, (tuple, list)) or len(y_pred) != 2:
        raise TypeError(f"{name}: y_pred must be a pair (y_pred1, y_pred2), got {type(y_pred).__name__}")
    _check_reduction(name, reduction)
    p1, p2 = A._float(y_pred[0]), A._float(y_pred[1])
    y_true = _target(y_true, p1)
    if not y_true.shape == p1.shape == p2.shape:
        raise ValueError(f"{name}: y_true, y_pred1 and y_pred2 must have the same shape, got "
                         f"y_true {y_true.shape}, y_pred1 {p1.shape} and y_pred2 {p2.shape}")
    return _reduce(ops.relu(-y_true * (p1 - p2) + margin), reduction)


def soft_margin(y_true, y_pred, *, reduction="none"):
    """Soft margin (logistic) loss for labels in {-1, 1}: mean_j log(1 + e^(-y_j p_j)), stably.

    Averaged over the last axis like the other losses (Axon sums over axis 0 here).

    >>> soft_margin(np.array([[-1.0, 1.0, 1.0]]), np.array([[0.2953, -0.1709, 0.9486]])).numpy().round(4)
    array([0.6537])
    """
    y_true, y_pred = _prepare("soft_margin", y_true, y_pred, reduction)
    return _reduce(ops.mean(A.softplus(-y_true * y_pred), -1), reduction)


# ---- regression and divergences -----------------------------------------------------------------
def mean_absolute_error(y_true, y_pred, *, reduction="none"):
    """Mean absolute error over the last axis: mean_j |y_j - p_j|.

    >>> mean_absolute_error(np.array([[0.0, 1.0]]), np.array([[1.0, 1.0]])).numpy()
    array([0.5])
    """
    y_true, y_pred = _prepare("mean_absolute_error", y_true, y_pred, reduction)
    return _reduce(ops.mean(ops.abs(y_true - y_pred), -1), reduction)


def mean_squared_error(y_true, y_pred, *, reduction="none"):
    """Mean squared error over the last axis: mean_j (y_j - p_j)^2.

    >>> mean_squared_error(np.array([[0.0, 1.0]]), np.array([[1.0, 1.0]])).numpy()
    array([0.5])
    """
    y_true, y_pred = _prepare("mean_squared_error", y_true, y_pred, reduction)
    d = y_true - y_pred
    return _reduce(ops.mean(d * d, -1), reduction)


def huber(y_true, y_pred, *, delta=1.0, reduction="none"):
    """Huber loss, element-wise (as in Axon): d^2 / 2 for |d| <= delta, delta (|d| - delta / 2) beyond.

    d = p - y. Quadratic near zero, linear (robust to outliers) far from it.

    >>> huber(np.array([[1.0], [1.5], [2.0]]), np.array([[0.8], [1.8], [4.0]])).numpy().round(4)
    array([[0.02 ],
           [0.045],
           [1.5  ]])
    """
    if delta <= 0:
        raise ValueError(f"huber: delta must be positive, got {delta}")
    y_true, y_pred = _prepare("huber", y_true, y_pred, reduction, min_rank=0)
    d = y_pred - y_true
    abs_d = ops.abs(d)
    loss = ops.where(abs_d <= delta, 0.5 * d * d, delta * abs_d - 0.5 * delta * delta)
    return _reduce(loss, reduction)


def log_cosh(y_true, y_pred, *, reduction="none"):
    """Log-cosh over the last axis: mean_j log(cosh(d_j)), d = p - y, as d + softplus(-2d) - log 2.

    Like squared error near 0 and absolute error far away; finite for any d.

    >>> log_cosh(np.array([[0.0, 1.0]]), np.array([[1.0, 1.0]])).numpy().round(4)
    array([0.2169])
    """
    y_true, y_pred = _prepare("log_cosh", y_true, y_pred, reduction)
    d = y_pred - y_true
    return _reduce(ops.mean(d + A.softplus(-2.0 * d) - _LOG2, -1), reduction)


def poisson(y_true, y_pred, *, reduction="none"):
    """Poisson negative log-likelihood (without its constant) over the last axis: mean_j p_j - y_j log(p_j + 1e-7).

    >>> poisson(np.array([[0.0, 1.0]]), np.array([[1.0, 1.0]])).numpy().round(4)
    array([1.])
    """
    y_true, y_pred = _prepare("poisson", y_true, y_pred, reduction)
    return _reduce(ops.mean(y_pred - y_true * ops.log(y_pred + _EPS), -1), reduction)


def kl_divergence(y_true, y_pred, *, reduction="none"):
    """Kullback-Leibler divergence KL(y || p) = sum_k y_k log(y_k / p_k) over the last axis.

    Both are clipped to [1e-7, 1] first (as in Axon), so zeros give finite values and gradients.

    >>> kl_divergence(np.array([[0, 1], [0, 1]]), np.array([[0.6, 0.4], [0.4, 0.6]])).numpy().round(4).tolist()
    [0.9163, 0.5108]
    """
    y_true, y_pred = _prepare("kl_divergence", y_true, y_pred, reduction)
    y = ops.clip(y_true, _EPS, 1.0)
    p = ops.clip(y_pred, _EPS, 1.0)
    return _reduce(ops.sum(y * (ops.log(y) - ops.log(p)), -1), reduction)


def cosine_similarity(y_true, y_pred, *, axes=-1, eps=1e-6, reduction="none"):
    """Cosine similarity over ``axes``: sum(y p) / max(||y|| ||p||, eps).

    The similarity itself (1 for parallel vectors), as in Axon; minimise ``-cosine_similarity`` to
    align. The norms' product is clamped inside the square root, so zero vectors give a finite
    gradient.

    >>> cosine_similarity(np.array([[0.0, 1.0], [1.0, 1.0]]), np.array([[1.0, 0.0], [1.0, 1.0]])).numpy()
    array([0., 1.])
    """
    y_true, y_pred = _prepare("cosine_similarity", y_true, y_pred, reduction)
    axes = _check_axis("cosine_similarity", y_pred, axes)
    dot = ops.sum(y_true * y_pred, axes)
    norms_sq = ops.sum(y_true * y_true, axes) * ops.sum(y_pred * y_pred, axes)   # ||y||^2 ||p||^2
    return _reduce(dot / ops.sqrt(ops.maximum(norms_sq, eps * eps)), reduction)


# ---- CTC -----------------------------------------------------------------------------------------
def _int_array(name, what, x, shape):
    """``x`` as an int64 array of ``shape``, or a ValueError naming ``what``."""
    arr = np.asarray(x)                                        # (a Tensor on a device is copied to the host)
    if arr.shape != shape:
        raise ValueError(f"{name}: {what} must have shape {shape}, got {arr.shape}")
    if arr.size and (arr.dtype.kind not in "iuf" or np.any(arr != np.round(arr))):
        raise ValueError(f"{name}: {what} must hold integers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def connectionist_temporal_classification(y_true, y_pred, *, blank=0, input_lengths=None,
                                          zero_infinity=False, reduction="none"):
    """CTC loss: -log of the total probability of every alignment of the target with the input.

    ``y_true`` is ``(target_lengths, targets)`` as in Axon: targets (B, S) class indices padded to S,
    target_lengths (B,); ``targets`` alone means every target is S long. ``y_pred`` holds
    log-probabilities (B, T, C) (e.g. a log_softmax), with class ``blank`` as the blank;
    ``input_lengths`` (B,) defaults to T for every sequence. The forward (alpha) and backward (beta)
    recursions run in log space in float64 in a compiled kernel (``axon.kernels.ctc_loss``); the gradient is
    d loss / d y_pred.
    ``reduction="mean"`` divides each loss by its target length, then averages (as Axon and torch).
    ``zero_infinity=True`` replaces the infinite loss of an impossible alignment (and its gradient) by 0.

    >>> lp = np.log(np.full((1, 3, 2), 0.5))            # 3 steps, classes {blank, a}, all 50/50
    >>> float(connectionist_temporal_classification(np.array([[1]]), lp)[0])   # 6 of 8 paths give "a"
    0.2876820724517809
    """
    name = "connectionist_temporal_classification"
    _check_reduction(name, reduction)
    y_pred = A._float(y_pred)
    if y_pred.ndim != 3:
        raise ValueError(f"{name}: y_pred must be log-probabilities of shape (batch, time, classes), "
                         f"got shape {y_pred.shape}")
    batch, steps, n_classes = y_pred.shape
    if isinstance(y_true, (tuple, list)):
        target_lengths, targets = y_true
    else:
        target_lengths, targets = None, y_true
    targets = np.asarray(targets)
    if targets.ndim != 2 or targets.shape[0] != batch:
        raise ValueError(f"{name}: targets must have shape (batch, max_target_length) with batch {batch}, "
                         f"got targets {targets.shape} and y_pred {y_pred.shape}")
    targets = _int_array(name, "targets", targets, targets.shape)
    max_len = targets.shape[1]
    target_lengths = (np.full(batch, max_len, dtype=np.int64) if target_lengths is None
                      else _int_array(name, "target_lengths", target_lengths, (batch,)))
    input_lengths = (np.full(batch, steps, dtype=np.int64) if input_lengths is None
                     else _int_array(name, "input_lengths", input_lengths, (batch,)))
    if not 0 <= blank < n_classes:
        raise ValueError(f"{name}: blank must be a class index in [0, {n_classes}), got {blank}")
    if batch and (target_lengths.min() < 0 or target_lengths.max() > max_len):
        raise ValueError(f"{name}: target_lengths must be in [0, {max_len}], got {target_lengths.tolist()}")
    if batch and (input_lengths.min() < 1 or input_lengths.max() > steps):
        raise ValueError(f"{name}: input_lengths must be in [1, {steps}], got {input_lengths.tolist()}")
    used = np.arange(max_len) < target_lengths[:, None]        # (B, S) True on the real labels
    if used.any():
        real = targets[used]
        if real.min() < 0 or real.max() >= n_classes or (real == blank).any():
            raise ValueError(f"{name}: target labels must be in [0, {n_classes}) and differ from the blank "
                             f"({blank}), got values in [{real.min()}, {real.max()}]")
    loss = kernels.ctc_loss(y_pred, targets, input_lengths, target_lengths, blank=blank, zero_infinity=zero_infinity)
    if reduction == "mean":
        per_label = on_backend_of(loss, np.maximum(target_lengths, 1).astype(loss.dtype))   # (B,) as torch: clamp to 1
        return ops.mean(loss / per_label)
    return _reduce(loss, reduction)


get = getter("loss", globals(), [n for n in __all__                # get("huber") -> huber
                                  if n not in ("apply_label_smoothing", "label_smoothing")])   # not losses
