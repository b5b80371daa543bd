"""axon.onnx: models exported by axon run in onnxruntime as they predict; ONNX files (PyTorch's) load and match."""
import os
import warnings

import numpy as np
import pytest

import axon
from axon.examples.mnist import build_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
import axon.onnx  # noqa: E402  (after the skips: it needs onnx when called)

RTOL, ATOL = 1e-5, 1e-5


def _random_params(model, seed=0):
    """Params with every entry random (gammas, betas and running statistics too), so each one matters."""
    rng = np.random.default_rng(seed)
    params = axon.init(model, seed=seed)
    for layer in params.values():
        for k, v in layer.items():
            if k == "var":
                layer[k] = rng.uniform(0.5, 1.5, v.shape).astype(v.dtype)
            elif k != "kernel" or v.ndim < 2:
                layer[k] = (rng.standard_normal(v.shape) * 0.5).astype(v.dtype)
    return params


def _input(shape, seed=1, batch=3, vocab=None):
    rng = np.random.default_rng(seed)
    shape = (batch,) + tuple(shape[1:])
    if vocab is not None:
        return rng.integers(0, vocab, shape).astype(np.int64)
    return rng.standard_normal(shape).astype(np.float32)


def _run(path, feeds):
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    if not isinstance(feeds, dict):
        feeds = {session.get_inputs()[0].name: feeds}
    return session.run(None, feeds)


def _close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * max(1.0, float(np.max(np.abs(expected)))))


def _export_and_compare(model, x, tmp_path, params=None, opset=axon.onnx.OPSET, **tol):
    params = _random_params(model) if params is None else params
    path = tmp_path / "model.onnx"
    axon.onnx.export(model, params, path, opset=opset)
    (y,) = _run(path, x)
    expected = axon.predict(model, params, x)
    assert y.shape == expected.shape and y.dtype == expected.dtype
    _close(y, expected, **tol)
    return path, params


# ---- whole models -----------------------------------------------------------------------------------
def _residual_block():
    x = axon.input((None, 8, 8, 4))
    h = x.conv(4, kernel_size=3, padding="same", use_bias=False).batch_norm().relu()
    h = h.conv(4, kernel_size=3, padding="same", use_bias=False).batch_norm()
    return (h + x).relu().global_avg_pool().dense(3)


@pytest.mark.parametrize("name, model, shape", [
    ("mlp", build_model("mlp"), (None, 784)),
    ("mnist_cnn", build_model("cnn"), (None, 28, 28, 1)),
    ("residual_block", _residual_block(), (None, 8, 8, 4)),
])
def test_whole_models_run_in_onnxruntime_as_they_predict(name, model, shape, tmp_path):
    path, _ = _export_and_compare(model, _input(shape, batch=5), tmp_path)
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert ops.count("Transpose") <= 2, ops              # channels-last in and out, one transpose each way


def test_the_exported_file_is_checked_valid_and_names_follow_the_model(tmp_path):
    model = build_model("cnn")
    axon.onnx.export(model, axon.init(model), tmp_path / "cnn.onnx")
    proto = onnx.load(tmp_path / "cnn.onnx")
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["output"]
    assert {"conv_0.kernel", "conv_0.bias", "dense_1.kernel"} <= {t.name for t in proto.graph.initializer}
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [28, 28, 1]


