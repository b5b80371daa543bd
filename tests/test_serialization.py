"""axon.save/load: models, params and trees in one safetensors file, atomically, and params checked against models.

The attacks on the loader (corrupt, truncated, crafted files) are in test_serialization_attacks.py.
"""
import os
from typing import NamedTuple

import numpy as np
import pytest

import axon
from axon import registry, serialization
from axon.autograd import Tensor

safetensors_numpy = pytest.importorskip("safetensors.numpy")


class Moments(NamedTuple):
    count: np.ndarray
    mu: dict


class Empty(NamedTuple):
    pass


@pytest.fixture
def registered():
    """Register objects for one test, and forget them after it (as a fresh process would)."""
    names = []

    def add(name, obj):
        axon.register(name, obj)
        names.append(name)
    yield add
    for name in names:
        obj = registry._by_name.pop(name)
        registry._by_id.pop(id(obj), None)


def _same(a, b):
    """Deep equality that also compares types and dtypes."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and np.shape(a) == np.shape(b)
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b


# ---- trees ------------------------------------------------------------------------------------------
def test_tree_round_trip_keeps_structure_types_and_dtypes(tmp_path, rng, registered):
    registered("test.Moments", Moments)
    registered("test.Empty", Empty)
    tree = {
        "dense_0": {"kernel": rng.standard_normal((3, 5)).astype(np.float32), "bias": np.zeros(5, np.float64)},
        "opt": (Moments(np.array(7, np.int32), {"w": np.arange(6, dtype=np.int64).reshape(2, 3)}), Empty(), ()),
        "history": {"loss": [0.5, 0.25, float("nan")], "acc": []},
        "ints": {3: "three", 0: None},                       # int keys, str and None leaves, order kept
        "flags": [True, False, np.bool_(True)],
        "scalar": np.float32(1.5), "big": 2 ** 70, "neg_inf": float("-inf"),
        "empty": {}, "u8": np.arange(4, dtype=np.uint8),
        "f16": np.ones((2, 0), np.float16), "strided": np.arange(10.0)[::3], "big_endian": np.arange(3, dtype=">i4"),
        "a.b": np.ones(1), "a": {"b": np.zeros(1)},          # the same tensor name twice: both kept
    }
    path = tmp_path / "tree.safetensors"
    serialization.save(path, tree)
    back = serialization.load(path)
    tree["big_endian"] = tree["big_endian"].astype("<i4")   # stored little-endian, as safetensors is
    _same(tree, back)
    assert back["u8"].flags.writeable                        # arrays can be updated in place


def test_unsupported_leaves_and_unregistered_namedtuples_fail_before_writing(tmp_path):
    path = tmp_path / "ckpt"                                   # no suffix: none is added
    serialization.save(path, {"a": np.ones(3)})
    with pytest.raises(TypeError, match=r"cannot save a object at 'a\.b'"):
        serialization.save(path, {"a": {"b": object()}})
    with pytest.raises(TypeError, match="only numeric arrays"):
        serialization.save(path, {"a": np.array(["x"])})
    with pytest.raises(TypeError, match="complex64"):
        serialization.save(path, {"a": np.array([1j], np.complex64)})
    with pytest.raises(TypeError, match=r"NamedTuple Moments at 'm' is not one of axon's.*axon.register\('Moments'"):
        serialization.save(path, {"m": Moments(np.ones(1), {})})
    with pytest.raises(TypeError, match="dict keys must be str or int"):
        serialization.save(path, {(1, 2): np.ones(1)})
    deep = []
    for _ in range(serialization.MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(ValueError, match="nests deeper than"):
        serialization.save(path, deep)
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]           # the old file is intact, no temp file left
    np.testing.assert_array_equal(serialization.load(path)["a"], np.ones(3))


def test_axon_states_round_trip_without_registering(tmp_path):
    opt = axon.optimizers.adamw(0.01)
    params = {"w": np.ones((2, 3), np.float32)}
    state = opt.init(params)
    serialization.save(tmp_path / "s.safetensors", state)
    back = serialization.load(tmp_path / "s.safetensors")
    assert [type(s) for s in back] == [type(s) for s in state]
    _same(state, back)


def test_tensor_leaves_are_saved_as_arrays_and_numpy_scalars_keep_their_dtype(tmp_path):
    path = tmp_path / "t.safetensors"
    serialization.save(path, {"w": Tensor(np.ones((2, 2), np.float32), requires_grad=True), "f64": np.float64(1.5),
                              "f32": np.float32(2.0), "i64": np.int64(3), "py": 2.5, "n": 4})
    back = serialization.load(path)
    assert type(back["w"]) is np.ndarray and back["w"].dtype == np.float32
    assert type(back["f64"]) is np.float64 and type(back["f32"]) is np.float32 and type(back["i64"]) is np.int64
    assert type(back["py"]) is float and type(back["n"]) is int


def test_other_safetensors_readers_read_the_weights(tmp_path, rng):
    model = axon.input((None, 4)).dense(3, name="hidden").relu().dense(2)
    params = axon.init(model, seed=3)
    opt_state = axon.optimizers.adam(0.1).init(params)
    path = tmp_path / "m.safetensors"
    axon.save(path, model, params, opt_state)
    weights = safetensors_numpy.load_file(str(path))
    np.testing.assert_array_equal(weights["hidden.kernel"], params["hidden"]["kernel"])
    np.testing.assert_array_equal(weights["dense_0.bias"], params["dense_0"]["bias"])
    assert any(k.startswith("opt_state.") for k in weights)
    # and axon reads a file safetensors wrote itself, given axon's metadata
    from safetensors import safe_open
    with safe_open(str(path), framework="np") as f:
        metadata, arrays = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    again = tmp_path / "again.safetensors"
    safetensors_numpy.save_file(arrays, str(again), metadata=metadata)
    loaded = axon.load(again)
    _same(params, loaded.params)


# ---- models -----------------------------------------------------------------------------------------
def _every_builder_model():
    x = axon.input((None, 8, 8, 3), name="img")
    h = x.conv(4, kernel_size=3, padding="same", activation="relu").batch_norm().max_pool(kernel_size=2)
    d = h.depthwise_conv(2, kernel_size=3).separable_conv2d(1, kernel_size=(3, 1), padding="same", use_bias=False)
    t = h.conv_transpose(8, kernel_size=2, strides=1, name="up").blur_pool().avg_pool(kernel_size=2, strides=1)
    t = t.pad([(1, 0), (0, 1)], value=0.5).resize((4, 4)).group_norm(num_groups=2).instance_norm()
    f = d.flatten().dense(6, activation="gelu", kernel_initializer="he_normal")
    g = t.global_avg_pool().dense(6, use_bias=False).rms_norm()
    s = (f + g) * f - g
    s = axon.concatenate([s, f]).dropout(0.2).layer_norm().reshape((3, 4)).transpose((1, 0)).flatten()
    s = axon.bilinear(s, f, 3) + axon.constant(np.arange(3, dtype=np.float32))
    tokens = axon.input((None, 5), name="tokens")
    e = tokens.embedding(10, 3).global_max_pool().leaky_relu(alpha=0.2)
    volume = axon.input((None, 6, 6, 6, 2), name="volume")
    v = volume.separable_conv3d(1, kernel_size=3).spatial_dropout(0.1)
    v = v.feature_alpha_dropout(0.1).global_lp_pool(norm=2).alpha_dropout(0.1)           # (None, 2)
    p = h.lp_pool(norm=2, kernel_size=2).adaptive_max_pool((1, 1)).adaptive_avg_pool((1, 1))
    p = p.adaptive_lp_pool((1, 1), norm=3).global_max_pool().activation("tanh")          # (None, 4)
    q = axon.concatenate([v, p]).dense(3)
    # sequences: a recurrent layer is one (seq, carry) node and two picker nodes
    words = axon.input((None, 6), name="words")
    m = words.mask(0)
    w = words.embedding(10, 4)                                                      # (None, 6, 4)
    r, carry = w.lstm(5, mask=m)
    r, _ = w.lstm(5, carry=carry, reverse=True, unroll="static", use_bias=False)    # an encoder-decoder
    r, (fw, bw) = axon.bidirectional(r, lambda s, m: s.gru(3, mask=m), merge="add", mask=m, name="bi")   # (None, 6, 3)
    a = r.transformer_block(num_heads=1, mlp_units=4, mask=m, dropout_rate=0.1, name="block")
    a = a.multi_head_attention(3, context=w, head_size=2, causal=True, use_bias=False)       # cross-attention
    c, _ = volume.conv_lstm(2, kernel_size=3, padding="valid", reverse=True)             # (None, 6, 4, 4, 2): steps along axis 1
    text = axon.concatenate([a.global_avg_pool(), fw, bw, c.global_max_pool().dense(3), carry[1]])   # carry[1]: h
    return axon.container({"probs": (s + e + q).softmax(), "pair": axon.container((s, s.relu6())), "text": text})


# builders made of other builders' nodes (no node of their own op), and the layer the model above names so
_COMPOSITES = {"bidirectional": "bi", "transformer_block": "block"}


def test_the_test_model_has_every_layer_of_axon():
    """A builder added to axon must be savable: add it to the model above (and, if its options are not
    its builder's arguments, teach axon.model.records._builder_args)."""
    from axon.model import builders
    model = _every_builder_model()
    ops = {n.op for n in model.nodes()}
    missing = set(builders.__all__) - set(builders.ACTIVATIONS) - {"activation"} - set(_COMPOSITES) - ops
    assert not missing, f"layers that test_a_model_round_trips_and_predicts_the_same does not save: {sorted(missing)}"
    assert set(_COMPOSITES.values()) <= set(model.names().values())
    assert {"seq", "carry", "item", "reverse"} <= ops         # recurrent pickers, carry[1], bidirectional's reversal


def test_a_model_round_trips_and_predicts_the_same(tmp_path, rng):
    model = axon.freeze(_every_builder_model(), ["up"])
    params = axon.init(model, seed=1)
    path = tmp_path / "model.safetensors"
    axon.save(path, model, params)
    loaded = axon.load(path)
    assert isinstance(loaded, serialization.Saved) and loaded.opt_state is None
    back, back_params, _ = loaded
    assert [(n.op, n.name, n.shape, dict(n.params)) for n in back.nodes()] == \
           [(n.op, n.name, n.shape, dict(n.params)) for n in model.nodes()]   # frozen flags, initializers kept
    assert back.names() != {} and list(back.names().values()) == list(model.names().values())
    inputs = {"img": rng.standard_normal((2, 8, 8, 3)).astype(np.float32),
              "tokens": rng.integers(0, 10, (2, 5)).astype(np.float32),
              "volume": rng.standard_normal((2, 6, 6, 6, 2)).astype(np.float32),
              "words": np.array([[3, 1, 4, 1, 5, 0], [9, 2, 6, 0, 0, 0]])}   # 0 ends a sentence: masked
    _same(axon.predict(model, params, inputs), axon.predict(back, back_params, inputs))
    _same(axon.init(model, seed=4), axon.init(back, seed=4))   # the saved initializers give the same params
    assert axon.count_params(back) == axon.count_params(model)


def test_optimizer_state_is_saved_with_the_model(tmp_path):
    model = axon.input((None, 3)).dense(2)
    s = axon.training.step(model, "mean_squared_error", axon.optimizers.adam(0.1))
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)
    state = axon.training.train(s, x, y, epochs=2, batch_size=2, verbose=0)
    axon.save(tmp_path / "m.safetensors", model, state.params, state.opt_state)
    _, params, opt_state = axon.load(tmp_path / "m.safetensors")
    _same(state.opt_state, opt_state)
    _same(state.params, params)


