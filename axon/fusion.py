"""Fusion passes on a traced plan: fewer ops and fewer passes over memory, the same numbers to rounding.

``axon.jit`` records the primitives a function ran as a list of ``Op``\\ s; before the ``Plan`` is made,
``run`` rewrites that list with small passes, each ``(ops, values, constants, results) -> ops``:

- ``bias_relu``: ``add(x, b)`` then ``relu`` becomes the ``kernels.bias_relu`` kernel, and the backward
  pattern of the two (``greater(x, 0)``, ``mul(dy, mask)``, the bias gradient's ``sum`` and ``reshape``)
  becomes ``kernels.bias_relu_backward``: one pass each way instead of two and four.
- ``pool_first``: ``max_pool(bias_relu(z, b))`` becomes ``bias_relu(max_pool(z), b)``, and its backward
  likewise: the same numbers (relu and adding a bias keep the order of a window's values), with the
  bias, the relu and relu's backward on the pooled array, a quarter of the size for 2x2 windows.
- ``conv_pool``: ``max_pool(conv(x, w))`` with windows that tile the output (the usual ``max_pool(2)``)
  becomes one sweep (``kernels.conv_pool``) that pools each block of the convolution's rows while it is
  in the cache; the backward rebuilds each block's gradient from the pooled one where it is used. The
  convolution's output and its gradient (for the MNIST CNN's first layer, 12.8 MB each) are never written.
- ``flat_round_trip``: ``flat.join`` of every view one ``flat.split`` cut, in order, is the split buffer
  itself (``axon.flat``: the optimizer's update split into a tree, joined again by ``apply_updates``); the
  join goes, and readers read the buffer.
- ``adam_apply``: the optimizer's ``kernels.adam_step_at`` and ``apply_updates``' ``add`` of its update
  to the params become one pass (``kernels.adam.adam_apply_at``, on the GPU ``axon.cuda.backward``'s):
  the update is never written to memory, and on the GPU the whole step of the optimizer is one launch.
- ``xent_sum``: the cross-entropy's per-example losses summed (``kernels.softmax_cross_entropy`` then
  ``sum``, a mean loss's forward) become one op, and that sum's gradient, a number made an (N,) array by
  ``reshape`` and ``broadcast_to``, goes into ``kernels.softmax_cross_entropy_backward`` as the one number
  it is: three small ops fewer, each of which cost a training step of the MNIST MLP 5-15 us.
- ``elementwise``: a run of consecutive elementwise ops with one output shape (the backward's
  ``dy * (x > 0)``, tanh's ``dy * (1 - y * y)``, gelu's arithmetic, a leaky relu) becomes one generated
  ``numba.njit`` loop, ``fused[mul,sub,mul]`` in the plan: each element is read once, computed through
  the whole chain in registers, and written once. ``exp``, ``log``, ``tanh``, ``sigmoid`` and ``power``
  stay numpy's own (SIMD) loops unless numba has SVML (``FUSE_TRANSCENDENTAL``). In a plan traced on
  the GPU the same runs become one generated ``cuda.jit`` kernel each (``axon.cuda.fused``), calling
  the device functions the ops' own CUDA kernels are made from; there the transcendental functions
  join too (the device's math library, as in each op's own kernel).

A pass fuses only what it can prove safe: every slot it removes is read by nothing else and is not a
result, the shapes and dtypes recorded while tracing (``values``: slot -> the array it held) match what
the kernel computes, and every op is the CPU forward of its primitive, or (for ``adam_apply`` and
``elementwise``) a CUDA op: recorded as dispatched at each call, with device arrays while tracing. The
other passes leave a CUDA plan's ops as they are (its ``kernels.*`` forwards are the device's own;
``flat_round_trip`` only drops a join, on either backend). The softmax cross-entropy itself
needs no pass: axon's cross-entropy losses (and the model-form ``training.step``, which takes the loss
from the logits) call the fused ``kernels.softmax_cross_entropy`` already; ``xent_sum`` removes what is
around it.

``ENABLED`` turns fusion off for the plans traced from then on (``AXON_FUSION=0`` in the environment
does so from the start), so the fused and unfused replays can be compared.

>>> import numpy as np, axon
>>> from axon.autograd import ops, Tensor
>>> f = axon.jit(lambda x, b: ops.sqrt(ops.abs(Tensor(x) - b)) * 2.0)
>>> y = f(np.ones((64, 32), np.float32), np.zeros(32, np.float32))
>>> print(next(iter(f.plans.values())))
plan: 2 inputs, 1 constant, 1 ops
  %6 = fused[sub,abs,sqrt,mul](%0, %1, %5)
  return %6
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import os
import sys
from collections import defaultdict

import numba
import numpy as np
from numba import njit

from .autograd.engine import PRIMITIVES
from .backend import backend_of
from .tracing import Op, _as_arrays, dispatch
from .kernels._common import FASTMATH, PARALLEL_MIN, contiguous
from .kernels.adam import adam_apply_at
from .kernels.conv_pool import conv_max_pool, conv_max_pool_backward, fuses as conv_pool_fuses
from .kernels.softmax_family import xent_sum as _xent_sum_forward

__all__ = ["ENABLED", "FUSE_MIN_SIZE", "FUSE_TRANSCENDENTAL", "run", "bias_relu", "pool_first", "conv_pool",
           "flat_round_trip", "adam_apply", "xent_sum", "elementwise", "FusedLoop", "cache_folder"]

ENABLED = os.environ.get("AXON_FUSION", "1") != "0"

# A chain smaller than this many elements stays as it is: calling a compiled loop costs a few
# microseconds, about what numpy spends on a small array per op, so fusing tiny arrays gains nothing.
FUSE_MIN_SIZE = 1024


def run(ops: list, values: list, constants: dict, results: list) -> list:
    """Every pass in turn (when ``ENABLED``): the plan's ops, fused.

    ``values``: slot -> the array it held while tracing (shapes and dtypes); ``constants``: slot ->
    array for the plan's constants; ``results``: the slots the plan returns (never fused away).

    >>> x = np.ones((4, 300))
    >>> plan = [Op("neg", PRIMITIVES["neg"].forwards["cpu"], (0,), {}, 1),
    ...         Op("abs", PRIMITIVES["abs"].forwards["cpu"], (1,), {}, 2)]
    >>> [op.name for op in run(plan, [x, -x, np.abs(-x)], {}, [2])]
    ['fused[neg,abs]']
    """
    if not ENABLED:
        return ops
    for fuse in (bias_relu, pool_first, conv_pool, flat_round_trip, adam_apply, xent_sum, elementwise):
        ops = fuse(ops, values, constants, results)
    return ops


# ---- what a pass needs to know about the plan --------------------------------------------------------------
def _is_cpu(op: Op) -> bool:
    """Whether ``op`` runs its primitive's own CPU forward (not another backend's, not a wrapped one)."""
    prim = PRIMITIVES.get(op.name)
    return prim is not None and op.forward is prim.forwards.get("cpu")


def _backend(op: Op, values: list) -> str | None:
    """Whose kernels ``op`` runs: ``"cpu"`` (its primitive's CPU forward), ``"cuda"``, or None.

    A plan traced on the GPU records ``partial(dispatch, prim)``, which picks the backend at each call:
    such an op is a CUDA op when what it wrote and read while tracing were CUDA arrays (or 0-d host
    arrays, which ``dispatch`` moves to the device). ``backend_of`` tells, so numba.cuda is not imported.

    >>> _backend(Op("neg", PRIMITIVES["neg"].forwards["cpu"], (0,), {}, 1), [np.ones(2), -np.ones(2)])
    'cpu'
    """
    if _is_cpu(op):
        return "cpu"
    f, prim = op.forward, PRIMITIVES.get(op.name)
    if not (type(f) is functools.partial and f.func is dispatch and f.args[:1] == (prim,)):
        return None                                        # a wrapped forward, or not a primitive's
    written, read = [values[s] for s in op.written()], [values[s] for s in op.inputs]
    if written and all(_on_cuda(a) for a in written) and all(
            _on_cuda(a) or (type(a) is np.ndarray and a.ndim == 0) for a in read):
        return "cuda"
    return None


def _on_cuda(a) -> bool:
    """Whether ``a`` is an array of the CUDA backend (False for every array while it was never used)."""
    return backend_of(a).name == "cuda"


def _readers(ops: list) -> dict:
    """slot -> the indices of the ops that read it, in order."""
    readers = defaultdict(list)
    for i, op in enumerate(ops):
        for s in op.inputs:
            readers[s].append(i)
    return readers


def _producers(ops: list) -> dict:
    """slot -> the index of the op that wrote it (only ops with one output slot)."""
    return {op.outputs: i for i, op in enumerate(ops) if type(op.outputs) is int}


def _writers(ops: list) -> dict:
    """slot -> the index of the op that wrote it (every slot an op writes, of one or several outputs)."""
    return {s: i for i, op in enumerate(ops) for s in op.written()}


def _is_zero_constant(s: int, constants: dict) -> bool:
    """Whether slot ``s`` is a 0-d constant holding 0 (the ``0`` of ``x > 0``, made when the VJP ran)."""
    a = constants.get(s)
    return a is not None and a.ndim == 0 and a == 0


# ---- pass 1: bias + relu -------------------------------------------------------------------------------
def bias_relu(ops: list, values: list, constants: dict, results: list) -> list:
    """``relu(add(x, b))`` as ``kernels.bias_relu(x, b)``, and its backward as ``kernels.bias_relu_backward``.

    Forward: ``s = add(x, b)``, ``y = relu(s)`` with ``x`` (..., C), ``b`` (C,) of one float dtype. ``s``
    may be read only by the relu and by ``greater(s, 0)`` after it (relu's VJP, ``dy * (s > 0)``),
    which becomes ``greater(y, 0)``: the same mask, since ``y > 0`` exactly where ``s > 0``.

    Backward: ``m = greater(y, 0)``, ``g = mul(dy, m)``, ``r = sum(g)`` over all axes but the last,
    ``db = reshape(r)`` of shape (C,), with ``m`` and ``r`` read nowhere else, become
    ``(g, db) = kernels.bias_relu_backward(dy, y)`` at the ``mul``'s place. (As in the model's own fused
    layers, a NaN or inf in ``dy`` where ``y = 0`` then gives 0, not ``inf * 0 = nan``; ``db`` is summed
    in the kernel's order, so it agrees to rounding.)

    >>> cpu = lambda name: PRIMITIVES[name].forwards["cpu"]
    >>> x, b = np.array([[-1.0, 2.0]]), np.array([0.5, 0.5])
    >>> plan = [Op("add", cpu("add"), (0, 1), {}, 2), Op("relu", cpu("relu"), (2,), {}, 3)]
    >>> fused = bias_relu(plan, [x, b, x + b, np.maximum(x + b, 0)], {}, [3])
    >>> [(op.name, op.inputs, op.outputs) for op in fused]
    [('kernels.bias_relu', (0, 1), 3)]
    """
    ops = _bias_relu_forward(ops, values, constants, results)
    return _bias_relu_backward(ops, values, constants, results)


def _bias_relu_forward(ops, values, constants, results):
    readers, producer = _readers(ops), _producers(ops)
    out, replaced = list(ops), {}                          # replaced: op index -> new op (None: dropped)
    for i, op in enumerate(ops):
        if op.name != "relu" or not _is_cpu(op):
            continue
        s = op.inputs[0]
        j = producer.get(s)
        if j is None or ops[j].name != "add" or not _is_cpu(ops[j]) or s in results:
            continue
        x, b = ops[j].inputs
        xv, bv, sv = values[x], values[b], values[s]
        if not (xv.ndim >= 1 and bv.shape == xv.shape[-1:] and sv.shape == xv.shape
                and xv.dtype == bv.dtype == sv.dtype and xv.dtype in (np.float32, np.float64)):
            continue
        masks = [k for k in readers[s] if k != i]          # relu's VJP: greater(s, 0), after the relu
        if not all(k > i and ops[k].name == "greater" and _is_cpu(ops[k]) and ops[k].inputs[0] == s
                   and _is_zero_constant(ops[k].inputs[1], constants) for k in masks):
            continue
        replaced[j] = None
        replaced[i] = Op("kernels.bias_relu", PRIMITIVES["kernels.bias_relu"].forwards["cpu"], (x, b), {}, op.outputs)
        for k in masks:
            replaced[k] = ops[k]._replace(inputs=(op.outputs, ops[k].inputs[1]))
    for k, new in replaced.items():
        out[k] = new
    return [op for op in out if op is not None]


def _bias_relu_backward(ops, values, constants, results):
    readers, producer = _readers(ops), _producers(ops)
    forward_outputs = {op.outputs for op in ops if op.name == "kernels.bias_relu"}
    out, replaced = list(ops), {}
    for i, op in enumerate(ops):                           # i: the mul(dy, mask)
        if op.name != "mul" or not _is_cpu(op):
            continue
        for mask_at in (1, 0):
            m, dy = op.inputs[mask_at], op.inputs[1 - mask_at]
            k = producer.get(m)
            if k is not None and ops[k].name == "greater" and ops[k].inputs[0] in forward_outputs:
                break
        else:
            continue
        y, g = ops[k].inputs[0], op.outputs
        if not (_is_cpu(ops[k]) and _is_zero_constant(ops[k].inputs[1], constants) and readers[m] == [i]
                and m not in results and values[dy].shape == values[y].shape == values[g].shape
                and values[dy].dtype == values[y].dtype == values[g].dtype):
            continue
        sums = [j for j in readers[g] if ops[j].name == "sum" and _is_cpu(ops[j])]
        C = values[y].shape[-1]
        for j in sums:                                     # r = sum(g) over the leading axes, db = reshape(r)
            r = ops[j].outputs
            if r in results or values[r].shape not in ((C,), (1,) * (values[y].ndim - 1) + (C,)):
                continue
            axis = ops[j].params.get("axis")
            axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis) if axis is not None else None
            if axes != tuple(range(values[y].ndim - 1)):
                continue
            if len(readers[r]) != 1 or ops[readers[r][0]].name != "reshape" or not _is_cpu(ops[readers[r][0]]):
                continue
            n = readers[r][0]
            db = ops[n].outputs
            if values[db].shape != (C,):
                continue
            replaced[k], replaced[j], replaced[n] = None, None, None
            replaced[i] = Op("kernels.bias_relu_backward", PRIMITIVES["kernels.bias_relu_backward"].forwards["cpu"],
                             (dy, y), {}, (g, db))
            break
    for k, new in replaced.items():
        out[k] = new
    return [op for op in out if op is not None]


# ---- pass 2: max pooling before bias + relu ------------------------------------------------------------------
def pool_first(ops: list, values: list, constants: dict, results: list) -> list:
    """``max_pool(bias_relu(z, b))`` as ``bias_relu(max_pool(z), b)``, forward and backward.

    Forward ``y = kernels.bias_relu(z, b)``, ``(p, arg) = kernels.max_pool(y)`` becomes ``(q, arg) =
    kernels.max_pool(z)``, ``p = kernels.bias_relu(q, b)``; backward ``(dz,) = kernels.max_pool_backward(dp,
    arg)``, ``(g, db) = kernels.bias_relu_backward(dz, y)`` becomes ``(gq, db) = kernels.bias_relu_backward(dp,
    p)``, ``(g,) = kernels.max_pool_backward(gq, arg)``. The same numbers: ``v -> max(v + b, 0)`` never
    reverses the order of two values (rounding is monotone), so the largest of a window gives the largest
    result, and NaN wins in both orders. Only a tie changes: where two values of a window become equal
    once ``b`` is added (within rounding of each other), the gradient goes to the larger instead of the
    first. ``y``, ``dz`` and ``arg`` must be read by nothing else, and no window may be empty.

    >>> cpu = lambda name: PRIMITIVES[name].forwards["cpu"]
    >>> from axon.kernels.pool import _window_bins
    >>> z, b = np.arange(-8.0, 8.0).reshape(1, 4, 4, 1), np.array([1.0])
    >>> bins, out_shape, _ = _window_bins("max_pool", z, (2, 2), (2, 2), ((0, 0), (0, 0)))
    >>> y = cpu("kernels.bias_relu")(z, b); p, arg = cpu("kernels.max_pool")(y, bins=bins, out_shape=out_shape)
    >>> plan = [Op("kernels.bias_relu", cpu("kernels.bias_relu"), (0, 1), {}, 2),
    ...         Op("kernels.max_pool", cpu("kernels.max_pool"), (2,), dict(bins=bins, out_shape=out_shape), (3, 4))]
    >>> values = [z, b, y, p, arg]
    >>> fused = pool_first(plan, values, {}, [3])
    >>> [(op.name, op.inputs, op.outputs) for op in fused]
    [('kernels.max_pool', (0,), (5, 4)), ('kernels.bias_relu', (5, 1), 3)]
    >>> q, _ = fused[0].forward(z, **fused[0].params); fused[1].forward(q, b).ravel(), p.ravel()
    (array([0., 0., 6., 8.]), array([0., 0., 6., 8.]))
    """
    readers, producer = _readers(ops), _producers(ops)
    made_at = _writers(ops)
    out, replaced = list(ops), {}
    for k, pool in enumerate(ops):                         # k: the max_pool
        if pool.name != "kernels.max_pool" or not _is_cpu(pool):
            continue
        y, (p, arg) = pool.inputs[0], pool.outputs
        i = producer.get(y)                                # i: the bias_relu
        if i is None or ops[i].name != "kernels.bias_relu" or not _is_cpu(ops[i]) or y in results:
            continue
        if not all(bool((bins[:, 1] > bins[:, 0]).all()) for bins in pool.params["bins"]):
            continue
        backward = _pool_and_relu_backward(ops, readers, made_at, results, k, y, arg)
        if backward is False:
            continue
        z, b = ops[i].inputs
        q = len(values)                                    # the pooled pre-activation: a new slot
        values.append(np.empty(values[p].shape, values[p].dtype))
        replaced[i] = None
        replaced[k] = [pool._replace(inputs=(z,), outputs=(q, arg)), ops[i]._replace(inputs=(q, b), outputs=p)]
        if backward is not None:                           # j: bias_relu_backward, n: max_pool_backward
            j, n = backward
            (g, db), dp = ops[j].outputs, ops[n].inputs[0]
            gq = len(values)                               # relu's backward on the pooled gradient: a new slot
            values.append(np.empty(values[dp].shape, values[dp].dtype))
            replaced[n] = [ops[j]._replace(inputs=(dp, p), outputs=(gq, db)),
                           ops[n]._replace(inputs=(gq, arg), outputs=(g,))]
            replaced[j] = None
    for k, new in replaced.items():
        out[k] = new
    return [o for op in out if op is not None for o in (op if isinstance(op, list) else [op])]


def _pool_and_relu_backward(ops, readers, made_at, results, k, y, arg):
    """For the max_pool ``ops[k]`` of the relu output ``y``: the backward ops ``(j, n)`` to swap, None
    when there is no backward (an inference plan), False when the plan reads ``y`` or ``arg`` otherwise.

    The backward must be ``(dz,) = ops[n]`` = ``max_pool_backward(dp, arg)`` and ``ops[j]`` =
    ``bias_relu_backward(dz, y)``, the only readers of ``arg``, ``dz`` and (but the pool) ``y``.
    """
    backs = [j for j in readers[y] if j != k]
    if not backs and not readers[arg]:
        return None
    if len(backs) != 1 or len(readers[arg]) != 1:
        return False
    j, n = backs[0], readers[arg][0]
    dz = ops[j].inputs[0]
    if not (ops[j].name == "kernels.bias_relu_backward" and _is_cpu(ops[j]) and ops[j].inputs[1] == y
            and ops[n].name == "kernels.max_pool_backward" and _is_cpu(ops[n]) and ops[n].inputs[1] == arg
            and made_at.get(dz) == n and readers[dz] == [j] and dz not in results):
        return False
    return j, n


# ---- pass 3: a convolution and the max pooling after it --------------------------------------------------
def conv_pool(ops: list, values: list, constants: dict, results: list) -> list:
    """``max_pool(conv(x, w))`` as one sweep (``kernels.conv_pool``), and its backward likewise.

    Forward ``y = kernels.conv(x, w)``, ``(q, arg) = kernels.max_pool(y)`` becomes ``(q, arg) =
    fused[kernels.conv,kernels.max_pool](x, w)``: the convolution's output is pooled block by block while
    it is in the cache, never written. Backward ``(dy,) = kernels.max_pool_backward(dq, arg)``, ``(dx, dw)
    = kernels.conv_backward(dy, x, w)`` becomes ``(dx, dw) = fused[kernels.max_pool_backward,
    kernels.conv_backward](dq, arg, x, w)``: each block's ``dy`` is rebuilt from ``dq`` where the products
    use it. The numbers are the unfused ops' to rounding (the same products in other blocks; the same
    argmax). Fused only where the kernel applies: a 1-d or 2-d convolution with ``groups=1``, windows
    that tile it (window = stride, no padding), ``y`` read only by the pool and ``arg`` and ``dy`` only
    by the backward, a ``conv_backward`` of the same ``x``, ``w`` and geometry, and a pooled line's columns
    small enough for the cache (``kernels.conv_pool.fuses``; after ``pool_first``, a relu between the conv
    and the pool has moved after the pool).

    >>> from axon.kernels.pool import _window_bins
    >>> cpu = lambda name: PRIMITIVES[name].forwards["cpu"]
    >>> x, w = np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 2))
    >>> conv = dict(strides=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1, out_spatial=(4, 4))
    >>> y = cpu("kernels.conv")(x, w, **conv)
    >>> bins, out_shape, _ = _window_bins("max_pool", y, (2, 2), (2, 2), ((0, 0), (0, 0)))
    >>> plan = [Op("kernels.conv", cpu("kernels.conv"), (0, 1), conv, 2),
    ...         Op("kernels.max_pool", cpu("kernels.max_pool"), (2,), dict(bins=bins, out_shape=out_shape), (3, 4))]
    >>> q, arg = cpu("kernels.max_pool")(y, bins=bins, out_shape=out_shape)
    >>> fused = conv_pool(plan, [x, w, y, q, arg], {}, [3])
    >>> [(op.name, op.inputs, op.outputs) for op in fused]
    [('fused[kernels.conv,kernels.max_pool]', (0, 1), (3, 4))]
    >>> y[0, :, :, 0]                                              # 4 taps at a corner, 6 on an edge, 9 inside
    array([[4., 6., 6., 4.],
           [6., 9., 9., 6.],
           [6., 9., 9., 6.],
           [4., 6., 6., 4.]])
    >>> fused[0].forward(x, w, **fused[0].params)[0][0, :, :, 0]     # each 2x2 window's largest
    array([[9., 9.],
           [9., 9.]])
    """
    readers, producer = _readers(ops), _producers(ops)
    made_at = _writers(ops)
    out = list(ops)
    for k, pool in enumerate(ops):                         # k: the max_pool
        if pool.name != "kernels.max_pool" or not _is_cpu(pool):
            continue
        y, (q, arg) = pool.inputs[0], pool.outputs
        i = producer.get(y)                                # i: the conv
        if i is None or ops[i].name != "kernels.conv" or not _is_cpu(ops[i]) or y in results or readers[y] != [k]:
            continue
        conv = ops[i]
        geometry = {key: conv.params[key] for key in ("strides", "padding", "dilation", "groups", "out_spatial")}
        window = _tiling_window(pool.params["bins"], values[y])
        if window is None or not conv_pool_fuses(values[conv.inputs[1]].shape, values[y].dtype, geometry["groups"],
                                                 geometry["out_spatial"], window):
            continue
        backward = _conv_and_pool_backward(ops, readers, made_at, results, conv, arg, geometry)
        if backward is False:
            continue
        out[i] = None
        out[k] = Op("fused[kernels.conv,kernels.max_pool]", conv_max_pool, conv.inputs,
                    dict(geometry, window=window, out_shape=pool.params["out_shape"]), pool.outputs)
        if backward is not None:
            n, j = backward
            out[n] = None
            out[j] = Op("fused[kernels.max_pool_backward,kernels.conv_backward]", conv_max_pool_backward,
                        (ops[n].inputs[0], arg, *conv.inputs),
                        dict(geometry, window=window, need_dx=ops[j].params["need_dx"],
                             need_dw=ops[j].params["need_dw"]), ops[j].outputs)
    return [op for op in out if op is not None]


def _conv_and_pool_backward(ops, readers, made_at, results, conv, arg, geometry):
    """For the pool of ``conv``'s output with argmax ``arg``: the backward ops ``(n, j)`` to fuse, None when
    there is no backward (an inference plan), False when the plan reads ``arg`` or the gradient otherwise.

    The backward must be ``(dy,) = ops[n]`` = ``max_pool_backward(dq, arg)``, the only reader of ``arg``,
    and ``ops[j]`` = ``conv_backward(dy, x, w)`` with the conv's ``x``, ``w`` and geometry, the only reader
    of ``dy``.
    """
    if not readers[arg]:
        return None
    n = readers[arg][0]
    dy = ops[n].outputs[0] if type(ops[n].outputs) is tuple else None
    if not (len(readers[arg]) == 1 and ops[n].name == "kernels.max_pool_backward" and _is_cpu(ops[n])
            and ops[n].inputs[1] == arg and dy is not None and dy not in results and made_at.get(dy) == n
            and len(readers[dy]) == 1):
        return False
    j = readers[dy][0]
    if not (ops[j].name == "kernels.conv_backward" and _is_cpu(ops[j]) and ops[j].inputs == (dy, *conv.inputs)
            and all(ops[j].params[key] == v for key, v in geometry.items())):
        return False
    return n, j


def _tiling_window(bins, y) -> tuple | None:
    """The pool's window along the conv output's spatial axes when its windows tile them (window = stride,
    no padding, none along a leading axis of size 1), else None. ``bins``: the three (O, 2) arrays."""
    window = []
    for b in bins:
        size = int(b[0, 1] - b[0, 0])
        starts, sizes = b[:, 0], b[:, 1] - b[:, 0]
        if size < 1 or not (np.array_equal(starts, np.arange(len(b)) * size) and bool((sizes == size).all())):
            return None
        window.append(size)
    if window[0] != 1 or len(bins[0]) != 1:                # a 3-d pool, or a depth axis the conv has
        return None
    return tuple(window[3 - (y.ndim - 2):])


# ---- pass 4: a flat buffer split into views and joined again is the buffer ----------------------------------
def _renamed(op: Op, rename: dict) -> Op:
    """``op`` reading ``rename[s]`` in place of each slot ``s`` it reads that ``rename`` names."""
    return op._replace(inputs=tuple(rename.get(s, s) for s in op.inputs)) if any(s in rename for s in op.inputs) else op


def flat_round_trip(ops: list, values: list, constants: dict, results: list) -> list:
    """``y = flat.join(*flat.split(x))`` (every view, in order, nothing else between) read as ``x`` itself.

    ``axon.flat``'s join of the views its split cut from one buffer *is* that buffer (no copy, decided when
    it runs); a plan that splits the optimizer's update into a tree and joins it again for ``apply_updates``
    reads the update directly once the join goes, so ``adam_apply`` can see the add that reads it. The
    split stays while any of its views is read or returned. Checked: the join's and the buffer's shapes
    and dtypes match (the views cover all of it), and the join's result is not returned.

    >>> split = PRIMITIVES["flat.split"].forwards["cpu"]; join = PRIMITIVES["flat.join"].forwards["cpu"]
    >>> x = np.arange(5.0); a, b = split(x, ((2,), (3,)))
    >>> plan = [Op("flat.split", split, (0,), {"shapes": ((2,), (3,))}, (1, 2)), Op("flat.join", join, (1, 2), {}, 3),
    ...         Op("neg", PRIMITIVES["neg"].forwards["cpu"], (3,), {}, 4)]
    >>> [(op.name, op.inputs) for op in flat_round_trip(plan, [x, a, b, x, -x], {}, [4])]
    [('neg', (0,))]
    """
    made_by = _writers(ops)
    rename: dict = {}
    out = list(ops)
    for k, op in enumerate(ops):
        if op.name != "flat.join" or op.outputs in results or type(op.outputs) is not int or not op.inputs:
            continue
        i = made_by.get(op.inputs[0])
        split = ops[i] if i is not None else None
        if (split is None or split.name != "flat.split" or type(split.outputs) is not tuple
                or tuple(split.outputs) != tuple(op.inputs)):
            continue
        x, y = split.inputs[0], op.outputs
        a, b = values[x], values[y]
        if a.shape != b.shape or a.dtype != b.dtype or backend_of(a) is not backend_of(b):
            continue
        rename[y] = rename.get(x, x)
        out[k] = None
    if not rename:
        return ops
    out = [_renamed(op, rename) for op in out if op is not None]
    readers = _readers(out)
    return [op for op in out if not (op.name == "flat.split" and type(op.outputs) is tuple
                                     and not any(readers.get(s) or s in results for s in op.written()))]


# ---- pass 5: Adam's update added to the params in the same pass ---------------------------------------------
def adam_apply(ops: list, values: list, constants: dict, results: list) -> list:
    """``kernels.adam_step_at`` and the ``add`` of its update to the params as one pass over memory.

    ``(u, m_new, v_new) = kernels.adam_step_at(p, g, m, v, t, lr)`` then ``new = add(params, u)``
    (``apply_updates``), with ``u`` read by nothing else and ``params`` of ``u``'s shape and dtype made
    before the update, become ``(new, m_new, v_new) = fused[kernels.adam_step_at,add](params, p, g, m, v,
    t, lr)`` at the update's place. The kernel adds each element of ``u`` to the params as it makes it,
    so the numbers are the unfused plan's, bit for bit, and one array less is written and read again.

    >>> cpu = lambda name: PRIMITIVES[name].forwards["cpu"]
    >>> p, g, m, v, t, lr = np.ones(3), np.full(3, 0.5), np.zeros(3), np.zeros(3), np.asarray(1), np.asarray(0.1)
    >>> settings = dict(b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0)
    >>> u, m2, v2 = cpu("kernels.adam_step_at")(p, g, m, v, t, lr, **settings)
    >>> plan = [Op("kernels.adam_step_at", cpu("kernels.adam_step_at"), (0, 1, 2, 3, 4, 5), settings, (6, 7, 8)),
    ...         Op("add", cpu("add"), (0, 6), {}, 9)]
    >>> fused = adam_apply(plan, [p, g, m, v, t, lr, u, m2, v2, p + u], {}, [9, 7, 8])
    >>> [(op.name, op.inputs, op.outputs) for op in fused]
    [('fused[kernels.adam_step_at,add]', (0, 0, 1, 2, 3, 4, 5), (9, 7, 8))]
    >>> fused[0].forward(p, *(p, g, m, v, t, lr), **settings)[0]            # 1 - lr sign(g)
    array([0.9, 0.9, 0.9])
    """
    readers = _readers(ops)
    made_at = _writers(ops)
    out, hoisted = list(ops), defaultdict(list)
    for i, op in enumerate(ops):
        if op.name != "kernels.adam_step_at":
            continue
        where = "cpu" if _is_cpu(op) else _backend(op, values)
        if where is None:
            continue
        u = op.outputs[0]
        if u in results or len(readers[u]) != 1:
            continue
        k = readers[u][0]
        add = ops[k]
        if add.name != "add" or add.inputs.count(u) != 1 or not (
                _is_cpu(add) if where == "cpu" else _backend(add, values) == "cuda"):
            continue
        params, new = add.inputs[1 - add.inputs.index(u)], add.outputs
        if not ((type(values[params]) is np.ndarray if where == "cpu" else _on_cuda(values[params]))
                and values[params].shape == values[u].shape == values[new].shape
                and values[params].dtype == values[u].dtype == values[new].dtype):
            continue
        j = made_at.get(params, -1)
        if j > i:                        # made after the update: a flat.join of the params (apply_updates'),
            join = ops[j]                # which reads only what exists before it, moves up to the update
            if join.name != "flat.join" or out[j] is None or any(made_at.get(s, -1) >= i for s in join.inputs):
                continue
            hoisted[i].append(join)
            out[j] = None
        fused = adam_apply_at if where == "cpu" else _cuda_adam_apply_at()
        out[i] = Op("fused[kernels.adam_step_at,add]", fused, (params, *op.inputs), op.params,
                    (new, *op.outputs[1:]))
        out[k] = None
    return [o for i, op in enumerate(out) for o in hoisted.get(i, []) + [op] if o is not None]


def _cuda_adam_apply_at():
    """``axon.cuda.backward.adam_apply_at`` (imported only for a plan traced on the GPU)."""
    from .cuda.backward import adam_apply_at as cuda_adam_apply_at
    return cuda_adam_apply_at


# ---- pass 6: the cross-entropy's sum, forward and backward -------------------------------------------------
def _is_cpu_or_scalar(op: Op) -> bool:
    """``_is_cpu``, or the CPU forward wrapped as ``axon.jit`` wraps one that returns a host scalar."""
    f, prim = op.forward, PRIMITIVES.get(op.name)
    return _is_cpu(op) or (prim is not None and type(f) is functools.partial and f.func is _as_arrays
                           and f.args == (prim.forwards.get("cpu"),))


def xent_sum(ops: list, values: list, constants: dict, results: list) -> list:
    """``sum(kernels.softmax_cross_entropy(x, t, labels))`` as one op, and the sum's gradient passed in as one number.

    Forward: ``L = kernels.softmax_cross_entropy(x, t, labels)``, ``S = sum(L)`` over all axes, with
    ``L`` read by nothing else, become ``S = fused[kernels.softmax_cross_entropy,sum](x, t, labels)``
    (the same ``np.sum`` of the same losses: bit for bit). Backward: ``r = reshape(g)``, ``q =
    broadcast_to(r)`` of a one-element ``g``, read only by ``(dx, dt) =
    kernels.softmax_cross_entropy_backward(q, x, t, labels)``, become that op reading ``g`` itself (its
    CPU kernel takes one number for every row): the same numbers again.

    >>> cpu = lambda name: PRIMITIVES[name].forwards["cpu"]
    >>> x, t, labels = np.zeros((3, 2)), np.empty((0, 0)), np.array([0, 1, 1])
    >>> L = cpu("kernels.softmax_cross_entropy")(x, t, labels)
    >>> plan = [Op("kernels.softmax_cross_entropy", cpu("kernels.softmax_cross_entropy"), (0, 1, 2), {}, 3),
    ...         Op("sum", cpu("sum"), (3,), {"axis": None, "keepdims": False}, 4)]
    >>> fused = xent_sum(plan, [x, t, labels, L, np.sum(L)], {}, [4])
    >>> [(op.name, op.inputs, op.outputs) for op in fused], fused[0].forward(x, t, labels)
    ([('fused[kernels.softmax_cross_entropy,sum]', (0, 1, 2), 4)], array(2.07944154))
    """
    readers, producer = _readers(ops), _producers(ops)
    out = list(ops)
    for i, op in enumerate(ops):
        if op.name == "kernels.softmax_cross_entropy" and _is_cpu(op):
            L = op.outputs
            if L in results or len(readers[L]) != 1:
                continue
            j = readers[L][0]
            total = ops[j]
            if (total.name == "sum" and _is_cpu_or_scalar(total) and total.params.get("axis") is None
                    and not total.params.get("keepdims") and values[total.outputs].ndim == 0):
                out[i] = Op("fused[kernels.softmax_cross_entropy,sum]", _xent_sum_forward, op.inputs, {},
                            total.outputs)
                out[j] = None
        elif op.name == "kernels.softmax_cross_entropy_backward" and _is_cpu(op):
            q = op.inputs[0]                                   # the (N,) gradient of the losses
            k = producer.get(q)
            if k is None or ops[k].name != "broadcast_to" or not _is_cpu(ops[k]) or q in results \
                    or readers[q] != [i]:
                continue
            g = ops[k].inputs[0]
            dropped = [k]
            p = producer.get(g)
            if p is not None and ops[p].name == "reshape" and _is_cpu(ops[p]) and readers[g] == [k] \
                    and g not in results:
                g = ops[p].inputs[0]                          # reshape's input: the number itself
                dropped.append(p)
            if values[g].size != 1 or values[g].dtype != values[q].dtype or type(values[g]) is not np.ndarray:
                continue
            out[i] = op._replace(inputs=(g,) + op.inputs[1:])
            for d in dropped:
                out[d] = None
    return [op for op in out if op is not None]


# ---- pass 7: chains of elementwise ops into one generated loop ------------------------------------------
# Each elementwise primitive as a scalar expression of its operands {0}, {1}, ... ({D}: the result's dtype).
_FLOAT_OPS = {
    "add": "{0} + {1}", "sub": "{0} - {1}", "mul": "{0} * {1}", "div": "{0} / {1}",
    "maximum": "np.maximum({0}, {1})", "minimum": "np.minimum({0}, {1})", "power": "{0} ** {1}",
    "neg": "-{0}", "exp": "np.exp({0})", "log": "np.log({0})", "sqrt": "np.sqrt({0})", "abs": "np.abs({0})",
    "tanh": "np.tanh({0})", "sigmoid": "{D}(0.5) * (np.tanh({D}(0.5) * {0}) + {D}(1))",
    "relu": "np.maximum({0}, {D}(0))", "log1p": "np.log1p({0})", "expm1": "np.expm1({0})",
    "sign": "np.sign({0})", "kernels.erf": "erf_scalar({0})", "where": "{1} if {0} else {2}",
}
_BOOL_OPS = {
    "less": "{0} < {1}", "less_equal": "{0} <= {1}", "greater": "{0} > {1}", "greater_equal": "{0} >= {1}",
    "equal": "{0} == {1}", "not_equal": "{0} != {1}",
    "logical_and": "{0} and {1}", "logical_or": "{0} or {1}", "logical_not": "not {0}",
}
_LOGICAL = {"logical_and", "logical_or", "logical_not"}
# Without Intel's SVML, numba computes these with one libm call per element, which numpy's SIMD loops
# beat by 4-18x (measured on (128, 128) float32: tanh 188 us fused against 10 us in numpy, exp 45 vs
# 12, x ** 2 as power 78 vs 10): a loop containing one would be slower than the ops apart. With
# SVML (``numba.config.USING_SVML``) numba vectorises them too, and they join the loops. (On CUDA
# they always join: there each is the device's own math library, as in the op's own kernel.)
_TRANSCENDENTAL = {"exp", "log", "tanh", "sigmoid", "log1p", "expm1", "power"}
FUSE_TRANSCENDENTAL = bool(numba.config.USING_SVML)
_DTYPE_NAMES = {np.dtype(np.float32): "np.float32", np.dtype(np.float64): "np.float64"}


def _scalar_of(name: str):
    """The CUDA device function of primitive ``name``'s elementwise forward (None: it has none).

    ``cuda_map`` and ``cuda_zip`` keep it on the forward they make (``forward.scalar``, a function of the
    operands and a tuple of constants): the op's own kernel and a fused one call the same function.

    >>> _scalar_of("sum") is None                           # a reduction: not elementwise
    True
    """
    return getattr(PRIMITIVES[name].forwards.get("cuda"), "scalar", None)


def _group_of(op: Op, values: list):
    """``(backend, dtype)``: whose loop ``op`` may join, the float dtype it computes in (None: a bool op).

    False when the pass cannot fuse it. Every operand and the result are of one float dtype D or bool:
    a float op gives D (bool operands of arithmetic become 0/1 in D, as numpy does), a comparison
    compares two D's, a logical op takes bools.
    """
    backend = _backend(op, values)
    if backend is None or type(op.outputs) is not int or op.params:
        return False
    if backend == "cpu" and op.name in _TRANSCENDENTAL and not FUSE_TRANSCENDENTAL:
        return False
    if backend == "cuda" and _scalar_of(op.name) is None:
        return False
    y, xs = values[op.outputs], [values[s] for s in op.inputs]
    if op.name in _FLOAT_OPS:
        d = y.dtype
        if d not in _DTYPE_NAMES or any(x.dtype not in (d, np.bool_) for x in xs):
            return False
        if op.name == "where" and xs[0].dtype != np.bool_:
            return False
        return backend, d
    if op.name in _BOOL_OPS and y.dtype == np.bool_:
        if op.name in _LOGICAL:
            return (backend, None) if all(x.dtype == np.bool_ for x in xs) else False
        d = xs[0].dtype
        return (backend, d) if d in _DTYPE_NAMES and all(x.dtype == d for x in xs) else False
    return False


def elementwise(ops: list, values: list, constants: dict, results: list) -> list:
    """Each run of consecutive elementwise ops of one output shape as one ``FusedLoop`` (CUDA: one kernel).

    A run of at least two ops on at least ``FUSE_MIN_SIZE`` elements, in one float dtype (and bool), on
    one backend, is fused (a CUDA plan's into ``axon.cuda.fused.FusedKernel``, one generated kernel):
    the loop's inputs are the slots the run reads but does not write (broadcast to the output shape
    as numpy would), its outputs the slots it writes that a later op or the results read; the
    slots only the run itself reads become registers of the loop and leave the plan. An op in between
    that cannot join but reads nothing the run writes (a scalar's arithmetic) moves before the loop,
    and a ``broadcast_to`` only the run reads (a backward's upstream gradient) leaves the plan: the
    loop broadcasts its input itself, instead of copying a stretched view into a full array.

    >>> cpu = lambda name: PRIMITIVES[name].forwards["cpu"]
    >>> dy, x, zero = np.ones((64, 32)), np.linspace(-1, 1, 64 * 32).reshape(64, 32), np.zeros(())
    >>> plan = [Op("greater", cpu("greater"), (1, 2), {}, 3), Op("mul", cpu("mul"), (0, 3), {}, 4)]
    >>> fused = elementwise(plan, [dy, x, zero, x > zero, dy * (x > zero)], {2: zero}, [4])
    >>> [(op.name, op.inputs, op.outputs) for op in fused]
    [('fused[greater,mul]', (1, 2, 0), 4)]
    >>> np.array_equal(fused[0].forward(x, zero, dy), dy * (x > 0))
    True
    """
    readers, producer = _readers(ops), _producers(ops)
    keep = set(results)
    out, run, moved, run_shape, run_dtype = [], [], [], None, None   # moved: ops that may run before the run
    run_backend = None                                     # "cpu" or "cuda": whose loop the run becomes
    bypassed = set()                                       # broadcast_to outputs the loops read through

    def close():
        if len(run) >= 2 and math.prod(run_shape) >= FUSE_MIN_SIZE:
            last = max(i for i, _ in run)
            written = [op.outputs for _, op in run]
            escaping = [s for s in written if s in keep or any(r > last for r in readers[s])]
            source = {}                                    # broadcast_to(u) read only here: read u (no copy)
            for _, op in run:
                for s in op.inputs:
                    p = producer.get(s)
                    if (p is not None and ops[p].name == "broadcast_to" and s not in keep
                            and _backend(ops[p], values) == run_backend
                            and all(r in {i for i, _ in run} for r in readers[s])):
                        source[s] = ops[p].inputs[0]
            bypassed.update(source)
            chain = [op._replace(inputs=tuple(source.get(s, s) for s in op.inputs)) for _, op in run]
            out.extend(op for _, op in moved)
            out.append(_fuse(chain, escaping, values, run_backend))
        else:                                              # nothing fused: every op keeps its place
            out.extend(op for _, op in sorted(run + moved, key=lambda pair: pair[0]))
        run.clear()
        moved.clear()

    for i, op in enumerate(ops):
        group = _group_of(op, values)
        if group is False:
            if run and not set(op.inputs) & {o.outputs for _, o in run}:
                moved.append((i, op))                      # reads nothing of the run: it may run first
            else:
                close()
                out.append(op)
            continue
        backend, d = group
        shape = values[op.outputs].shape
        if run and (shape != run_shape or backend != run_backend
                    or (d is not None and run_dtype is not None and d != run_dtype)):
            close()
        if not run:
            run_shape, run_dtype, run_backend = shape, None, backend
        run_dtype = run_dtype if d is None else d
        run.append((i, op))
    close()
    return [op for op in out if not (op.name == "broadcast_to" and op.outputs in bypassed)]


def _fuse(chain: list, escaping: list, values: list, backend: str) -> Op:
    """The op that computes ``chain`` in one loop (``backend`` "cuda": one kernel), writing ``escaping``."""
    written = {op.outputs for op in chain}
    inputs = []                                            # the slots the chain reads from outside, in order
    for op in chain:
        for s in op.inputs:
            if s not in written and s not in inputs:
                inputs.append(s)
    shape = values[chain[0].outputs].shape
    if backend == "cuda":                                  # (imported here: the plan's arrays are on the GPU)
        from .cuda.fused import FusedKernel as make
    else:
        make = FusedLoop
    loop = make([(op.name, op.inputs, op.outputs) for op in chain], inputs, escaping, shape,
                {s: (values[s].shape, values[s].dtype) for s in inputs + list(written)})
    outputs = escaping[0] if len(escaping) == 1 else tuple(escaping)
    return Op(f"fused[{','.join(op.name for op in chain)}]", loop, tuple(inputs), {}, outputs)


class FusedLoop:
    """A chain of elementwise ops as one generated ``numba.njit`` loop: the forward of a fused op.

    ``chain``: ``(primitive name, input slots, output slot)`` in order; ``inputs`` / ``outputs``: the
    slots the loop reads and writes; ``shape``: the output shape; ``info``: slot -> (shape, dtype).
    Axes along which every operand either is full or is broadcast alike are merged (a bias over
    (N, H, W, C) loops over (N*H*W, C)), so the loop nest is as shallow as the broadcasting allows.
    The kernel is compiled once per source text (kept in ``FusedLoop.compiled``) and runs serially
    below ``PARALLEL_MIN`` elements, with ``prange`` over its outer axis above.

    >>> x = np.arange(6.0).reshape(2, 3)
    >>> loop = FusedLoop([("mul", (0, 0), 1), ("neg", (1,), 2)], [0], [2], (2, 3),
    ...                  {0: ((2, 3), np.dtype(np.float64)), 1: ((2, 3), np.dtype(np.float64)),
    ...                   2: ((2, 3), np.dtype(np.float64))})
    >>> loop(x)
    array([[ -0.,  -1.,  -4.],
           [ -9., -16., -25.]])
    >>> print(loop.source)                                                      # doctest: +NORMALIZE_WHITESPACE
    def fused(x0, y0):
        for i0 in range(y0.shape[0]):
            a0 = x0[i0]
            t0 = np.float64(a0 * a0)
            t1 = np.float64(-t0)
            y0[i0] = t1
    """
    compiled: dict = {}                                    # (source, parallel) -> the njit function

    def __init__(self, chain: list, inputs: list, outputs: list, shape: tuple, info: dict):
        self.shape = shape
        self.out_dtypes = [info[s][1] for s in outputs]
        full = [_padded(info[s][0], len(shape)) for s in inputs]              # each input with shape's rank
        loop_shape, self.in_shapes = _merge_axes(shape, full)
        self.loop_shape = loop_shape
        self.parallel = math.prod(shape) >= PARALLEL_MIN and loop_shape[0] > 1
        self.source = _generate(chain, inputs, outputs, info, loop_shape, self.in_shapes, self.parallel)
        key = (self.source, self.parallel)
        if key not in FusedLoop.compiled:
            FusedLoop.compiled[key] = _compile(self.source, self.parallel)
        self.kernel = FusedLoop.compiled[key]

    def __call__(self, *arrays):
        xs = [contiguous(a).reshape(s) for a, s in zip(arrays, self.in_shapes)]   # views: merged axes
        ys = [np.empty(self.loop_shape, d) for d in self.out_dtypes]
        self.kernel(*xs, *ys)
        ys = [y.reshape(self.shape) for y in ys]
        return ys[0] if len(ys) == 1 else tuple(ys)

    def __repr__(self):
        return f"FusedLoop(shape={self.shape}, loop over {self.loop_shape})"


def _padded(shape: tuple, ndim: int) -> tuple:
    """``shape`` with leading 1s up to ``ndim`` axes, as broadcasting sees it."""
    return (1,) * (ndim - len(shape)) + tuple(shape)


def _merge_axes(shape: tuple, in_shapes: list) -> tuple:
    """The loop's shape and each input's shape in it: size-1 axes dropped, alike neighbours merged.

    >>> _merge_axes((8, 5, 5, 4), [(8, 5, 5, 4), (1, 1, 1, 4)])              # x and a bias
    ((200, 4), [(200, 4), (1, 4)])
    >>> _merge_axes((3, 4), [(3, 4), (1, 1)])                                 # x and a scalar
    ((12,), [(12,), (1,)])
    """
    groups = []                                            # [(size, which inputs are full there)]
    for d, n in enumerate(shape):
        if n == 1:
            continue
        pattern = tuple(s[d] == n for s in in_shapes)
        if groups and groups[-1][1] == pattern:
            groups[-1] = (groups[-1][0] * n, pattern)
        else:
            groups.append((n, pattern))
    if not groups:                                         # one element: a loop of one
        groups = [(1, (True,) * len(in_shapes))]
    loop_shape = tuple(n for n, _ in groups)
    return loop_shape, [tuple(n if p[k] else 1 for n, p in groups) for k in range(len(in_shapes))]


def _generate(chain, inputs, outputs, info, loop_shape, in_shapes, parallel) -> str:
    """The source of the fused loop: a loop nest over ``loop_shape``, one line per op of ``chain``."""
    rank = len(loop_shape)
    index = [f"i{d}" for d in range(rank)]

    def at(shape):                                         # x[i0, 0]: 0 along a broadcast axis
        return ", ".join(i if n > 1 else "0" for i, n in zip(index, shape))

    body = _body(chain, inputs, outputs, info, [f"x{k}[{at(s)}]" for k, s in enumerate(in_shapes)],
                 [f"y{k}[{at(loop_shape)}]" for k in range(len(outputs))], _expression)
    lines = [f"def fused({', '.join([f'x{k}' for k in range(len(inputs))] + [f'y{k}' for k in range(len(outputs))])}):"]
    indent = "    "
    for d in range(rank):
        loop = "prange" if parallel and d == 0 else "range"
        lines.append(f"{indent}for i{d} in {loop}(y0.shape[{d}]):")
        indent += "    "
    lines += [indent + line for line in body]
    return "\n".join(lines)


def _expression(prim: str, args: list, d: str | None) -> str:
    """The scalar expression of ``prim`` on ``args`` in the CPU loop (``d``: the result's dtype, by name)."""
    return _FLOAT_OPS[prim].format(*args, D=d) if d else _BOOL_OPS[prim].format(*args)


def _body(chain, inputs, outputs, info, reads, writes, expression) -> list:
    """The lines of a fused loop's body: each input read once, one line per op, each output written once.

    ``reads`` / ``writes``: the element each input is read from / each output written to (source text);
    ``expression(prim, args, d)``: the op's value of its operands ``args`` (``d``: the result dtype's
    name, None for a bool op). Bool operands of arithmetic become 0/1 in the result's dtype (not
    ``where``'s condition), and every float result is cast to its dtype, as the op alone would store it.

    >>> info = {0: ((), np.dtype(np.float32)), 1: ((), np.dtype(np.bool_)), 2: ((), np.dtype(np.float32))}
    >>> _body([("mul", (0, 1), 2)], [0, 1], [2], info, ["x[i]", "m[i]"], ["y[i]"], _expression)
    ['a0 = x[i]', 'a1 = m[i]', 't0 = np.float32(a0 * np.float32(a1))', 'y[i] = t0']
    """
    body = [f"a{k} = {read}" for k, read in enumerate(reads)]
    name = {s: f"a{k}" for k, s in enumerate(inputs)}
    for t, (prim, ins, out) in enumerate(chain):
        dtype = info[out][1]
        args = [name[s] for s in ins]
        if dtype in _DTYPE_NAMES:                          # bool operands of arithmetic: 0/1 in the result's dtype
            d = _DTYPE_NAMES[dtype]
            args = [a if info[s][1] != np.bool_ or (prim == "where" and k == 0) else f"{d}({a})"
                    for k, (a, s) in enumerate(zip(args, ins))]
            body.append(f"t{t} = {d}({expression(prim, args, d)})")
        else:
            body.append(f"t{t} = {expression(prim, args, None)}")
        name[out] = f"t{t}"
    return body + [f"{write} = {name[s]}" for write, s in zip(writes, outputs)]


def _compile(source: str, parallel: bool):
    """``source`` compiled with axon's kernel flags, and cached on disk as every axon kernel is.

    numba caches only functions that live in a file, so the source is written to
    ``cache_folder()/fused_<hash>.py`` (atomically, and only when the file does not hold that text:
    numba's cache is keyed by the file's time stamp) and imported from there. The next process loads
    the compiled loop in milliseconds instead of compiling it again (a few tenths of a second).
    Without a writable folder it is compiled in memory, in each process.
    """
    text = ("import math\n\nimport numpy as np\nfrom numba import prange\n\n"
            f"from axon.kernels.special import erf_scalar\n\n\n{source}\n")
    name = "fused_" + hashlib.sha1(text.encode()).hexdigest()[:20]
    flags = dict(fastmath=FASTMATH, error_model="numpy", parallel=parallel)
    try:
        from .serialization import atomic_write
        folder = cache_folder()
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, name + ".py")
        if not _holds(path, text):                         # missing, or not what its name promises
            atomic_write(path, lambda f: f.write(text), mode="w")
        spec = importlib.util.spec_from_file_location(f"axon_{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module                    # numba's cache finds the loop's globals by name
        spec.loader.exec_module(module)
        return njit(cache=True, **flags)(module.fused)
    except OSError:                                        # no cache folder: compiled in each process
        scope = {}
        exec(compile(text, f"<axon.fusion {name}>", "exec"), scope)
        return njit(**flags)(scope["fused"])


def _holds(path: str, text: str) -> bool:
    """Whether the file ``path`` exists and holds exactly ``text``."""
    try:
        with open(path) as f:
            return f.read() == text
    except OSError:
        return False


def cache_folder() -> str:
    """Where the generated loops are kept: ``$AXON_CACHE_DIR/fusion``, else ``~/.cache/axon/fusion``.

    >>> cache_folder().endswith("fusion")
    True
    """
    root = os.environ.get("AXON_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "axon")
    return os.path.join(root, "fusion")
