"""Running a model graph: ``init`` makes the params, ``apply`` walks the nodes in order.

Params are a plain nested dict ``{layer_name: {param_name: array}}``; layer state (batch-norm running
statistics) lives beside the trainable params, so one object is saved and loaded.

>>> import numpy as np, axon
>>> model = axon.input((None, 4)).dense(3, activation="relu")
>>> params = axon.init(model, seed=0)
>>> {k: v.shape for k, v in params["dense_0"].items()}
{'kernel': (4, 3), 'bias': (3,)}
>>> axon.predict(model, params, np.ones((2, 4), np.float32)).shape
(2, 3)
"""
from __future__ import annotations

import weakref
from collections import Counter
from typing import NamedTuple

import numpy as np

from .. import random as axrandom
from ..autograd import Tensor, is_grad_enabled
from ..backend import device_of, is_host, resolve_device, to_device, to_host
from ..functional import initializers
from ..tree import tree_leaves, tree_map
from .graph import Axon

__all__ = ["init", "apply", "predict", "compile", "split", "merge", "check_params"]


def _initializer(spec_init):
    """An ``init(shape, dtype, key)`` function from a name, an init function, or an array."""
    if isinstance(spec_init, np.ndarray):
        return lambda shape, dtype, key: spec_init.astype(dtype)
    return initializers.get(spec_init)


def init(model: Axon, seed=0, dtype="float32", device=None) -> dict:
    """Fresh params for every layer: ``{layer: {param: array}}``, reproducible from ``seed``.

    ``device`` (``"cpu"``, ``"cuda"``; default ``axon.get_backend()``) is where the arrays are put: they
    are drawn on the host, so every device gets the same initial values.

    Each param's random stream depends only on the seed and the layer and param names, so a layer
    keeps its initial values when others are added, as long as its name stays the same (give it a
    ``name=`` to be sure: automatic names like ``dense_1`` shift when a dense layer is inserted before).

    >>> import axon, numpy as np
    >>> model = axon.input((None, 4)).dense(3).layer_norm()
    >>> params = axon.init(model, seed=0)
    >>> {layer: {k: v.shape for k, v in p.items()} for layer, p in params.items()}
    {'dense_0': {'kernel': (4, 3), 'bias': (3,)}, 'layer_norm_0': {'gamma': (3,), 'beta': (3,)}}
    >>> np.array_equal(axon.init(model, seed=0)["dense_0"]["kernel"], params["dense_0"]["kernel"])
    True
    """
    names = model.names()
    params = {}
    for node in model.nodes():
        if not node.params:
            continue
        layer = params[names[node.id]] = {}
        for pname, spec in node.params.items():
            value = _initializer(spec.initializer)(spec.shape, dtype, axrandom.rng(seed, names[node.id], pname))
            value = np.ascontiguousarray(value, dtype=dtype)          # C order: the fused kernels (Adam) assume it
            if value.shape != spec.shape:
                raise ValueError(f"init: initializer of {names[node.id]}.{pname} returned shape {value.shape}, "
                                 f"expected {spec.shape}")
            layer[pname] = value
    return to_device(params, resolve_device(device))


def _feed(plan, inputs) -> dict:
    """``{input node id: Tensor}`` from one array (single-input models), a dict by name, or a list."""
    nodes, names = plan.inputs, plan.names
    if isinstance(inputs, dict):
        missing = [names[n.id] for n in nodes if names[n.id] not in inputs and not n.opts.get("optional")]
        if missing:
            raise ValueError(f"missing model inputs {missing}; got {sorted(inputs)}")
        values = [inputs.get(names[n.id]) for n in nodes]      # None: an optional input left out
    elif isinstance(inputs, (list, tuple)) and len(nodes) > 1:
        if len(inputs) != len(nodes):
            raise ValueError(f"the model has {len(nodes)} inputs {[names[n.id] for n in nodes]}, got {len(inputs)}")
        values = list(inputs)
    else:
        if len(nodes) != 1:
            raise ValueError(f"the model has {len(nodes)} inputs {[names[n.id] for n in nodes]}: "
                             f"pass a dict by name or a list")
        values = [inputs]
    fed = {}
    for node, value in zip(nodes, values):
        if value is None and node.opts.get("optional"):
            fed[node.id] = None
            continue
        t = value if isinstance(value, Tensor) else Tensor(np.asarray(value) if is_host(value) else value)
        expected = node.shape
        if t.ndim != len(expected) or any(e is not None and e != a for e, a in zip(expected, t.shape)):
            raise ValueError(f"input '{names[node.id]}' expects shape {expected}, got {t.shape}")
        fed[node.id] = t
    return fed


class _Step(NamedTuple):
    """One node's work in ``apply``, with everything about it that never changes worked out once."""
    node: Axon
    name: str
    parents: tuple                 # the parents' ids
    by_parent: bool                # a relu its parent's fused kernel already applied: reuse that value
    fused: bool                    # apply the following relu in this layer's bias add
    stateful: bool                 # while training, returns (y, new_state)
    shapes: tuple                  # ((param name, shape), ...): what the params must look like


