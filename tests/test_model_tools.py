"""Axon's graph tools: bias, stack_columns, cond, attach_hook, get_op_counts, set_options/set_parameters,
pop_node, rewrite_nodes."""
import numpy as np
import pytest

import axon
from axon.autograd import Tensor, value_and_grad
from axon.functional import activations as A

r = np.random.default_rng(2)


def test_bias_adds_a_learned_vector_and_trains():
    model = axon.input((None, 3)).dense(2, name="d").bias(name="b")
    params = axon.init(model, seed=0)
    assert params["b"]["bias"].shape == (2,) and not params["b"]["bias"].any()
    params["b"]["bias"] = np.float32([1.0, -2.0])
    x = r.standard_normal((4, 3)).astype(np.float32)
    want = x @ params["d"]["kernel"] + params["d"]["bias"] + params["b"]["bias"]
    np.testing.assert_allclose(axon.predict(model, params, x), want, rtol=1e-6)
    assert axon.count_params(model)["trainable"] == 3 * 2 + 2 + 2
    with pytest.raises(ValueError, match="bias: the input's last axis must have a known size"):
        axon.input((None, None)).bias()


def test_stack_columns_from_a_dict_a_container_and_a_list():
    cols = {k: axon.input((None,), name=k) for k in ("a", "b", "c")}
    data = {k: r.standard_normal(5).astype(np.float32) for k in cols}
    model = axon.stack_columns(cols, ignore=["b"])
    assert model.shape == (None, 2)
    np.testing.assert_array_equal(axon.predict(model, {}, data), np.stack([data["a"], data["c"]], axis=1))
    packed = axon.stack_columns(axon.container(cols))
    np.testing.assert_array_equal(axon.predict(packed, {}, data), np.stack([data[k] for k in "abc"], axis=1))
    wide = axon.input((None, 1), name="w")
    both = axon.stack_columns([cols["a"], wide])
    out = axon.predict(both, {}, {"a": data["a"], "w": data["b"][:, None]})
    np.testing.assert_array_equal(out, np.stack([data["a"], data["b"]], axis=1))
    with pytest.raises(ValueError, match=r"ignore names \['z'\] that are not columns"):
        axon.stack_columns(cols, ignore=["z"])
    with pytest.raises(ValueError, match=r"each column must have shape \(N,\) or \(N, 1\), got \(None, 3\)"):
        axon.stack_columns([axon.input((None, 3))])


def test_cond_picks_a_branch_and_the_gradient_follows_it():
    x = axon.input((None, 3))
    big, small = x.dense(2, name="big"), x.dense(2, name="small")
    model = axon.cond(x, lambda v: float(v.numpy().sum()) > 0, big, small)
    params = axon.init(model, seed=1)
    for sign, chosen in ((1, "big"), (-1, "small")):
        xv = sign * np.abs(r.standard_normal((2, 3))).astype(np.float32)
        want = xv @ params[chosen]["kernel"] + params[chosen]["bias"]
        np.testing.assert_allclose(axon.predict(model, params, xv), want, rtol=1e-6)

        def loss(p):
            y, _ = axon.apply(model, p, xv)
            return (y * y).sum()
        _, g = value_and_grad(loss)(params)
        other = "small" if chosen == "big" else "big"
        assert np.abs(g[chosen]["kernel"]).sum() > 0 and not np.abs(g[other]["kernel"]).any()
    with pytest.raises(ValueError, match=r"cond: the branches must have the same shape, got on_true \(None, 2\)"):
        axon.cond(x, bool, big, x)


def test_forward_hooks_see_the_value_in_the_modes_asked():
    seen = {"both": [], "train": [], "inference": []}
    h = axon.input((None, 3)).dense(4, name="d")
    model = h
    for mode in seen:
        model = axon.attach_hook(model, lambda v, mode=mode: seen[mode].append(np.array(v.numpy())), mode=mode)
    model = model.relu().dropout(0.5)
    params = axon.init(model, seed=0)
    x = r.standard_normal((2, 3)).astype(np.float32)
    axon.predict(model, params, x)
    axon.apply(model, params, x, training=True, key=0)
    pre_relu = x @ params["d"]["kernel"] + params["d"]["bias"]          # the hook sees the dense output, not relu's
    assert len(seen["both"]) == 2 and len(seen["train"]) == 1 and len(seen["inference"]) == 1
    for v in seen["both"] + seen["train"] + seen["inference"]:
        np.testing.assert_allclose(v, pre_relu, rtol=1e-6)
    assert axon.get_op_counts(model) == {"input": 1, "dense": 1, "relu": 1, "dropout": 1}


