"""Name lookup shared by the functional modules: ``activations.get("relu")``, ``losses.get("huber")``...

One helper, so every module gives the same error for a name it does not know, and one line per
module to make its ``get``: ``get = getter("activation", globals(), __all__)``.

>>> table = {"relu": abs, "tanh": round}
>>> resolve("activation", table, "relu") is abs
True
>>> resolve("activation", table, "rleu")
Traceback (most recent call last):
...
ValueError: unknown activation 'rleu'; valid names: relu, tanh
"""
from __future__ import annotations

__all__ = ["resolve", "table", "getter"]


def table(namespace: dict, names) -> dict:
    """``{name: namespace[name]}`` for the public ``names`` of a module (``get`` itself left out).

    >>> table({"relu": abs, "tanh": round, "get": len}, ["relu", "get"]) == {"relu": abs}
    True
    """
    return {n: namespace[n] for n in names if n != "get"}


def resolve(kind: str, by_name: dict, name):
    """The function called ``name`` in ``by_name``; a callable passes through unchanged.

    Raises ``ValueError`` listing every valid name when ``name`` is unknown, ``TypeError`` when it is
    neither a string nor a callable.

    >>> resolve("activation", {"relu": abs}, "relu") is abs, resolve("activation", {}, round) is round
    (True, True)
    """
    if callable(name):
        return name
    if not isinstance(name, str):
        raise TypeError(f"{kind} must be a name (str) or a callable, got {type(name).__name__}")
    try:
        return by_name[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; valid names: {', '.join(sorted(by_name))}") from None


def getter(kind: str, namespace: dict, names):
    """A module's ``get(name)``: the function called ``name`` among the public ``names`` of ``namespace``.

    ``get`` itself is left out; a callable passes through; an unknown name is a ``ValueError`` listing
    the valid ones (``resolve``). The table is built once, when the module is imported.

    >>> get = getter("activation", {"relu": abs, "tanh": round, "get": None}, ["relu", "tanh", "get"])
    >>> get("relu") is abs, get(len) is len
    (True, True)
    """
    by_name = table(namespace, names)

    def get(name):
        return resolve(kind, by_name, name)

    get.__doc__ = f"The {kind} called ``name`` (one of {', '.join(sorted(by_name))}); a callable is returned unchanged."
    return get
