"""axon.load against hostile files: corrupt, truncated, forged (with a correct sha256), foreign.

Each load returns exactly what was saved or raises axon.FormatError: never another exception, never an
import, never an allocation much larger than the file. The property tests (hypothesis) flip bytes at
random offsets, truncate files and forge metadata; the concrete attacks of issue 14 come first.
"""
import functools
import json
import sys
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import axon
from axon import serialization

hypothesis = pytest.importorskip("hypothesis")
safetensors_numpy = pytest.importorskip("safetensors.numpy")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# ---- files to attack, and how an attacker writes one ----------------------------------------------------
@functools.lru_cache(maxsize=None)
def _model_file() -> bytes:
    x = axon.input((None, 4, 4, 1))
    model = x.conv(2, kernel_size=3, activation="relu").batch_norm().flatten().dense(3, activation="softmax")
    model = model + axon.constant(np.ones(3, np.float32))
    params = axon.init(model, seed=0)
    opt_state = axon.optimizers.adamw(0.01).init(axon.split(model, params)[0])
    return _bytes_of(lambda p: axon.save(p, model, params, opt_state))


@functools.lru_cache(maxsize=None)
def _tree_file() -> bytes:
    state = axon.training.TrainState({"dense_0": {"kernel": np.ones((3, 2), np.float32)}},
                                     axon.optimizers.adam(0.1).init({"w": np.zeros(2)}), 2, 20,
                                     {"loss": [0.5, 0.25]}, 0, 1.0, {"checkpoint": {"best": 0.25}})
    return _bytes_of(lambda p: axon.save(p, state))


def _bytes_of(write) -> bytes:
    path = Path(tempfile.mkdtemp()) / "file.safetensors"
    write(path)
    return path.read_bytes()


def _header(data: bytes) -> dict:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n])


def _forge(data: bytes, edit) -> bytes:
    """The file an attacker makes from ``data``: ``edit(metadata, arrays)``, then a correct sha256."""
    arrays = safetensors_numpy.load(data)
    meta = dict(_header(data)["__metadata__"])
    edit(meta, arrays)
    table = [(k, serialization._CODES[arrays[k].dtype], arrays[k].shape, np.ascontiguousarray(arrays[k]))
             for k in sorted(arrays)]
    meta["sha256"] = serialization._digest(meta, table)
    return safetensors_numpy.save(arrays, metadata=meta)


def _raw(header: dict, data: bytes = b"") -> bytes:
    """A file with any header at all (what safetensors' own writer would refuse)."""
    h = json.dumps(header).encode()
    return len(h).to_bytes(8, "little") + h + data


def _load(data: bytes, name="attack.safetensors"):
    """Load ``data`` from a file; check it raised FormatError (returned None) or loaded, importing nothing
    and allocating at most a few times the file's size. Returns the loaded value, or None."""
    path = Path(tempfile.mkdtemp()) / name
    path.write_bytes(data)
    modules = set(sys.modules)
    tracemalloc.start()
    try:
        return serialization.load(path)
    except axon.FormatError as e:
        assert name in str(e)                                  # the message names the file
        return None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert set(sys.modules) == modules, sorted(set(sys.modules) - modules)
        assert peak < 4 * len(data) + 2**21, f"loading a {len(data)}-byte file allocated {peak} bytes"


def _resaved(value, is_model: bool) -> bytes:
    return _bytes_of(lambda p: axon.save(p, *value) if is_model else axon.save(p, value))


# ---- the attacks of issue 14 ---------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ["numpy.f2py.__main__:X", "os:system", "axon.serialization:atomic_write",
                                 "axon.no_such_module:State", "TrainState"])
def test_a_state_class_named_by_the_file_is_never_imported_or_called(cls):
    sys.modules.pop("numpy.f2py.__main__", None)

    def edit(meta, arrays):
        meta["tree"] = meta["tree"].replace('"axon.training.steps:TrainState"', json.dumps(cls))
    forged = _forge(_tree_file(), edit)
    with pytest.raises(axon.FormatError, match="neither one of axon's nor registered"):
        serialization.load(_write(forged))
    assert "numpy.f2py.__main__" not in sys.modules


SHAPE_NULL = {"t": "none"}                                   # no recorded shape: would mean "run the layer"


@pytest.mark.parametrize("node, field, value", [
    (2, "op", "numpy.f2py.__main__:X"), (2, "op", "os.system"), (2, "fn", "os:system"), (2, "op", "activation"),
    (2, "op", "_node"), (1, "initializer_fn", "os:system"), (1, "shape", SHAPE_NULL), (2, "parents", [5]),
    (1, "params", {"kernel": {"shape": [10**15, 10**15], "kind": "param", "frozen": False, "initializer": "zeros"}}),
    (0, "opts", {"t": "dict", "keys": ["shape"], "kids": [{"t": "tuple", "kids": [{"t": "int", "v": 10**12}] * 3}]}),
    (2, "opts", {"t": "dict", "keys": ["activation"], "kids": [{"t": "str", "v": "relu"}]}),
])
def test_an_op_or_function_named_by_the_file_resolves_only_through_axon(node, field, value):
    def edit(meta, arrays):
        records = json.loads(meta["model"])
        if field == "initializer_fn":
            records[node]["params"]["kernel"][field] = value
        else:
            records[node][field] = value
        meta["model"] = json.dumps(records)
    assert _load(_forge(_model_file(), edit)) is None