def test_backward_hooks_see_the_gradient_arriving():
    grads = []
    h = axon.input((None, 3)).dense(2, name="d").attach_hook(lambda dy: grads.append(np.array(dy.numpy())),
                                                                on="backward")
    model = h.tanh()
    params = axon.init(model, seed=0)
    x = r.standard_normal((4, 3)).astype(np.float32)

    def loss(p):
        y, _ = axon.apply(model, p, x)
        return y.sum()
    value_and_grad(loss)(params)
    z = x @ params["d"]["kernel"] + params["d"]["bias"]
    np.testing.assert_allclose(grads[0], 1 - np.tanh(z) ** 2, rtol=1e-5)     # d sum(tanh z) / dz
    stateful = []
    bn = axon.input((None, 2)).batch_norm(name="bn").attach_hook(lambda v: stateful.append(v.shape), mode="train")
    y, state = axon.apply(bn, axon.init(bn), np.ones((3, 2), np.float32), training=True)
    assert stateful == [(3, 2)] and sorted(state["bn"]) == ["mean", "var"]
    with pytest.raises(ValueError, match="on must be 'forward', 'backward' or 'all'"):
        axon.attach_hook(h, print, on="sideways")


def test_set_options_and_set_parameters_make_new_nodes():
    pooled = axon.input((None, 8, 6, 2)).max_pool(kernel_size=2)
    wider = axon.set_options(pooled, kernel_size=(4, 3))
    assert pooled.shape == (None, 4, 3, 2) and wider.shape == (None, 2, 2, 2)
    x = r.standard_normal((1, 8, 6, 2)).astype(np.float32)
    np.testing.assert_array_equal(axon.predict(wider, {}, x), x.reshape(1, 2, 4, 2, 3, 2).max(axis=(2, 4)))
    with pytest.raises(ValueError, match=r"set_options: max_pool has no options \['size'\]"):
        axon.set_options(pooled, size=3)
    d = axon.input((None, 3)).dense(2)
    ones = d.set_parameters({"bias": axon.param((2,), "ones")})
    assert np.array_equal(axon.init(ones)["dense_0"]["bias"], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"set_parameters: dense has no params \['gamma'\]"):
        axon.set_parameters(d, {"gamma": axon.param((2,))})


def test_pop_node_and_rewrite_nodes():
    model = axon.input((None, 4)).dense(4, name="d1", activation="relu").dense(3, name="d2", activation="softmax")
    last, rest = axon.pop_node(model)
    assert last is model and rest.op == "dense" and rest.name == "d2"
    params = axon.init(model, seed=0)
    x = r.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(axon.predict(rest, params, x),
                               np.maximum(x @ params["d1"]["kernel"] + params["d1"]["bias"], 0)
                               @ params["d2"]["kernel"] + params["d2"]["bias"], rtol=1e-5)
    gelu = axon.rewrite_nodes(model, lambda n: (lambda inputs, output: inputs[0].gelu()) if n.op == "relu" else None)
    assert axon.get_op_counts(gelu) == {"input": 1, "dense": 2, "gelu": 1, "softmax": 1}
    h = A.gelu(Tensor(x @ params["d1"]["kernel"] + params["d1"]["bias"])).numpy()
    np.testing.assert_allclose(axon.predict(gelu, params, x),
                               A.softmax(Tensor(h @ params["d2"]["kernel"] + params["d2"]["bias"])).numpy(), rtol=1e-5)
    residual = axon.rewrite_nodes(model, lambda n: (lambda inputs, out: out + inputs[0]) if n.name == "d1" else None)
    assert [n.op for n in residual.nodes()] == ["input", "dense", "add", "relu", "dense", "softmax"]
    assert residual.shape == (None, 3)
    assert [n.op for n in model.nodes()] == ["input", "dense", "relu", "dense", "softmax"]   # the original is unchanged
    with pytest.raises(TypeError, match="the rewriter of relu returned a int"):
        axon.rewrite_nodes(model, lambda n: (lambda inputs, out: 3) if n.op == "relu" else None)



