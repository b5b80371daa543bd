"""The one place a backend is chosen: where arrays live and which forward of a primitive runs.

A backend is a kind of array (numpy arrays for ``"cpu"``, device arrays for ``"cuda"``) plus a few
functions to move arrays and make new ones. Every primitive in the engine's table has one forward
per backend (``axon.autograd.implement``); ``engine.apply`` picks it from the inputs' arrays:

    Tensor --(apply)--> primitive "mul" --(backend_of(x.data))--> forwards["cpu"] or forwards["cuda"]

Nothing else in axon needs to know which backend runs: layers, optimizers and the training loop
compute with Tensor operations, and move data only through ``to_device`` / ``np.asarray(tensor)``.

- ``register_backend(Backend(...))`` adds one; ``backend(name)`` finds one (a name listed in
  ``_PROVIDERS`` is imported on first use, so ``"cuda"`` costs nothing until asked for);
- ``backend_of(array)`` says which backend holds an array;
- ``set_backend(name)`` / ``get_backend()``: the default device for new params and batches (the
  environment variable ``AXON_BACKEND`` sets it at start-up);
- ``to_device(tree, name)`` moves every array in nested params / optimizer states.

>>> import numpy as np
>>> backend_of(np.zeros(3)).name, get_backend()
('cpu', 'cpu')
>>> to_device({"w": np.ones(2)}, "cpu")["w"]
array([1., 1.])
"""
from __future__ import annotations

import importlib
import os
from typing import Callable, NamedTuple

import numpy as np

__all__ = ["Backend", "register_backend", "backend", "backend_of", "backends", "set_backend", "get_backend",
           "to_device", "to_host", "device_of", "resolve_device", "unregister_backend", "is_host"]


class Backend(NamedTuple):
    """What a backend provides beyond its forwards in the primitive table.

    ``array_types``: the classes of its arrays (``backend_of`` checks them); ``to_host(a)`` copies an
    array into a numpy array; ``from_host(a)`` copies a numpy array in; ``full(shape, value, dtype)``
    makes a new filled array; ``copy(a)`` an independent copy. Arrays of every backend have ``shape``,
    ``dtype`` (a numpy dtype), ``ndim`` and ``size``; all arithmetic goes through primitives.
    ``device=False`` marks arrays that are not a device users pick (``axon.jit``'s placeholders):
    ``backends()`` does not list them. ``copy_ahead(tree) -> wait``, where a backend has one, starts
    moving a host tree's arrays in asynchronously; ``wait()`` returns the moved tree (the training
    loop copies the next batch this way while the current step runs).

    >>> cpu = backend("cpu")
    >>> cpu.full((2,), 3.0, np.float32), cpu.name
    (array([3., 3.], dtype=float32), 'cpu')
    """
    name: str
    array_types: tuple
    to_host: Callable
    from_host: Callable
    full: Callable
    copy: Callable
    device: bool = True
    copy_ahead: Callable | None = None


_BACKENDS: dict[str, Backend] = {}
# Backends that live in their own package, imported (and so registered) the first time they are named.
# Adding a backend is its own files plus one line here.
_PROVIDERS = {"cuda": "axon.cuda"}
_default = {"name": None}


def register_backend(b: Backend) -> Backend:
    """Add a backend to the registry (its primitives' forwards are added with ``implement``).

    >>> class Boxed(np.ndarray): pass                     # a toy array type, only for this example
    >>> toy = register_backend(Backend("doc.toy", (Boxed,), np.asarray, lambda a: a.view(Boxed),
    ...                                lambda s, v, d: np.full(s, v, d).view(Boxed), np.copy))
    >>> backend_of(np.zeros(2).view(Boxed)).name
    'doc.toy'
    >>> unregister_backend("doc.toy")                     # (only this example needs that)
    """
    if not isinstance(b, Backend):
        raise TypeError(f"register_backend expects a Backend, got {type(b).__name__}")
    if b.name in _BACKENDS:
        raise ValueError(f"a backend named {b.name!r} is already registered")
    _BACKENDS[b.name] = b
    return b


def unregister_backend(name: str) -> None:
    """Remove a backend from the registry (tests that register a backend of their own call this).

    >>> unregister_backend("no-such-backend")              # unknown names are ignored
    """
    if name != "cpu":
        _BACKENDS.pop(name, None)
        if _default["name"] == name:
            _default["name"] = "cpu"


def backends() -> list:
    """The names of the registered backends, and of those that load on first use.

    >>> "cpu" in backends()
    True
    """
    return sorted({n for n, b in _BACKENDS.items() if b.device} | set(_PROVIDERS))