@functools.lru_cache(maxsize=None)
def _sequence_file() -> bytes:
    x = axon.input((None, 4))
    r, carry = x.embedding(5, 4).lstm(2, mask=x.mask(0))
    model = axon.container((axon.bidirectional(r, lambda s: s.gru(2))[0].multi_head_attention(2), carry[1]))
    return _bytes_of(lambda p: axon.save(p, model, axon.init(model, seed=0)))


@pytest.mark.parametrize("op, field, value", [
    ("seq", "parents", [0]),                                  # a picker of a layer that is not recurrent
    ("lstm", "parents", [1, 2, 2]),                           # more inputs than has_mask/has_carry say
    ("reverse", "axis", 10**9), ("reverse", "axis", -1),       # a reversal along no step axis
    ("multi_head_attention", "num_heads", 0), ("multi_head_attention", "num_heads", 3),
    ("gru", "units", 3),                                       # the params recorded do not fit
    ("item", "index", 2), ("item", "parents", [0]),            # carry[2] of (c, h); an index into one array
])
def test_a_forged_sequence_layer_raises_format_error(op, field, value):
    assert isinstance(_load(_sequence_file()), serialization.Saved)   # the file as saved loads

    def edit(meta, arrays):
        records = json.loads(meta["model"])
        rec = next(r for r in records if r["op"] == op)
        if field == "parents":
            rec["parents"] = value
        else:                                                  # an option, as the file encodes it
            rec["opts"]["kids"][rec["opts"]["keys"].index(field)] = {"t": "int", "v": value}
        meta["model"] = json.dumps(records)
    assert _load(_forge(_sequence_file(), edit)) is None


def test_deep_nesting_huge_sizes_and_foreign_files_raise_format_errors(tmp_path):
    deep = '{"t": "list", "kids": [' * 3000 + ']}' * 3000
    assert _load(_forge(_tree_file(), lambda meta, arrays: meta.update(tree=deep))) is None
    deep = '{"t": "list", "kids": [' * 100 + ']}' * 100      # parses, but deeper than MAX_DEPTH
    assert _load(_forge(_tree_file(), lambda meta, arrays: meta.update(tree=deep))) is None
    header = {"__metadata__": {"format": "axon", "format_version": "2", "content": "tree"},
              "w": {"dtype": "F32", "shape": [10**15], "data_offsets": [0, 4 * 10**15]}}
    bomb = _raw(header, b"\0" * 8)
    assert len(bomb) < 200 and _load(bomb) is None
    messages = {}
    for name, data in {"text.safetensors": b"just some text, more than eight bytes\n",
                       "array.npy": _bytes_of(lambda p: np.save(open(p, "wb"), np.ones(3))),
                       "old.npz": _bytes_of(lambda p: np.savez(open(p, "wb"), a0=np.ones(3))),
                       "empty.safetensors": b"", "short.safetensors": b"\x01\x02"}.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(axon.FormatError, match=name) as e:
            serialization.load(path)
        messages[name] = str(e.value)
    assert "not a safetensors file" in messages["text.safetensors"]
    assert ".npy file" in messages["array.npy"] and "zip archive" in messages["old.npz"]
    assert "too short" in messages["empty.safetensors"]


def test_a_flipped_byte_and_a_newer_version_are_named():
    data = bytearray(_model_file())
    data[len(data) - 5] ^= 0x10                                # in a tensor
    with pytest.raises(axon.FormatError, match="does not match its sha256"):
        serialization.load(_write(bytes(data)))
    newer = _forge(_model_file(), lambda meta, arrays: meta.update(format_version="3"))
    with pytest.raises(axon.FormatError, match="format version 3, newer than this axon reads.*upgrade axon"):
        serialization.load(_write(newer))


def test_params_that_do_not_fit_the_saved_model_are_refused():
    def edit(meta, arrays):
        arrays["dense_0.kernel"] = np.zeros((8, 5), np.float32)      # the model's dense_0 has a (8, 3) kernel
    forged = _forge(_model_file(), edit)
    with pytest.raises(axon.FormatError, match="does not load.*dense_0.*kernel.*8"):
        serialization.load(_write(forged))


def test_a_checkpoint_path_that_is_a_directory_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        axon.training.checkpoint(tmp_path)
    (tmp_path / "ckpt.best.safetensors").mkdir()
    with pytest.raises(ValueError, match="ckpt.best.safetensors' is a directory"):
        axon.training.checkpoint(tmp_path / "ckpt.safetensors")


