"""``ModelState``: a model's params in three plain dicts, kept apart as Elixir Axon's ``Axon.ModelState`` does.

- ``trainable``: the params the optimizer updates;
- ``state``: what layers update themselves (batch-norm running statistics);
- ``frozen``: params kept fixed (``axon.freeze``, or ``ModelState.freeze``).

Each is ``{layer: {param: array}}``, and ``data`` merges them back into the one params dict that
``init`` gives and ``apply``/``predict`` take. A ``ModelState`` is a NamedTuple of dicts, so it is saved
and loaded like any other tree (``axon.serialization``).

>>> import axon
>>> model = axon.freeze(axon.input((None, 4)).dense(3, name="body").batch_norm(name="bn"), ["body"])
>>> ms = model_state(model, axon.init(model))
>>> {k: sorted(v.get("bn", {})) + sorted(v.get("body", {})) for k, v in ms._asdict().items()}
{'trainable': ['beta', 'gamma'], 'state': ['mean', 'var'], 'frozen': ['bias', 'kernel']}
"""
from __future__ import annotations

from typing import NamedTuple

from .graph import Axon
from .run import merge

__all__ = ["ModelState", "model_state"]


def _pick(tree: dict, layers) -> tuple[dict, dict]:
    """``(the entries of tree in layers, the others)``; ``layers`` None means all."""
    inside = {k: v for k, v in tree.items() if layers is None or k in layers}
    return inside, {k: v for k, v in tree.items() if k not in inside}


class ModelState(NamedTuple):
    """Trainable params, layer state and frozen params of one model, apart (``model_state`` builds it).

    >>> import axon
    >>> model = axon.input((None, 2)).dense(2, name="a").dense(1, name="b")
    >>> ms = model_state(model, axon.init(model)).freeze(["a"])
    >>> sorted(ms.trainable), sorted(ms.frozen), sorted(ms.unfreeze().trainable)
    (['b'], ['a'], ['a', 'b'])
    """
    trainable: dict
    state: dict
    frozen: dict

    @property
    def data(self) -> dict:
        """All params in one dict, as ``apply`` and ``predict`` take them."""
        return merge(self.trainable, self.state, self.frozen)

    def freeze(self, layers=None) -> "ModelState":
        """Move the trainable params of ``layers`` (names; all when None) to the frozen ones."""
        self._check_layers("freeze", layers)
        moved, kept = _pick(self.trainable, None if layers is None else set(layers))
        return ModelState(kept, self.state, merge(self.frozen, moved))

    def unfreeze(self, layers=None) -> "ModelState":
        """Move the frozen params of ``layers`` (all when None) back to the trainable ones."""
        self._check_layers("unfreeze", layers)
        moved, kept = _pick(self.frozen, None if layers is None else set(layers))
        return ModelState(merge(self.trainable, moved), self.state, kept)

    def update(self, trainable=None, state=None) -> "ModelState":
        """New trainable params and/or layer state (each merged over the old), frozen params untouched.

        >>> import numpy as np
        >>> ms = ModelState({"d": {"w": np.zeros(1)}}, {}, {})
        >>> ms.update(trainable={"d": {"w": np.ones(1)}}).trainable
        {'d': {'w': array([1.])}}
        """
        for what, tree, own in (("trainable", trainable, self.trainable), ("state", state, self.state)):
            for layer, ps in (tree or {}).items():
                unknown = set(ps) - set(own.get(layer, {}))
                if unknown:
                    raise ValueError(f"ModelState.update: {what} has no {layer}.{sorted(unknown)}; "
                                     f"its {what} entries are {sorted(own)}")
        return ModelState(merge(self.trainable, trainable or {}), merge(self.state, state or {}), self.frozen)

    def _check_layers(self, who, layers):
        if layers is None:
            return
        known = set(self.trainable) | set(self.state) | set(self.frozen)
        unknown = set(layers) - known
        if unknown:
            raise ValueError(f"ModelState.{who}: no layers named {sorted(unknown)}; the model has {sorted(known)}")


def model_state(model: Axon, params: dict) -> ModelState:
    """``params`` (from ``init``) of ``model`` sorted into trainable, state and frozen, by their specs.

    >>> import axon
    >>> model = axon.input((None, 2)).batch_norm(name="bn")
    >>> ms = model_state(model, axon.init(model))
    >>> sorted(ms.trainable["bn"]), sorted(ms.state["bn"]), ms.frozen
    (['beta', 'gamma'], ['mean', 'var'], {})
    """
    names = model.names()
    trainable: dict = {}
    state: dict = {}
    frozen: dict = {}
    for node in model.nodes():
        name = names[node.id]
        for pname, spec in node.params.items():
            layer = params.get(name)
            if layer is None or pname not in layer:
                raise ValueError(f"model_state: params have no {name}.{pname}; "
                                 f"got layers {sorted(params)}")
            where = state if spec.kind == "state" else frozen if spec.frozen else trainable
            where.setdefault(name, {})[pname] = layer[pname]
    return ModelState(trainable, state, frozen)