# ---- one layer at a time ------------------------------------------------------------------------------
# (id, layer applied to the input node, input shape); every case is exported and run in onnxruntime
LAYERS = [
    ("dense", lambda x: x.dense(5), (None, 7)),
    ("dense_no_bias", lambda x: x.dense(5, use_bias=False), (None, 7)),
    ("dense_3d", lambda x: x.dense(5), (None, 4, 7)),
    ("bilinear", lambda x: axon.bilinear(x, x.tanh(), 3), (None, 4)),
    ("conv1d", lambda x: x.conv(4, kernel_size=3), (None, 11, 3)),
    ("conv2d_same_stride", lambda x: x.conv(4, kernel_size=3, strides=2, padding="same"), (None, 9, 8, 3)),
    ("conv2d_explicit_pads", lambda x: x.conv(4, kernel_size=(3, 2), padding=[(2, 0), (1, 1)]), (None, 7, 6, 3)),
    ("conv2d_dilation", lambda x: x.conv(4, kernel_size=3, kernel_dilation=2), (None, 9, 9, 2)),
    ("conv2d_groups", lambda x: x.conv(6, kernel_size=3, feature_group_size=3), (None, 7, 7, 6)),
    ("conv2d_input_dilation", lambda x: x.conv(4, kernel_size=3, input_dilation=2, padding=1), (None, 5, 5, 2)),
    ("conv2d_input_dilation_groups", lambda x: x.conv(4, kernel_size=2, input_dilation=(2, 3),
                                                       feature_group_size=2), (None, 4, 4, 2)),
    ("conv2d_channels_first", lambda x: x.conv(4, kernel_size=3, channels="first"), (None, 3, 7, 7)),
    ("conv3d", lambda x: x.conv(3, kernel_size=2, strides=(1, 2, 1)), (None, 5, 6, 4, 2)),
    ("conv_transpose_valid", lambda x: x.conv_transpose(3, kernel_size=3, strides=2), (None, 4, 5, 2)),
    ("conv_transpose_same", lambda x: x.conv_transpose(3, kernel_size=3, strides=2, padding="same"), (None, 4, 4, 2)),
    ("conv_transpose_k1_s2", lambda x: x.conv_transpose(3, kernel_size=1, strides=2), (None, 4, 4, 2)),
    ("conv_transpose_1d_dilated", lambda x: x.conv_transpose(2, kernel_size=2, kernel_dilation=2), (None, 6, 3)),
    ("depthwise_conv", lambda x: x.depthwise_conv(2, kernel_size=3, padding="same"), (None, 6, 6, 3)),
    ("separable_conv2d", lambda x: x.separable_conv2d(2, kernel_size=3, strides=2, padding="same"), (None, 7, 7, 3)),
    ("separable_conv3d", lambda x: x.separable_conv3d(1, kernel_size=2), (None, 4, 4, 4, 2)),
    ("max_pool", lambda x: x.max_pool(kernel_size=2), (None, 6, 7, 3)),
    ("max_pool_same", lambda x: x.max_pool(kernel_size=3, strides=2, padding="same"), (None, 7, 7, 3)),
    ("max_pool_1d", lambda x: x.max_pool(kernel_size=3, strides=1), (None, 9, 2)),
    ("avg_pool", lambda x: x.avg_pool(kernel_size=3, strides=1, padding="same"), (None, 6, 6, 2)),
    ("avg_pool_3d", lambda x: x.avg_pool(kernel_size=2), (None, 4, 4, 4, 2)),
    ("lp_pool_2", lambda x: x.lp_pool(norm=2, kernel_size=2), (None, 6, 6, 2)),
    ("lp_pool_3", lambda x: x.relu().lp_pool(norm=3, kernel_size=2, strides=1), (None, 5, 5, 2)),
    ("adaptive_avg_pool_divides", lambda x: x.adaptive_avg_pool((2, 3)), (None, 6, 6, 2)),
    ("adaptive_avg_pool_bins", lambda x: x.adaptive_avg_pool((3, 2)), (None, 7, 5, 2)),
    ("adaptive_max_pool_bins", lambda x: x.adaptive_max_pool((2, 4)), (None, 5, 7, 2)),
    ("adaptive_lp_pool_bins", lambda x: x.relu().adaptive_lp_pool((2, 2), norm=3), (None, 5, 5, 2)),
    ("adaptive_lp_pool_divides", lambda x: x.adaptive_lp_pool((2, 2), norm=2), (None, 4, 6, 2)),
    ("global_avg_pool", lambda x: x.global_avg_pool(), (None, 5, 6, 3)),
    ("global_max_pool_keep", lambda x: x.global_max_pool(keep_axes=True), (None, 5, 6, 3)),
    ("global_lp_pool", lambda x: x.global_lp_pool(norm=2), (None, 7, 3)),
    ("global_lp_pool_3", lambda x: x.relu().global_lp_pool(norm=3), (None, 4, 4, 3)),
    ("batch_norm_2d", lambda x: x.batch_norm(), (None, 5)),
    ("batch_norm_4d", lambda x: x.batch_norm(epsilon=1e-3), (None, 4, 4, 3)),
    ("batch_norm_first", lambda x: x.batch_norm(channels="first"), (None, 3, 4, 4)),
    ("layer_norm", lambda x: x.layer_norm(), (None, 6)),
    ("layer_norm_3d", lambda x: x.layer_norm(), (None, 4, 6)),
    ("layer_norm_after_conv", lambda x: x.conv(4, kernel_size=1).layer_norm(), (None, 3, 3, 2)),
    ("group_norm", lambda x: x.group_norm(num_groups=2), (None, 4, 4, 6)),
    ("instance_norm", lambda x: x.instance_norm(), (None, 5, 5, 3)),
    ("rms_norm", lambda x: x.rms_norm(), (None, 6)),
    ("dropouts", lambda x: x.dropout(0.3).alpha_dropout(0.2).spatial_dropout(0.1).feature_alpha_dropout(0.1),
     (None, 4, 4, 3)),
    ("flatten", lambda x: x.flatten(), (None, 3, 4, 2)),
    ("reshape", lambda x: x.reshape((2, -1)), (None, 3, 4)),
    ("transpose", lambda x: x.transpose((2, 0, 1)), (None, 3, 4, 5)),
    ("transpose_then_conv_first", lambda x: x.transpose((2, 0, 1)).conv(2, kernel_size=2, channels="first"),
     (None, 5, 5, 3)),
    ("pad", lambda x: x.pad([(1, 2), (0, 1)], value=0.5), (None, 3, 4, 2)),
    ("resize_nearest", lambda x: x.resize((5, 7)), (None, 3, 4, 2)),
    ("resize_bilinear", lambda x: x.resize((6, 3), method="bilinear"), (None, 4, 5, 2)),
    ("concatenate", lambda x: axon.concatenate([x, x.relu()], axis=1), (None, 3, 4)),
    ("concatenate_after_conv", lambda x: x.conv(2, kernel_size=1).concatenate(x.conv(3, kernel_size=1)),
     (None, 3, 3, 2)),
    ("add_sub_mul", lambda x: (x - x.sigmoid()) * x.tanh() + x, (None, 5)),
    ("add_constant", lambda x: x + axon.constant(np.arange(5, dtype=np.float32)), (None, 5)),
    ("softmax_axis", lambda x: x.softmax(axis=1), (None, 3, 4)),
    ("log_softmax_after_conv", lambda x: x.conv(3, kernel_size=1).log_softmax(), (None, 3, 3, 2)),
    ("log_sumexp", lambda x: x.log_sumexp(), (None, 5)),
]
ACTIVATIONS = [
    ("celu", {"alpha": 1.5}), ("elu", {"alpha": 0.7}), ("exp", {}), ("gelu", {}), ("gelu", {"approximate": True}),
    ("hard_sigmoid", {"alpha": 0.3, "beta": 0.4}), ("hard_silu", {}), ("hard_tanh", {}), ("leaky_relu", {"alpha": 0.2}),
    ("linear", {}), ("log_sigmoid", {}), ("mish", {}), ("relu", {}), ("relu6", {}), ("selu", {}), ("sigmoid", {}),
    ("silu", {}), ("softplus", {}), ("softsign", {}), ("tanh", {}), ("log1p", {}), ("expm1", {}), ("erf", {}),
]
LAYERS += [(f"{name}{'_' + '_'.join(opts) if opts else ''}", (lambda name, opts: lambda x: getattr(x, name)(**opts))(
    name, opts), (None, 3, 4)) for name, opts in ACTIVATIONS]