def test_custom_functions_are_saved_by_their_registered_name(tmp_path, registered):
    def scaled(x, w, factor):
        return x @ w * factor

    def double(t):
        return t * 2

    x = axon.input((None, 3))
    model = axon.layer(scaled, x, params={"w": axon.param((3, 2))}, name="proj", factor=0.5)
    model = axon.nx(model, double).activation(double)
    params = axon.init(model)
    path = tmp_path / "custom.safetensors"
    with pytest.raises(TypeError, match=r"layer 'proj' \(op 'custom'\) is the function 'scaled'.*axon.register\('scaled', fn\)"):
        axon.save(path, model, params)
    assert not path.exists()
    registered("test.scaled", scaled)
    registered("test.double", double)
    axon.save(path, model, params)
    back, back_params, _ = axon.load(path)
    xs = np.ones((2, 3), np.float32)
    _same(axon.predict(model, params, xs), axon.predict(back, back_params, xs))
    # A layer named like a builder but computing with its own code is not taken for the builder.
    def affine(x, kernel, bias):
        return x @ kernel * 2 + bias

    fake = axon.layer(affine, x, params={"kernel": axon.param((3, 2)), "bias": axon.param((2,))}, op_name="dense")
    with pytest.raises(TypeError, match=r"op 'dense'\) does not rebuild .* axon.register\(name, fn\)"):
        axon.save(path, fake, axon.init(fake))
    registered("test.affine", affine)
    axon.save(path, fake, axon.init(fake))
    back, back_params, _ = axon.load(path)
    assert back.fn is affine
    _same(axon.predict(fake, back_params, xs), axon.predict(back, back_params, xs))


