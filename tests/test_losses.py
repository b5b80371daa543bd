"""Losses: finite differences, torch values and gradients, closed forms, stability, reductions, errors."""
import math

import numpy as np
import pytest

from axon.autograd import Tensor, check_grads, grad
from axon.functional import activations as A
from axon.functional import losses as L

r = np.random.default_rng(0)
LOSSES = [n for n in L.__all__ if n not in ("get", "apply_label_smoothing", "label_smoothing")]   # not losses


def probs(*shape):
    """Rows of a probability distribution over the last axis."""
    e = np.exp(r.standard_normal(shape))
    return e / e.sum(-1, keepdims=True)


def one_hot(labels, k):
    return np.eye(k)[labels]


def bits(*shape):
    return r.integers(0, 2, shape).astype(np.float64)


def signs(*shape):
    return r.choice([-1.0, 1.0], shape)


def rnd(*shape):
    return r.standard_normal(shape)


LABELS = r.integers(0, 5, (3,))
LABELS_3D = r.integers(0, 4, (2, 3))

# name -> (axon loss(y_true, y_pred) giving per-example values, torch reference or None, (y_true, y_pred),
#          whether y_true is differentiable here)
CASES = {
    "bce": (L.binary_cross_entropy,
            lambda F, y, p: F.binary_cross_entropy(p, y, reduction="none").mean(-1),
            (bits(3, 4), r.uniform(0.05, 0.95, (3, 4))), True),
    "bce_soft_targets_smoothing": (lambda y, p: L.binary_cross_entropy(y, p, label_smoothing=0.2),
                                   lambda F, y, p: F.binary_cross_entropy(p, y * 0.8 + 0.1, reduction="none").mean(-1),
                                   (r.uniform(0, 1, (3, 4)), r.uniform(0.05, 0.95, (3, 4))), True),
    "bce_logits": (lambda y, p: L.binary_cross_entropy(y, p, from_logits=True),
                   lambda F, y, x: F.binary_cross_entropy_with_logits(x, y, reduction="none").mean(-1),
                   (bits(3, 4), rnd(3, 4) * 3), True),
    "cce": (L.categorical_cross_entropy,
            lambda F, y, p: -(y * p.log()).sum(-1),
            (probs(3, 5), probs(3, 5)), True),
    "cce_logits": (lambda y, x: L.categorical_cross_entropy(y, x, from_logits=True),
                   lambda F, y, x: F.cross_entropy(x, y, reduction="none"),
                   (one_hot(LABELS, 5), rnd(3, 5) * 2), True),
    "cce_logits_smoothing": (lambda y, x: L.categorical_cross_entropy(y, x, from_logits=True, label_smoothing=0.1),
                             lambda F, y, x: F.cross_entropy(x, y, reduction="none", label_smoothing=0.1),
                             (probs(3, 5), rnd(3, 5)), True),
    "sparse_cce_logits": (lambda y, x: L.sparse_categorical_cross_entropy(LABELS, x, from_logits=True),
                          lambda F, y, x: F.cross_entropy(x, F_labels(LABELS), reduction="none"),
                          (None, rnd(3, 5)), False),
    "sparse_cce_logits_smoothing": (
        lambda y, x: L.sparse_categorical_cross_entropy(LABELS[:, None], x, from_logits=True, label_smoothing=0.3),
        lambda F, y, x: F.cross_entropy(x, F_labels(LABELS), reduction="none", label_smoothing=0.3),
        (None, rnd(3, 5)), False),
    "sparse_cce_probs": (lambda y, p: L.sparse_categorical_cross_entropy(LABELS, p),
                         lambda F, y, p: F.nll_loss(p.log(), F_labels(LABELS), reduction="none"),
                         (None, probs(3, 5)), False),
    "sparse_cce_3d": (lambda y, x: L.categorical_cross_entropy(LABELS_3D, x, from_logits=True, sparse=True),
                      lambda F, y, x: F.cross_entropy(x.transpose(1, 2), F_labels(LABELS_3D), reduction="none"),
                      (None, rnd(2, 3, 4)), False),
    "kl_divergence": (L.kl_divergence,
                      lambda F, y, p: F.kl_div(p.log(), y, reduction="none").sum(-1),
                      (probs(3, 4), probs(3, 4)), True),
    "mean_absolute_error": (L.mean_absolute_error,
                            lambda F, y, p: F.l1_loss(p, y, reduction="none").mean(-1),
                            (rnd(3, 4), rnd(3, 4)), True),
    "mean_squared_error": (L.mean_squared_error,
                           lambda F, y, p: F.mse_loss(p, y, reduction="none").mean(-1),
                           (rnd(3, 4), rnd(3, 4)), True),
    "poisson": (L.poisson,
                lambda F, y, p: F.poisson_nll_loss(p, y, log_input=False, eps=1e-7, reduction="none").mean(-1),
                (r.poisson(2.0, (3, 4)).astype(float), r.uniform(0.5, 3, (3, 4))), True),
    "soft_margin": (L.soft_margin,
                    lambda F, y, x: F.soft_margin_loss(x, y, reduction="none").mean(-1),
                    (signs(3, 4), rnd(3, 4)), True),
    "cosine_similarity": (L.cosine_similarity,
                          lambda F, a, b: F.cosine_similarity(a, b, dim=-1, eps=1e-6),
                          (rnd(3, 4), rnd(3, 4)), True),
    "cosine_similarity_axis0": (lambda a, b: L.cosine_similarity(a, b, axes=0),
                                lambda F, a, b: F.cosine_similarity(a, b, dim=0, eps=1e-6),
                                (rnd(3, 4), rnd(3, 4)), True),
    "huber": (lambda y, p: L.huber(y, p, delta=0.7),
              lambda F, y, p: F.huber_loss(p, y, reduction="none", delta=0.7),
              (rnd(3, 4), rnd(3, 4)), True),
    "hinge": (L.hinge, lambda F, y, p: (1 - y * p).clamp(min=0).mean(-1), (signs(3, 4), rnd(3, 4)), True),
    "categorical_hinge": (L.categorical_hinge,
                          lambda F, y, p: (((1 - y) * p).amax(-1) - (y * p).sum(-1) + 1).clamp(min=0),
                          (one_hot(LABELS, 5), rnd(3, 5)), True),
    "log_cosh": (L.log_cosh, lambda F, y, p: (p - y).cosh().log().mean(-1), (rnd(3, 4), rnd(3, 4)), True),
}