class _Plan(NamedTuple):
    """How ``apply`` runs a model, worked out once per model (nodes are immutable, so it never changes)."""
    steps: list                    # a _Step per node but the inputs, each after its parents
    inputs: list                   # the input nodes, in graph order
    names: dict                    # node id -> layer name
    params: list                   # (layer, param, trained?) for every param, in graph order


_plans: "weakref.WeakKeyDictionary[Axon, _Plan]" = weakref.WeakKeyDictionary()


def _plan(model: Axon) -> _Plan:
    """The model's execution plan: its nodes in order, their names, and which relus to fuse.

    A relu whose parent is a dense/conv layer it alone consumes is folded into that layer's bias add
    (``kernels.bias_relu``): the summary still shows both nodes, the arithmetic is done in one pass.
    """
    plan = _plans.get(model)
    if plan is None:
        nodes = model.nodes()
        names = model.names()
        consumers = Counter(p.id for node in nodes for p in node.parents)
        fused, by_parent = set(), set()
        for node in nodes:
            if node.op == "relu" and not node.opts and len(node.parents) == 1:
                parent = node.parents[0]
                if "relu_epilogue" in parent.uses and consumers[parent.id] == 1:
                    fused.add(parent.id)
                    by_parent.add(node.id)
        steps = [_Step(n, names[n.id], tuple(p.id for p in n.parents), n.id in by_parent, n.id in fused,
                       any(spec.kind == "state" for spec in n.params.values()),
                       tuple((k, spec.shape) for k, spec in n.params.items()))
                 for n in nodes if n.op != "input"]
        specs = [(names[n.id], k, spec.kind == "param" and not spec.frozen) for n in nodes for k, spec in n.params.items()]
        plan = _plans[model] = _Plan(steps, [n for n in nodes if n.op == "input"], names, specs)
    return plan


def apply(model: Axon, params: dict, inputs, training: bool = False, key=None, device=None):
    """Run the model: returns ``(y, new_state)``.

    It runs where the params live; ``device=`` moves params and inputs there first.

    ``y`` is a Tensor (or the container's dict/tuple of Tensors); ``new_state`` holds the updated
    state params (``{layer: {name: array}}``, empty unless training a stateful layer). Dropout is
    active only when ``training``; its masks come from ``key`` (an int), so they are reproducible.

    >>> import axon, numpy as np
    >>> model, x = axon.input((None, 2)).batch_norm(), np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    >>> y, state = axon.apply(model, axon.init(model), x, training=True)   # batch mean [2, 3], var [1, 1]
    >>> y.numpy().round(4).tolist(), state["batch_norm_0"]["mean"]   # running mean: 0.9 * 0 + 0.1 * [2, 3]
    ([[-1.0, -1.0], [1.0, 1.0]], array([0.2, 0.3], dtype=float32))
    """
    if device is not None:
        params, inputs = to_device((params, inputs), resolve_device(device))
    plan = _plan(model)
    values = _feed(plan, inputs)
    new_state = {}
    for step in plan.steps:
        if step.by_parent:                                     # the relu its parent's kernel applied
            values[step.node.id] = values[step.parents[0]]
            continue
        node = step.node
        layer_params = params.get(step.name, {}) if node.params else {}
        if node.params:
            _check_layer(step, layer_params)
        extra = {}
        if node.uses:
            if "training" in node.uses:
                extra["training"] = training
            if "key" in node.uses:
                extra["key"] = axrandom.derive(key, step.name) if training else None
            if step.fused:
                extra["relu_epilogue"] = True
        args = [values[i] for i in step.parents]
        if node.op != "container" and any(a is None and p.op != "optional" for a, p in zip(args, node.parents)):
            values[node.id] = None                            # a missing optional input: nothing to compute
            continue
        y = node.fn(*args, **layer_params, **node.opts, **extra)
        if training and step.stateful:
            y, state = y                                      # stateful layers return their new state
            new_state[step.name] = {k: v.data if isinstance(v, Tensor) else v for k, v in state.items()}
        values[node.id] = y
    return values[model.id], new_state


def _check_layer(step: _Step, layer_params) -> None:
    """Raise ValueError unless ``layer_params`` has exactly the layer's params, each of its shape."""
    if not isinstance(layer_params, dict):
        raise TypeError(f"params do not fit the model: the params of layer '{step.name}' must be a dict "
                        f"{{param: array}}, got {type(layer_params).__name__}")
    if layer_params.keys() != step.node.params.keys():
        raise ValueError(f"params do not fit the model: layer '{step.name}' has params {sorted(layer_params)}, "
                         f"the model expects {sorted(step.node.params)}")
    for k, shape in step.shapes:                             # a tuple compare per param: cheap on every call
        v = layer_params[k]
        if getattr(v, "shape", None) != shape:
            raise ValueError(f"params do not fit the model: layer '{step.name}' param '{k}' has shape "
                             f"{np.shape(v)}, the model expects {shape}")