def test_block_shares_one_set_of_weights_between_calls():
    encode = axon.block(lambda x: x.dense(3, name="proj", activation="tanh"), name="enc")
    a, b = axon.input((None, 4), name="a"), axon.input((None, 4), name="b")
    model = encode(a) - encode(b)
    params = axon.init(model, seed=3)
    assert list(params) == ["enc"] and axon.count_params(model)["total"] == 4 * 3 + 3
    xa, xb = r.standard_normal((5, 4)).astype(np.float32), r.standard_normal((5, 4)).astype(np.float32)
    w, c = params["enc"]["proj/kernel"], params["enc"]["proj/bias"]
    np.testing.assert_allclose(axon.predict(model, params, {"a": xa, "b": xb}),
                               np.tanh(xa @ w + c) - np.tanh(xb @ w + c), rtol=1e-5, atol=1e-6)

    def loss(p):
        y, _ = axon.apply(model, p, {"a": xa, "b": xb})
        return (y * y).sum()
    _, g = value_and_grad(loss)(params)
    ha, hb = np.tanh(xa @ w + c), np.tanh(xb @ w + c)                 # d/dW of sum((ha - hb)^2), both calls
    dy = 2 * (ha - hb)
    want = xa.T @ (dy * (1 - ha ** 2)) - xb.T @ (dy * (1 - hb ** 2))
    np.testing.assert_allclose(g["enc"]["proj/kernel"], want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"block: every call takes inputs of the first call's shapes \[\(None, 4\)\]"):
        encode(axon.input((None, 5)))
    stateful = axon.block(lambda x: x.batch_norm())
    with pytest.raises(ValueError, match="block: layer batch_norm_0 keeps state"):
        stateful(a)


def test_split_layer_cuts_an_axis_and_the_pieces_train():
    x = axon.input((None, 3, 6))
    a, b, c = axon.split_layer(x, 3, name="part")
    assert [n.shape for n in (a, b, c)] == [(None, 3, 2)] * 3 and a.name == "part_0"
    lo, hi = axon.split_layer(x, [1, 2], axis=1)
    v = r.standard_normal((2, 3, 6)).astype(np.float32)
    out = axon.predict(axon.container([lo, hi, c]), {}, v)
    np.testing.assert_array_equal(out[0], v[:, :1])
    np.testing.assert_array_equal(out[1], v[:, 1:])
    np.testing.assert_array_equal(out[2], v[:, :, 4:])
    model = (a * b).dense(1, name="d")                                # gradients flow through the pieces
    params = axon.init(model)
    _, g = value_and_grad(lambda p: axon.apply(model, p, v)[0].sum())(params)
    assert g["d"]["kernel"].shape == (2, 1) and np.abs(g["d"]["kernel"]).sum() > 0
    with pytest.raises(ValueError, match=r"6 \(axis 2 of \(None, 3, 6\)\) cannot be cut into 4 equal pieces"):
        axon.split_layer(x, 4)
    with pytest.raises(ValueError, match=r"sizes \[1, 1\] must be positive and add up to 3"):
        axon.split_layer(x, [1, 1], axis=1)
    with pytest.raises(ValueError, match="axis must be a non-batch axis"):
        axon.split_layer(x, 2, axis=0)


def test_optional_inputs_or_else_and_nullified_layers():
    x = axon.input((None, 3), name="x")
    bonus = axon.input((None, 2), name="bonus", optional=True)
    h = x.dense(2, name="d")
    model = h + axon.or_else(bonus.dense(2, name="b"), axon.constant(np.zeros((1, 2), np.float32)))
    params = axon.init(model, seed=0)
    xv, bv = r.standard_normal((4, 3)).astype(np.float32), r.standard_normal((4, 2)).astype(np.float32)
    plain = xv @ params["d"]["kernel"] + params["d"]["bias"]
    np.testing.assert_allclose(axon.predict(model, params, {"x": xv}), plain, rtol=1e-6)        # bonus left out
    np.testing.assert_allclose(axon.predict(model, params, {"x": xv, "bonus": bv}),
                               plain + bv @ params["b"]["kernel"] + params["b"]["bias"], rtol=1e-5)
    _, g = value_and_grad(lambda p: axon.apply(model, p, {"x": xv})[0].sum())(params)
    assert not np.abs(g["b"]["kernel"]).any() and np.abs(g["d"]["kernel"]).any()              # the absent branch
    assert axon.predict(h + bonus, params, {"x": xv}) is None                                  # nullified
    with pytest.raises(ValueError, match=r"missing model inputs \['x'\]"):
        axon.predict(model, params, {"bonus": bv})
    with pytest.raises(ValueError, match=r"or_else: default's shape \(None, 3\) does not match"):
        axon.or_else(bonus, x)


