"""Save and load trees of arrays (params, optimizer states, training states) without pickle.

A file is a numpy ``.npz`` archive: one entry per array leaf (``a0``, ``a1``, ...) plus
``__structure__``, the tree's shape written as JSON: which containers (dict, list, tuple,
NamedTuple), in which order, with which keys, and where each leaf goes. Numbers, strings, booleans
and ``None`` are kept in the JSON itself. Nothing is ever unpickled, so loading a file cannot run
code; a NamedTuple is rebuilt from its recorded ``module:qualname`` only when that name resolves to a
NamedTuple class in a module that is already imported (otherwise an equivalent ``collections.namedtuple``
is made from the recorded field names).

Writes are atomic: the archive goes to a temporary file in the same directory, then ``os.replace``
puts it in place, so a crash never leaves a half-written checkpoint behind.

>>> import numpy as np, tempfile, os
>>> tree = {"dense_0": {"kernel": np.ones((2, 3), np.float32)}, "step": 7, "history": [0.5, 0.25]}
>>> path = os.path.join(tempfile.mkdtemp(), "params.npz")
>>> save(path, tree)
>>> back = load(path)
>>> back["dense_0"]["kernel"].dtype, back["step"], back["history"]
(dtype('float32'), 7, [0.5, 0.25])
"""
from __future__ import annotations

import collections
import importlib
import json
import os
import sys
import tempfile
import zipfile

import numpy as np

from .autograd import Tensor
from .tree import _join, is_namedtuple

__all__ = ["save", "load", "atomic_write", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_STRUCTURE = "__structure__"


# ---- writing ------------------------------------------------------------------------------------
def _encode(x, arrays: list, path: str):
    """The JSON description of tree ``x``; array leaves are appended to ``arrays`` and referenced by index."""
    where = path or "<root>"
    if x is None:
        return {"t": "none"}
    if isinstance(x, bool):
        return {"t": "bool", "v": x}
    if isinstance(x, dict):
        keys = list(x.keys())
        for k in keys:
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"save: dict keys must be str or int, got {type(k).__name__} {k!r} at '{where}'")
        return {"t": "dict", "keys": keys, "kids": [_encode(x[k], arrays, _join(path, k)) for k in keys]}
    if is_namedtuple(x):
        cls = type(x)
        kids = [_encode(v, arrays, _join(path, f)) for f, v in zip(x._fields, x)]
        return {"t": "namedtuple", "class": f"{cls.__module__}:{cls.__qualname__}",
                "fields": list(x._fields), "kids": kids}
    if isinstance(x, (list, tuple)):
        kids = [_encode(v, arrays, _join(path, i)) for i, v in enumerate(x)]
        return {"t": "list" if isinstance(x, list) else "tuple", "kids": kids}
    if type(x) is int:                                         # Python numbers; numpy scalars (np.float64 is a
        return {"t": "int", "v": x}                            # float subclass) are kept as arrays, dtype and all
    if type(x) is float:
        return {"t": "float", "v": x}                          # JSON keeps a float exactly (repr round-trips)
    if isinstance(x, str):
        return {"t": "str", "v": x}
    data = x.data if isinstance(x, Tensor) else x              # a Tensor is saved as its array
    if isinstance(data, (np.ndarray, np.generic)):
        arr = np.asarray(data)
        if arr.dtype.kind not in "biufc":
            raise TypeError(f"save: only numeric arrays can be saved, got dtype {arr.dtype} at '{where}'")
        arrays.append(arr)
        node = {"t": "array", "i": len(arrays) - 1}
        if isinstance(data, np.generic):
            node["scalar"] = True                              # a numpy scalar comes back as one, not as a 0-d array
        return node
    raise TypeError(f"save: cannot save a {type(x).__name__} at '{where}'; a tree holds dicts, lists, tuples, "
                    f"NamedTuples, numpy arrays, numbers, strings and None")


def save(path, tree) -> None:
    """Write ``tree`` (nested dicts/lists/tuples/NamedTuples of arrays and numbers) to ``path``, atomically.

    The file is an ``.npz`` archive whatever its name (no suffix is added). The whole tree is checked
    before anything is written, so a TypeError leaves an existing file at ``path`` untouched.

    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> save(p, {"w": np.arange(3.0)})
    >>> load(p)["w"]
    array([0., 1., 2.])
    """
    path = os.fspath(path)
    arrays: list = []
    structure = {"format": "axon", "version": FORMAT_VERSION, "tree": _encode(tree, arrays, "")}
    blob = np.frombuffer(json.dumps(structure).encode("utf-8"), dtype=np.uint8)
    entries = {f"a{i}": a for i, a in enumerate(arrays)}
    entries[_STRUCTURE] = blob
    atomic_write(path, lambda f: np.savez(f, **entries))