# torch refuses to differentiate these w.r.t. the target; finite differences still check ours
TORCH_NO_TARGET_GRAD = {"soft_margin"}


def F_labels(labels):
    import torch
    return torch.tensor(labels)


def _args(name):
    f, _, (y, p), y_differentiable = CASES[name]
    if y is None:
        return (lambda p: f(None, p)), (p,)
    if y_differentiable:
        return f, (y, p)
    return (lambda p: f(y, p)), (p,)


@pytest.mark.parametrize("name", sorted(CASES))
def test_grads_match_finite_differences_to_second_order(name):
    f, args = _args(name)
    check_grads(f, args, order=2, atol=1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_and_grads_match_torch_or_closed_form(name):
    torch = pytest.importorskip("torch")
    f, tf, (y, p), y_differentiable = CASES[name]
    y_differentiable = y_differentiable and name not in TORCH_NO_TARGET_GRAD
    out = f(y, p)
    pt = torch.tensor(p, requires_grad=True)
    yt = torch.tensor(y, requires_grad=y_differentiable) if y is not None else None
    ref = tf(torch.nn.functional, yt, pt)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    u = r.standard_normal(out.shape)
    (ref * torch.tensor(u)).sum().backward()
    if y_differentiable:
        gy, gp = grad(lambda y, p: (f(y, p) * u).sum(), argnums=(0, 1))(y, p)
        np.testing.assert_allclose(gy, yt.grad.numpy(), rtol=1e-9, atol=1e-12)
    else:
        gp = grad(lambda p: (f(y, p) * u).sum())(p)
    np.testing.assert_allclose(gp, pt.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_margin_ranking_matches_torch_in_all_three_inputs():
    torch = pytest.importorskip("torch")
    y, a, b = signs(6), rnd(6), rnd(6)
    f = lambda y, a, b: L.margin_ranking(y, (a, b), margin=0.3)      # noqa: E731
    check_grads(f, (y, a, b), order=2)
    ts = [torch.tensor(v, requires_grad=True) for v in (y, a, b)]
    ref = torch.nn.functional.margin_ranking_loss(ts[1], ts[2], ts[0], margin=0.3, reduction="none")
    np.testing.assert_allclose(f(y, a, b).numpy(), ref.detach().numpy(), rtol=1e-12)
    ref.sum().backward()
    for g, t in zip(grad(lambda *v: f(*v).sum(), argnums=(0, 1, 2))(y, a, b), ts):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12)


def test_closed_forms_for_axon_documented_examples():
    y = np.array([[0, 1], [1, 0], [1, 0]])
    p = np.array([[0.6811, 0.5565], [0.6551, 0.4551], [0.5422, 0.2648]])
    expected = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(-1)
    np.testing.assert_allclose(L.binary_cross_entropy(y, p).numpy(), expected, rtol=1e-12)
    yt = np.array([[1, 0, 0], [0, 0, 1]])
    yp = np.array([[0.05300799, 0.21617081, 0.68642382], [0.3754382, 0.08494169, 0.13442067]])
    np.testing.assert_allclose(L.categorical_hinge(yt, yp).numpy(), [1.6334158, 1.2410176], rtol=1e-6)
    np.testing.assert_allclose(L.huber(np.array([[1.0], [1.5], [2.0]]), np.array([[0.8], [1.8], [2.1]])).numpy(),
                               [[0.02], [0.045], [0.005]], rtol=1e-10)
    np.testing.assert_allclose(L.log_cosh(np.array([[0.0, 1.0]]), np.array([[1.0, 1.0]])).numpy(),
                               [np.log(np.cosh(1.0)) / 2], rtol=1e-12)


def _example_args(name):
    """(y_true, y_pred) that suit the public loss ``name``."""
    special = {"binary_cross_entropy": CASES["bce"][2], "categorical_cross_entropy": CASES["cce"][2],
               "sparse_categorical_cross_entropy": (LABELS, probs(3, 5)),
               "margin_ranking": (signs(3), (rnd(3), rnd(3))),
               "connectionist_temporal_classification": ((np.array([2, 1]), np.array([[1, 2], [2, 0]])),
                                                         np.log(probs(2, 4, 3)))}
    return special.get(name) or CASES[name][2]


@pytest.mark.parametrize("name", LOSSES)
def test_reductions_are_mean_and_sum_of_the_per_example_losses(name):
    f, (y, p) = L.get(name), _example_args(name)
    none = f(y, p).numpy()
    assert none.ndim >= 1
    mean = f(y, p, reduction="mean")
    assert mean.shape == ()
    if name == "connectionist_temporal_classification":          # per target label, as torch
        np.testing.assert_allclose(mean.numpy(), (none / np.array([2, 1])).mean(), rtol=1e-12)
    else:
        np.testing.assert_allclose(mean.numpy(), none.mean(), rtol=1e-12)
    np.testing.assert_allclose(f(y, p, reduction="sum").numpy(), none.sum(), rtol=1e-12)


@pytest.mark.parametrize("name", LOSSES)
def test_unknown_reduction_names_the_valid_ones(name):
    args = _example_args(name)
    with pytest.raises(ValueError, match=f"{name}: reduction must be one of 'none', 'mean', 'sum', got 'avg'"):
        L.get(name)(*args, reduction="avg")


@pytest.mark.parametrize("name", ["binary_cross_entropy", "categorical_cross_entropy", "categorical_hinge",
                                  "hinge", "kl_divergence", "log_cosh", "mean_absolute_error",
                                  "mean_squared_error", "poisson", "soft_margin", "cosine_similarity", "huber"])
def test_mismatched_shapes_name_both(name):
    with pytest.raises(ValueError, match=rf"{name}: y_true and y_pred must have the same shape, "
                                         rf"got y_true \(4, 3\) and y_pred \(4, 2\)"):
        L.get(name)(np.zeros((4, 3)), np.full((4, 2), 0.5))


def test_other_shape_and_label_errors():
    with pytest.raises(ValueError, match=r"margin_ranking: .*y_true \(3,\), y_pred1 \(3,\) and y_pred2 \(2,\)"):
        L.margin_ranking(np.ones(3), (np.ones(3), np.ones(2)))
    with pytest.raises(TypeError, match="margin_ranking: y_pred must be a pair"):
        L.margin_ranking(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match=r"sparse_categorical_cross_entropy: y_true must hold one class index "
                                         r"per row of y_pred, with shape \(4,\) or \(4, 1\); got y_true \(4, 3\)"):
        L.sparse_categorical_cross_entropy(np.zeros((4, 3)), probs(4, 3))
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 3\), got values in \[0, 3\]"):
        L.sparse_categorical_cross_entropy(np.array([0, 3]), probs(2, 3))
    with pytest.raises(ValueError, match="must hold integer class indices"):
        L.sparse_categorical_cross_entropy(np.array([0.5, 1.0]), probs(2, 3))
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\]"):
        L.categorical_cross_entropy(probs(2, 3), probs(2, 3), label_smoothing=1.5)
    with pytest.raises(ValueError, match="huber: delta must be positive"):
        L.huber(np.zeros(2), np.zeros(2), delta=0.0)
    with pytest.raises(ValueError, match=r"binary_cross_entropy: y_pred needs at least 1 axis"):
        L.binary_cross_entropy(0.0, 0.5)
    with pytest.raises(ValueError, match="cosine_similarity: axis 2 is out of range"):
        L.cosine_similarity(rnd(2, 3), rnd(2, 3), axes=2)