def check_params(model: Axon, params) -> None:
    """Raise ValueError naming the first layer whose params are missing or of the wrong shape.

    ``apply``/``predict`` make the same check as they go; this one looks at every layer up front.

    >>> import axon
    >>> a, b = axon.input((None, 4)).dense(5), axon.input((None, 4)).dense(3)
    >>> check_params(a, axon.init(a))                         # fits: nothing happens
    >>> check_params(b, axon.init(a))
    Traceback (most recent call last):
    ValueError: params do not fit the model: layer 'dense_0' param 'kernel' has shape (4, 5), the model expects (4, 3)
    """
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict {{layer: {{param: array}}}}, got {type(params).__name__}")
    for step in _plan(model).steps:
        if step.node.params:
            if step.name not in params:
                raise ValueError(f"params do not fit the model: no params for layer '{step.name}' "
                                 f"(the params have layers {sorted(params)})")
            _check_layer(step, params[step.name])


def _to_numpy(y):
    """The arrays of a Tensor, or of a container's dict/list/tuple of Tensors."""
    return tree_map(lambda v: v.data if isinstance(v, Tensor) else v, y)


def predict(model: Axon, params: dict, inputs, device=None):
    """Inference (dropout off, running statistics used).

    Runs where the params live (inputs are moved there), or on ``device``. Returns host numpy arrays,
    or Tensors when the output is being differentiated (inside ``axon.grad`` with respect to the
    params or the inputs, or given Tensors that require a gradient), so a user's own objective can
    differentiate through it (saliency maps, adversarial examples).

    >>> import axon, numpy as np
    >>> model = axon.input((None, 2)).dense(1)
    >>> params = {"dense_0": {"kernel": np.float32([[1], [2]]), "bias": np.float32([0.5])}}
    >>> axon.predict(model, params, np.float32([[1, 1], [3, 0]]))     # x @ kernel + bias
    array([[3.5],
           [3.5]], dtype=float32)
    """
    y, _ = apply(model, params, inputs, training=False, device=device if device is not None else device_of(params))
    traced = is_grad_enabled() and any(isinstance(v, Tensor) and v.requires_grad for v in tree_leaves(y))
    return y if traced else tree_map(to_host, _to_numpy(y))


def compile(model: Axon):
    """``init_fn, predict_fn = axon.compile(model)``: the model as two plain functions.

    >>> import axon, numpy as np
    >>> init_fn, predict_fn = axon.compile(axon.input((None, 4)).dense(3, activation="softmax"))
    >>> params = init_fn(seed=0)
    >>> predict_fn(params, np.ones((2, 4), np.float32)).sum(axis=1).round(4)   # each row a distribution
    array([1., 1.], dtype=float32)
    """
    def init_fn(seed=0, dtype="float32", device=None):
        return init(model, seed, dtype, device)

    def predict_fn(params, inputs, device=None):
        return predict(model, params, inputs, device)

    return init_fn, predict_fn


def split(model: Axon, params: dict):
    """``(trainable, rest)``: the params training updates, and the state/frozen ones it must not.

    >>> import axon
    >>> model = axon.input((None, 4)).dense(3).batch_norm()
    >>> trainable, rest = axon.split(model, axon.init(model))
    >>> {k: sorted(v) for k, v in trainable.items()}, {k: sorted(v) for k, v in rest.items()}
    ({'dense_0': ['bias', 'kernel'], 'batch_norm_0': ['beta', 'gamma']}, {'batch_norm_0': ['mean', 'var']})
    """
    check_params(model, params)
    trainable, rest = {}, {}
    for name, pname, trains in _plan(model).params:
        layer = params.get(name)
        if layer is None:
            raise ValueError(f"split: params have no entry for layer '{name}'")
        (trainable if trains else rest).setdefault(name, {})[pname] = layer[pname]
    return trainable, rest


def merge(*trees: dict) -> dict:
    """Deep-merge nested dicts; later trees win on the same leaf: ``merge(trainable, state)``.

    >>> import axon
    >>> model = axon.input((None, 4)).dense(3).batch_norm()
    >>> trainable, rest = axon.split(model, axon.init(model))
    >>> {k: sorted(v) for k, v in axon.merge(trainable, rest).items()}   # the whole params again
    {'dense_0': ['bias', 'kernel'], 'batch_norm_0': ['beta', 'gamma', 'mean', 'var']}
    >>> axon.merge({"a": {"w": 1, "b": 2}}, {"a": {"b": 3}})
    {'a': {'w': 1, 'b': 3}}
    """
    out: dict = {}
    for tree in trees:
        for k, v in tree.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