def test_every_activation_is_covered():
    covered = {name for name, _ in ACTIVATIONS} | {"softmax", "log_softmax", "log_sumexp"}
    assert covered == set(axon.activations.__all__) - {"get"}


@pytest.mark.parametrize("name, build, shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_each_layer_exports(name, build, shape, tmp_path):
    x = _input(shape)
    if name == "log1p":
        x = np.abs(x)                                          # log1p's domain
    _export_and_compare(build(axon.input(shape)), x, tmp_path)


@pytest.mark.parametrize("opset", [17, 20])
def test_other_opsets(opset, tmp_path):
    """Opset 17 (Reduce* take axes as attributes) and 20 (Gelu is an op) give the same results."""
    x = axon.input((None, 4, 4, 3))
    model = x.group_norm(num_groups=3).gelu().mish().global_avg_pool().log_sumexp()
    _export_and_compare(model, _input((None, 4, 4, 3)), tmp_path, opset=opset)


def test_embedding_takes_integer_indices(tmp_path):
    model = axon.input((None, 6)).embedding(10, 4).flatten().dense(2)
    _export_and_compare(model, _input((None, 6), vocab=10), tmp_path)
    assert onnx.load(tmp_path / "model.onnx").graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64


def test_two_inputs_and_a_container(tmp_path):
    a, b = axon.input((None, 3), name="a"), axon.input((None, 4), name="b")
    h = a.dense(5) + b.dense(5)
    model = axon.container({"logits": h, "probs": h.softmax()})
    params = _random_params(model)
    axon.onnx.export(model, params, tmp_path / "two.onnx")
    feeds = {"a": _input((None, 3)), "b": _input((None, 4), seed=2)}
    logits, probs = _run(tmp_path / "two.onnx", feeds)
    expected = axon.predict(model, params, feeds)
    _close(logits, expected["logits"])
    _close(probs, expected["probs"])
    assert [o.name for o in onnx.load(tmp_path / "two.onnx").graph.output] == ["logits", "probs"]


def test_outputs_that_share_a_tensor(tmp_path):
    """The same layer twice, a dropout of it (the same value), its transpose and the input itself as outputs."""
    x = axon.input((None, 2, 3))
    h = x.dense(3)
    model = axon.container([h, h.dropout(0.5), h.transpose((1, 0)), h, x])
    params = _random_params(model)
    axon.onnx.export(model, params, tmp_path / "shared.onnx")
    xs = _input((None, 2, 3))
    got = _run(tmp_path / "shared.onnx", xs)
    expected = axon.predict(model, params, xs)
    assert len(got) == 5
    for a, b in zip(got, expected):
        _close(a, b)


def test_float64_params_give_a_float64_model(tmp_path):
    model = axon.input((None, 3)).dense(2).tanh()
    params = axon.init(model, dtype="float64")
    axon.onnx.export(model, params, tmp_path / "f64.onnx")
    x = _input((None, 3)).astype(np.float64)
    (y,) = _run(tmp_path / "f64.onnx", x)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, axon.predict(model, params, x), rtol=1e-12)


