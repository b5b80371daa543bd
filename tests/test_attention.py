"""Attention: dot-product and multi-head attention, positions, the builders; finite differences and PyTorch."""
import numpy as np
import pytest

import axon
from axon import layers as L
from axon.autograd import Tensor

r = np.random.default_rng(0)


def a(*shape):
    return r.standard_normal(shape)


def test_attention_check_grads_second_order_with_masks():
    q, k, v = a(1, 2, 3, 2), a(1, 2, 4, 2), a(1, 2, 4, 3)
    mask = np.array([[True, False, True, True], [False, False, False, False], [True, True, False, True]])
    axon.check_grads(lambda q, k, v: L.dot_product_attention(q, k, v, mask=mask), (q, k, v), order=2)
    axon.check_grads(lambda q, k, v: L.dot_product_attention(q, k, v, causal=True), (q, k[:, :, :3], v[:, :, :3]),
                     order=2)


def test_multi_head_attention_and_positions_check_grads():
    x, c = a(2, 3, 4), a(2, 5, 6)
    w = [a(4, 4), a(6, 4), a(6, 4), a(4, 3)]
    axon.check_grads(lambda x, c, wq, wk, wv, wo: L.multi_head_attention(x, c, c, wq, wk, wv, wo, 2, causal=True),
                     (x, c, *w), order=2)
    axon.check_grads(lambda x: L.rotary_embedding(L.sinusoidal_positional_embedding(x)), (x,), order=2)
    axon.check_grads(L.learned_positional_embedding, (x, a(7, 4)))


def test_fully_masked_rows_give_zeros_and_float32_stays():
    q = a(2, 1, 3, 4).astype(np.float32) * 100                  # large scores: the softmax must stay stable
    mask = np.ones((2, 1, 3, 3), bool)
    mask[1, 0, 2] = False
    y = L.dot_product_attention(q, q, q, mask=mask)
    assert y.dtype == np.float32 and not np.isnan(y.numpy()).any()
    assert np.all(y.numpy()[1, 0, 2] == 0)
    q64 = Tensor(q.astype(np.float64), requires_grad=True)
    L.dot_product_attention(q64, q64, q64, mask=mask).sum().backward()
    assert np.isfinite(q64.grad).all()


def test_rotary_dot_products_depend_on_the_offset_only():
    D = 6
    q, k = a(D), a(D)
    rq = L.rotary_embedding(np.tile(q, (8, 1))).numpy()        # q at positions 0..7
    rk = L.rotary_embedding(np.tile(k, (8, 1))).numpy()
    dots = rq @ rk.T                                           # (8, 8): q at m, k at n
    for off in range(-3, 4):
        d = np.diagonal(dots, offset=off)
        np.testing.assert_allclose(d, d[0], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(rq, axis=1), np.linalg.norm(q), atol=1e-12)   # a rotation
    shifted = L.rotary_embedding(np.tile(q, (2, 1)), offset=3).numpy()
    np.testing.assert_allclose(shifted, rq[3:5], atol=1e-12)


def test_sinusoidal_table():
    table = L.sinusoidal_positions(50, 8)
    assert table.shape == (50, 8) and table.dtype == np.float32
    np.testing.assert_allclose(table[:, 0], np.sin(np.arange(50)), atol=1e-6)
    np.testing.assert_allclose(table[:, 7], np.cos(np.arange(50) / 10000 ** (6 / 8)), atol=1e-6)


def test_bad_inputs():
    with pytest.raises(ValueError, match="does not broadcast"):
        L.dot_product_attention(a(1, 1, 3, 2), a(1, 1, 4, 2), a(1, 1, 4, 2), mask=np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="needs a random key"):
        L.dot_product_attention(a(1, 1, 3, 2), a(1, 1, 3, 2), a(1, 1, 3, 2), dropout_rate=0.1)
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        L.multi_head_attention(a(1, 3, 4), a(1, 3, 4), a(1, 3, 4), a(4, 6), a(4, 6), a(4, 6), a(6, 4), 4)


