"""Memory planning for an ``axon.jit`` plan: outputs written into buffers allocated once, reused by liveness.

Replayed as recorded, a plan allocates every op's output afresh, as eager code does, and most of those
arrays die a few ops later: large ones are fresh pages from the OS at every step. ``plan_buffers``
decides, once per plan, which outputs go into buffers the plan keeps: each buffer holds one slot at a
time, and a slot whose lifetime has ended leaves its buffer to a later output of the same shape and dtype.

Which ops: those whose forward can write into a given array, ``INTO`` (numpy's elementwise ufuncs,
``relu``, ``kernels.matmul``), recorded with their CPU forward, with an output of ``MIN_BYTES`` or more.

What is never planned, so a replay cannot overwrite an array someone still holds:

- a result, or a slot a result may be a *view* of: aliasing is taken from the trace itself (an op's
  output that shares memory with one of its inputs, as a reshape's does, is a view of it);
- a buffer is free again only *after* the last op that reads its slot or a view of it, so no op writes
  over an input it is reading (a matrix product could not).

>>> import numpy as np
>>> from axon import fusion, jit
>>> fusion.ENABLED = False                               # (fusion would make the three ops one loop)
>>> f = jit(lambda x: (((x * 2.0) + 1.0) * 3.0).sum())   # three outputs, two buffers: the first is reused
>>> f(np.ones((64, 64), np.float32)), f(np.full((64, 64), 2.0, np.float32))
(array(36864., dtype=float32), array(61440., dtype=float32))
>>> plan = next(iter(f.plans.values()))
>>> plan.buffer_of, len(plan.buffers)
({0: 0, 1: 1, 2: 0}, 2)
>>> fusion.ENABLED = True

Donated arguments (``axon.jit(fn, donate_argnums=...)``) go further: the caller gives their arrays up, so
``donate_in_place`` lets the optimizer's fused update write the new params and moments over the old
ones (``kernels.adam.adam_apply_in_place``), as PyTorch's ``optimizer.step()`` does, instead of into
fresh arrays: no allocation, and each element read and written in one place in the cache.
"""
from __future__ import annotations

import numpy as np

from .autograd.engine import PRIMITIVES

__all__ = ["INTO", "MIN_BYTES", "plan_buffers", "donate_in_place"]

_UFUNCS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "maximum": np.maximum,
           "minimum": np.minimum, "neg": np.negative, "exp": np.exp, "log": np.log, "sqrt": np.sqrt,
           "abs": np.abs, "tanh": np.tanh}


def _ufunc_into(ufunc):
    def into(out, *arrays):
        return ufunc(*arrays, out=out)
    return into


def _matmul_into(out, a, b, transpose_a, transpose_b):
    return PRIMITIVES["kernels.matmul"].forwards["cpu"](a, b, transpose_a, transpose_b, out=out)


# name -> into(out, *arrays, **params): the op's CPU forward, writing its result into ``out``
INTO = {**{name: _ufunc_into(u) for name, u in _UFUNCS.items()},
        "relu": lambda out, x: np.maximum(x, 0, out=out),
        "kernels.matmul": _matmul_into}

MIN_BYTES = 1 << 14          # smaller outputs come from numpy's own cache of small blocks: not worth a buffer


def _apart(values, a: int, b: int) -> bool:
    """Whether the trace's arrays in slots ``a`` and ``b`` surely share no memory (host arrays only)."""
    if a >= len(values) or b >= len(values):
        return False
    x, y = values[a], values[b]
    return type(x) is np.ndarray and type(y) is np.ndarray and not np.may_share_memory(x, y)


def _last_readers(ops) -> dict:
    """slot -> the index of the last op that reads it."""
    last = {}
    for i, op in enumerate(ops):
        for s in op.inputs:
            last[s] = i
    return last