# ---- recurrent layers: ONNX's LSTM and GRU -----------------------------------------------------------------
def _encoder_decoder(layer, **opts):
    def build(x):
        seq, carry = getattr(x, layer)(5, **opts)
        return axon.container([seq, getattr(x, layer)(5, carry=carry, reverse=True)[0]])
    return build


RECURRENT = [
    ("lstm", lambda x: x.lstm(5)[0]),
    ("lstm_reverse_no_bias", lambda x: x.lstm(5, reverse=True, use_bias=False)[0].dense(2)),
    ("lstm_carry_starts_a_decoder", _encoder_decoder("lstm", use_bias=False)),
    ("gru_seq_and_carry", lambda x: axon.container(list(x.gru(5, unroll="static")))),
    ("gru_reverse_no_bias", lambda x: x.gru(5, reverse=True, use_bias=False)[1]),
    ("gru_carry_starts_a_decoder", _encoder_decoder("gru")),
    ("bidirectional_lstm", lambda x: axon.bidirectional(x, lambda s: s.lstm(3))[0]),
    ("bidirectional_gru_add", lambda x: axon.bidirectional(x, lambda s: s.gru(3), merge="add")[0].global_avg_pool()),
]


@pytest.mark.parametrize("name, build", RECURRENT, ids=[c[0] for c in RECURRENT])
def test_lstm_and_gru_run_in_onnxruntime_as_they_predict(name, build, tmp_path):
    model = build(axon.input((None, 7, 4)))
    params = _random_params(model)                           # biases random: each gate's bias matters
    axon.onnx.export(model, params, tmp_path / "rnn.onnx")
    x = _input((None, 7, 4))
    got, expected = _run(tmp_path / "rnn.onnx", x), axon.predict(model, params, x)
    expected = expected if isinstance(expected, list) else [expected]
    assert len(got) == len(expected)
    for y, e in zip(got, expected):
        assert y.shape == e.shape and y.dtype == e.dtype
        _close(y, e)
    ops = [n.op_type for n in onnx.load(tmp_path / "rnn.onnx").graph.node]
    assert ("LSTM" in ops) == ("lstm" in name) and ("GRU" in ops) == ("gru" in name)


def test_sequence_layers_without_onnx_form_are_listed_at_once(tmp_path):
    tokens = axon.input((None, 6), name="tokens")
    x = tokens.embedding(10, 4)
    seq, _ = x.lstm(4, mask=tokens.mask(0))
    model = seq.multi_head_attention(2) + axon.input((None, 6, 4, 4, 1), name="frames").conv_lstm(
        1, kernel_size=3)[0].flatten().reshape((6, 16)).dense(4)
    with pytest.raises(ValueError) as e:
        axon.onnx.export(model, axon.init(model), tmp_path / "bad.onnx")
    message = str(e.value)
    assert message.startswith("export: 4 layers have no ONNX form")
    for layer in ("'mask_0'", "'lstm_0' (op 'lstm': a mask", "'multi_head_attention_0'", "'conv_lstm_0'"):
        assert layer in message
    carry = axon.input((None, 6, 4)).lstm(3)[1]                 # a (c, h) tuple is no ONNX output
    with pytest.raises(ValueError, match=r"outputs 'carry_0' \(op 'carry'\) are tuples"):
        axon.onnx.export(carry, axon.init(carry), tmp_path / "bad.onnx")
    assert not os.listdir(tmp_path)


# ---- errors -------------------------------------------------------------------------------------------
def test_every_unsupported_layer_is_listed_at_once_and_nothing_is_written(tmp_path):
    x = axon.input((None, 6, 6, 2))
    h = axon.nx(x, lambda t: t * 2).conv(2, kernel_size=3, strides=2, input_dilation=2)
    model = axon.layer(lambda t, w: t @ w, [h.flatten()], params={"w": axon.param((50, 3))}, name="mine",
                       op_name="dense")                       # a name of axon's, on a function of one's own
    with pytest.raises(ValueError) as e:
        axon.onnx.export(model, axon.init(model), tmp_path / "bad.onnx")
    message = str(e.value)
    assert message.startswith("export: 3 layers have no ONNX form")
    assert "'nx_0'" in message and "'conv_0'" in message and "input_dilation" in message and "'mine'" in message
    assert not os.listdir(tmp_path)


