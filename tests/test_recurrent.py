"""Recurrent layers: cells, unrolls and the fused kernels, against finite differences and PyTorch."""
import numpy as np
import pytest

import axon
from axon import layers as L
from axon.autograd import Tensor

r = np.random.default_rng(0)
UNROLLS = ("fused", "static", "dynamic")
MASK = np.array([[True, True, False], [True, False, True]])     # (B, T) = (2, 3): padding in the middle and at the end


def a(*shape):
    return r.standard_normal(shape)


# ---- finite differences --------------------------------------------------------------------------------
def test_cells_check_grads_second_order():
    B, F, H = 2, 3, 2
    axon.check_grads(lambda x, c, h, w, u, b: sum(t.sum() for t in L.lstm_cell(x, (c, h), w, u, b)[0]),
                     (a(B, F), a(B, H), a(B, H), a(F, 4 * H), a(H, 4 * H), a(4 * H)), order=2)
    axon.check_grads(lambda x, h, w, u, bi, bh: L.gru_cell(x, h, w, u, bi, bh)[1] ** 2,
                     (a(B, F), a(B, H), a(F, 3 * H), a(H, 3 * H), a(3 * H), a(3 * H)), order=2)


def test_conv_lstm_cell_check_grads_second_order():
    # 1-d and 2-d, "same" and a strided "valid" input convolution: the conv kernel's VJP is two convolutions when recorded
    axon.check_grads(lambda x, c, h, w, u, b: L.conv_lstm_cell(x, (c, h), w, u, b)[1],
                     (a(1, 4, 2), a(1, 4, 2), a(1, 4, 2), a(3, 2, 8), a(3, 2, 8), a(8)), order=2)
    axon.check_grads(lambda x, c, h, w, u, b: L.conv_lstm_cell(x, (c, h), w, u, b, strides=2, padding="valid")[1],
                     (a(1, 5, 5, 1), a(1, 2, 2, 1), a(1, 2, 2, 1), a(2, 2, 1, 4), a(3, 3, 1, 4), a(4)), order=2)