def test_loading_a_custom_function_that_is_not_registered_says_how(tmp_path, registered):
    def triple(t):
        return t * 3

    registered("test.triple", triple)
    model = axon.nx(axon.input((None, 2)), triple)
    axon.save(tmp_path / "c.safetensors", model, {})
    registry._by_name.pop("test.triple")                        # a new program that did not register it
    with pytest.raises(axon.FormatError, match=r"c.safetensors.*'test.triple', which is not registered.*axon.register"):
        axon.load(tmp_path / "c.safetensors")
    registry._by_name["test.triple"] = triple


def test_register_refuses_clashes_and_takes_a_redefinition(registered):
    def f(t):
        return t

    registered("test.f", f)
    with pytest.raises(ValueError, match="already registered"):
        axon.register("test.f", print)
    with pytest.raises(ValueError, match="already registered as 'test.f'"):
        axon.register("test.other", f)
    with pytest.raises(ValueError, match="without ':'"):
        axon.register("os:system", f)

    def f(t):                                                 # the same function defined again (a notebook cell)
        return t * 1
    axon.register("test.f", f)
    assert registry.lookup("test.f") is f and registry.name_of(f) == "test.f"


def test_save_checks_its_arguments(tmp_path):
    a, b = axon.input((None, 4)).dense(5), axon.input((None, 4)).dense(3)
    with pytest.raises(ValueError, match=r"layer 'dense_0' param 'kernel' has shape \(4, 5\), the model expects \(4, 3\)"):
        axon.save(tmp_path / "m.safetensors", b, axon.init(a))
    with pytest.raises(TypeError, match="with its params"):
        axon.save(tmp_path / "m.safetensors", b)
    with pytest.raises(TypeError, match="save.path, tree."):
        axon.save(tmp_path / "m.safetensors", {"w": np.ones(1)}, {"w": np.ones(1)})
    assert os.listdir(tmp_path) == []


