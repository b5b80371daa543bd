"""axon.serialization: trees of arrays to .npz and back, atomically, with no pickle."""
import os
import zipfile
from typing import NamedTuple

import numpy as np
import pytest

from axon import serialization
from axon.autograd import Tensor


class Moments(NamedTuple):
    count: np.ndarray
    mu: dict


class Empty(NamedTuple):
    pass


class NotATuple:
    """A class with the right name shape but no NamedTuple: must never be instantiated by load."""
    _fields = ("a",)

    def __init__(self, *args):
        raise AssertionError("load instantiated a non-NamedTuple class")


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


def test_round_trip_keeps_structure_types_and_dtypes(tmp_path, rng):
    tree = {
        "dense_0": {"kernel": rng.standard_normal((3, 5)).astype(np.float32), "bias": np.zeros(5, np.float64)},
        "opt": (Moments(np.array(7, np.int32), {"w": np.arange(6, dtype=np.int64).reshape(2, 3)}), Empty(), ()),
        "history": {"loss": [0.5, 0.25, float("nan")], "acc": []},
        "ints": {3: "three", 0: None},                       # int keys, str and None leaves, order kept
        "flags": [True, False, np.bool_(True)],
        "scalar": np.float32(1.5), "big": 2 ** 70, "neg_inf": float("-inf"),
        "empty": {}, "u8": np.arange(4, dtype=np.uint8), "complex": np.array([1 + 2j]),
    }
    path = tmp_path / "tree.npz"
    serialization.save(path, tree)
    _same(tree, serialization.load(path))


def test_namedtuple_class_is_restored_and_stand_in_is_made_for_unknown_ones(tmp_path):
    path = tmp_path / "s.npz"
    serialization.save(path, Moments(np.array(1), {"w": np.ones(2)}))
    back = serialization.load(path)
    assert type(back) is Moments and back.count == 1
    # A record whose class cannot be found (or is not a NamedTuple) comes back as a look-alike namedtuple.
    fake = Moments(np.array(2), {})
    serialization.save(path, fake)
    with np.load(path) as z:
        entries = dict(z)
    structure = bytes(entries["__structure__"]).decode()
    structure = structure.replace(f"{Moments.__module__}:Moments", f"{Moments.__module__}:NotATuple")
    assert "NotATuple" in structure
    entries["__structure__"] = np.frombuffer(structure.encode(), np.uint8)
    np.savez(path, **entries)
    back = serialization.load(path)
    assert type(back) is not NotATuple and type(back) is not Moments
    assert back._fields == ("count", "mu") and back.count == 2


def test_tensor_leaves_are_saved_as_arrays(tmp_path):
    path = tmp_path / "t.npz"
    serialization.save(path, {"w": Tensor(np.ones((2, 2), np.float32), requires_grad=True)})
    w = serialization.load(path)["w"]
    assert type(w) is np.ndarray and w.dtype == np.float32


def test_save_is_atomic_and_keeps_the_exact_path(tmp_path):
    path = tmp_path / "ckpt"                                   # no suffix: none is added
    serialization.save(path, {"a": np.ones(3)})
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]
    # An unsaveable leaf fails before anything is written: the old file is intact, no temp file left.
    with pytest.raises(TypeError, match=r"cannot save a object at 'a\.b'"):
        serialization.save(path, {"a": {"b": object()}})
    with pytest.raises(TypeError, match="only numeric arrays"):
        serialization.save(path, {"a": np.array(["x"], dtype=object)})
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]
    np.testing.assert_array_equal(serialization.load(path)["a"], np.ones(3))


def test_bad_dict_key_is_rejected(tmp_path):
    with pytest.raises(TypeError, match="dict keys must be str or int"):
        serialization.save(tmp_path / "x.npz", {(1, 2): np.ones(1)})


def test_missing_corrupt_truncated_and_foreign_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        serialization.load(tmp_path / "nope.npz")
    good = tmp_path / "good.npz"
    serialization.save(good, {"w": np.arange(1000.0)})
    data = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.npz"):
        serialization.load(truncated)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all" * 10)
    with pytest.raises(ValueError, match="garbage.npz"):
        serialization.load(garbage)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, w=np.ones(2))
    with pytest.raises(ValueError, match="foreign.npz.*not one written by axon"):
        serialization.load(foreign)
    # A structure that points at a missing array.
    broken = tmp_path / "broken.npz"
    with zipfile.ZipFile(good) as z, zipfile.ZipFile(broken, "w") as out:
        out.writestr("__structure__.npy", z.read("__structure__.npy"))
    with pytest.raises(ValueError, match=r"broken.npz.*corrupt.*'a0'"):
        serialization.load(broken)


def test_pickled_arrays_are_never_loaded(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, __structure__=np.frombuffer(b'{"format": "axon", "version": 1, "tree": {"t": "array", "i": 0}}',
                                               np.uint8), a0=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled.npz"):
        serialization.load(path)


def test_numpy_scalars_keep_their_dtype(tmp_path):
    """np.float64 is a subclass of float: it must come back as np.float64, not a Python float."""
    from axon.serialization import load, save
    path = tmp_path / "scalars.npz"
    save(path, {"f64": np.float64(1.5), "f32": np.float32(2.0), "i64": np.int64(3), "py": 2.5, "n": 4})
    back = load(path)
    assert type(back["f64"]) is np.float64 and type(back["f32"]) is np.float32 and type(back["i64"]) is np.int64
    assert type(back["py"]) is float and type(back["n"]) is int
