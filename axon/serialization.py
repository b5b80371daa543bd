"""Save and load models, params and training states: one safetensors file, and a loader no file can attack.

``save(path, model, params, opt_state=None)`` writes a model with its params (and optimizer state);
``load(path)`` gives back ``Saved(model, params, opt_state)``. ``save(path, tree)`` writes a plain tree
(params alone, a ``TrainState`` checkpoint) and ``load`` gives the tree back.

The file is a `safetensors <https://github.com/huggingface/safetensors>`_ file: an 8-byte length, a
JSON header, then the bytes of every array. Any safetensors reader reads the weights (params are
named ``layer.param``, e.g. ``dense_0.kernel``). axon's part lives in the header's ``__metadata__``
(strings only):

- ``format`` = ``"axon"``, ``format_version`` (a newer one than this axon knows is refused, saying so),
  ``content`` = ``"model"`` or ``"tree"``;
- ``model``: the graph as JSON records (op, options, param shapes and initializers, output shape, name;
  see ``axon.model.records``); ``params`` and ``opt_state`` (or ``tree``): the structure of each tree as
  JSON (dicts, lists, tuples, NamedTuples, numbers, strings, None), its arrays referred to by name;
- ``sha256``: of the header's contents (the tensor table and the other metadata) and of every
  tensor's bytes, in name order. A flipped bit anywhere is caught.

Loading imports nothing and calls nothing the file names: a layer's op resolves to one of axon's
builders, a NamedTuple to one of axon's state classes (``axon.registry``), anything else only to what
the program registered with ``register(name, fn)``; no layer runs while the graph is rebuilt. Every
size is checked against the file's length before anything is allocated, trees nest at most
``MAX_DEPTH`` deep, and anything wrong with a file (truncated, corrupt, tampered with, foreign, newer)
raises ``FormatError`` (a ValueError) naming the file and what is wrong.

Writes are atomic: the file is written to a temporary file in the same directory, flushed to disk,
renamed over ``path``, and the directory is flushed too, so a crash leaves the old file or the new one.

>>> import numpy as np, tempfile, os, axon
>>> model = axon.input((None, 3)).dense(2, activation="softmax")
>>> params = axon.init(model, seed=0)
>>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
>>> save(path, model, params)
>>> back = load(path)
>>> [n.op for n in back.model.nodes()], np.array_equal(back.params["dense_0"]["kernel"], params["dense_0"]["kernel"])
(['input', 'dense', 'softmax'], True)
>>> import safetensors.numpy                                 # any safetensors reader sees the weights
>>> sorted(safetensors.numpy.load_file(path))
['dense_0.bias', 'dense_0.kernel']
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from typing import Any, NamedTuple

import numpy as np

from . import registry
from .backend import is_host, to_host
from .autograd import Tensor
from .model import records
from .model.graph import Axon
from .model.run import check_params
from .registry import register
from .tree import _join, is_namedtuple

__all__ = ["save", "load", "Saved", "FormatError", "register", "atomic_write", "FORMAT_VERSION", "MAX_DEPTH"]

FORMAT_VERSION = 2                     # 1 was an .npz archive (axon 0.1), no longer read
MAX_DEPTH = 64                         # how deep a saved tree may nest
_MAX_HEADER = 100 * 2**20              # safetensors' own limit on the JSON header
_DTYPES = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "U16": np.uint16, "I16": np.int16, "U32": np.uint32,
           "I32": np.int32, "U64": np.uint64, "I64": np.int64, "F16": np.float16, "F32": np.float32,
           "F64": np.float64}             # the dtypes every safetensors version stores (complex ones: not all)
_CODES = {np.dtype(t): code for code, t in _DTYPES.items()}
_SCALARS = {"bool": (bool,), "int": (int,), "float": (float, int), "str": (str,)}   # JSON leaf: (type, accepted)


class FormatError(ValueError):
    """A file ``load`` cannot read: malformed, truncated, tampered with, foreign, or from a newer axon.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> _ = open(path, "w").write("not a model")
    >>> try:
    ...     load(path)
    ... except FormatError as e:
    ...     print(e)
    load: '...notes.txt' is not a safetensors file or is truncated: it starts with a header length of ... bytes, but 3 bytes follow
    """


class Saved(NamedTuple):
    """What ``load`` returns for a model file: ``model, params, opt_state = axon.load(path)``.

    >>> import axon, tempfile, os
    >>> model = axon.input((None, 2)).dense(1)
    >>> path = os.path.join(tempfile.mkdtemp(), "m.safetensors")
    >>> axon.save(path, model, axon.init(model), opt_state=None)
    >>> loaded = axon.load(path)
    >>> type(loaded).__name__, loaded.model.shape, loaded.opt_state
    ('Saved', (None, 1), None)
    """
    model: Axon
    params: dict
    opt_state: Any = None


class _Bad(Exception):
    """Internal: what is wrong with the file being loaded (``load`` adds the file's name)."""


# ---- trees to JSON and named arrays -------------------------------------------------------------------
class _Tensors:
    """The arrays of a file being written, each under a name of its own (its path in the tree)."""

    def __init__(self):
        self.arrays: dict = {}

    def add(self, arr: np.ndarray, path: str) -> str:
        base = path or "<root>"
        name, k = base, 1
        while name in self.arrays or name == "__metadata__":   # "a.b" in {"a": {"b"}} and in {"a.b"}: both kept
            name, k = f"{base}#{k}", k + 1
        self.arrays[name] = arr
        return name


class _Prefixed:
    """The arrays of one part of a file (``opt_state.*``, ``model.*``), added to the file's ``_Tensors``."""

    def __init__(self, tensors: _Tensors, prefix: str):
        self.tensors, self.prefix = tensors, prefix

    def add(self, arr, path):
        return self.tensors.add(arr, _join(self.prefix, path) if path else self.prefix)


def _encode(x, tensors: _Tensors, path: str, depth: int = 0):
    """The JSON description of tree ``x``; arrays go to ``tensors`` and are referred to by name."""
    where = path or "<root>"
    if depth > MAX_DEPTH:
        raise ValueError(f"save: the tree nests deeper than {MAX_DEPTH} levels at '{where}'")
    if x is None:
        return {"t": "none"}
    if isinstance(x, bool):
        return {"t": "bool", "v": x}
    if isinstance(x, dict):
        keys = list(x.keys())
        for k in keys:
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"save: dict keys must be str or int, got {type(k).__name__} {k!r} at '{where}'")
        return {"t": "dict", "keys": keys, "kids": [_encode(x[k], tensors, _join(path, k), depth + 1) for k in keys]}
    if is_namedtuple(x):
        cls = type(x)
        name = registry.namedtuple_name(cls)
        if name is None:
            raise TypeError(f"save: the NamedTuple {cls.__qualname__} at '{where}' is not one of axon's, so a file "
                            f"cannot name it; register it before saving and again before loading: "
                            f"axon.register({cls.__name__!r}, {cls.__name__})")
        kids = [_encode(v, tensors, _join(path, f), depth + 1) for f, v in zip(x._fields, x)]
        return {"t": "namedtuple", "class": name, "fields": list(x._fields), "kids": kids}
    if isinstance(x, (list, tuple)):
        kids = [_encode(v, tensors, _join(path, i), depth + 1) for i, v in enumerate(x)]
        return {"t": "list" if isinstance(x, list) else "tuple", "kids": kids}
    if type(x) is int:                                         # Python numbers; numpy scalars (np.float64 is a
        return {"t": "int", "v": x}                            # float subclass) are kept as arrays, dtype and all
    if type(x) is float:
        return {"t": "float", "v": x}                          # JSON keeps a float exactly (repr round-trips)
    if isinstance(x, str):
        return {"t": "str", "v": x}
    data = x.data if isinstance(x, Tensor) else x              # a Tensor is saved as its array
    if not is_host(data):                                      # a device array: its values, copied to the host
        data = to_host(data)
    if isinstance(data, (np.ndarray, np.generic)):
        arr = np.asarray(data)
        little = arr.dtype.newbyteorder("<")
        if little not in _CODES:
            raise TypeError(f"save: only numeric arrays can be saved ({', '.join(str(np.dtype(t)) for t in _DTYPES.values())}: "
                            f"the dtypes safetensors stores), got dtype {arr.dtype} at '{where}'")
        node = {"t": "array", "k": tensors.add(arr.astype(little, order="C", copy=False), path)}
        if isinstance(data, np.generic):
            node["scalar"] = True                              # a numpy scalar comes back as one, not as a 0-d array
        return node
    raise TypeError(f"save: cannot save a {type(x).__name__} at '{where}'; a tree holds dicts, lists, tuples, "
                    f"NamedTuples, numpy arrays, numbers, strings and None")