@pytest.mark.parametrize("unroll", UNROLLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_lstm_gru_check_grads(unroll, reverse):
    B, T, F, H = 2, 3, 2, 2
    order = 2

    def lstm_loss(x, w, u, b, c0, h0):
        y, (c, h) = L.lstm(x, (c0, h0), w, u, b, mask=MASK, reverse=reverse, unroll=unroll)
        return (y * y).sum() + (c * h).sum()

    def gru_loss(x, w, u, bi, bh, h0):
        y, h = L.gru(x, h0, w, u, bi, bh, mask=MASK, reverse=reverse, unroll=unroll)
        return (y * y).sum() + (h * h * h).sum()

    axon.check_grads(lstm_loss, (a(B, T, F), a(F, 4 * H), a(H, 4 * H), a(4 * H), a(B, H), a(B, H)), order=order)
    axon.check_grads(gru_loss, (a(B, T, F), a(F, 3 * H), a(H, 3 * H), a(3 * H), a(3 * H), a(B, H)), order=order)


@pytest.mark.parametrize("unroll", ["static", "dynamic"])
def test_conv_lstm_check_grads_second_order(unroll):
    args = (a(2, 3, 3, 1), a(3, 1, 4), a(3, 1, 4), a(4), a(2, 3, 1), a(2, 3, 1))
    f = lambda x, w, u, b, c0, h0: L.conv_lstm(x, (c0, h0), w, u, b, mask=MASK, reverse=True, unroll=unroll)[0]  # noqa: E731
    axon.check_grads(f, args, order=2)


def test_conv_lstm_unrolls_agree():
    args = (a(2, 3, 3, 1), a(3, 1, 4), a(3, 1, 4), a(4), a(2, 3, 1), a(2, 3, 1))
    f = lambda x, w, u, b, c0, h0, unroll="static": L.conv_lstm(x, (c0, h0), w, u, b, mask=MASK, unroll=unroll)[0]  # noqa: E731
    np.testing.assert_allclose(f(*args).numpy(), f(*args, unroll="dynamic").numpy(), atol=1e-12)


def test_static_and_dynamic_unroll_of_any_cell():
    cell = lambda x_t, s, w: (s * w + x_t, (s * w + x_t) ** 2)  # noqa: E731
    x, s0 = a(2, 4, 3), a(2, 3)
    axon.check_grads(lambda x, s0, w: L.static_unroll(cell, x, s0, w, mask=np.ones((2, 4), bool))[0], (x, s0, a(3)),
                     order=2)
    axon.check_grads(lambda x, s0, w: L.dynamic_unroll(cell, x, s0, w, reverse=True)[0], (x, s0, a(3)), order=2)
    y, s = L.static_unroll(cell, x, s0, np.full(3, 0.5))
    y2, s2 = L.dynamic_unroll(cell, x, s0, np.full(3, 0.5))
    np.testing.assert_allclose(y.numpy(), y2.numpy())
    np.testing.assert_allclose(s.numpy(), s2.numpy())


def test_unrolls_agree_in_float32_and_keep_the_dtype():
    B, T, F, H = 3, 7, 5, 4
    x, w, u, b = (v.astype(np.float32) for v in (a(B, T, F), a(F, 4 * H), a(H, 4 * H), a(4 * H)))
    zeros = np.zeros((B, H), np.float32)
    outs = [L.lstm(x, (zeros, zeros), w, u, b, unroll=un)[0] for un in UNROLLS]
    assert all(y.dtype == np.float32 for y in outs)
    for y in outs[1:]:
        np.testing.assert_allclose(outs[0].numpy(), y.numpy(), atol=2e-6)    # the float32 tanh: 2 ulp


def test_masked_steps_keep_the_carry_and_output_zero():
    B, T, F, H = 2, 3, 2, 3
    x, w, u = a(B, T, F), a(F, 4 * H), a(H, 4 * H)
    zeros = np.zeros((B, H))
    y, (c, h) = L.lstm(x, (zeros, zeros), w, u, mask=MASK)
    assert np.all(y.numpy()[0, 2] == 0) and np.all(y.numpy()[1, 1] == 0)
    np.testing.assert_allclose(h.numpy()[0], y.numpy()[0, 1])                 # the last real step's h
    short, _ = L.lstm(x[:1, :2], (zeros[:1], zeros[:1]), w, u)               # the same sequence, unpadded
    np.testing.assert_allclose(y.numpy()[0, :2], short.numpy()[0])


def test_reverse_equals_running_the_flipped_sequence():
    x, w, u, bi, bh, h0 = a(2, 5, 3), a(3, 6), a(2, 6), a(6), a(6), a(2, 2)
    y, h = L.gru(x, h0, w, u, bi, bh, reverse=True)
    y2, h2 = L.gru(x[:, ::-1], h0, w, u, bi, bh)
    np.testing.assert_allclose(y.numpy(), y2.numpy()[:, ::-1], atol=1e-12)
    np.testing.assert_allclose(h.numpy(), h2.numpy(), atol=1e-12)


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match="lstm: expects a sequence"):
        L.lstm(a(2, 3), (a(2, 4), a(2, 4)), a(3, 16), a(4, 16))
    with pytest.raises(ValueError, match="kernel_hidden"):
        L.lstm(a(2, 3, 3), (a(2, 4), a(2, 4)), a(3, 16), a(4, 12))
    with pytest.raises(ValueError, match="mask must be"):
        L.gru(a(2, 3, 3), a(2, 4), a(3, 12), a(4, 12), mask=np.ones((2, 4), bool))
    with pytest.raises(ValueError, match="unroll must be"):
        L.gru(a(2, 3, 3), a(2, 4), a(3, 12), a(4, 12), unroll="fast")