def test_attention_dropout_is_reproducible():
    q = a(2, 2, 5, 3)
    y1 = L.dot_product_attention(q, q, q, dropout_rate=0.5, key=3).numpy()
    y2 = L.dot_product_attention(q, q, q, dropout_rate=0.5, key=3).numpy()
    y0 = L.dot_product_attention(q, q, q).numpy()
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(y1, y0)


# ---- against PyTorch -----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["plain", "causal", "masked"])
def test_dot_product_attention_equals_torch(case):
    torch = pytest.importorskip("torch")
    B, h, Tq, Tk, D = 2, 3, 4, 5, 6
    q, k, v = a(B, h, Tq, D), a(B, h, Tk, D), a(B, h, Tk, D)
    mask = r.random((B, 1, Tq, Tk)) > 0.3
    mask[..., 0] = True                                        # torch gives NaN on a row with nothing to attend to
    ours, theirs = {"plain": ({}, {}), "causal": ({"causal": True}, {"is_causal": True}),
                    "masked": ({"mask": mask}, {"attn_mask": torch.tensor(mask)})}[case]
    ts = [torch.tensor(t, requires_grad=True) for t in (q, k, v)]
    yt = torch.nn.functional.scaled_dot_product_attention(*ts, **theirs)
    (yt ** 2).sum().backward()
    xs = [Tensor(t, requires_grad=True) for t in (q, k, v)]
    y = L.dot_product_attention(*xs, **ours)
    (y * y).sum().backward()
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), atol=1e-12)
    for x, t in zip(xs, ts):
        np.testing.assert_allclose(x.grad, t.grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("cross", [False, True])
def test_multi_head_attention_equals_torch(cross):
    torch = pytest.importorskip("torch")
    B, Tq, Tk, E, heads = 2, 4, 5, 8, 2
    mha = torch.nn.MultiheadAttention(E, heads, batch_first=True).double()
    x = a(B, Tq, E)
    c = a(B, Tk, E) if cross else x
    keep = r.random((B, c.shape[1])) > 0.3
    keep[:, 0] = True
    xt = torch.tensor(x, requires_grad=True)
    ct = torch.tensor(c, requires_grad=True) if cross else xt
    yt, _ = mha(xt, ct, ct, key_padding_mask=torch.tensor(~keep))   # torch: True = ignore
    (yt ** 2).sum().backward()
    W, b = mha.in_proj_weight.detach().numpy(), mha.in_proj_bias.detach().numpy()
    xa = Tensor(x, requires_grad=True)
    ca = Tensor(c, requires_grad=True) if cross else xa
    y = L.multi_head_attention(xa, ca, ca, W[:E].T, W[E:2 * E].T, W[2 * E:].T, mha.out_proj.weight.detach().numpy().T,
                               heads, b[:E], b[E:2 * E], b[2 * E:], mha.out_proj.bias.detach().numpy(),
                               mask=keep[:, None, None, :])
    (y * y).sum().backward()
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(xa.grad, xt.grad.numpy(), atol=1e-12)
    if cross:
        np.testing.assert_allclose(ca.grad, ct.grad.numpy(), atol=1e-12)


def test_transformer_block_builder_equals_torch_encoder_layer():
    torch = pytest.importorskip("torch")
    B, T, E, heads, mlp = 2, 5, 8, 2, 16
    layer = torch.nn.TransformerEncoderLayer(E, heads, mlp, dropout=0.0, activation="gelu", batch_first=True,
                                             norm_first=True).double()
    x = a(B, T, E)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(T, dtype=torch.float64)
    yt = layer(torch.tensor(x), src_mask=causal, is_causal=True).detach().numpy()
    model = axon.input((None, T, E)).transformer_block(heads, mlp, causal=True, name="blk")
    t = {k: v.detach().numpy() for k, v in layer.named_parameters()}
    W, b = t["self_attn.in_proj_weight"], t["self_attn.in_proj_bias"]
    params = {"blk_norm_1": {"gamma": t["norm1.weight"], "beta": t["norm1.bias"]},
              "blk_attention": {"query_kernel": W[:E].T, "key_kernel": W[E:2 * E].T, "value_kernel": W[2 * E:].T,
                                "output_kernel": t["self_attn.out_proj.weight"].T, "query_bias": b[:E],
                                "key_bias": b[E:2 * E], "value_bias": b[2 * E:], "output_bias": t["self_attn.out_proj.bias"]},
              "blk_norm_2": {"gamma": t["norm2.weight"], "beta": t["norm2.bias"]},
              "blk_mlp_1": {"kernel": t["linear1.weight"].T, "bias": t["linear1.bias"]},
              "blk_mlp_2": {"kernel": t["linear2.weight"].T, "bias": t["linear2.bias"]}}
    np.testing.assert_allclose(axon.predict(model, params, x), yt, atol=1e-12)


# ---- the builders -----------------------------------------------------------------------------------------
def test_attention_builders_count_params_exactly():
    x = axon.input((None, 6, 16), name="x")
    memory = axon.input((None, 9, 8), name="memory")
    y = x.multi_head_attention(4, context=memory, head_size=3).transformer_block(2, 32, name="b0")
    params = axon.init(y)
    n = sum(v.size for layer in params.values() for v in layer.values())
    expected = (16 * 12 + 2 * 8 * 12 + 12 * 16 + 3 * 12 + 16) + (2 * 32 + 4 * (16 * 16 + 16) + (16 * 32 + 32) + (32 * 16 + 16))
    assert axon.count_params(y)["total"] == n == expected
    assert f"Total parameters: {expected:,}" in axon.summary(y)
    out = axon.predict(y, params, {"x": a(2, 6, 16).astype(np.float32), "memory": a(2, 9, 8).astype(np.float32)})
    assert out.shape == (2, 6, 16) and out.dtype == np.float32


def test_attention_builder_padding_mask_and_dropout():
    tokens = axon.input((None, 5))
    h = tokens.embedding(10, 8)
    y = h.multi_head_attention(2, mask=tokens.mask(0), dropout_rate=0.5)
    params = axon.init(y)
    t = np.array([[1, 2, 3, 0, 0]])
    base = axon.predict(y, params, t)
    np.testing.assert_array_equal(axon.predict(y, params, t), base)          # inference: no dropout
    y1, _ = axon.apply(y, params, t, training=True, key=1)
    assert not np.allclose(y1.numpy(), base)                    # training: dropout on the weights
    # a padded key changes nothing for the real queries
    params2 = {**params, "embedding_0": {"kernel": params["embedding_0"]["kernel"].copy()}}
    params2["embedding_0"]["kernel"][0] += 5.0                  # the padding token's vector
    np.testing.assert_allclose(axon.predict(y, params2, t)[:, :3], base[:, :3], atol=1e-6)


def test_transformer_block_check_grads_second_order():
    """Through the whole pre-norm block (layer norms, causal masked attention, the gelu MLP), w.r.t. x and weights."""
    B, T, E = 1, 3, 4
    model = axon.input((None, T, E)).transformer_block(2, 6, causal=True, name="blk")
    params = axon.init(model, dtype="float64")
    picked = (("blk_norm_1", "gamma"), ("blk_attention", "query_kernel"), ("blk_attention", "value_kernel"),
              ("blk_mlp_1", "kernel"))

    def f(x, *ws):
        p = {layer: dict(ps) for layer, ps in params.items()}
        for (layer, name), w in zip(picked, ws):
            p[layer][name] = w
        return axon.apply(model, p, x)[0]

    axon.check_grads(f, (a(B, T, E), *(a(*params[layer][name].shape) for layer, name in picked)), order=2)


@pytest.mark.parametrize("case", ["none", "causal", "kdim_vdim"])
def test_multi_head_attention_without_a_mask_causal_and_other_widths_equals_torch(case):
    torch = pytest.importorskip("torch")
    B, Tq, Tk, E, heads = 2, 4, 5, 8, 2
    if case == "kdim_vdim":                                    # cross-attention over keys of 6 and values of 3 features
        mha = torch.nn.MultiheadAttention(E, heads, batch_first=True, kdim=6, vdim=3).double()
        arrays = (a(B, Tq, E), a(B, Tk, 6), a(B, Tk, 3))
        kernels = [getattr(mha, f"{p}_proj_weight").detach().numpy().T for p in "qkv"]
    else:
        mha = torch.nn.MultiheadAttention(E, heads, batch_first=True).double()
        arrays = (a(B, Tq, E),) * 3                            # self-attention: one tensor three times
        W = mha.in_proj_weight.detach().numpy()
        kernels = [W[:E].T, W[E:2 * E].T, W[2 * E:].T]
    ts = [torch.tensor(t, requires_grad=True) for t in arrays]
    ts = ts if case == "kdim_vdim" else [ts[0]] * 3
    extra = {}
    if case == "causal":
        extra = dict(attn_mask=torch.nn.Transformer.generate_square_subsequent_mask(Tq, dtype=torch.float64),
                     is_causal=True)
    yt, _ = mha(*ts, **extra)
    (yt ** 2).sum().backward()
    xs = [Tensor(t, requires_grad=True) for t in arrays]
    xs = xs if case == "kdim_vdim" else [xs[0]] * 3
    b = mha.in_proj_bias.detach().numpy()
    y = L.multi_head_attention(*xs, *kernels, mha.out_proj.weight.detach().numpy().T, heads, b[:E], b[E:2 * E],
                               b[2 * E:], mha.out_proj.bias.detach().numpy(), causal=case == "causal")
    (y * y).sum().backward()
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), atol=1e-12)
    for x, t in zip(xs, ts):
        np.testing.assert_allclose(x.grad, t.grad.numpy(), atol=1e-12)


