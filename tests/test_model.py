"""The model creation API: building, shape inference, summary, init/predict/apply, custom layers."""
import numpy as np
import pytest

import axon
from axon.autograd import check_grads, grad

rng = np.random.default_rng(0)


def blog_model():
    return axon.input((None, 784)).dense(128).dense(10, activation="softmax")


# ---- building and the summary table -----------------------------------------------------------------
def test_blog_summary_rows_and_total():
    model = blog_model()
    rows = [(n.op, n.shape, sum(int(np.prod(s.shape)) for s in n.params.values())) for n in model.nodes()]
    assert rows == [("input", (None, 784), 0), ("dense", (None, 128), 100480), ("dense", (None, 10), 1290),
                    ("softmax", (None, 10), 0)]
    table = str(model)
    assert "Total parameters: 101,770" in table
    for name, shape, count in [("input (input)", "(None, 784)", "0"), ("dense_0 (dense)", "(None, 128)", "100,480"),
                               ("dense_1 (dense)", "(None, 10)", "1,290"), ("softmax_0 (softmax)", "(None, 10)", "0")]:
        line = next(l for l in table.splitlines() if name in l)
        assert shape in line and line.rstrip(" |").endswith(count)
    assert axon.summary(model) == table
    assert "(7, 10)" in axon.summary(model, (7, 784))             # concrete input shapes re-inferred


def test_module_and_method_builders_are_the_same():
    x = axon.input((None, 784))
    a = axon.dense(x, 128, activation="relu")
    b = x.dense(128, activation="relu")
    assert [(n.op, n.shape) for n in a.nodes()] == [(n.op, n.shape) for n in b.nodes()]
    chained = x.dense(128, activation="relu").dropout(rate=0.5).dense(10, activation="softmax")
    assert [n.op for n in chained.nodes()] == ["input", "dense", "relu", "dropout", "dense", "softmax"]


def test_names_unique_readable_or_given():
    model = axon.input((None, 4)).dense(3, name="hidden").dense(2).dense(1)
    assert sorted(model.names().values()) == ["dense_0", "dense_1", "hidden", "input"]
    with pytest.raises(ValueError, match="unique"):
        axon.input((None, 4)).dense(3, name="a").dense(2, name="a").names()


def test_node_is_immutable_record():
    node = axon.input((None, 4)).dense(3)
    with pytest.raises(Exception):
        node.name = "x"
    with pytest.raises(TypeError):
        node.params["kernel"] = None
    assert node.params["kernel"].shape == (4, 3) and node.params["kernel"].initializer == "glorot_uniform"


def test_shape_mismatch_raises_at_build_naming_nodes_and_shapes():
    x = axon.input((None, 28, 28, 1))
    with pytest.raises(ValueError, match=r"dense.*'input'.*\(None, 28, 28, 1\).*flatten"):
        x.dense(10)
    a = axon.input((None, 784)).dense(128)
    b = axon.input((None, 784), name="other").dense(10)
    with pytest.raises(ValueError, match=r"add.*'dense_0' \(None, 128\).*\(None, 10\)"):
        a + b


# ---- running --------------------------------------------------------------------------------------------
def test_init_is_reproducible_and_predict_runs():
    model = blog_model()
    p1, p2 = model.init(seed=0), axon.init(model, seed=0)
    assert set(p1) == {"dense_0", "dense_1"} and set(p1["dense_0"]) == {"kernel", "bias"}
    for layer in p1:
        for k in p1[layer]:
            np.testing.assert_array_equal(p1[layer][k], p2[layer][k])
            assert p1[layer][k].dtype == np.float32
    assert not np.array_equal(model.init(seed=1)["dense_0"]["kernel"], p1["dense_0"]["kernel"])
    x = rng.random((5, 784)).astype(np.float32)
    y = model.predict(p1, x)
    assert isinstance(y, np.ndarray) and y.shape == (5, 10) and y.dtype == np.float32
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)
    init_fn, predict_fn = axon.compile(model)
    np.testing.assert_array_equal(predict_fn(init_fn(seed=0), x), y)
    np.testing.assert_array_equal(axon.predict(model, p1, x), y)


def test_predict_matches_hand_computation():
    model = axon.input((None, 3)).dense(2, activation="relu").dense(1)
    p = model.init(seed=3)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    h = np.maximum(x @ p["dense_0"]["kernel"] + p["dense_0"]["bias"], 0)
    np.testing.assert_allclose(model.predict(p, x), h @ p["dense_1"]["kernel"] + p["dense_1"]["bias"], rtol=1e-6)


