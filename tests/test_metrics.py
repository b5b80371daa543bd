"""Metrics: kind detection, counts against brute force, zero divisions, top-k ties, running helpers."""

import numpy as np
import pytest

from axon.autograd import Tensor
from axon.functional import metrics as M

r = np.random.default_rng(0)


# ---- accuracy ------------------------------------------------------------------------------------
def test_binary_accuracy_in_every_layout():
    y = np.array([1, 0, 1, 1, 0])
    p = np.array([0.9, 0.6, 0.4, 0.7, 0.1])                          # right, wrong, wrong, right, right
    assert M.accuracy(y, p) == pytest.approx(0.6)
    assert M.accuracy(y[:, None], p[:, None]) == pytest.approx(0.6)  # (N, 1) as in Axon
    assert M.accuracy(y, p[:, None]) == pytest.approx(0.6)           # (N,) targets, (N, 1) predictions
    assert M.accuracy(y.astype(bool), p) == pytest.approx(0.6)
    assert M.accuracy(y * 2 - 1, p) == pytest.approx(0.6)            # -1/1 targets
    assert M.accuracy(y, p, threshold=0.35) == pytest.approx(0.8)
    logits = np.log(p / (1 - p))
    assert M.accuracy(y, logits, from_logits=True) == pytest.approx(0.6)
    assert M.accuracy(y, logits, from_logits=True, threshold=0.35) == pytest.approx(0.8)
    with pytest.raises(ValueError, match=r"^accuracy: threshold must be in \(0, 1\) with from_logits=True, got 1.0"):
        M.accuracy(y, logits, from_logits=True, threshold=1.0)


def test_categorical_and_sparse_accuracy():
    scores = r.standard_normal((50, 7))
    labels = r.integers(0, 7, 50)
    expected = np.mean(scores.argmax(-1) == labels)
    assert 0 < expected < 1
    assert M.accuracy(np.eye(7)[labels], scores) == pytest.approx(expected)          # one-hot
    assert M.accuracy(labels, scores) == pytest.approx(expected)                     # sparse (N,)
    assert M.accuracy(labels[:, None], scores) == pytest.approx(expected)            # sparse (N, 1)
    assert M.accuracy(labels.astype(np.float32), scores) == pytest.approx(expected)
    soft = np.eye(7)[labels] * 0.7 + 0.3 / 7                                         # smoothed targets
    assert M.accuracy(soft, scores) == pytest.approx(expected)
    seq = r.standard_normal((4, 6, 3))                                               # (B, T, K)
    seq_labels = r.integers(0, 3, (4, 6))
    assert M.accuracy(seq_labels, seq) == pytest.approx(np.mean(seq.argmax(-1) == seq_labels))


def test_accuracy_takes_tensors_and_returns_numpy_scalars():
    y = Tensor(np.array([[0.0, 1.0], [1.0, 0.0]]))
    p = Tensor(np.array([[0.2, 0.8], [0.1, 0.9]]), requires_grad=True)
    out = M.accuracy(y, p)
    assert isinstance(out, np.floating) and out == 0.5


def test_ambiguous_and_mismatched_accuracy_raise():
    multi_label = np.array([[1, 1, 0], [0, 1, 1]])
    p = np.array([[0.9, 0.8, 0.1], [0.2, 0.3, 0.9]])
    with pytest.raises(ValueError, match=r"both have shape \(2, 3\).*not one-hot.*kind='binary'"):
        M.accuracy(multi_label, p)
    assert M.accuracy(multi_label, p, kind="binary") == pytest.approx(5 / 6)
    assert M.accuracy(multi_label, p, kind="categorical") == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"accuracy: cannot match y_true shape \(4,\) with y_pred shape \(3,\)"):
        M.accuracy(np.zeros(4), np.zeros(3))
    with pytest.raises(ValueError, match=r"accuracy: cannot match y_true shape \(2, 3\) with y_pred shape \(2, 4\)"):
        M.accuracy(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="kind must be one of"):
        M.accuracy(np.zeros(3), np.zeros(3), kind="multiclass")
    with pytest.raises(ValueError, match=r"accuracy: y_true and y_pred must have the same shape"):
        M.accuracy(np.zeros(3), np.zeros((3, 4)), kind="categorical")
    with pytest.raises(ValueError, match=r"sparse labels must have shape \(3,\) or \(3, 1\)"):
        M.accuracy(np.zeros(4), np.zeros((3, 4)), kind="sparse")


# ---- confusion counts and rates ------------------------------------------------------------------
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_counts_and_rates_against_brute_force(threshold):
    y = r.integers(0, 2, 200)
    p = r.uniform(0, 1, 200)
    tp = sum(1 for a, b in zip(y, p) if a == 1 and b > threshold)
    fp = sum(1 for a, b in zip(y, p) if a == 0 and b > threshold)
    tn = sum(1 for a, b in zip(y, p) if a == 0 and b <= threshold)
    fn = sum(1 for a, b in zip(y, p) if a == 1 and b <= threshold)
    kw = {"threshold": threshold}
    assert (M.true_positives(y, p, **kw), M.false_positives(y, p, **kw),
            M.true_negatives(y, p, **kw), M.false_negatives(y, p, **kw)) == (tp, fp, tn, fn)
    assert M.precision(y, p, **kw) == pytest.approx(tp / (tp + fp))
    assert M.recall(y, p, **kw) == pytest.approx(tp / (tp + fn))
    assert M.sensitivity(y, p, **kw) == M.recall(y, p, **kw)
    assert M.specificity(y, p, **kw) == pytest.approx(tn / (tn + fp))
    prec, rec = tp / (tp + fp), tp / (tp + fn)
    assert M.f1(y, p, **kw) == pytest.approx(2 * prec * rec / (prec + rec))
    assert isinstance(M.true_positives(y, p), np.integer) and isinstance(M.f1(y, p), np.floating)