def test_bad_arguments(tmp_path):
    model = axon.input((None, 3)).dense(2)
    with pytest.raises(ValueError, match="opset must be an int from 17"):
        axon.onnx.export(model, axon.init(model), tmp_path / "m.onnx", opset=9)
    with pytest.raises(ValueError, match=r"params\['dense_0'\]\['kernel'\] has shape \(4, 2\), expected \(3, 2\)"):
        axon.onnx.export(model, {"dense_0": {"kernel": np.zeros((4, 2), np.float32),
                                             "bias": np.zeros(2, np.float32)}}, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="params for layer 'dense_0' have keys None"):
        axon.onnx.export(model, {}, tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="model must be an axon model"):
        axon.onnx.export("model", {}, tmp_path / "m.onnx")
    assert not os.listdir(tmp_path)


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    model = axon.input((None, 3)).dense(2)
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    monkeypatch.setattr(onnx.ModelProto, "SerializeToString", lambda self: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        axon.onnx.export(model, axon.init(model), path)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["m.onnx"]


# ---- loading: axon's own files round-trip -----------------------------------------------------------
# exported as compositions with an op that is no axon layer (Pow, Slice, Log, a ReduceMean over channels)
NOT_LOADED = {"lp_pool_3", "adaptive_avg_pool_bins", "adaptive_max_pool_bins", "adaptive_lp_pool_bins",
              "global_lp_pool_3", "group_norm", "rms_norm", "log1p"}


@pytest.mark.parametrize("name, build, shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_exported_layers_load_back_and_predict_the_same(name, build, shape, tmp_path):
    """What the exporter writes as one ONNX op per layer loads back as that layer; compositions of
    several ops (silu's x * Sigmoid(x)) load when each op has an axon form, else fail cleanly."""
    model = build(axon.input(shape))
    x = np.abs(_input(shape)) if name == "log1p" else _input(shape)
    path, params = _export_and_compare(model, x, tmp_path)
    if name in NOT_LOADED:
        with pytest.raises(ValueError, match=r"model.onnx.*no axon form: .*\((Pow|Slice|Log|ReduceMean)\)"):
            axon.onnx.load(path)
        return
    loaded, loaded_params = axon.onnx.load(path)
    _close(axon.predict(loaded, loaded_params, x), axon.predict(model, params, x))


@pytest.mark.parametrize("name, model, shape", [
    ("mlp", build_model("mlp"), (None, 784)),
    ("mnist_cnn", build_model("cnn"), (None, 28, 28, 1)),
    ("residual_block", _residual_block(), (None, 8, 8, 4)),
])
def test_whole_models_round_trip_with_their_layer_names(name, model, shape, tmp_path):
    path, params = _export_and_compare(model, _input(shape), tmp_path)
    loaded, loaded_params = axon.onnx.load(path)
    x = _input(shape, seed=5)
    _close(axon.predict(loaded, loaded_params, x), axon.predict(model, params, x))
    assert set(loaded_params) == set(params)                 # conv_0, batch_norm_1, dense_0, ... as exported
    for layer, p in params.items():
        assert set(loaded_params[layer]) == set(p)


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xfe not a protobuf \x00\x01")
    with pytest.raises(ValueError, match="bad.onnx.*not an ONNX model"):
        axon.onnx.load(bad)
    with pytest.raises(ValueError, match="cannot read the ONNX file .*missing.onnx"):
        axon.onnx.load(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="cannot read the ONNX file"):
        axon.onnx.load(tmp_path)                              # a directory
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.onnx.*no graph"):
        axon.onnx.load(tmp_path / "empty.onnx")


def test_corrupted_files_load_or_raise_value_error(tmp_path):
    """Bytes flipped at random offsets, or the file cut short: a model, or a ValueError naming the file."""
    model = _residual_block()
    axon.onnx.export(model, _random_params(model), tmp_path / "good.onnx")
    data = (tmp_path / "good.onnx").read_bytes()
    rng = np.random.default_rng(0)
    outcomes = {"loaded": 0, "refused": 0}
    for trial in range(60):
        bad = bytearray(data)
        if trial % 3 == 0:
            bad = bad[: rng.integers(1, len(bad))]
        else:
            for i in rng.integers(0, len(bad), size=trial % 5 + 1):
                bad[i] = rng.integers(0, 256)
        path = tmp_path / f"bad{trial}.onnx"
        path.write_bytes(bytes(bad))
        try:
            axon.onnx.load(path)
            outcomes["loaded"] += 1
        except ValueError as e:
            assert f"bad{trial}.onnx" in str(e)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0


def _file(tmp_path, nodes, inputs, outputs, initializers=(), opset=18, name="hand.onnx"):
    h = onnx.helper
    graph = h.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def test_unsupported_nodes_are_listed_at_once(tmp_path):
    h, f = onnx.helper, onnx.TensorProto.FLOAT
    nodes = [h.make_node("Sqrt", ["x"], ["a"], name="root"), h.make_node("Relu", ["a"], ["b"]),
             h.make_node("Clip", ["x", "lo", "hi"], ["c"], name="clip"), h.make_node("Add", ["b", "c"], ["d"]),
             h.make_node("Foo", ["d"], ["y"], name="foo", domain="custom.domain")]
    inits = [onnx.numpy_helper.from_array(np.float32(-2), "lo"), onnx.numpy_helper.from_array(np.float32(3), "hi")]
    path = _file(tmp_path, nodes, [h.make_tensor_value_info("x", f, ["N", 3])],
                 [h.make_tensor_value_info("y", f, ["N", 3])], inits)
    with pytest.raises(ValueError) as e:
        axon.onnx.load(path)
    message = str(e.value)
    assert "hand.onnx" in message and "3 nodes have no axon form" in message
    assert "'root' (Sqrt)" in message and "'foo' (Foo)" in message and "'clip' (Clip): Clip(-2.0, 3.0)" in message


def test_external_data_is_refused_and_never_opened(tmp_path):
    h, f = onnx.helper, onnx.TensorProto.FLOAT
    w = onnx.numpy_helper.from_array(np.ones((3, 2), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = onnx.TensorProto.EXTERNAL
    w.external_data.add(key="location", value="../../../etc/passwd")
    path = _file(tmp_path, [h.make_node("MatMul", ["x", "w"], ["y"])], [h.make_tensor_value_info("x", f, ["N", 3])],
                 [h.make_tensor_value_info("y", f, ["N", 2])], [w])
    with pytest.raises(ValueError, match="external file; axon loads self-contained"):
        axon.onnx.load(path)


def test_a_hand_built_graph_with_shape_arithmetic_loads(tmp_path):
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape (PyTorch's x.view(x.size(0), -1)) folds into a reshape."""
    h, f = onnx.helper, onnx.TensorProto.FLOAT
    ints = lambda name, v: onnx.numpy_helper.from_array(np.asarray(v, np.int64), name)   # noqa: E731
    rng = np.random.default_rng(0)
    w = rng.standard_normal((12, 2)).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    nodes = [h.make_node("Shape", ["x"], ["s"]), h.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             h.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
             h.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
             h.make_node("Reshape", ["x", "shape"], ["flat"]), h.make_node("MatMul", ["flat", "w"], ["m"]),
             h.make_node("Add", ["m", "b"], ["y"])]
    inits = [ints("zero", 0), ints("axes", [0]), ints("minus1", [-1]),
             onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(b, "b")]
    path = _file(tmp_path, nodes, [h.make_tensor_value_info("x", f, ["N", 3, 4])],
                 [h.make_tensor_value_info("y", f, ["N", 2])], inits)
    model, params = axon.onnx.load(path)
    assert [n.op for n in model.nodes()] == ["input", "reshape", "dense"]   # MatMul + Add: one dense with a bias
    x = _input((None, 3, 4))
    (expected,) = _run(path, x)
    _close(axon.predict(model, params, x), expected)


# ---- loading PyTorch's files ---------------------------------------------------------------------------
def _torch_modules(torch):
    nn = torch.nn

    class Residual(nn.Module):
        """conv-bn-relu-conv-bn, plus the input, relu; global mean; view(N, -1); linear."""
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
            self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            h = torch.relu(self.bn1(self.conv1(x)))
            y = torch.relu(self.bn2(self.conv2(h)) + x)
            return self.head(y.mean((2, 3)).view(y.size(0), -1))

    return {
        "mlp": (nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10), nn.Softmax(-1)),
                (784,)),
        "cnn": (nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(8, 16, 3, stride=2, groups=2), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                              nn.Linear(144, 10)), (1, 28, 28)),
        "residual": (Residual(), (4, 8, 8)),
        "layers": (nn.Sequential(nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1), nn.GELU(),
                                 nn.Conv2d(4, 4, 3, dilation=2, padding=2, padding_mode="zeros"), nn.Hardswish(),
                                 nn.GroupNorm(2, 4), nn.ELU(0.5), nn.InstanceNorm2d(4, affine=True), nn.SiLU(),
                                 nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), nn.LeakyReLU(0.2),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(4), nn.Tanh()), (3, 5, 6)),
        "conv1d": (nn.Sequential(nn.Conv1d(2, 4, 5, stride=2, padding=2), nn.Sigmoid(), nn.AvgPool1d(2),
                                 nn.AvgPool1d(3, stride=1, padding=1, count_include_pad=False),
                                 nn.LayerNorm([4, 5]),                         # over the last two axes
                                 nn.Upsample(scale_factor=2, mode="nearest"), nn.Flatten(), nn.Linear(40, 2)),
                   (2, 19)),
    }