def test_resuming_with_another_models_state_names_the_layer_before_training():
    x, y = np.ones((8, 4), np.float32), np.eye(2, dtype=np.float32)[[0, 1] * 4]
    a = axon.training.step(axon.input((None, 4)).dense(5).dense(2), "mean_squared_error", axon.optimizers.sgd(0.1))
    b = axon.training.step(axon.input((None, 4)).dense(3).dense(2), "mean_squared_error", axon.optimizers.sgd(0.1))
    state = axon.training.train(a, x, y, epochs=1, batch_size=4, verbose=0)
    epochs = []
    with pytest.raises(ValueError, match=r"does not fit.*layer 'dense_0' param 'kernel' has shape \(4, 5\)"):
        axon.training.train(b, x, y, epochs=2, batch_size=4, verbose=0, state=state,
                            callbacks=[lambda s: epochs.append(s.epoch)])
    assert epochs == []
    adam = axon.training.step(axon.input((None, 4)).dense(5).dense(2), "mean_squared_error", axon.optimizers.adam(0.1))
    with pytest.raises(ValueError, match="does not fit this step.*opt_state"):
        axon.training.train(adam, x, y, epochs=2, batch_size=4, verbose=0, state=state)


def _write(data: bytes, name="attack.safetensors") -> Path:
    path = Path(tempfile.mkdtemp()) / name
    path.write_bytes(data)
    return path


# ---- properties -------------------------------------------------------------------------------------
FILES = {"model": _model_file, "tree": _tree_file}


@SETTINGS
@given(kind=st.sampled_from(sorted(FILES)), where=st.floats(0, 1, exclude_max=True), xor=st.integers(1, 255))
def test_a_flipped_byte_anywhere_loads_the_same_data_or_raises_format_error(kind, where, xor):
    data = bytearray(FILES[kind]())
    header_end = 8 + int.from_bytes(data[:8], "little")       # half the flips land in the header, half anywhere
    i = int(where * 2 * header_end) if where < 0.5 else int(where * len(data))
    data[i] ^= xor
    value = _load(bytes(data))
    if value is not None:
        assert _resaved(value, kind == "model") == FILES[kind]()


@SETTINGS
@given(kind=st.sampled_from(sorted(FILES)), where=st.floats(0, 1, exclude_max=True))
def test_a_truncated_file_raises_format_error(kind, where):
    data = FILES[kind]()
    assert _load(data[:int(where * len(data))]) is None


# Hostile values for any place in the JSON: huge and negative sizes, names of code, deep nesting, wrong types.
HOSTILE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.sampled_from([10**15, -1, 2**64, 0]),
              st.floats(allow_nan=True), st.text(max_size=8),
              st.sampled_from(["numpy.f2py.__main__:X", "os:system", "builtins:eval", "dense", "array", "namedtuple",
                               "axon.training.steps:TrainState", "dense_0.kernel", "F32", "state"])),
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.sampled_from(
        ["t", "k", "v", "kids", "keys", "fields", "class", "shape", "op", "fn", "parents", "params", "opts", "kind",
         "scalar", "pack", "initializer", "initializer_fn"]), kids, max_size=4)),
    max_leaves=12)


def _replace_somewhere(doc, path, value):
    """``doc`` with the node reached by following ``path`` (indices, wrapped around) replaced by ``value``."""
    if not path or not isinstance(doc, (list, dict)) or not doc:
        return value
    keys = list(range(len(doc))) if isinstance(doc, list) else list(doc)
    k = keys[path[0] % len(keys)]
    doc[k] = _replace_somewhere(doc[k], path[1:], value)
    return doc


@SETTINGS
@given(kind=st.sampled_from(sorted(FILES)), part=st.integers(0, 2), path=st.lists(st.integers(0, 50), min_size=2, max_size=10),
       value=HOSTILE)
def test_forged_metadata_loads_or_raises_format_error(kind, part, path, value):
    def edit(meta, arrays):
        keys = ["model", "params", "opt_state"] if kind == "model" else ["tree", "tree", "content"]
        key = keys[part]
        doc = json.loads(meta[key]) if key != "content" else meta[key]
        meta[key] = json.dumps(_replace_somewhere(doc, path, value)) if key != "content" else str(value)
    _load(_forge(FILES[kind](), edit))                         # loads (a forged file can be valid) or FormatError


SHAPES = st.lists(st.one_of(st.integers(0, 5), st.sampled_from([10**15, 2**62, -1])), max_size=4)


@SETTINGS
@given(shape=SHAPES, dtype=st.sampled_from(["F32", "F64", "BOOL", "C64", "BF16", "X"]),
       offsets=st.lists(st.integers(-1, 2**62), min_size=0, max_size=3), data=st.binary(max_size=64))
def test_a_forged_tensor_table_never_allocates_what_it_claims(shape, dtype, offsets, data):
    meta = {"format": "axon", "format_version": "2", "content": "tree", "tree": '{"t": "array", "k": "w"}'}
    header = {"__metadata__": meta, "w": {"dtype": dtype, "shape": shape, "data_offsets": offsets}}
    _load(_raw(header, data))
