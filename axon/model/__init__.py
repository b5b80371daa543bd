"""The model creation API: a model is a graph of small immutable nodes.

- ``graph``: the ``Axon`` node, ``input``, ``layer``/``nx`` for custom layers, ``container``, ``freeze``.
- ``builders``: one builder per functional layer, also a chainable method (``x.dense(128)``).
- ``run``: ``init``, ``apply``, ``predict``, ``compile``, ``split``/``merge`` of params and state.
- ``state``: ``ModelState``, trainable params, layer state and frozen params apart (``model_state``).
- ``summaries``: the summary table and the graph as Mermaid/Graphviz text.
- ``tools``: Axon's graph tools (``block``, ``bias``, ``stack_columns``, ``split_layer``, ``cond``,
  ``optional``, ``or_else``, ``attach_hook``, ``get_op_counts``, ``set_options``, ``set_parameters``, ``pop_node``, ``rewrite_nodes``)
  and ``infer_shape`` (a layer function's output shape, as the builders find it).
"""
from . import builders
from .builders import *  # noqa: F401,F403  (every builder)
from .graph import Axon, ParamSpec, constant, container, freeze, input, layer, nx, param, unfreeze
from .run import apply, compile, init, merge, predict, split
from .summaries import as_graph, count_params, summary
from .state import ModelState, model_state
from . import tools
from .tools import (attach_hook, bias, block, cond, get_op_counts, infer_shape, optional, or_else, pop_node, rewrite_nodes,
                    set_options, set_parameters, split_layer, stack_columns)

__all__ = ["Axon", "ParamSpec", "input", "constant", "container", "layer", "nx", "param", "freeze", "unfreeze",
           "init", "apply", "predict", "compile", "split", "merge", "summary", "as_graph", "count_params",
           "ModelState", "model_state",
           *builders.__all__, *tools.__all__]

# the run functions and graph tools are methods too: model.init(seed=0), model.predict(params, x), ...
# (the builders are attached at the end of builders.py: x.dense(128))
Axon.init = init
Axon.apply = apply
Axon.predict = predict
Axon.split = split
Axon.summary = summary
Axon.bias = bias
Axon.attach_hook = attach_hook
Axon.get_op_counts = get_op_counts
Axon.set_options = set_options
Axon.set_parameters = set_parameters
Axon.pop_node = pop_node
Axon.rewrite_nodes = rewrite_nodes