def test_bad_input_shape_or_params_are_named():
    model = blog_model()
    p = model.init()
    with pytest.raises(ValueError, match=r"input 'input' expects shape \(None, 784\), got \(2, 783\)"):
        model.predict(p, np.zeros((2, 783), np.float32))
    with pytest.raises(ValueError, match="dense_1"):
        model.predict({"dense_0": p["dense_0"], "dense_1": {"kernel": p["dense_1"]["kernel"]}},
                      np.zeros((2, 784), np.float32))


def test_dropout_only_when_training_and_reproducible_by_key():
    model = axon.input((None, 100)).dropout(rate=0.5)
    x = np.ones((4, 100), np.float32)
    np.testing.assert_array_equal(model.predict({}, x), x)
    y1, _ = model.apply({}, x, training=True, key=7)
    y2, _ = model.apply({}, x, training=True, key=7)
    y3, _ = model.apply({}, x, training=True, key=8)
    np.testing.assert_array_equal(y1.numpy(), y2.numpy())
    assert not np.array_equal(y1.numpy(), y3.numpy())
    kept = y1.numpy() != 0
    assert 0.3 < kept.mean() < 0.7
    np.testing.assert_allclose(y1.numpy()[kept], 2.0)          # inverted dropout: 1 / (1 - rate)


def test_predict_is_differentiable_inside_grad():
    model = axon.input((None, 4)).dense(3, activation="tanh").dense(2)
    params = model.init(seed=0)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    y = rng.standard_normal((5, 2)).astype(np.float32)
    loss = lambda params, x, y: ((model.predict(params, x) - y) ** 2).mean()
    g = grad(loss)(params, x, y)
    assert g["dense_0"]["kernel"].shape == (4, 3) and np.abs(g["dense_0"]["kernel"]).sum() > 0
    # against finite differences, in float64, through the whole model
    p64 = {l: {k: v.astype(np.float64) for k, v in d.items()} for l, d in params.items()}
    names = [(l, k) for l in p64 for k in p64[l]]

    def f(*leaves):
        p = {}
        for (l, k), v in zip(names, leaves):
            p.setdefault(l, {})[k] = v
        return loss(p, x.astype(np.float64), y.astype(np.float64))
    check_grads(f, tuple(p64[l][k] for l, k in names))


# ---- DAGs, containers, custom layers --------------------------------------------------------------------
def test_residual_cnn_builds_inits_predicts_and_differentiates():
    x = axon.input((None, 8, 8, 3))
    h = x.conv(4, kernel_size=3, padding="same", activation="relu")
    r = h.conv(4, kernel_size=3, padding="same").batch_norm()
    h = (h + r).relu().max_pool(kernel_size=2).flatten().dense(5)
    assert h.shape == (None, 5)
    params = h.init(seed=0)
    assert set(params["batch_norm_0"]) == {"gamma", "beta", "mean", "var"}
    xs = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    assert h.predict(params, xs).shape == (2, 5)
    y, state = h.apply(params, xs, training=True)
    assert set(state) == {"batch_norm_0"} and state["batch_norm_0"]["mean"].shape == (4,)
    assert not np.allclose(state["batch_norm_0"]["mean"], params["batch_norm_0"]["mean"])
    trainable, rest = h.split(params)
    assert set(rest["batch_norm_0"]) == {"mean", "var"} and "mean" not in trainable["batch_norm_0"]
    g = grad(lambda t: h.apply(axon.model.merge(t, rest), xs, training=True)[0].sum())(trainable)
    assert all(np.isfinite(v).all() for d in g.values() for v in d.values())


def test_two_input_model_and_container_outputs():
    a, b = axon.input((None, 3), name="a"), axon.input((None, 5), name="b")
    joined = axon.concatenate([a.dense(4), b.dense(4)])
    model = axon.container({"sum": joined.dense(1), "probs": joined.dense(3, activation="softmax")})
    assert model.shape == {"sum": (None, 1), "probs": (None, 3)}
    params = model.init(seed=0)
    xa, xb = np.ones((2, 3), np.float32), np.ones((2, 5), np.float32)
    out = model.predict(params, {"a": xa, "b": xb})
    assert out["sum"].shape == (2, 1) and out["probs"].shape == (2, 3)
    out2 = model.predict(params, [xa, xb])                      # positionally, in input order
    np.testing.assert_array_equal(out["sum"], out2["sum"])
    with pytest.raises(ValueError, match="missing model inputs"):
        model.predict(params, {"a": xa})


def test_custom_layers_nx_and_layer():
    x = axon.input((None, 3))
    doubled = axon.nx(x, lambda t: t * 2.0)
    proj = axon.layer(lambda t, w: t @ w, doubled, params={"w": axon.param((3, 2), initializer="ones")},
                      name="proj")
    params = proj.init()
    np.testing.assert_array_equal(params["proj"]["w"], np.ones((3, 2)))
    np.testing.assert_allclose(proj.predict(params, np.ones((1, 3), np.float32)), [[6.0, 6.0]])
    with pytest.raises(TypeError, match="axon.param"):
        axon.layer(lambda t, w: t, x, params={"w": (3, 2)})