def test_get_resolves_names_and_lists_the_valid_ones():
    assert L.get("huber") is L.huber
    assert L.get(L.hinge) is L.hinge
    with pytest.raises(ValueError, match="unknown loss 'mse'; valid names: binary_cross_entropy, .*mean_squared_error"):
        L.get("mse")


# ---- stability -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropies_on_saturated_probabilities_are_finite(dtype):
    y = np.array([[1.0, 0.0, 1.0, 0.0]], dtype=dtype)
    for p in (np.array([[1.0, 0.0, 0.0, 1.0]], dtype=dtype), np.array([[0.0, 1.0, 1.0, 0.0]], dtype=dtype)):
        x = Tensor(p, requires_grad=True)
        loss = L.binary_cross_entropy(y, x)
        loss.sum().backward()
        assert np.isfinite(loss.numpy()).all() and np.isfinite(x.grad).all()
    # all-wrong saturated predictions cost -log(1e-7) ~ 16.1 per element, not inf
    wrong = L.binary_cross_entropy(y, 1 - y).numpy()
    np.testing.assert_allclose(wrong, [-np.log(1e-7)], rtol=1e-2)
    yc = np.eye(3, dtype=dtype)
    for loss_fn, target in [(L.categorical_cross_entropy, yc), (L.sparse_categorical_cross_entropy, np.arange(3)),
                            (L.kl_divergence, yc)]:
        x = Tensor(np.roll(yc, 1, axis=1), requires_grad=True)      # probability 0 on the true class
        loss = loss_fn(target, x)
        loss.sum().backward()
        assert np.isfinite(loss.numpy()).all() and np.isfinite(x.grad).all(), loss_fn.__name__


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropies_from_logits_at_plus_minus_1000(dtype):
    x = np.array([[1000.0, -1000.0, 0.0]], dtype=dtype)
    y = np.array([[0.0, 1.0, 0.0]], dtype=dtype)
    checks = [
        (lambda x: L.binary_cross_entropy(y, x, from_logits=True), [(1000 + 1000 + np.log(2)) / 3]),
        (lambda x: L.categorical_cross_entropy(y, x, from_logits=True), [2000.0]),
        (lambda x: L.sparse_categorical_cross_entropy(np.array([1]), x, from_logits=True), [2000.0]),
        (lambda x: L.sparse_categorical_cross_entropy(np.array([0]), x, from_logits=True, label_smoothing=0.1),
         [0.1 * (0 + 2000 + 1000) / 3]),
        (lambda x: L.soft_margin(y * 2 - 1, x), [(1000 + 1000 + np.log(2)) / 3]),
    ]
    for f, expected in checks:
        t = Tensor(x, requires_grad=True)
        loss = f(t)
        loss.sum().backward()
        assert loss.dtype == dtype
        np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-6)
        assert np.isfinite(t.grad).all()
    g = grad(lambda x: L.binary_cross_entropy(y.astype(np.float64), x, from_logits=True).sum())(x.astype(np.float64))
    np.testing.assert_allclose(g, [[1 / 3, -1 / 3, 0.5 / 3]])         # (sigmoid(x) - y) / n


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_stays_float32(name):
    f, _, (y, p), y_differentiable = CASES[name]
    p32 = Tensor(p.astype(np.float32), requires_grad=True)
    y32 = None if y is None else (y.astype(np.float32) if y_differentiable else y)
    out = f(y32, p32)
    assert out.dtype == np.float32
    (out * 2.0).sum().backward()
    assert p32.grad.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), f(y, p).numpy(), rtol=1e-4, atol=1e-5)