class _Reader:
    """The arrays of a file being loaded, and which of them the trees used (each exactly once)."""

    def __init__(self, tensors: dict):
        self.tensors, self.used = tensors, set()

    def decode(self, node, path: str, depth: int = 0):
        """The tree described by ``node`` (from ``_encode``); anything malformed raises ``_Bad``."""
        where = path or "<root>"
        if depth > MAX_DEPTH:
            raise _Bad(f"nests deeper than {MAX_DEPTH} levels at '{where}'")
        t = node.get("t") if isinstance(node, dict) else None
        if not isinstance(t, str):
            raise _Bad(f"has a malformed tree node at '{where}'")
        v = node.get("v")
        if t == "none":
            return None
        if t in _SCALARS and type(v) in _SCALARS[t]:
            return _SCALARS[t][0](v)
        if t in ("dict", "list", "tuple", "namedtuple"):
            return self._container(t, node, path, depth)
        if t == "array":
            return self._array(node, where)
        raise _Bad(f"has a malformed tree node at '{where}'")

    def _container(self, t: str, node: dict, path: str, depth: int):
        where = path or "<root>"
        kids = node.get("kids")
        names = node.get("keys") if t == "dict" else node.get("fields") if t == "namedtuple" else None
        if not isinstance(kids, list) or (names is None) != (t in ("list", "tuple")):
            raise _Bad(f"has a malformed {t} at '{where}'")
        if names is not None:                                  # dict keys, NamedTuple fields: one per kid, unique
            if not (isinstance(names, list) and len(names) == len(kids) and all(type(k) in (str, int) for k in names)
                    and len(set(map(repr, names))) == len(names)):
                raise _Bad(f"has a {t} with malformed keys at '{where}'")
        cls = None
        if t == "namedtuple":
            cls = registry.namedtuple_class(node.get("class"))
            if cls is None:
                raise _Bad(f"names the state class {node.get('class')!r:.80} at '{where}', which is neither one of "
                           f"axon's nor registered (a NamedTuple of your own: call axon.register(name, cls) before "
                           f"loading; loading never imports code)")
            if list(cls._fields) != names:
                raise _Bad(f"records fields {names!r:.80} for {cls.__name__} at '{where}', which has {list(cls._fields)}")
        labels = names if names is not None else range(len(kids))
        values = [self.decode(kid, _join(path, k), depth + 1) for k, kid in zip(labels, kids)]
        if t == "dict":
            return dict(zip(names, values))
        return values if t == "list" else tuple(values) if t == "tuple" else cls(*values)

    def _array(self, node: dict, where: str):
        name = node.get("k")
        if not isinstance(name, str) or name not in self.tensors or name in self.used:
            raise _Bad(f"refers to a missing (or already used) tensor {name!r:.80} at '{where}'")
        self.used.add(name)
        arr = self.tensors[name]
        if node.get("scalar"):
            if arr.ndim:
                raise _Bad(f"marks the tensor '{name}' of shape {arr.shape} as a scalar")
            return arr[()]                                     # a numpy scalar, as saved
        return arr