def test_model_state_keeps_trainable_state_and_frozen_apart(tmp_path):
    from axon import serialization
    model = axon.freeze(axon.input((None, 3)).dense(4, name="body").batch_norm(name="bn").dense(2, name="head"),
                        ["body"])
    params = axon.init(model, seed=0)
    ms = axon.model_state(model, params)
    assert {k: sorted(v) for k, v in ms.trainable.items()} == {"bn": ["beta", "gamma"], "head": ["bias", "kernel"]}
    assert sorted(ms.state["bn"]) == ["mean", "var"] and sorted(ms.frozen) == ["body"]
    trainable, rest = axon.split(model, params)                       # the same partition as the training step's
    assert trainable.keys() == ms.trainable.keys() and axon.merge(ms.state, ms.frozen).keys() == rest.keys()
    x = r.standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_array_equal(axon.predict(model, ms.data, x), axon.predict(model, params, x))
    y, new_state = axon.apply(model, ms.data, x, training=True)
    updated = ms.update(state=new_state)
    np.testing.assert_array_equal(updated.state["bn"]["mean"], new_state["bn"]["mean"])
    assert updated.frozen is ms.frozen
    moved = ms.freeze(["head"]).unfreeze(["body"])
    assert sorted(moved.trainable) == ["bn", "body"] and sorted(moved.frozen) == ["head"]
    serialization.save(tmp_path / "ms.npz", ms)
    back = serialization.load(tmp_path / "ms.npz")
    assert type(back) is axon.ModelState
    np.testing.assert_array_equal(back.frozen["body"]["kernel"], ms.frozen["body"]["kernel"])
    with pytest.raises(ValueError, match=r"ModelState.freeze: no layers named \['tail'\]"):
        ms.freeze(["tail"])
    with pytest.raises(ValueError, match=r"ModelState.update: state has no bn.\['average'\]"):
        ms.update(state={"bn": {"average": np.zeros(4)}})
    with pytest.raises(ValueError, match=r"model_state: params have no head.bias"):
        axon.model_state(model, {**params, "head": {"kernel": params["head"]["kernel"]}})


def test_optional_inputs_and_new_layer_options_survive_save_and_load(tmp_path):
    x, extra = axon.input((None, 9, 9, 2), name="x"), axon.input((None, 2), name="extra", optional=True)
    y = x.max_pool(kernel_size=2, strides=1, window_dilations=2).resize((5, 5), method="lanczos3", antialias=True)
    model = axon.container({"y": y.rms_norm(shift=1.0).global_avg_pool(), "extra": extra.dense(1)})
    params = axon.init(model, seed=0)
    axon.save(tmp_path / "m.safetensors", model, params)
    back, back_params, _ = axon.load(tmp_path / "m.safetensors")
    xv = r.standard_normal((2, 9, 9, 2)).astype(np.float32)
    out, want = axon.predict(back, back_params, {"x": xv}), axon.predict(model, params, {"x": xv})
    np.testing.assert_array_equal(out["y"], want["y"])
    assert out["extra"] is None and want["extra"] is None                 # a container keeps the missing entry
    assert [n.opts.get("optional", False) for n in back.inputs()] == [False, True]


def test_infer_shape_agrees_with_the_builders():
    """infer_shape gives each layer the shape its model node gets; None follows the batch size only."""
    x = axon.input((None, 7, 5, 3))
    node = x.conv(4, kernel_size=(3, 2), strides=2)
    kernel = node.params["kernel"].shape
    assert axon.infer_shape(axon.layers.conv, x.shape, params={"kernel": kernel, "bias": (4,)},
                            **node.opts) == node.shape == (None, 3, 2, 4)
    seq = axon.input((None, 11, 6))                             # (batch, steps, features): steps stay fixed
    dense = seq.dense(5)
    assert axon.infer_shape(axon.layers.dense, seq.shape, params={k: p.shape for k, p in dense.params.items()}
                            ) == dense.shape == (None, 11, 5)
    proj = lambda x, w: x @ w                                   # a custom layer, as axon.layer builds it
    node = axon.layer(proj, [seq], params={"w": axon.param((6, 2))})
    assert axon.infer_shape(proj, seq.shape, params={"w": (6, 2)}) == node.shape == (None, 11, 2)
    assert axon.infer_shape(proj, (4, 6), params={"w": (6, 2)}) == (4, 2)   # no None: a fixed batch


def test_infer_shape_errors():
    with pytest.raises(ValueError, match=r"dense layer cannot be applied to \(None, 5\): .*4 input features"):
        axon.infer_shape(axon.layers.dense, (None, 5), params={"kernel": (4, 3)})
    with pytest.raises(TypeError, match="fn must be a layer function, got int"):
        axon.infer_shape(3, (None, 5))