# ---- params checked against the model -----------------------------------------------------------------
def test_predict_apply_and_split_check_params_against_the_model():
    a, b = axon.input((None, 4)).dense(5), axon.input((None, 4)).dense(3)
    x = np.ones((2, 4), np.float32)
    for call in (lambda: b.predict(a.init(), x), lambda: axon.apply(b, a.init(), x), lambda: axon.split(b, a.init())):
        with pytest.raises(ValueError, match=r"layer 'dense_0' param 'kernel' has shape \(4, 5\), the model expects \(4, 3\)"):
            call()
    params = b.init()
    params["dense_0"]["kernel"] = np.ones((4, 7), np.float32)    # once reported as a bad bias
    with pytest.raises(ValueError, match=r"param 'kernel' has shape \(4, 7\)"):
        b.predict(params, x)
    with pytest.raises(ValueError, match=r"layer 'dense_0' has params \['kernel'\], the model expects \['bias', 'kernel'\]"):
        b.predict({"dense_0": {"kernel": np.ones((4, 3), np.float32)}}, x)
    with pytest.raises(ValueError, match="no params for layer 'dense_0'"):
        axon.model.run.check_params(b, {"other": {}})


# ---- files ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_writes_are_atomic_with_the_umask_mode(tmp_path, umask, monkeypatch):
    old = os.umask(umask)
    try:
        serialization.save(tmp_path / "w.safetensors", {"w": np.ones(2)})
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "w.safetensors").st_mode & 0o777 == 0o666 & ~umask
    fsynced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsynced.append(os.path.isdir(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    serialization.save(tmp_path / "w.safetensors", {"w": np.zeros(2)})
    assert fsynced == [False, True] or os.name != "posix" or not os.path.isdir("/proc/self/fd")   # file, then folder

    def fail(f):
        f.write(b"half")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError, match="disk full"):
        serialization.atomic_write(tmp_path / "w.safetensors", fail)
    assert os.listdir(tmp_path) == ["w.safetensors"]
    np.testing.assert_array_equal(serialization.load(tmp_path / "w.safetensors")["w"], np.zeros(2))
    with pytest.raises(IsADirectoryError, match="is a directory"):
        serialization.save(tmp_path, {"w": np.ones(1)})


def test_missing_foreign_and_newer_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        serialization.load(tmp_path / "nope.safetensors")
    foreign = tmp_path / "foreign.safetensors"
    safetensors_numpy.save_file({"w": np.ones(2)}, str(foreign))
    with pytest.raises(axon.FormatError, match="foreign.safetensors.*not a file written by axon.save"):
        serialization.load(foreign)
    with pytest.raises(axon.FormatError, match="is a directory"):
        serialization.load(tmp_path)