def test_freeze_moves_params_out_of_trainable():
    model = axon.input((None, 4)).dense(3).dense(2)
    frozen = axon.freeze(model, layers=["dense_0"])
    params = frozen.init()
    trainable, rest = frozen.split(params)
    assert set(trainable) == {"dense_1"} and set(rest) == {"dense_0"}
    assert set(axon.unfreeze(frozen).split(params)[0]) == {"dense_0", "dense_1"}
    with pytest.raises(ValueError, match="no layers named"):
        axon.freeze(model, layers=["nope"])


def test_as_graph_mermaid_and_dot():
    model = blog_model()
    m = axon.as_graph(model)
    assert m.startswith("flowchart TD") and m.count("-->") == 3
    d = axon.as_graph(model, format="dot")
    assert d.startswith("digraph") and d.count("->") == 3


def test_combinator_operators():
    a = axon.input((None, 4))
    b = a.dense(4)
    for node, op in ((a + b, "add"), (a - b, "subtract"), (a * b, "multiply")):
        assert node.op == op and node.shape == (None, 4)
    p = (a - b).init(seed=0)
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose((a - b).predict(p, x), x - b.predict(p, x), rtol=1e-6)


# ---- every builder: the shape inferred at build time is the shape predict returns -----------------------
IMG = (None, 9, 8, 3)       # odd, non-square spatial axes
BUILDERS = {
    "dense": (IMG[:1] + (5,), lambda x: x.dense(4)),
    "dense_seq": ((None, 6, 5), lambda x: x.dense(4)),
    "bilinear": ((None, 5), lambda x: axon.bilinear(x, x.dense(3), 2)),
    "embedding": ((None, 7), lambda x: x.embedding(10, 4)),
    "conv": (IMG, lambda x: x.conv(4, kernel_size=3, strides=2, padding="same")),
    "conv_1d": ((None, 11, 2), lambda x: x.conv(3, kernel_size=3, kernel_dilation=2)),
    "conv_3d": ((None, 5, 6, 4, 2), lambda x: x.conv(3, kernel_size=(2, 3, 2))),
    "conv_groups": (IMG[:3] + (4,), lambda x: x.conv(6, kernel_size=3, feature_group_size=2)),
    "conv_first": ((None, 3, 9, 8), lambda x: x.conv(4, kernel_size=3, channels="first")),
    "conv_transpose": (IMG, lambda x: x.conv_transpose(4, kernel_size=3, strides=2)),
    "depthwise_conv": (IMG, lambda x: x.depthwise_conv(2, kernel_size=3, padding="same")),
    "separable_conv2d": (IMG, lambda x: x.separable_conv2d(2, kernel_size=3)),
    "separable_conv3d": ((None, 5, 6, 4, 2), lambda x: x.separable_conv3d(2, kernel_size=2)),
    "max_pool": (IMG, lambda x: x.max_pool(kernel_size=2)),
    "avg_pool": (IMG, lambda x: x.avg_pool(kernel_size=3, strides=2, padding="same")),
    "lp_pool": (IMG, lambda x: x.lp_pool(norm=2, kernel_size=2)),
    "adaptive_max_pool": (IMG, lambda x: x.adaptive_max_pool((4, 3))),
    "adaptive_avg_pool": (IMG, lambda x: x.adaptive_avg_pool((2, 5))),
    "adaptive_lp_pool": (IMG, lambda x: x.adaptive_lp_pool((3, 3))),
    "global_max_pool": (IMG, lambda x: x.global_max_pool()),
    "global_avg_pool": (IMG, lambda x: x.global_avg_pool(keep_axes=True)),
    "global_lp_pool": (IMG, lambda x: x.global_lp_pool()),
    "blur_pool": (IMG, lambda x: x.blur_pool()),
    "batch_norm": (IMG, lambda x: x.batch_norm()),
    "layer_norm": ((None, 6), lambda x: x.layer_norm()),
    "group_norm": (IMG[:3] + (4,), lambda x: x.group_norm(2)),
    "instance_norm": (IMG, lambda x: x.instance_norm()),
    "rms_norm": ((None, 6), lambda x: x.rms_norm()),
    "dropout": ((None, 6), lambda x: x.dropout(rate=0.3)),
    "alpha_dropout": ((None, 6), lambda x: x.alpha_dropout(rate=0.3)),
    "feature_alpha_dropout": (IMG, lambda x: x.feature_alpha_dropout(rate=0.3)),
    "spatial_dropout": (IMG, lambda x: x.spatial_dropout(rate=0.3)),
    "flatten": (IMG, lambda x: x.flatten()),
    "reshape": (IMG, lambda x: x.reshape((72, 3))),
    "transpose": (IMG, lambda x: x.transpose((2, 0, 1))),
    "pad": (IMG, lambda x: x.pad(((1, 2), (0, 1)))),
    "resize": (IMG, lambda x: x.resize((5, 4), method="bilinear")),
    "add": (IMG, lambda x: x + x.conv(3, kernel_size=1)),
    "subtract": (IMG, lambda x: x - x),
    "multiply": (IMG, lambda x: x * x),
    "concatenate": (IMG, lambda x: axon.concatenate([x, x.conv(2, kernel_size=1)])),
    "activation": ((None, 6), lambda x: axon.activation(x, "gelu")),
    "softmax_axis": ((None, 3, 6), lambda x: x.softmax(axis=1)),
    "constant_add": ((None, 6), lambda x: x + axon.constant(np.ones(6, np.float32))),
    "lstm": ((None, 5, 3), lambda x: x.lstm(4)[0]),
    "gru": ((None, 5, 3), lambda x: x.gru(4)[1]),
    "conv_lstm": ((None, 3, 5, 5, 2), lambda x: x.conv_lstm(2, kernel_size=3)[0]),
    "bidirectional": ((None, 5, 3), lambda x: axon.bidirectional(x, lambda s: s.lstm(2))[0]),
    "mask": ((None, 5), lambda x: x.mask(0)),
    "multi_head_attention": ((None, 5, 8), lambda x: x.multi_head_attention(2, causal=True)),
    "transformer_block": ((None, 5, 8), lambda x: x.transformer_block(2, 16, dropout_rate=0.1)),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builder_inferred_shape_is_the_real_shape(name):
    shape, build = BUILDERS[name]
    model = build(axon.input(shape))
    params = model.init(seed=0)
    x = rng.integers(0, 10, (2,) + shape[1:]) if name == "embedding" else \
        rng.standard_normal((2,) + shape[1:]).astype(np.float32)
    y = model.predict(params, x)
    assert model.shape[0] is None
    assert y.shape == (2,) + tuple(model.shape[1:]), (model.shape, y.shape)
    y_train, _ = model.apply(params, x, training=True, key=0)
    assert y_train.shape == y.shape


def test_every_builder_and_method_is_found_by_grep_at_its_definition():
    """``def relu(`` in builders.py and ``Axon.relu = relu`` there: no name is made by setattr or globals()."""
    import inspect
    from axon.functional import activations as A
    from axon.model import builders
    source, init_source = inspect.getsource(builders), inspect.getsource(axon.model)
    assert set(builders.ACTIVATIONS) == set(A.__all__) - {"get"}      # every activation has its layer
    for name in builders.__all__:
        assert f"\ndef {name}(" in source and getattr(builders, name).__name__ == name
        if name not in ("add", "subtract", "multiply"):              # those are the operators a + b, ...
            assert f"\nAxon.{name} = {name}\n" in source and getattr(axon.Axon, name) is getattr(builders, name)
    for fn in (axon.init, axon.apply, axon.predict, axon.split, axon.summary, axon.model.bias,
               axon.model.attach_hook, axon.model.get_op_counts, axon.model.set_options,
               axon.model.set_parameters, axon.model.pop_node, axon.model.rewrite_nodes):
        assert f"\nAxon.{fn.__name__} = {fn.__name__}\n" in init_source and getattr(axon.Axon, fn.__name__) is fn
    for text in (source, init_source):
        assert "setattr(" not in text and "globals()" not in text


def test_every_builder_is_covered():
    from axon.model import builders
    exercised = set()
    for shape, build in BUILDERS.values():
        exercised |= {n.op for n in build(axon.input(shape)).nodes()}
    composites = {"bidirectional", "transformer_block"}         # made of the other builders' nodes
    layer_builders = set(builders.__all__) - set(builders.ACTIVATIONS) - {"activation"} - composites
    assert layer_builders - exercised == set()


def test_only_shape_and_type_errors_are_rephrased_at_build_time():
    def needs_a_package(x):
        raise ImportError("No module named 'scipy'")

    def bad_shape(x):
        raise ValueError("shapes do not fit")
    with pytest.raises(ImportError, match="No module named 'scipy'"):
        axon.nx(axon.input((None, 3)), needs_a_package)
    with pytest.raises(ValueError, match=r"layer cannot be applied to 'input' \(None, 3\): shapes do not fit"):
        axon.nx(axon.input((None, 3)), bad_shape)
