"""A stricter CUDA simulator: its device arrays refuse what a real numba ``DeviceNDArray`` lacks.

numba's simulator wraps a numpy array in a ``FakeCUDAArray`` whose ``__getattr__`` hands every unknown
attribute to that numpy array, so ``device_array.astype(...)``, ``.sum()`` or ``.base`` work there and
fail only on a real GPU (``AttributeError: 'DeviceNDArray' object has no attribute 'astype'``). With
``install()`` (``conftest.py`` calls it when ``NUMBA_ENABLE_CUDASIM=1``) such an access from outside the
simulator and numpy raises an AttributeError naming the attribute and the line, so CI catches it.

``REAL_ATTRIBUTES`` is what numba-cuda 0.30's ``numba.cuda.cudadrv.devicearray.DeviceNDArray`` has:
the names of its class (``dir``) and those its ``__init__`` sets; dunder names pass as before.

>>> import os
>>> os.environ.get("NUMBA_ENABLE_CUDASIM") != "1" or installed()
True
"""
from __future__ import annotations

import os
import sys

__all__ = ["REAL_ATTRIBUTES", "install", "installed"]

REAL_ATTRIBUTES = frozenset({
    # methods and properties of DeviceNDArray (and DeviceNDArrayBase)
    "T", "_default_stream", "_do_getitem", "_do_setitem", "_numba_type_", "_strided_memory_view_shim",
    "as_cuda_arg", "bind", "copy_to_device", "copy_to_host", "device_ctypes_pointer", "flags", "get_ipc_handle",
    "getitem", "is_c_contiguous", "is_f_contiguous", "nbytes", "ravel", "reshape", "setitem", "split",
    "squeeze", "transpose", "view",
    # set by DeviceNDArrayBase.__init__
    "_dummy", "alloc_size", "dtype", "gpu_data", "ndim", "shape", "size", "stream", "strides",
    # the simulator's own field (its wrapped numpy array)
    "_ary",
})

_SKIP = (os.sep + os.path.join("numba", "cuda", "simulator") + os.sep, os.sep + "numpy" + os.sep)


def installed() -> bool:
    """Whether the simulator's device arrays are strict now."""
    from numba.cuda.simulator.cudadrv import devicearray
    return getattr(devicearray.FakeCUDAArray.__getattr__, "strict", False)


def install() -> None:
    """Make ``FakeCUDAArray`` refuse non-dunder attributes a real device array lacks (once; idempotent)."""
    from numba.cuda.simulator.cudadrv import devicearray
    original = devicearray.FakeCUDAArray.__getattr__
    if getattr(original, "strict", False):
        return

    def __getattr__(self, name):
        if name not in REAL_ATTRIBUTES and not name.startswith("__"):
            caller = sys._getframe(1)
            where = caller.f_code.co_filename
            if not any(part in where for part in _SKIP):     # the simulator and numpy may use the numpy array
                raise AttributeError(f"a real numba DeviceNDArray has no attribute {name!r} (used at "
                                     f"{where}:{caller.f_lineno}; the simulator would have passed it to numpy)")
        return original(self, name)

    __getattr__.strict = True
    devicearray.FakeCUDAArray.__getattr__ = __getattr__