def plan_buffers(ops, results, values) -> tuple[dict, list]:
    """``(buffer_of, buffers)``: op index -> buffer number for the ops that write into one, and each buffer's
    ``(shape, dtype)``. ``values`` are the trace's arrays by slot (shapes, dtypes, and which output views
    which input); a slot beyond them (an op a later pass made) is neither planned nor trusted not to alias.

    >>> import numpy as np
    >>> from axon.tracing import Op
    >>> values = [np.ones((128, 64), np.float32) for _ in range(4)]
    >>> ops = [Op("exp", np.exp, (0,), {}, 1), Op("neg", np.negative, (1,), {}, 2), Op("exp", np.exp, (2,), {}, 3)]
    >>> plan_buffers(ops, [3], values)                        # %1, %2 in two buffers; %3 is the result
    ({0: 0, 1: 1}, [((128, 64), dtype('float32')), ((128, 64), dtype('float32'))])
    """
    known = len(values)
    roots = {}                                               # slot -> the planned-candidate slots it may view
    last = _last_readers(ops)
    for op in ops:
        for o in op.written():
            viewed = set()
            for s in op.inputs:
                if not _apart(values, o, s):
                    viewed |= roots.get(s, set())
            roots[o] = viewed | {o}
    ends = {}                                                # candidate slot -> the op after which it is free
    for s, rs in roots.items():
        end = float("inf") if s in results else last.get(s, -1)
        for r in rs:
            ends[r] = max(ends.get(r, -1), end)
    buffer_of, buffers, free, release = {}, [], {}, {}
    for i, op in enumerate(ops):
        o = op.outputs
        prim = PRIMITIVES.get(op.name)
        if (type(o) is int and o < known and op.name in INTO and prim is not None
                and op.forward is prim.forwards["cpu"] and ends[o] != float("inf")
                and type(values[o]) is np.ndarray and values[o].nbytes >= MIN_BYTES):
            key = (values[o].shape, values[o].dtype)
            pool = free.setdefault(key, [])
            b = pool.pop() if pool else len(buffers)
            if b == len(buffers):
                buffers.append(key)
            buffer_of[i] = b
            release.setdefault(max(ends[o], i), []).append((key, b))
        for key, b in release.pop(i, []):                    # free after op i: from op i + 1 on
            free[key].append(b)
    return buffer_of, buffers


def donate_in_place(ops, results, donated: set) -> list:
    """``ops`` with each CPU Adam(W) update of donated params and moments done in place.

    A ``fused[kernels.adam_step_at,add]`` op (``axon.fusion.adam_apply``) of inputs ``(base, p, g, m, v,
    t, lr)`` is replaced by ``kernels.adam.adam_apply_in_place`` when ``base``, ``m`` and ``v`` are
    donated input slots, three different ones, read by no later op and returned by none (the op's
    outputs take their place), and ``p`` is ``base`` or the decay is 0.

    >>> from axon.kernels.adam import adam_apply_at
    >>> from axon.tracing import Op
    >>> op = Op("fused[kernels.adam_step_at,add]", adam_apply_at, (0, 1, 1, 2, 3, 4, 5),
    ...         dict(b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0), (6, 7, 8))
    >>> [o.name for o in donate_in_place([op], [6, 7, 8], {0, 2, 3})], [o.name for o in donate_in_place([op], [6, 7, 8], {0})]
    (['adam_apply_in_place'], ['fused[kernels.adam_step_at,add]'])
    """
    from .kernels.adam import adam_apply_at, adam_apply_in_place
    last = _last_readers(ops)
    out = list(ops)
    for i, op in enumerate(ops):
        if op.name != "fused[kernels.adam_step_at,add]" or op.forward is not adam_apply_at:
            continue
        base, p, _, m, v = op.inputs[:5]
        overwritten = (base, m, v)
        if (len(set(overwritten)) == 3 and all(s in donated and last[s] == i and s not in results for s in overwritten)
                and (p == base or not op.params["weight_decay"])):
            out[i] = op._replace(name="adam_apply_in_place", forward=adam_apply_in_place)
    return out