def atomic_write(path, write, mode: str = "wb") -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it to ``path``.

    Readers see the old file or the new one, never half of one: the rename is atomic on POSIX and
    Windows. If ``write`` fails, the temporary file is removed and ``path`` is left as it was.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "note.txt")
    >>> atomic_write(p, lambda f: f.write("done\\n"), mode="w")
    >>> open(p).read(), [name for name in os.listdir(os.path.dirname(p)) if name != "note.txt"]
    ('done\\n', [])
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".axon-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": ""})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ---- reading ------------------------------------------------------------------------------------
def _namedtuple_class(name: str, fields: list):
    """The NamedTuple class recorded as ``module:qualname``, if it is one; else a stand-in with those fields.

    Only modules that are already imported (or that live in an already imported top-level package,
    such as ``axon.updates`` once ``axon`` is imported) are looked at, so loading never imports new code.
    """
    module_name, _, qualname = name.partition(":")
    module = sys.modules.get(module_name)
    if module is None and module_name.split(".")[0] in sys.modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            module = None
    cls = module
    for part in qualname.split(".") if module is not None else ():
        cls = getattr(cls, part, None)
    if (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")
            and list(cls._fields) == list(fields)):
        return cls
    typename = qualname.rsplit(".", 1)[-1]
    return collections.namedtuple(typename if typename.isidentifier() else "Record", fields)


class _Corrupt(Exception):
    """Internal: the structure and the arrays do not fit together."""


def _decode(node, archive, path: str):
    t = node.get("t") if isinstance(node, dict) else None
    if t == "none":
        return None
    if t in ("bool", "int", "float", "str"):
        return {"bool": bool, "int": int, "float": float, "str": str}[t](node["v"])
    if t == "dict":
        keys, kids = node["keys"], node["kids"]
        if len(keys) != len(kids):
            raise _Corrupt(f"dict at '{path or '<root>'}' has {len(keys)} keys but {len(kids)} values")
        return {k: _decode(v, archive, _join(path, k)) for k, v in zip(keys, kids)}
    if t in ("list", "tuple", "namedtuple"):
        names = node.get("fields") or range(len(node["kids"]))
        values = [_decode(v, archive, _join(path, n)) for n, v in zip(names, node["kids"])]
        if t == "list":
            return values
        if t == "tuple":
            return tuple(values)
        if len(node["fields"]) != len(values):
            raise _Corrupt(f"NamedTuple at '{path or '<root>'}' has {len(node['fields'])} fields "
                           f"but {len(values)} values")
        return _namedtuple_class(node["class"], node["fields"])(*values)
    if t == "array":
        key = f"a{int(node['i'])}"
        if key not in archive.files:
            raise _Corrupt(f"array '{key}' for '{path or '<root>'}' is missing")
        arr = archive[key]
        return arr[()] if node.get("scalar") else arr
    raise _Corrupt(f"unknown node {node!r:.80} at '{path or '<root>'}'")


def load(path):
    """Read a tree written by ``save``; a missing, corrupt or foreign file raises an error naming it.

    Arrays come back as numpy arrays with their saved dtypes; numbers, strings and ``None`` as they were.

    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "s.npz")
    >>> save(p, (1, [2.5, None], {"x": np.float32(3)}))
    >>> load(p)
    (1, [2.5, None], {'x': np.float32(3.0)})
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no such file: '{path}'")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if _STRUCTURE not in archive.files:
                raise ValueError(f"load: '{path}' is an .npz archive but not one written by axon.serialization.save "
                                 f"(it has no '{_STRUCTURE}' entry; entries: {archive.files[:5]})")
            structure = json.loads(archive[_STRUCTURE].tobytes().decode("utf-8"))
            if not isinstance(structure, dict) or structure.get("format") != "axon":
                raise ValueError(f"load: '{path}' does not hold an axon tree")
            if structure.get("version", 0) > FORMAT_VERSION:
                raise ValueError(f"load: '{path}' was written in format version {structure['version']}; "
                                 f"this axon reads up to version {FORMAT_VERSION}")
            return _decode(structure["tree"], archive, "")
    except ValueError as e:
        if str(e).startswith("load: "):
            raise
        raise ValueError(f"load: '{path}' is corrupt or truncated ({type(e).__name__}: {e})") from None
    except (_Corrupt, KeyError, TypeError) as e:
        raise ValueError(f"load: '{path}' is corrupt: {e}") from None
    except (zipfile.BadZipFile, EOFError, OSError, UnicodeDecodeError) as e:
        raise ValueError(f"load: '{path}' is not a readable axon file: it is corrupt, truncated or of "
                         f"another format ({type(e).__name__}: {e})") from None