@pytest.mark.parametrize("name", ["mlp", "cnn", "residual", "layers", "conv1d"])
@pytest.mark.parametrize("keep_batch_norm", [False, True], ids=["bn_folded", "bn_kept"])
def test_pytorch_exported_models_load_and_match(name, keep_batch_norm, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module, shape = _torch_modules(torch)[name]
    for m in module.modules():                                 # running statistics that matter
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    module.eval()
    x = torch.randn((4,) + shape)
    path = tmp_path / f"{name}.onnx"
    mode = torch.onnx.TrainingMode.PRESERVE if keep_batch_norm else torch.onnx.TrainingMode.EVAL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                        # the legacy exporter's deprecation notice
        torch.onnx.export(module, (x,), path, dynamo=False, training=mode, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert ("BatchNormalization" in ops) == (keep_batch_norm and name in ("cnn", "residual"))
    model, params = axon.onnx.load(path)
    with torch.no_grad():
        expected = module(x).numpy()
    x_np = x.numpy()
    _close(axon.predict(model, params, x_np), expected)
    _close(axon.predict(model, params, x_np[:1]), expected[:1])   # the batch size is free
    axon.onnx.export(model, params, tmp_path / "again.onnx")    # channels-first layers export without transposes
    (again,) = _run(tmp_path / "again.onnx", x_np)
    _close(again, expected)
    assert "Transpose" not in {n.op_type for n in onnx.load(tmp_path / "again.onnx").graph.node}


# ---- the optional dependency ----------------------------------------------------------------------------
def test_import_axon_does_not_import_onnx():
    import subprocess
    import sys
    code = "import sys, axon, axon.onnx; print('onnx' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.split() == ["False", "False"]


def test_without_onnx_the_error_names_the_extra(monkeypatch, tmp_path):
    import sys
    monkeypatch.setitem(sys.modules, "onnx", None)            # as if it were not installed
    model = axon.input((None, 3)).dense(2)
    with pytest.raises(ImportError, match=r'pip install "axon\[onnx\]"'):
        axon.onnx.export(model, axon.init(model), tmp_path / "m.onnx")
    with pytest.raises(ImportError, match=r'pip install "axon\[onnx\]"'):
        axon.onnx.load(tmp_path / "m.onnx")


# ---- the tutorial's ONNX section --------------------------------------------------------------------------
CHAPTER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tutorials", "04_models.md")


def _tutorial_blocks():
    """``[(block, its output block)]`` for chapter 4's ```python {.no-run .onnx} blocks (test_docs' parser)."""
    from pathlib import Path

    from test_docs import parse
    blocks = parse(Path(CHAPTER)).blocks
    pairs = [(b, blocks[i + 1]) for i, b in enumerate(blocks) if b.lang == "python" and "onnx" in b.classes]
    assert pairs and all("onnx-output" in out.classes for _, out in pairs), "each onnx block needs its output"
    return pairs


def _run_tutorial_blocks(pairs):
    import contextlib
    import io
    namespace, printed = {"__name__": "__main__"}, []
    for block, _ in pairs:
        buffer = io.StringIO()
        code = compile("\n" * (block.line - 1) + block.code, CHAPTER, "exec")   # errors point at the chapter's lines
        with contextlib.redirect_stdout(buffer):
            exec(code, namespace)
        printed.append(buffer.getvalue())
    return printed


def test_the_tutorial_onnx_section_runs_and_prints_what_it_shows(tmp_path, monkeypatch):
    """The blocks test_docs shows without running (they need this extra) run here, and print their outputs."""
    monkeypatch.chdir(tmp_path)
    pairs = _tutorial_blocks()
    normal = lambda text: "\n".join(line.rstrip() for line in text.rstrip().split("\n"))   # noqa: E731
    for (block, expected), out in zip(pairs, _run_tutorial_blocks(pairs)):
        assert normal(out) == normal(expected.code), f"{CHAPTER}:{block.line} printed\n{out}"


if __name__ == "__main__":                                    # python tests/test_onnx.py: refresh the outputs
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    pairs = _tutorial_blocks()
    lines = open(CHAPTER, encoding="utf-8").read().split("\n")
    for (_, expected), out in sorted(zip(pairs, _run_tutorial_blocks(pairs)), key=lambda p: -p[0][1].line):
        start = expected.line - 1                             # the output block's first code line (0-based)
        end = start + (len(expected.code.split("\n")) if expected.code else 0)
        lines[start:end] = out.rstrip("\n").split("\n")
    open(CHAPTER, "w", encoding="utf-8").write("\n".join(lines))
    print(f"updated {len(pairs)} output blocks in {CHAPTER}")


# ---- loading ONNX's LSTM and GRU ----------------------------------------------------------------------------
@pytest.mark.parametrize("name, build", RECURRENT, ids=[c[0] for c in RECURRENT])
def test_exported_lstm_and_gru_load_back_and_predict_the_same(name, build, tmp_path):
    model = build(axon.input((None, 7, 4)))
    params = _random_params(model)
    axon.onnx.export(model, params, tmp_path / "rnn.onnx")
    if name == "bidirectional_gru_add":                        # the exporter keeps the sequence time-major here
        with pytest.raises(ValueError, match=r"ReduceMean over axes \[0\]"):
            axon.onnx.load(tmp_path / "rnn.onnx")
        return
    loaded, loaded_params = axon.onnx.load(tmp_path / "rnn.onnx")
    assert {n.op for n in loaded.nodes()} & {"onnx_lstm", "onnx_gru"}
    x = _input((None, 7, 4), seed=3, batch=2)
    got, expected = axon.predict(loaded, loaded_params, x), axon.predict(model, params, x)
    got = list(got.values()) if isinstance(got, dict) else got
    for y, e in zip(*(v if isinstance(v, list) else [v] for v in (got, expected))):
        _close(y, e)


def _recurrent_file(tmp_path, op, direction="forward", layout=0, initial=False, seed=0, **attrs):
    """One ONNX LSTM/GRU node with random weights and biases, every output a graph output; T 5, B 3, F 4, H 3."""
    h, f = onnx.helper, onnx.TensorProto.FLOAT
    rng = np.random.default_rng(seed)
    g, nd, T, B, F, H = (4 if op == "LSTM" else 3), (2 if direction == "bidirectional" else 1), 5, 3, 4, 3
    inits = [onnx.numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.7, n)
             for n, s in (("W", (nd, g * H, F)), ("R", (nd, g * H, H)), ("B", (nd, 2 * g * H)))]
    state = [nd, "N", H] if layout == 0 else ["N", nd, H]
    names = ["X", "W", "R", "B"] + (["", "h0"] + (["c0"] if op == "LSTM" else []) if initial else [])
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = h.make_node(op, names, outs, hidden_size=H, direction=direction, layout=layout, **attrs)
    inputs = [h.make_tensor_value_info("X", f, [T, "N", F] if layout == 0 else ["N", T, F])]
    inputs += [h.make_tensor_value_info(n, f, state) for n in names[5:]]
    y_shape = [T, nd, "N", H] if layout == 0 else ["N", T, nd, H]
    outputs = [h.make_tensor_value_info(o, f, y_shape if o == "Y" else state) for o in outs]
    path = _file(tmp_path, [node], inputs, outputs, inits, opset=14)
    feeds = {"X": rng.standard_normal((T, B, F) if layout == 0 else (B, T, F)).astype(np.float32)}
    for n in names[5:]:
        feeds[n] = rng.standard_normal((nd, B, H) if layout == 0 else (B, nd, H)).astype(np.float32)
    return path, feeds


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
@pytest.mark.parametrize("direction, layout, initial", [("forward", 0, False), ("reverse", 1, True),
                                                        ("bidirectional", 0, True), ("bidirectional", 1, False)])
def test_onnx_lstm_and_gru_load_and_match_onnxruntime(op, direction, layout, initial, tmp_path):
    """ONNX's spec, as onnxruntime runs it (gates i o f c and z r h; every output; both layouts; initial states).

    onnxruntime runs layout 0 only: a layout-1 file is checked against the same weights in layout 0."""
    attrs = {"linear_before_reset": 1} if op == "GRU" else {}
    path, feeds = _recurrent_file(tmp_path, op, direction, layout, initial, **attrs)
    if layout == 0:
        expected = _run(path, feeds)
    else:
        path0, _ = _recurrent_file(tmp_path / "..", op, direction, 0, initial, **attrs)   # the same weights (seed)
        swapped = {k: v.transpose(1, 0, 2) for k, v in feeds.items()}                     # (B, T, F) -> (T, B, F)
        y, *last = _run(path0, swapped)
        expected = [y.transpose(2, 0, 1, 3)] + [v.transpose(1, 0, 2) for v in last]      # back to layout 1
    model, params = axon.onnx.load(path)
    got = axon.predict(model, params, feeds if len(feeds) > 1 else feeds["X"])
    got = list(got.values()) if isinstance(got, dict) else got
    assert len(got) == len(expected)
    for y, e in zip(got, expected):
        assert y.shape == e.shape
        _close(y, e)


def test_recurrent_ops_without_axon_form_are_listed(tmp_path):
    path, _ = _recurrent_file(tmp_path, "GRU")                          # linear_before_reset=0, ONNX's default
    with pytest.raises(ValueError, match="linear_before_reset=0"):
        axon.onnx.load(path)
    path, _ = _recurrent_file(tmp_path, "LSTM", clip=3.0)
    with pytest.raises(ValueError, match="clip"):
        axon.onnx.load(path)
    path, _ = _recurrent_file(tmp_path, "LSTM", activations=["Sigmoid", "Relu", "Tanh"])
    with pytest.raises(ValueError, match="activations"):
        axon.onnx.load(path)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_pytorch_exported_lstm_and_gru_load_and_match(kind, batch_first, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = getattr(torch.nn, kind)(4, 3, batch_first=batch_first).eval()
    x = torch.randn((2, 5, 4) if batch_first else (5, 2, 4))
    path = tmp_path / "rnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), path, dynamo=False, input_names=["x"])
    model, params = axon.onnx.load(path)
    with torch.no_grad():
        expected = module(x)
    expected = [expected[0].numpy()] + [t.numpy() for t in (expected[1] if kind == "LSTM" else (expected[1],))]
    got = axon.predict(model, params, x.numpy())
    got = list(got.values()) if isinstance(got, dict) else [got]
    assert len(got) == len(expected)
    for y, e in zip(got, expected):
        _close(y, e)