# ---- the file -----------------------------------------------------------------------------------------
def _digest(metadata: dict, table: list) -> str:
    """sha256 of the metadata (but itself), the tensor table, then each tensor's bytes: ``table`` is
    ``[(name, dtype code, shape, buffer)]`` in name order."""
    h = hashlib.sha256()
    head = {"metadata": {k: v for k, v in metadata.items() if k != "sha256"},
            "tensors": [[name, code, list(shape)] for name, code, shape, _ in table]}
    h.update(json.dumps(head, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    for *_, buf in table:
        h.update(buf)
    return h.hexdigest()


def _write(path: str, content: str, parts: dict, tensors: _Tensors) -> None:
    import safetensors.numpy

    metadata = {"format": "axon", "format_version": str(FORMAT_VERSION), "content": content}
    metadata.update({k: json.dumps(v, separators=(",", ":")) for k, v in parts.items()})
    arrays = tensors.arrays
    metadata["sha256"] = _digest(metadata, [(k, _CODES[arrays[k].dtype], arrays[k].shape, arrays[k])
                                            for k in sorted(arrays)])
    blob = safetensors.numpy.save(arrays, metadata=metadata)
    atomic_write(path, lambda f: f.write(blob))


def _json(text, what: str):
    if not isinstance(text, str):
        raise _Bad(f"has no '{what}' in its metadata")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:              # RecursionError: nested too deep for the parser
        raise _Bad(f"has a malformed '{what}' in its metadata ({type(e).__name__})") from None


def _read(path: str) -> tuple[dict, dict]:
    """``(metadata, {name: array})``: every size checked against the file's length before allocating."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 8:
                raise _Bad(f"is {size} bytes long: too short for a safetensors file (an 8-byte length comes first)")
            data = bytearray(size)                             # the file's own length, nothing more
            if f.readinto(data) != size:
                raise _Bad("changed size while it was being read")
    except FileNotFoundError:
        raise FileNotFoundError(f"load: no such file: '{path}'") from None
    except IsADirectoryError:
        raise _Bad("is a directory, not a file") from None
    if data[:2] == b"PK":
        raise _Bad("is a zip archive (an .npz?), not a safetensors file; axon 0.1 wrote .npz files (format 1), "
                   "which this axon no longer reads")
    if data[:6] == b"\x93NUMPY":
        raise _Bad("is a .npy file (one numpy array), not a file written by axon.save")
    n = int.from_bytes(data[:8], "little")
    if n > min(size - 8, _MAX_HEADER):
        raise _Bad(f"is not a safetensors file or is truncated: it starts with a header length of {n} bytes, "
                   f"but {size - 8} bytes follow")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise _Bad(f"has a header that is not JSON ({type(e).__name__}): it is corrupt or not a safetensors file") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != "axon":
        raise _Bad("is not a file written by axon.save (its safetensors header has no axon metadata); "
                   "safetensors.numpy.load_file reads the tensors of any safetensors file")
    if not all(isinstance(v, str) for v in meta.values()):
        raise _Bad("has metadata values that are not strings")
    version = meta.get("format_version", "")
    if not (version.isascii() and version.isdigit() and len(version) < 10):
        raise _Bad(f"has a malformed format_version {version!r:.20}")
    if int(version) > FORMAT_VERSION:
        raise _Bad(f"was written in axon's file format version {int(version)}, newer than this axon reads "
                   f"(up to version {FORMAT_VERSION}): upgrade axon to load it")
    start, data_len = 8 + n, size - 8 - n
    table = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(info, dict) and set(info) == {"dtype", "shape", "data_offsets"}):
            raise _Bad(f"has a malformed entry for tensor {name!r:.80}")
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not (isinstance(code, str) and code in _DTYPES):
            raise _Bad(f"gives tensor {name!r:.80} the dtype {code!r:.20}, which axon does not read")
        if not (isinstance(shape, list) and len(shape) <= 32 and all(type(d) is int and d >= 0 for d in shape)):
            raise _Bad(f"gives tensor {name!r:.80} a malformed shape {shape!r:.80}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise _Bad(f"gives tensor {name!r:.80} malformed data_offsets {offsets!r:.80}")
        nbytes = math.prod(shape) * np.dtype(_DTYPES[code]).itemsize      # Python ints: no overflow
        if offsets[1] > data_len:
            raise _Bad(f"is truncated: tensor {name!r:.80} ends at byte {offsets[1]} of the data, "
                       f"which has {data_len} bytes")
        if offsets[1] - offsets[0] != nbytes:
            raise _Bad(f"gives tensor {name!r:.80} of shape {tuple(shape)} and dtype {code} {offsets[1] - offsets[0]} "
                       f"bytes; it needs {nbytes}")
        table.append((name, code, shape, offsets))
    end = 0
    for _, _, _, (lo, hi) in sorted(table, key=lambda entry: entry[3]):
        if lo != end:
            raise _Bad("has tensors that overlap or leave gaps between them")
        end = hi
    if end != data_len:
        raise _Bad(f"has {data_len - end} bytes after its last tensor")
    view = memoryview(data)
    table.sort(key=lambda entry: entry[0])
    if _digest(meta, [(k, c, s, view[start + lo:start + hi]) for k, c, s, (lo, hi) in table]) != meta.get("sha256"):
        raise _Bad("does not match its sha256: the file is corrupt, or was changed after axon wrote it")
    tensors = {}
    for name, code, shape, (lo, hi) in table:
        dtype = np.dtype(_DTYPES[code]).newbyteorder("<")
        arr = np.frombuffer(data, dtype, math.prod(shape), start + lo) if hi > lo else np.zeros(0, dtype)
        arr = arr.reshape(shape)                               # a writable view of the one buffer read
        tensors[name] = arr if arr.flags.aligned else arr.copy()
    return meta, tensors


# ---- the API ------------------------------------------------------------------------------------------
def save(path, model, params=None, opt_state=None) -> None:
    """Write ``model`` with its ``params`` (and ``opt_state``) to ``path``, atomically; ``save(path, tree)`` a tree.

    ``path`` is used as given (``.safetensors`` is the usual suffix). Everything is checked before
    anything is written, so an error (params that do not fit the model, a layer function that is
    not registered, an unsaveable leaf) leaves an existing file at ``path`` untouched.

    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "w.safetensors")
    >>> save(p, {"w": np.arange(3.0), "step": 7})              # a plain tree: load gives it back
    >>> load(p)
    {'w': array([0., 1., 2.]), 'step': 7}
    """
    path = os.fspath(path)
    if not isinstance(model, Axon):
        if params is not None or opt_state is not None:
            raise TypeError(f"save: expects save(path, model, params, opt_state=None) with an axon model, or "
                            f"save(path, tree); got a {type(model).__name__} and params")
        tensors = _Tensors()
        _write(path, "tree", {"tree": _encode(model, tensors, "")}, tensors)
        return
    if params is None:
        raise TypeError("save: a model is saved with its params: save(path, model, params, opt_state=None)")
    check_params(model, params)
    tensors = _Tensors()
    parts = {"params": _encode(params, tensors, ""), "opt_state": _encode(opt_state, _Prefixed(tensors, "opt_state"), "")}
    parts["model"] = records.to_records(model, lambda value, where: _encode(value, _Prefixed(tensors, "model"), where))
    _write(path, "model", parts, tensors)


def load(path):
    """Read a file written by ``save``: ``Saved(model, params, opt_state)`` for a model, or the saved tree.

    Imports nothing and runs nothing the file names; a file that is malformed, truncated, tampered
    with, foreign or from a newer axon raises ``FormatError`` naming it (a missing one FileNotFoundError).
    Arrays come back as numpy arrays with their saved dtypes; numbers, strings and ``None`` as they were.

    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "s.safetensors")
    >>> save(p, (1, [2.5, None], {"x": np.float32(3)}))
    >>> load(p)
    (1, [2.5, None], {'x': np.float32(3.0)})
    """
    path = os.fspath(path)
    try:
        meta, tensors = _read(path)
        reader = _Reader(tensors)
        content = meta.get("content")
        if content == "tree":
            out = reader.decode(_json(meta.get("tree"), "tree"), "")
        elif content == "model":
            params = reader.decode(_json(meta.get("params"), "params"), "")
            opt_state = reader.decode(_json(meta.get("opt_state"), "opt_state"), "opt_state")
            try:
                model = records.from_records(_json(meta.get("model"), "model"), reader.decode)
                check_params(model, params)
            except (ValueError, TypeError) as e:
                raise _Bad(f"holds a model that does not load: {e}") from None
            out = Saved(model, params, opt_state)
        else:
            raise _Bad(f"has an unknown content {content!r:.40} (expected 'model' or 'tree')")
        if reader.used != set(tensors):
            raise _Bad(f"holds tensors that nothing in it refers to: {sorted(set(tensors) - reader.used)[:5]}")
        return out
    except _Bad as e:
        raise FormatError(f"load: '{path}' {e}") from None


def atomic_write(path, write, mode: str = "wb") -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it to ``path``.

    Readers see the old file or the new one, never half of one: the data is flushed to disk before
    the rename (atomic on POSIX and Windows), and the directory after it, so the rename itself
    survives a power cut. The file gets the usual permissions (the umask's). If ``write`` fails, the
    temporary file is removed and ``path`` is left as it was.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "note.txt")
    >>> atomic_write(p, lambda f: f.write("done\\n"), mode="w")
    >>> open(p).read(), [name for name in os.listdir(os.path.dirname(p)) if name != "note.txt"]
    ('done\\n', [])
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write '{path}': it is a directory (give a file name inside it)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write '{path}': the folder '{folder}' does not exist")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(folder, f".{os.path.basename(path)[:100]}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)                    # 0o666 less the umask, as open() gives
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"cannot create a temporary file beside '{path}'")
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
    _fsync_directory(folder)


def _fsync_directory(folder: str) -> None:
    """Flush a directory's entries (the rename) to disk, where the system allows it (POSIX)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError:                                            # some file systems refuse: the rename stands
        pass
    finally:
        os.close(fd)