def test_a_float_attention_mask_is_a_type_error_and_integers_count_as_booleans():
    q, k, v = a(1, 1, 2, 3), a(1, 1, 2, 3), a(1, 1, 2, 3)
    keep = np.array([[True, False], [True, True]])
    additive = np.where(keep, 0.0, -np.inf)                    # PyTorch's additive form of the same mask
    with pytest.raises(TypeError, match=r"dot_product_attention: mask must be boolean .* got dtype float64"):
        L.dot_product_attention(q, k, v, mask=additive)
    with pytest.raises(TypeError, match="mask must be boolean"):
        L.multi_head_attention(a(1, 2, 4), a(1, 2, 4), a(1, 2, 4), *[a(4, 4)] * 4, 2, mask=Tensor(additive))
    np.testing.assert_array_equal(L.dot_product_attention(q, k, v, mask=keep.astype(np.int32)).numpy(),
                                  L.dot_product_attention(q, k, v, mask=keep).numpy())
    tokens = axon.input((None, 2), name="tokens")
    model = tokens.embedding(5, 4).multi_head_attention(2, mask=axon.input((None, 2), name="keep"))
    params = axon.init(model)
    axon.predict(model, params, {"tokens": np.array([[1, 2]]), "keep": np.array([[True, False]])})   # bool: fine
    with pytest.raises(TypeError, match="mask must be boolean"):
        axon.predict(model, params, {"tokens": np.array([[1, 2]]), "keep": np.array([[0.0, -np.inf]])})


@pytest.mark.parametrize("block", [False, True])
def test_a_masked_attention_model_traces_in_the_training_step(block, compiled_and_eager):
    """x.mask inside the traced step: each batch's own padding reaches the replayed plan (compiled == eager)."""
    x = axon.input((None, 5), name="tokens")
    e = x.embedding(6, 4)
    h = e.transformer_block(2, 8, mask=x.mask(0)) if block else e.multi_head_attention(2, mask=x.mask(0))
    compiled, eager = compiled_and_eager(h.flatten().dense(2, activation="softmax"))
    np.testing.assert_allclose(compiled, eager, rtol=1e-5)