def test_dynamic_unroll_grad_of_grad_when_a_parent_feeds_another():
    """The initial carry is made from the weight: the recorded VJP must not count the path through it twice."""
    cell = lambda x_t, s, w: (s * w + x_t, (s * w + x_t) ** 2)  # noqa: E731

    def f(x, w, unroll):
        y, s = unroll(cell, x, (w * w).reshape((1, 2)) + 0.0 * x[:, 0], w, mask=MASK[:1, :2].repeat(2, 0))
        return (y ** 2).sum() + s.sum()

    x, w = a(2, 2, 2), a(2)
    axon.check_grads(lambda x, w: f(x, w, L.dynamic_unroll), (x, w), order=2)
    hessians = [axon.grad(lambda w: (axon.grad(lambda w: f(x, w, u))(w) ** 2).sum())(w)
                for u in (L.static_unroll, L.dynamic_unroll)]
    np.testing.assert_allclose(hessians[0], hessians[1], rtol=1e-12)


# ---- against PyTorch -----------------------------------------------------------------------------------
def _torch_weights(module):
    w = {k: v.detach().numpy() for k, v in module.named_parameters()}
    return w["weight_ih_l0"].T, w["weight_hh_l0"].T, w["bias_ih_l0"], w["bias_hh_l0"]