def test_integer_targets_with_float32_predictions_stay_float32():
    out = L.binary_cross_entropy(np.array([[0, 1]]), np.array([[0.3, 0.6]], dtype=np.float32))
    assert out.dtype == np.float32


def test_y_true_tensor_without_grad_is_a_constant():
    y = Tensor(probs(2, 3))
    p = Tensor(probs(2, 3), requires_grad=True)
    L.kl_divergence(y, p).sum().backward()
    assert y.grad is None and p.grad is not None


# ---- CTC -----------------------------------------------------------------------------------------
def _torch_ctc(torch, z, targets, il, tl, blank=0, reduction="none", zero_infinity=False):
    zt = torch.tensor(z, requires_grad=True)
    lp = torch.log_softmax(zt, -1).transpose(0, 1)                   # (B, T, C) -> (T, B, C)
    loss = torch.nn.functional.ctc_loss(lp, torch.tensor(targets), torch.tensor(il), torch.tensor(tl),
                                        blank=blank, reduction=reduction, zero_infinity=zero_infinity)
    return zt, loss


CTC_CASES = {
    # B, T, C, targets, target lengths, input lengths, blank
    "full_lengths": (3, 7, 4, [[1, 2, 3], [3, 3, 1], [2, 1, 2]], [3, 3, 3], [7, 7, 7], 0),
    "ragged_repeats_empty": (4, 9, 5, [[1, 1, 2, 3], [4, 4, 4, 4], [1, 2, 3, 4], [2, 0, 0, 0]],
                             [4, 2, 0, 1], [9, 6, 5, 1], 0),
    "blank_last": (2, 6, 4, [[0, 1], [2, 2]], [2, 2], [6, 5], 3),
}


