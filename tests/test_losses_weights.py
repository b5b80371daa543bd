"""Class weights and label smoothing of the cross-entropies (Axon's options), against torch and by hand."""
import numpy as np
import pytest

from axon.autograd import Tensor, check_grads
from axon.functional import losses as L

r = np.random.default_rng(7)


def bits(*shape):
    return r.integers(0, 2, shape).astype(np.float64)


def test_bce_positive_weight_is_torchs_pos_weight():
    torch = pytest.importorskip("torch")
    x, y = 3 * r.standard_normal((5, 4)), bits(5, 4)
    pw = np.array([0.5, 2.0, 1.0, 3.0])                                 # one per column, as torch's pos_weight
    want = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor(x), torch.tensor(y), pos_weight=torch.tensor(pw), reduction="none").mean(-1)
    got = L.binary_cross_entropy(y, x, from_logits=True, positive_weight=pw)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.functional.binary_cross_entropy_with_logits(tx, torch.tensor(y), pos_weight=torch.tensor(2.0)).backward()
    xt = Tensor(x, requires_grad=True)
    L.binary_cross_entropy(y, xt, from_logits=True, positive_weight=2.0, reduction="mean").backward()
    np.testing.assert_allclose(xt.grad, tx.grad.numpy(), rtol=1e-10)


def test_bce_both_weights_are_a_per_element_weight_for_binary_targets():
    torch = pytest.importorskip("torch")
    p, y = r.uniform(0.05, 0.95, (6, 3)), bits(6, 3)
    w = np.where(y == 1, 2.5, 0.4)                                      # Axon: take([neg, pos], y_true)
    want = torch.nn.functional.binary_cross_entropy(torch.tensor(p), torch.tensor(y), weight=torch.tensor(w),
                                                    reduction="none").mean(-1)
    got = L.binary_cross_entropy(y, p, positive_weight=2.5, negative_weight=0.4)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10)
    logits = L.binary_cross_entropy(y, np.log(p / (1 - p)), from_logits=True, positive_weight=2.5, negative_weight=0.4)
    np.testing.assert_allclose(logits.numpy(), want.numpy(), rtol=1e-9)
    soft = r.uniform(0, 1, (6, 3))                                      # soft targets: the formula by hand
    hand = -(2.5 * soft * np.log(p) + 0.4 * (1 - soft) * np.log(1 - p)).mean(-1)
    np.testing.assert_allclose(L.binary_cross_entropy(soft, p, positive_weight=2.5, negative_weight=0.4).numpy(),
                               hand, rtol=1e-10)
    f = lambda yp, yt: L.binary_cross_entropy(yt, yp, from_logits=True, positive_weight=[1.0, 2.0, 0.5],
                                              negative_weight=3.0, reduction="sum")
    check_grads(f, (r.standard_normal((4, 3)), Tensor(soft[:4])), order=1)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_cce_class_weights_are_torchs_weight(reduction):
    torch = pytest.importorskip("torch")
    x, labels = 2 * r.standard_normal((7, 4)), r.integers(0, 4, 7)
    cw = np.array([1.0, 0.2, 3.0, 0.7])
    want = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(labels), weight=torch.tensor(cw),
                                             reduction=reduction).numpy()
    one_hot = np.eye(4)[labels]
    dense = L.categorical_cross_entropy(one_hot, x, from_logits=True, class_weights=cw, reduction=reduction)
    sparse = L.categorical_cross_entropy(labels, x, from_logits=True, sparse=True, class_weights=cw, reduction=reduction)
    probs = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
    from_probs = L.categorical_cross_entropy(one_hot, probs, class_weights=list(cw), reduction=reduction)
    for got in (dense, sparse, from_probs):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.functional.cross_entropy(tx, torch.tensor(labels), weight=torch.tensor(cw)).backward()
    xt = Tensor(x, requires_grad=True)
    L.categorical_cross_entropy(one_hot, xt, from_logits=True, class_weights=cw, reduction="mean").backward()
    np.testing.assert_allclose(xt.grad, tx.grad.numpy(), rtol=1e-10)