def backend(name: str) -> Backend:
    """The backend called ``name``; a known but unloaded one is imported now, an unknown one is an error.

    >>> backend("cpu").name
    'cpu'
    >>> backend("tpu")
    Traceback (most recent call last):
    ...
    ValueError: unknown device 'tpu': the known devices are 'cpu', 'cuda'
    """
    b = _BACKENDS.get(name)
    if b is not None:
        return b
    if not isinstance(name, str) or name not in _PROVIDERS:
        known = ", ".join(repr(n) for n in backends())
        raise ValueError(f"unknown device {name!r}: the known devices are {known}")
    importlib.import_module(_PROVIDERS[name])              # raises a clear error when it cannot load
    if name not in _BACKENDS:
        raise RuntimeError(f"{_PROVIDERS[name]} was imported but did not register the {name!r} backend")
    return _BACKENDS[name]


def backend_of(a) -> Backend:
    """The backend whose array ``a`` is (numpy arrays, numpy scalars and Python numbers are ``"cpu"``).

    >>> backend_of(np.float32(1.0)).name, backend_of(3).name
    ('cpu', 'cpu')
    """
    if type(a) is np.ndarray:                               # the common case first
        return _CPU
    for b in _BACKENDS.values():
        if b is not _CPU and isinstance(a, b.array_types):
            return b
    return _CPU


def is_host(a) -> bool:
    """True when ``a`` is a numpy array or scalar (not a device array).

    >>> is_host(np.zeros(1)), is_host(2.0)
    (True, True)
    """
    return backend_of(a) is _CPU


def to_host(a) -> np.ndarray:
    """``a`` as a numpy array, copied from its device when it lives on one.

    >>> to_host(np.arange(3))
    array([0, 1, 2])
    """
    b = backend_of(a)                                      # (a Tensor is "cpu" here: np.asarray asks it)
    return np.asarray(a) if b is _CPU else b.to_host(a)


def get_backend() -> str:
    """The default device: where ``init`` puts params and ``train`` puts each batch.

    Set by ``set_backend``, or at start-up by the environment variable ``AXON_BACKEND`` (default ``"cpu"``).

    >>> get_backend()
    'cpu'
    """
    if _default["name"] is None:
        name = os.environ.get("AXON_BACKEND", "cpu") or "cpu"
        backend(name)                                      # an unknown or unusable name fails here, clearly
        _default["name"] = name
    return _default["name"]


def set_backend(name: str) -> None:
    """Make ``name`` the default device (checked now: an unknown or unusable one raises).

    >>> set_backend("cpu"); get_backend()
    'cpu'
    """
    backend(name)
    _default["name"] = name


def resolve_device(device) -> str:
    """``device`` checked (``None`` means the default): what the ``device=`` keywords accept.

    >>> resolve_device(None), resolve_device("cpu")
    ('cpu', 'cpu')
    """
    if device is None:
        return get_backend()
    backend(device)
    return device


def device_of(tree) -> str:
    """The device of the first array in a tree that is not a host scalar: where its params live.

    A tree holding only numbers or host scalars (or nothing) is on the default device.

    >>> device_of({"w": np.ones(2), "count": np.asarray(3)})
    'cpu'
    """
    x = tree
    while type(x) is dict and x:                           # params: nested dicts, the first array decides
        x = next(iter(x.values()))
    if type(x) is np.ndarray and x.ndim > 0:
        return _CPU.name
    from .autograd import Tensor
    from .tree import tree_leaves
    for x in tree_leaves(tree):
        x = x.data if isinstance(x, Tensor) else x
        if getattr(x, "ndim", 0) > 0:                      # an array (host scalars and numbers say nothing)
            return backend_of(x).name
    return get_backend()


def _move(a, target: Backend):
    src = backend_of(a)
    if src is target:
        return a
    host = np.asarray(a) if src is _CPU else src.to_host(a)
    return host if target is _CPU else target.from_host(np.asarray(host, order="C"))   # (keeps 0-d arrays 0-d)


def to_device(tree, device=None):
    """Every array (and Tensor) in a nested tree, moved to ``device``; other leaves as they are.

    Arrays already there are not copied. A Tensor already there is returned as it is; a moved one
    comes back as a new Tensor, detached from any graph.
    Host scalars (numpy scalars and 0-d arrays: step counts, say) stay on the host, where they are
    read as Python numbers; an operation joins them to any device's arrays.

    >>> state = {"w": np.ones(2, np.float32), "count": np.asarray(3)}
    >>> to_device(state, "cpu")["count"]
    array(3)
    """
    from .autograd import Tensor                           # (the engine imports this module)
    from .tree import tree_map
    target = backend(resolve_device(device))

    def move(x):
        if isinstance(x, Tensor):                          # already there: the same Tensor, graph and all
            return x if backend_of(x.data) is target else Tensor._wrap(_move(x.data, target))
        if isinstance(x, np.generic) or (isinstance(x, np.ndarray) and x.ndim == 0):
            return x
        if isinstance(x, np.ndarray) or not is_host(x):
            return _move(x, target)
        return x
    return tree_map(move, tree)


_CPU = register_backend(Backend("cpu", (np.ndarray, np.generic), np.asarray, np.asarray, np.full, np.copy))
