"""Names for the code a saved file refers to: axon's own, and what the user registers.

A saved file never names code by its import path. A layer's function, an initializer or a
NamedTuple state class is written under a name from this registry, and loading looks the name up
here again: a dict lookup, so loading imports nothing and finds only what this process already holds.

- axon's NamedTuple classes (optimizer states, ``TrainState``) are known as ``"module:Class"``,
  looked up in the axon modules already imported (``vars(module)``, never ``getattr`` or ``import``);
- anything else (the function of an ``axon.nx``/``axon.layer``, a NamedTuple of your own) must be
  registered by the program, once when saving and again before loading: ``register("my_fn", fn)``.

>>> import axon
>>> def double_it(t):
...     return t * 2
>>> register("double_it", double_it)
>>> lookup("double_it") is double_it, name_of(double_it)
(True, 'double_it')
"""
from __future__ import annotations

import sys

__all__ = ["register", "lookup", "name_of", "namedtuple_name", "namedtuple_class"]

_by_name: dict = {}                    # name -> function or NamedTuple class
_by_id: dict = {}                      # id(obj) -> name (the objects are kept alive by _by_name)


def register(name: str, obj) -> None:
    """Make ``obj`` (a function, or a NamedTuple class) savable under ``name``; call it before ``save`` and ``load``.

    Registering the same object twice is fine, and so is a new definition of the same function (a
    notebook cell run again: the new one replaces the old); another object under a taken name raises.

    >>> import axon, numpy as np
    >>> def halve(t):
    ...     return t * 0.5
    >>> axon.register("halve", halve)
    >>> model = axon.nx(axon.input((None, 2)), halve)        # axon.save writes {"fn": "halve"}
    >>> axon.predict(model, {}, np.ones((1, 2), np.float32))
    array([[0.5, 0.5]], dtype=float32)
    """
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"register: name must be a non-empty string without ':' (':' marks axon's own "
                         f"classes), got {name!r}")
    if not callable(obj):
        raise TypeError(f"register: expects a function or a NamedTuple class, got {type(obj).__name__}")
    taken = _by_name.get(name)
    if taken is not None and taken is not obj:
        if _where(taken) != _where(obj):
            raise ValueError(f"register: the name {name!r} is already registered for {taken!r}; pick another name")
        del _by_id[id(taken)]                                  # redefined: the new definition replaces it
    old = name_of(obj)
    if old is not None and old != name:
        raise ValueError(f"register: {obj!r} is already registered as {old!r}")
    _by_name[name], _by_id[id(obj)] = obj, name


def _where(obj) -> tuple:
    """Where ``obj`` was defined: a function or class defined again (the same cell re-run) has the same."""
    return getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)


def lookup(name: str):
    """The object registered as ``name``, or None.

    >>> lookup("no such name") is None
    True
    """
    return _by_name.get(name) if isinstance(name, str) else None


def name_of(obj) -> str | None:
    """The name ``obj`` was registered under, or None.

    >>> name_of(print) is None
    True
    """
    name = _by_id.get(id(obj))
    return name if name is not None and _by_name.get(name) is obj else None


def _is_namedtuple_class(cls) -> bool:
    return isinstance(cls, type) and issubclass(cls, tuple) and isinstance(getattr(cls, "_fields", None), tuple)


def _axon_module(module_name: str):
    """The axon module of that name if it is already imported (never imports it), else None."""
    if not isinstance(module_name, str) or not (module_name == "axon" or module_name.startswith("axon.")):
        return None
    return sys.modules.get(module_name)


# Modules renamed so that no function hides its module (``axon.training.step`` is the function): files
# saved before name their classes by the old module name, which still loads.
_RENAMED = {"axon.training.step": "axon.training.steps"}


def namedtuple_name(cls) -> str | None:
    """The name a NamedTuple class is saved under: registered, or ``"module:Class"`` for axon's own; else None.

    >>> from axon.updates import ScaleByAdamState
    >>> namedtuple_name(ScaleByAdamState)
    'axon.updates:ScaleByAdamState'
    """
    registered = name_of(cls)
    if registered is not None:
        return registered
    module = _axon_module(getattr(cls, "__module__", None))
    if module is not None and vars(module).get(cls.__qualname__) is cls:
        return f"{cls.__module__}:{cls.__qualname__}"
    return None


def namedtuple_class(name: str):
    """The NamedTuple class saved as ``name`` (see ``namedtuple_name``), or None: nothing is imported.

    >>> from axon.training import TrainState
    >>> namedtuple_class("axon.training.steps:TrainState") is TrainState
    True
    >>> namedtuple_class("axon.training.step:TrainState") is TrainState   # a file saved under the old module name
    True
    >>> namedtuple_class("numpy.f2py.__main__:X") is None          # not axon's: never looked at
    True
    """
    if not isinstance(name, str):
        return None
    module_name, colon, qualname = name.partition(":")
    module_name = _RENAMED.get(module_name, module_name)
    if colon:
        module = _axon_module(module_name)
        cls = vars(module).get(qualname) if module is not None else None
        if cls is not None and getattr(cls, "__module__", None) != module_name:
            cls = None                                         # re-exported from elsewhere: not this name
    else:
        cls = lookup(name)
    return cls if _is_namedtuple_class(cls) else None
