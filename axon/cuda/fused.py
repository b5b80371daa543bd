"""A chain of elementwise ops as one generated CUDA kernel: ``axon.fusion``'s ``elementwise`` pass on the GPU.

The pass hands a run of a CUDA plan's elementwise ops (``dy * (1 - y * y)``, ``dy * (x > 0)``) to
``FusedKernel`` as it hands a CPU plan's to ``FusedLoop``. Each op of the chain is a call of the device
function its own CUDA forward was made from (``cuda_map`` / ``cuda_zip`` keep it: ``forward.scalar``),
so an op's scalar function exists once, whether it runs alone or fused. The kernel is a grid-stride
loop over the output's elements: each input is read through its own strides (0 along a broadcast
axis), the chain runs in registers, and every output that escapes is written once::

    for i in range(cuda.grid(1), y0.shape[0], cuda.gridsize(1)):
        a0 = x0[position(i, 0, shape, s0)]           (one read per input)
        t0 = np.float32(mul(a0, a0, ()))             (one line per op, cast as the op alone stores it)
        y0[i] = t0                                   (one write per output)

>>> import numpy as np
>>> from axon.cuda._runtime import from_host, to_host
>>> f32 = np.dtype(np.float32)
>>> info = {0: ((2, 3), f32), 1: ((3,), f32), 2: ((2, 3), f32), 3: ((2, 3), f32)}
>>> kernel = FusedKernel([("add", (0, 1), 2), ("neg", (2,), 3)], [0, 1], [3], (2, 3), info)
>>> x, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.array([10, 20, 30], np.float32)
>>> to_host(kernel(from_host(x), from_host(b)))                                # -(x + b), b broadcast
array([[-10., -21., -32.],
       [-13., -24., -35.]], dtype=float32)
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd.engine import PRIMITIVES
from ..fusion import _body, _merge_axes, _padded
from ._runtime import broadcast_strides, contiguous_strides, cuda, empty, from_host, launch_1d, position, view

__all__ = ["FusedKernel"]


class FusedKernel:
    """A chain of elementwise ops as one generated ``cuda.jit`` kernel: the forward of a fused op on CUDA.

    The arguments are ``FusedLoop``'s: ``chain``: ``(primitive name, input slots, output slot)`` in
    order; ``inputs`` / ``outputs``: the slots the kernel reads and writes; ``shape``: the output
    shape; ``info``: slot -> (shape, dtype). Axes merge as in the CPU loop (an (N, H, W, C) array and
    a bias of (C,) are read over (N*H*W, C)), so ``position`` has fewer axes to walk. Called with the
    inputs' device arrays (0-d host arrays are moved there), it returns new C-contiguous device
    arrays. The kernel is compiled once per source text (``FusedKernel.compiled``).

    >>> f64 = np.dtype(np.float64)
    >>> info = {0: ((4,), f64), 1: ((), f64), 2: ((4,), np.dtype(np.bool_)), 3: ((4,), f64)}
    >>> kernel = FusedKernel([("greater", (0, 1), 2), ("mul", (0, 2), 3)], [0, 1], [3], (4,), info)
    >>> print(kernel.source)                                                # doctest: +NORMALIZE_WHITESPACE
    def fused(shape, x0, s0, x1, s1, y0):
        for i in range(cuda.grid(1), y0.shape[0], cuda.gridsize(1)):
            a0 = x0[position(i, 0, shape, s0)]
            a1 = x1[position(i, 0, shape, s1)]
            t0 = greater(a0, a1, ())
            t1 = np.float64(mul(a0, np.float64(t0), ()))
            y0[i] = t1
    >>> from axon.cuda._runtime import to_host
    >>> to_host(kernel(from_host(np.array([-1.0, 2.0, 0.5, 3.0])), np.zeros(())))      # x * (x > 0)
    array([-0. ,  2. ,  0.5,  3. ])
    """
    compiled: dict = {}                                    # source -> the cuda.jit kernel

    def __init__(self, chain: list, inputs: list, outputs: list, shape: tuple, info: dict):
        self.shape = shape
        self.out_dtypes = [info[s][1] for s in outputs]
        self.loop_shape, in_shapes = _merge_axes(shape, [_padded(info[s][0], len(shape)) for s in inputs])
        # each input is a C-contiguous storage of its merged shape, read broadcast to the loop's shape
        self.strides = [broadcast_strides(s, contiguous_strides(s), self.loop_shape) for s in in_shapes]
        self.source = _generate(chain, inputs, outputs, info)
        if self.source not in FusedKernel.compiled:
            FusedKernel.compiled[self.source] = _compile(self.source, {prim for prim, _, _ in chain})
        self.kernel = FusedKernel.compiled[self.source]

    def __call__(self, *arrays):
        storages = [view(from_host(a) if type(a) is np.ndarray else a)[0] for a in arrays]   # host 0-d: moved
        ys = [empty(self.shape, d) for d in self.out_dtypes]
        args = [arg for x, strides in zip(storages, self.strides) for arg in (x, strides)]
        n = math.prod(self.shape)
        if n:                                              # (nothing to launch for an empty array)
            self.kernel[launch_1d(n)](self.loop_shape, *args, *(y.reshape(n) for y in ys))
        return ys[0] if len(ys) == 1 else tuple(ys)

    def __repr__(self):
        return f"FusedKernel(shape={self.shape}, read over {self.loop_shape})"


def _name(prim: str) -> str:
    """A primitive's device function's name in the kernel's source (``kernels.erf``: ``kernels_erf``)."""
    return prim.replace(".", "_")


def _call(prim: str, args: list, d) -> str:
    """The call of ``prim``'s device function on ``args`` (and no constants: the fused ops have no params)."""
    return f"{_name(prim)}({', '.join(args)}, ())"


def _generate(chain, inputs, outputs, info) -> str:
    """The kernel's source: a grid-stride loop over the output's elements, one line per op of ``chain``."""
    n_inputs = len(inputs)
    reads = [f"x{k}[position(i, 0, shape, s{k})]" for k in range(n_inputs)]
    body = _body(chain, inputs, outputs, info, reads, [f"y{k}[i]" for k in range(len(outputs))], _call)
    params = ["shape"] + [f"x{k}, s{k}" for k in range(n_inputs)] + [f"y{k}" for k in range(len(outputs))]
    lines = [f"def fused({', '.join(params)}):",
             "    for i in range(cuda.grid(1), y0.shape[0], cuda.gridsize(1)):"]
    return "\n".join(lines + ["        " + line for line in body])


def _compile(source: str, prims: set):
    """``source`` as a ``cuda.jit`` kernel, whose globals are the device functions of ``prims``."""
    scope = {"cuda": cuda, "np": np, "position": position}
    scope.update({_name(p): PRIMITIVES[p].forwards["cuda"].scalar for p in prims})
    exec(compile(source, "<axon.cuda.fused>", "exec"), scope)
    return cuda.jit(scope["fused"])