@pytest.mark.parametrize("case", sorted(CTC_CASES))
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_ctc_values_and_grads_match_torch(case, reduction):
    torch = pytest.importorskip("torch")
    b, t, c, targets, tl, il, blank = CTC_CASES[case]
    targets, tl, il = np.array(targets), np.array(tl), np.array(il)
    z = r.standard_normal((b, t, c))
    f = lambda z: L.connectionist_temporal_classification(                          # noqa: E731
        (tl, targets), A.log_softmax(z), input_lengths=il, blank=blank, reduction=reduction)
    zt, ref = _torch_ctc(torch, z, targets, il, tl, blank, reduction)
    np.testing.assert_allclose(f(z).numpy(), ref.detach().numpy(), rtol=1e-10)
    u = r.standard_normal(ref.shape)
    (ref * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(grad(lambda z: (f(z) * u).sum())(z), zt.grad.numpy(), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("case", sorted(CTC_CASES))
def test_ctc_grad_wrt_log_probs_matches_finite_differences(case):
    b, t, c, targets, tl, il, blank = CTC_CASES[case]
    lp = np.log(probs(b, t, c))
    # the gradient is taken w.r.t. free log-probabilities (not through a log_softmax)
    check_grads(lambda lp: L.connectionist_temporal_classification((tl, np.array(targets)), lp,
                                                                   input_lengths=il, blank=blank),
                (lp,), order=1)


def test_ctc_closed_form_and_targets_without_lengths():
    lp = np.log(np.full((1, 3, 2), 0.5))
    # "a" from 3 steps over {blank, a}: 6 of the 8 equally likely paths collapse to "a"
    np.testing.assert_allclose(L.connectionist_temporal_classification(np.array([[1]]), lp).numpy(),
                               [-math.log(6 / 8)], rtol=1e-12)
    # "aa" needs a blank in between: only "a_a" of 8 paths
    np.testing.assert_allclose(L.connectionist_temporal_classification(np.array([[1, 1]]), lp).numpy(),
                               [-math.log(1 / 8)], rtol=1e-12)
    # the empty target: only the all-blank path
    np.testing.assert_allclose(L.connectionist_temporal_classification((np.array([0]), np.array([[1]])), lp).numpy(),
                               [-math.log(1 / 8)], rtol=1e-12)


def test_ctc_impossible_alignment_is_inf_or_zeroed():
    torch = pytest.importorskip("torch")
    z = r.standard_normal((2, 3, 3))
    targets, tl, il = np.array([[1, 1, 1], [1, 2, 0]]), np.array([3, 2]), np.array([3, 3])  # "aaa" needs 5 steps
    lp = A.log_softmax(z)
    loss = L.connectionist_temporal_classification((tl, targets), lp)
    assert np.isinf(loss.numpy()[0]) and np.isfinite(loss.numpy()[1])
    f = lambda z: L.connectionist_temporal_classification((tl, targets), A.log_softmax(z), zero_infinity=True)  # noqa
    zt, ref = _torch_ctc(torch, z, targets, il, tl, zero_infinity=True)
    np.testing.assert_allclose(f(z).numpy(), ref.detach().numpy(), rtol=1e-10)
    ref.sum().backward()
    g = grad(lambda z: f(z).sum())(z)
    np.testing.assert_allclose(g, zt.grad.numpy(), rtol=1e-8, atol=1e-12)
    assert (g[0] == 0).all()


def test_ctc_float32_and_no_second_order():
    lp = Tensor(np.log(probs(2, 5, 3)).astype(np.float32), requires_grad=True)
    loss = L.connectionist_temporal_classification(np.array([[1, 2], [2, 2]]), lp)
    assert loss.dtype == np.float32
    loss.sum().backward()
    assert lp.grad.dtype == np.float32 and np.isfinite(lp.grad).all()
    with pytest.raises(NotImplementedError, match="ctc_loss"):
        grad(grad(lambda x: L.connectionist_temporal_classification(np.array([[1]]), x).sum()))(
            np.log(probs(1, 3, 2)))


def test_ctc_bad_input():
    lp = np.log(probs(2, 5, 3))
    ctc = L.connectionist_temporal_classification
    with pytest.raises(ValueError, match=r"y_pred must be log-probabilities of shape \(batch, time, classes\)"):
        ctc(np.array([[1]]), lp[0])
    with pytest.raises(ValueError, match=r"targets must have shape \(batch, max_target_length\) with batch 2"):
        ctc(np.array([[1, 2]]), lp)
    with pytest.raises(ValueError, match="differ from the blank"):
        ctc(np.array([[1, 0], [1, 2]]), lp)
    with pytest.raises(ValueError, match=r"target labels must be in \[0, 3\)"):
        ctc(np.array([[1, 3], [1, 2]]), lp)
    with pytest.raises(ValueError, match=r"target_lengths must be in \[0, 2\]"):
        ctc((np.array([3, 1]), np.array([[1, 2], [1, 2]])), lp)
    with pytest.raises(ValueError, match=r"input_lengths must be in \[1, 5\]"):
        ctc(np.array([[1, 2], [1, 2]]), lp, input_lengths=np.array([0, 5]))
    with pytest.raises(ValueError, match=r"input_lengths must have shape \(2,\)"):
        ctc(np.array([[1, 2], [1, 2]]), lp, input_lengths=np.array([5]))
    with pytest.raises(ValueError, match=r"blank must be a class index in \[0, 3\)"):
        ctc(np.array([[1, 2], [1, 2]]), lp, blank=3)