def test_cells_equal_torch():
    torch = pytest.importorskip("torch")
    B, F, H = 3, 4, 5
    x, h0, c0 = a(B, F), a(B, H), a(B, H)
    cell = torch.nn.LSTMCell(F, H).double()
    xt = torch.tensor(x, requires_grad=True)
    ht, ct = cell(xt, (torch.tensor(h0), torch.tensor(c0)))
    (ht.sum() + (ct * ct).sum()).backward()
    w, u, bi, bh = (cell.weight_ih.detach().numpy().T, cell.weight_hh.detach().numpy().T,
                    cell.bias_ih.detach().numpy(), cell.bias_hh.detach().numpy())
    xa = Tensor(x, requires_grad=True)
    (c, h), y = L.lstm_cell(xa, (c0, h0), w, u, bi + bh)
    (h.sum() + (c * c).sum()).backward()
    np.testing.assert_allclose(h.numpy(), ht.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(xa.grad, xt.grad.numpy(), atol=1e-12)

    cell = torch.nn.GRUCell(F, H).double()
    xt = torch.tensor(x, requires_grad=True)
    ht = cell(xt, torch.tensor(h0))
    (ht ** 2).sum().backward()
    xa = Tensor(x, requires_grad=True)
    h, _ = L.gru_cell(xa, h0, cell.weight_ih.detach().numpy().T, cell.weight_hh.detach().numpy().T,
                      cell.bias_ih.detach().numpy(), cell.bias_hh.detach().numpy())
    (h * h).sum().backward()
    np.testing.assert_allclose(h.numpy(), ht.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(xa.grad, xt.grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("unroll", UNROLLS)
def test_lstm_and_gru_equal_torch(unroll):
    torch = pytest.importorskip("torch")
    B, T, F, H = 3, 6, 4, 5
    x, h0, c0 = a(B, T, F), a(B, H), a(B, H)

    lstm = torch.nn.LSTM(F, H, batch_first=True).double()
    xt = torch.tensor(x, requires_grad=True)
    yt, (ht, ct) = lstm(xt, (torch.tensor(h0)[None], torch.tensor(c0)[None]))
    ((yt ** 2).sum() + (ct * ht).sum()).backward()
    w, u, bi, bh = _torch_weights(lstm)
    xa, ua = Tensor(x, requires_grad=True), Tensor(u, requires_grad=True)
    y, (c, h) = L.lstm(xa, (c0, h0), w, ua, bi + bh, unroll=unroll)
    ((y * y).sum() + (c * h).sum()).backward()
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(c.numpy(), ct[0].detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(xa.grad, xt.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(ua.grad, lstm.weight_hh_l0.grad.numpy().T, atol=1e-12)

    gru = torch.nn.GRU(F, H, batch_first=True).double()
    xt = torch.tensor(x, requires_grad=True)
    yt, ht = gru(xt, torch.tensor(h0)[None])
    ((yt ** 2).sum() + (ht ** 3).sum()).backward()
    w, u, bi, bh = _torch_weights(gru)
    xa, bha = Tensor(x, requires_grad=True), Tensor(bh, requires_grad=True)
    y, h = L.gru(xa, h0, w, u, bi, bha, unroll=unroll)
    ((y * y).sum() + (h * h * h).sum()).backward()
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(xa.grad, xt.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(bha.grad, gru.bias_hh_l0.grad.numpy(), atol=1e-12)


def test_padded_lstm_equals_torch_packed_sequences():
    torch = pytest.importorskip("torch")
    B, T, F, H = 3, 5, 2, 3
    lengths = np.array([5, 2, 4])
    mask = np.arange(T)[None, :] < lengths[:, None]
    x = a(B, T, F) * mask[:, :, None]
    lstm = torch.nn.LSTM(F, H, batch_first=True).double()
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.tensor(x), torch.tensor(lengths), batch_first=True,
                                                     enforce_sorted=False)
    yt, (ht, ct) = lstm(packed)
    yt, _ = torch.nn.utils.rnn.pad_packed_sequence(yt, batch_first=True, total_length=T)
    w, u, bi, bh = _torch_weights(lstm)
    zeros = np.zeros((B, H))
    y, (c, h) = L.lstm(x, (zeros, zeros), w, u, bi + bh, mask=mask)
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(h.numpy(), ht[0].detach().numpy(), atol=1e-12)


def test_float32_fused_kernels_close_to_torch():
    torch = pytest.importorskip("torch")
    B, T, F, H = 4, 9, 3, 8
    x = a(B, T, F).astype(np.float32)
    gru = torch.nn.GRU(F, H, batch_first=True)
    yt, _ = gru(torch.tensor(x))
    w, u, bi, bh = _torch_weights(gru)
    y, _ = L.gru(x, np.zeros((B, H), np.float32), w, u, bi, bh)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), atol=1e-5)


# ---- the model builders ----------------------------------------------------------------------------------
def test_builders_count_params_exactly_and_run():
    x = axon.input((None, 6, 3))
    seq, carry = x.lstm(5)
    gseq, gh = axon.bidirectional(seq, lambda s: s.gru(4))[0], None
    model = axon.container({"seq": gseq, "carry": carry})
    params = axon.init(model)
    n = sum(v.size for layer in params.values() for v in layer.values())
    assert axon.count_params(model)["total"] == n == (3 * 20 + 5 * 20 + 20) + 2 * (5 * 12 + 4 * 12 + 24)
    out = axon.predict(model, params, a(2, 6, 3).astype(np.float32))
    assert out["seq"].shape == (2, 6, 8) and [c.shape for c in out["carry"]] == [(2, 5), (2, 5)]
    assert "Total parameters: 444" in axon.summary(model)
    for axis, error in ((0, ValueError), (3, ValueError), (-1, ValueError), (1.0, TypeError)):   # not a step axis
        with pytest.raises(error, match="bidirectional: axis must be"):
            axon.bidirectional(x, lambda s: s.gru(4), axis=axis)


def test_builder_mask_and_carry_inputs():
    tokens = axon.input((None, 4), name="tokens")
    emb = tokens.embedding(10, 3)
    seq, carry = emb.lstm(2, mask=tokens.mask(0))
    dec, _ = emb.lstm(2, carry=carry)                          # an encoder's carry starts the decoder
    params = axon.init(dec)
    t = np.array([[3, 1, 0, 0], [2, 5, 7, 1]])
    s, c = axon.predict(axon.container((seq, carry)), params, t)
    assert np.all(s[0, 2:] == 0) and np.allclose(c[1][0], s[0, 1])
    assert axon.predict(dec, params, t).shape == (2, 4, 2)


# ---- padded sequences both ways, second order, ConvLSTM: against PyTorch ---------------------------------
LENGTHS = np.array([6, 2, 4])                                  # right-padded, unsorted: as pack_padded_sequence takes
PADDED = np.arange(6)[None, :] < LENGTHS[:, None]              # (B, T) = (3, 6), True on real steps


def _torch_packed_bidirectional(torch, kind, x, dy):
    """torch's bidirectional LSTM/GRU over packed sequences: (module, y (B, T, 2H), final h (2, B, H), dx)."""
    B, T, F = x.shape
    module = getattr(torch.nn, kind.upper())(F, dy.shape[-1] // 2, batch_first=True, bidirectional=True).double()
    xt = torch.tensor(x, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(LENGTHS), batch_first=True, enforce_sorted=False)
    yt, last = module(packed)
    yt, _ = torch.nn.utils.rnn.pad_packed_sequence(yt, batch_first=True, total_length=T)
    (yt * torch.tensor(dy)).sum().backward()
    h = last[0] if kind == "lstm" else last
    return module, yt.detach().numpy(), h.detach().numpy(), xt.grad.numpy()


def _direction(module, kind, suffix):
    """One direction's weights in axon's layout: (kernel_input, kernel_hidden, biases...) (an LSTM's biases summed)."""
    p = {k: v.detach().numpy() for k, v in module.named_parameters()}
    w, u, bi, bh = (p[f"{name}_l0{suffix}"] for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    return (w.T, u.T, bi + bh) if kind == "lstm" else (w.T, u.T, bi, bh)


@pytest.mark.parametrize("unroll", UNROLLS)
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_masked_and_reversed_layers_equal_torch_packed_bidirectional(kind, unroll):
    """The forward run and ``reverse=True`` with the same mask are torch's two directions: values, final h, dx, dU."""
    torch = pytest.importorskip("torch")
    B, T, F, H = 3, 6, 4, 5
    x, dy = a(B, T, F) * PADDED[:, :, None], a(B, T, 2 * H)
    module, yt, ht, dxt = _torch_packed_bidirectional(torch, kind, x, dy)
    xa = Tensor(x, requires_grad=True)
    zeros = np.zeros((B, H))
    loss, us = 0.0, []
    for d, (suffix, reverse) in enumerate((("", False), ("_reverse", True))):
        w, u, *b = _direction(module, kind, suffix)
        us.append(Tensor(u, requires_grad=True))
        if kind == "lstm":
            y, (_, h) = L.lstm(xa, (zeros, zeros), w, us[-1], *b, mask=PADDED, reverse=reverse, unroll=unroll)
        else:
            y, h = L.gru(xa, zeros, w, us[-1], *b, mask=PADDED, reverse=reverse, unroll=unroll)
        np.testing.assert_allclose(y.numpy(), yt[..., d * H:(d + 1) * H], atol=1e-12)
        np.testing.assert_allclose(h.numpy(), ht[d], atol=1e-12)
        loss = loss + (y * dy[..., d * H:(d + 1) * H]).sum()
    loss.backward()
    np.testing.assert_allclose(xa.grad, dxt, atol=1e-12)       # padded steps: 0 in both
    for u, suffix in zip(us, ("", "_reverse")):
        np.testing.assert_allclose(u.grad, getattr(module, f"weight_hh_l0{suffix}").grad.numpy().T, atol=1e-12)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_masked_bidirectional_builder_equals_torch_packed(kind):
    """``axon.bidirectional(..., mask=...)``: the backward run reads the padded batch reversed, mask and all."""
    torch = pytest.importorskip("torch")
    B, T, F, H = 3, 6, 4, 5
    x, dy = a(B, T, F) * PADDED[:, :, None], a(B, T, 2 * H)
    module, yt, ht, dxt = _torch_packed_bidirectional(torch, kind, x, dy)
    seqs = axon.input((None, T, F), name="x")
    mask = axon.input((None, T), name="mask")
    seq, (fw, bw) = axon.bidirectional(seqs, lambda s, m: getattr(s, kind)(H, mask=m), mask=mask)
    model = axon.container((seq, fw, bw))
    names = ["kernel_input", "kernel_hidden"] + (["bias"] if kind == "lstm" else ["bias_input", "bias_hidden"])
    layers = [k for k in axon.init(model) if k.startswith(kind)]          # the forward run's layer first
    params = {layer: dict(zip(names, _direction(module, kind, suffix)))
              for layer, suffix in zip(layers, ("", "_reverse"))}
    xa = Tensor(x, requires_grad=True)
    y, h_fw, h_bw = axon.apply(model, params, {"x": xa, "mask": PADDED})[0]
    np.testing.assert_allclose(y.numpy(), yt, atol=1e-12)
    for h, ref in zip((h_fw, h_bw), ht):
        np.testing.assert_allclose((h[1] if kind == "lstm" else h).numpy(), ref, atol=1e-12)
    (y * dy).sum().backward()
    np.testing.assert_allclose(xa.grad, dxt, atol=1e-12)


def test_bidirectional_refuses_a_mask_it_cannot_reverse():
    tokens = axon.input((None, 5), name="tokens")
    emb = tokens.embedding(6, 3)
    with pytest.raises(ValueError, match="takes a mask that is not reversed"):
        axon.bidirectional(emb, lambda s: s.gru(2, mask=tokens.mask(0)))       # the mask as a closure
    seq, _ = axon.bidirectional(emb.gru(2, mask=tokens.mask(0))[0], lambda s: s.lstm(2))   # a mask upstream: fine
    assert seq.shape == (None, 5, 4)


@pytest.mark.parametrize("unroll", UNROLLS)
def test_lstm_hessian_vector_product_equals_torch(unroll):
    """Second order: d/dU <dL/dx, v> of an LSTM, against torch's double backward."""
    torch = pytest.importorskip("torch")
    B, T, F, H = 2, 5, 3, 4
    x, dy, v = a(B, T, F), a(B, T, H), a(B, T, F)
    lstm = torch.nn.LSTM(F, H, batch_first=True).double()
    xt = torch.tensor(x, requires_grad=True)
    yt, _ = lstm(xt)
    gx, = torch.autograd.grad((yt * torch.tensor(dy)).sum(), xt, create_graph=True)
    (gx * torch.tensor(v)).sum().backward()
    w, u, bi, bh = _torch_weights(lstm)
    zeros = np.zeros((B, H))

    def loss(x, u):
        return (L.lstm(x, (zeros, zeros), w, u, bi + bh, unroll=unroll)[0] * dy).sum()

    hvp = axon.grad(lambda u: (axon.grad(loss, argnums=(0, 1))(x, u)[0] * v).sum())(u)
    np.testing.assert_allclose(hvp, lstm.weight_hh_l0.grad.numpy().T, atol=1e-12)
    assert np.abs(hvp).max() > 1e-3                            # (not trivially zero)


def test_conv_lstm_cell_equals_a_torch_conv2d_reference():
    """ConvLSTM from torch's conv2d (NCHW, kernels (out, in, kh, kw)): h, c and the gradients of x, W, U, b."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    B, S, C, H = 2, 5, 3, 4
    x, c0, h0 = a(B, S, S, C), a(B, S, S, H), a(B, S, S, H)
    w, u, b = a(3, 3, C, 4 * H) * 0.3, a(3, 3, H, 4 * H) * 0.3, a(4 * H)
    ts = [torch.tensor(t, requires_grad=True) for t in (x, w, u, b)]
    xt, wt, ut, bt = ts

    def conv(inp, k):                                          # channels-last in and out, as axon's
        return F.conv2d(inp.permute(0, 3, 1, 2), k.permute(3, 2, 0, 1), padding="same").permute(0, 2, 3, 1)

    gates = conv(xt, wt) + conv(torch.tensor(h0), ut) + bt
    i, f, g, o = gates.chunk(4, -1)
    ct = torch.sigmoid(f) * torch.tensor(c0) + torch.sigmoid(i) * torch.tanh(g)
    ht = torch.sigmoid(o) * torch.tanh(ct)
    ((ht ** 2).sum() + (ct * ht).sum()).backward()
    xs = [Tensor(t, requires_grad=True) for t in (x, w, u, b)]
    (c, h), y = L.conv_lstm_cell(xs[0], (c0, h0), *xs[1:])
    ((h * h).sum() + (c * h).sum()).backward()
    np.testing.assert_allclose(h.numpy(), ht.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(c.numpy(), ct.detach().numpy(), atol=1e-12)
    for ours, theirs in zip(xs, ts):
        np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), atol=1e-11)


# ---- masks are booleans, carries are nodes, ConvLSTM padding, masked models trace ------------------------
def test_a_float_mask_is_a_type_error_and_integers_count_as_booleans():
    B, T, F, H = 2, 3, 2, 2
    x, w, u, zeros = a(B, T, F), a(F, 3 * H), a(H, 3 * H), np.zeros((B, H))
    additive = np.where(MASK, 0.0, -np.inf)                    # a PyTorch-style additive mask
    for unroll in UNROLLS:
        with pytest.raises(TypeError, match=r"gru: mask must be boolean .* got dtype float64"):
            L.gru(x, zeros, w, u, mask=additive, unroll=unroll)
        y_bool, _ = L.gru(x, zeros, w, u, mask=MASK, unroll=unroll)
        y_int, _ = L.gru(x, zeros, w, u, mask=MASK.astype(np.int64), unroll=unroll)
        np.testing.assert_array_equal(y_int.numpy(), y_bool.numpy())
    from axon.kernels import gru_sequence
    with pytest.raises(TypeError, match="gru_sequence: mask must be boolean"):
        gru_sequence(a(B, T, 3 * H), zeros, u, np.zeros(3 * H), mask=MASK.astype(np.float32))


def test_an_lstm_carry_is_indexed_into_its_cell_and_hidden_nodes():
    x = axon.input((None, 6, 3), name="x")
    seq, carry = x.lstm(5)
    c, h = carry                                               # unpacking indexes 0 and 1, then stops
    assert (c.shape, h.shape, carry[1].shape, carry[-1].shape) == ((None, 5),) * 4
    model = axon.container((seq, c, h, h.dense(2)))
    params = axon.init(model)
    xs = a(2, 6, 3).astype(np.float32)
    ys, cs, hs, logits = axon.predict(model, params, xs)
    pair_c, pair_h = axon.predict(carry, params, xs)            # the carry node itself is still the pair
    np.testing.assert_array_equal(hs, ys[:, -1])
    np.testing.assert_array_equal(cs, pair_c)
    np.testing.assert_array_equal(hs, pair_h)
    assert logits.shape == (2, 2)
    with pytest.raises(IndexError, match="out of range"):
        carry[2]
    with pytest.raises(TypeError, match="only a node holding several values"):
        x.gru(4)[1][0]                                         # a GRU's carry is one (None, 4) node
    with pytest.raises(TypeError, match="index must be an int"):
        carry["h"]


def test_conv_lstm_builder_with_explicit_padding_equals_the_layer():
    x = a(2, 3, 7, 7, 2).astype(np.float32)
    for padding, strides in (([(1, 1), (1, 1)], 1), ([(0, 1), (2, 0)], 2), ("valid", 2), ("same", 2)):
        seq, carry = axon.input((None, 3, 7, 7, 2)).conv_lstm(4, padding=padding, strides=strides, name="clstm")
        model = axon.container((seq, carry))
        params = axon.init(model)
        y, (c, h) = axon.predict(model, params, x)
        p = params["clstm"]
        spatial = L.conv_output_shape((2, 7, 7, 2), (3, 3, 2, 4), strides, padding)[1:3]
        zeros = np.zeros((2, *spatial, 4), np.float32)
        y_ref, (c_ref, _) = L.conv_lstm(x, (zeros, zeros), p["kernel_input"], p["kernel_hidden"], p["bias"],
                                        strides=strides, padding=padding)
        assert seq.shape == (None, 3, *spatial, 4) and y.shape == (2, 3, *spatial, 4)
        np.testing.assert_allclose(y, y_ref.numpy(), atol=1e-6)
        np.testing.assert_allclose(c, c_ref.numpy(), atol=1e-6)


@pytest.mark.parametrize("layer, unroll", [("lstm", "fused"), ("gru", "fused"), ("lstm", "static"),
                                           ("gru", "dynamic")])
def test_a_masked_recurrent_model_traces_in_the_training_step(layer, unroll, compiled_and_eager):
    """The mask is made inside the traced step (x.mask): each batch's own padding must reach the replayed plan."""
    x = axon.input((None, 5), name="tokens")
    seq, carry = getattr(x.embedding(6, 4), layer)(3, mask=x.mask(0), unroll=unroll)
    h = carry[1] if layer == "lstm" else carry
    compiled, eager = compiled_and_eager(axon.concatenate([seq.flatten(), h]).dense(2, activation="softmax"))
    np.testing.assert_allclose(compiled, eager, rtol=1e-5)