def test_axon_documented_values():
    y, p = np.array([1, 0, 1, 1, 0, 1, 0]), np.array([0.8, 0.6, 0.4, 0.2, 0.8, 0.2, 0.2])
    assert (M.true_positives(y, p), M.false_negatives(y, p), M.true_negatives(y, p),
            M.false_positives(y, p)) == (1, 3, 1, 2)
    assert M.precision(np.array([0, 1, 1, 1]), np.array([1, 0, 1, 1])) == pytest.approx(2 / 3)
    assert M.specificity(np.array([0, 1, 1, 1]), np.array([1, 0, 1, 1])) == 0.0


def test_rates_are_zero_when_nothing_to_count():
    y, p = np.zeros(4), np.zeros(4)
    assert M.precision(y, p) == 0.0 and M.recall(y, p) == 0.0 and M.f1(y, p) == 0.0
    assert M.specificity(np.ones(3), np.ones(3)) == 0.0


@pytest.mark.parametrize("name", ["precision", "recall", "f1", "true_positives", "true_negatives",
                                  "false_positives", "false_negatives", "sensitivity", "specificity",
                                  "mean_absolute_error"])
def test_mismatched_shapes_name_both(name):
    with pytest.raises(ValueError, match=rf"{name}: y_true and y_pred must have the same shape, "
                                         rf"got y_true \(5,\) and y_pred \(5, 1\)"):
        M.get(name)(np.zeros(5), np.zeros((5, 1)))


def test_mean_absolute_error_over_all_elements():
    y, p = r.standard_normal((4, 3)), r.standard_normal((4, 3))
    assert M.mean_absolute_error(y, p) == pytest.approx(np.abs(y - p).mean())
    assert M.mean_absolute_error(Tensor(y), Tensor(p)) == pytest.approx(np.abs(y - p).mean())


# ---- top-k ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_top_k_against_sorting(k):
    scores = r.standard_normal((40, 6))
    labels = r.integers(0, 6, 40)
    top = np.argsort(-scores, axis=-1)[:, :k]
    expected = np.mean([lab in row for lab, row in zip(labels, top)])
    assert M.top_k_categorical_accuracy(np.eye(6)[labels], scores, k=k) == pytest.approx(expected)
    assert M.top_k_categorical_accuracy(labels, scores, k=k) == pytest.approx(expected)        # sparse, detected
    assert M.top_k_categorical_accuracy(labels[:, None], scores, k=k, sparse=True) == pytest.approx(expected)
    if k == 1:
        assert M.top_k_categorical_accuracy(labels, scores, k=1) == M.accuracy(labels, scores)


def test_top_k_axon_examples_and_ties():
    p = np.array([[0.1, 0.4, 0.7], [0.1, 0.4, 0.7]])
    assert M.top_k_categorical_accuracy(np.array([[0, 1, 0], [1, 0, 0]]), p, k=2) == 0.5
    assert M.top_k_categorical_accuracy(np.array([[0], [2]]), p, k=2, sparse=True) == 0.5
    assert M.top_k_categorical_accuracy(np.array([0, 1, 0, 0, 0]), np.array([0.1, 0.4, 0.3, 0.7, 0.1]), k=2) == 1.0
    tied = np.array([[0.5, 0.5, 0.1]])
    assert M.top_k_categorical_accuracy(np.array([1]), tied, k=1) == 1.0    # a tie with the top counts
    with pytest.raises(ValueError, match="k must be a positive int"):
        M.top_k_categorical_accuracy(np.array([1]), tied, k=0)


# ---- running helpers -----------------------------------------------------------------------------
def test_running_average_and_sum_over_batches():
    values = r.uniform(0, 1, 9)
    avg, total = 0.0, 0
    for i, v in enumerate(values):
        avg = M.running_average(avg, v, i)
        total = M.running_sum(total, v, i)
    assert avg == pytest.approx(values.mean()) and total == pytest.approx(values.sum())
    batches = [(r.integers(0, 3, 8), r.standard_normal((8, 3))) for _ in range(4)]
    update = M.running_average(M.accuracy)                    # Axon's form: wrap a metric
    avg = 0.0
    for i, batch in enumerate(batches):
        avg = update(avg, batch, i)
    assert avg == pytest.approx(np.mean([M.accuracy(*b) for b in batches]))
    count = M.running_sum(M.true_positives)
    total = 0
    for i, (y, p) in enumerate([(np.array([1, 1]), np.array([0.9, 0.2])), (np.array([1, 0]), np.array([0.8, 0.9]))]):
        total = count(total, (y, p), i)
    assert total == 2
    with pytest.raises(TypeError, match="running_average takes"):
        M.running_average(0.0, 1.0)


def test_get_resolves_names_and_lists_the_valid_ones():
    assert M.get("f1") is M.f1
    with pytest.raises(ValueError, match="unknown metric 'acc'; valid names: accuracy, f1"):
        M.get("acc")