def test_cce_class_weights_take_the_class_of_the_largest_target():
    y = np.array([[0.1, 0.7, 0.2], [0.5, 0.5, 0.0]])                   # a soft target; a tie between classes 0 and 1
    p = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    cw = np.array([2.0, 4.0, 8.0])
    plain = -(y * np.log(p)).sum(-1)
    np.testing.assert_allclose(L.categorical_cross_entropy(y, p, class_weights=cw).numpy(),
                               [4.0 * plain[0], 3.0 * plain[1]], rtol=1e-12)
    f = lambda yp: L.categorical_cross_entropy(y, yp, from_logits=True, class_weights=cw, reduction="mean")
    check_grads(f, (r.standard_normal((2, 3)),), order=1)
    g = lambda yp: L.sparse_categorical_cross_entropy(np.array([2, 0]), yp, from_logits=True, label_smoothing=0.1,
                                                      class_weights=cw, reduction="mean")
    check_grads(g, (r.standard_normal((2, 3)),), order=1)


def test_label_smoothing_is_torchs_and_apply_label_smoothing_by_hand():
    torch = pytest.importorskip("torch")
    x, labels = r.standard_normal((5, 6)), r.integers(0, 6, 5)
    want = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(labels), label_smoothing=0.2,
                                             reduction="none").numpy()
    one_hot = np.eye(6)[labels]
    np.testing.assert_allclose(L.categorical_cross_entropy(one_hot, x, from_logits=True, label_smoothing=0.2).numpy(),
                               want, rtol=1e-10)
    smoothed = L.apply_label_smoothing(one_hot, x, smoothing=0.2)
    np.testing.assert_allclose(smoothed.numpy(), np.where(one_hot == 1, 0.8 + 0.2 / 6, 0.2 / 6), rtol=1e-12)
    wrapped = L.label_smoothing(L.categorical_cross_entropy, smoothing=0.2)
    np.testing.assert_allclose(wrapped(one_hot, x, from_logits=True).numpy(), want, rtol=1e-10)
    bce = L.label_smoothing("binary_cross_entropy", smoothing=0.3)    # K = 2 columns: y (1 - s) + s / 2
    y2, p2 = bits(4, 2), r.uniform(0.1, 0.9, (4, 2))
    np.testing.assert_allclose(bce(y2, p2).numpy(), L.binary_cross_entropy(y2, p2, label_smoothing=0.3).numpy(),
                               rtol=1e-12)
    assert L.apply_label_smoothing(np.eye(3, dtype=np.float32), np.zeros((3, 3), np.float32)).dtype == np.float32


def test_weights_and_smoothing_bad_arguments():
    y, p = np.eye(3), np.full((3, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"class_weights must be a number or hold one weight per class \(3 classes"):
        L.categorical_cross_entropy(y, p, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="class_weights must hold one weight per class"):
        L.categorical_cross_entropy(y, p, class_weights=2.0)
    with pytest.raises(ValueError, match=r"positive_weight must be finite and >= 0, got \[-1.0, 1.0, 1.0\]"):
        L.binary_cross_entropy(y, p, positive_weight=[-1.0, 1.0, 1.0])
    with pytest.raises(TypeError, match="negative_weight must be numbers, got dtype <U1"):
        L.binary_cross_entropy(y, p, negative_weight="a")
    with pytest.raises(ValueError, match=r"smoothing must be in \[0, 1\], got 1.5"):
        L.apply_label_smoothing(y, p, smoothing=1.5)
    with pytest.raises(ValueError, match="must share the class axis"):
        L.apply_label_smoothing(np.eye(2), p)
    with pytest.raises(ValueError, match="unknown loss"):
        L.label_smoothing("cross_entropy")
    for not_a_loss in ("label_smoothing", "apply_label_smoothing"):
        with pytest.raises(ValueError, match=f"unknown loss '{not_a_loss}'"):
            L.get(not_a_loss)
