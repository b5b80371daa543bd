"""Functional layers: stateless functions that take the input and the parameters explicitly.

As Elixir Axon's ``Axon.Layers``: ``dense(x, kernel, bias)``, ``conv(x, kernel, bias, strides=1,
padding="valid", ...)``, ``batch_norm(x, gamma, beta, running_mean, running_var, training=...)``.
Everything is channels-last by default (``channels="first"`` is supported); kernels are (in, out) for
``dense`` and (*kernel_size, in // groups, out) for convolutions whatever the input's layout; biases
are (out,) or None. Every function accepts Tensors or numpy arrays and returns a Tensor.

    ==============  ================================================================================
    linear          dense, bilinear, embedding
    convolution     conv, conv_transpose, depthwise_conv, separable_conv2d, separable_conv3d
    pooling         max_pool, avg_pool, lp_pool, adaptive_{max,avg,lp}_pool, global_{max,avg,lp}_pool
    normalization   batch_norm, layer_norm, group_norm, instance_norm, rms_norm
    dropouts        dropout, alpha_dropout, feature_alpha_dropout, spatial_dropout
    shape           flatten, reshape, transpose, pad, resize, concatenate
    attention       dot_product_attention, multi_head_attention, positional embeddings, rotary_embedding
    recurrent       lstm_cell, gru_cell, conv_lstm_cell, static_unroll, dynamic_unroll, lstm, gru, conv_lstm
    ==============  ================================================================================

Shape inference without running a layer: every layer ``f`` has ``f_output_shape``, taking the same
arguments with shapes in place of arrays (the batch entry may be ``None``); ``output_shape(name, ...)``
looks one up by name.

>>> import numpy as np
>>> x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype(np.float32)
>>> w = np.random.default_rng(1).standard_normal((3, 3, 3, 16)).astype(np.float32)
>>> y = global_avg_pool(max_pool(conv(x, w, padding="same"), 2))
>>> y.shape, output_shape("conv", (None, 8, 8, 3), (3, 3, 3, 16), padding="same")
((2, 16), (None, 8, 8, 16))
"""
from . import convolution as _conv_module, dropouts as _dropout_module, linear as _linear_module
from . import normalization as _normalization_module, pooling as _pooling_module, shape as _shape_module
from . import attention as _attention_module, recurrent as _recurrent_module
from .attention import *  # noqa: F401,F403
from .convolution import *  # noqa: F401,F403
from .dropouts import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .recurrent import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403

_MODULES = (_linear_module, _conv_module, _pooling_module, _normalization_module, _dropout_module, _shape_module)

# name -> its shape function, for every layer that has one
_OUTPUT_SHAPES = {name[:-len("_output_shape")]: getattr(m, name)
                  for m in _MODULES for name in m.__all__ if name.endswith("_output_shape")}


def output_shape(name: str, *input_shapes, **options) -> tuple:
    """Output shape of layer ``name`` for the given input and parameter shapes, without running it.

    Calls ``{name}_output_shape(*input_shapes, **options)``: the layer's own arguments, with shapes for
    arrays (a ``None`` batch size passes through).

    >>> output_shape("dense", (None, 784), (784, 128))
    (None, 128)
    >>> output_shape("max_pool", (None, 28, 28, 8), kernel_size=2)
    (None, 14, 14, 8)
    """
    fn = _OUTPUT_SHAPES.get(name)
    if fn is None:
        raise ValueError(f"output_shape: unknown layer {name!r}; known: {', '.join(sorted(_OUTPUT_SHAPES))}")
    return fn(*input_shapes, **options)


# Sequence layers return (outputs, carry) or take cells: they have no shape functions.
_SEQUENCE_MODULES = (_recurrent_module, _attention_module)

__all__ = [name for m in _MODULES + _SEQUENCE_MODULES for name in m.__all__] + ["output_shape"]
