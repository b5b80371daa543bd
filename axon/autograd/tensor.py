"""``Tensor``: a numpy array that remembers how it was computed.

>>> x = Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
>>> y = (x @ x.T).sum()
>>> y.backward()
>>> x.grad
array([[ 8., 12.],
       [ 8., 12.]], dtype=float32)
"""
from __future__ import annotations

import numbers

import numpy as np

from . import engine
from ..backend import backend_of, is_host, to_host

__all__ = ["Tensor", "as_tensor"]


def _default_dtype(x):
    """The dtype ``Tensor(data)`` gets by the rule in ``Tensor``'s docstring: float32, or None (numpy's own:
    numpy data and booleans)."""
    if isinstance(x, (np.ndarray, np.generic)):
        return None
    if isinstance(x, (bool, np.bool_)) or (isinstance(x, (list, tuple)) and np.asarray(x).dtype == bool):
        return None
    return np.float32


def _check_numeric(data) -> None:
    """TypeError for what is not a number: None, strings, bytes, and lists holding them."""
    bad = (str, bytes, type(None))
    if isinstance(data, bad):
        raise TypeError(f"Tensor expects numeric data (a number, list or numpy array), got {type(data).__name__} "
                        f"{data!r}")
    if isinstance(data, (list, tuple)):
        stack = [data]
        while stack:
            for item in stack.pop():
                if isinstance(item, (list, tuple)):
                    stack.append(item)
                elif isinstance(item, bad):
                    raise TypeError(f"Tensor expects numeric data, got a list holding {type(item).__name__} "
                                    f"{item!r}")


class Tensor:
    """An n-dimensional array with reverse-mode gradients.

    ``data`` is an array of one backend (``axon.backend``): a numpy array on the CPU; a device array
    stays on its device. ``requires_grad=True`` makes it a leaf whose ``.grad`` (an array on the same
    backend) ``backward()`` fills in. ``np.asarray(t)`` and ``t.numpy()`` always give a host numpy array.

    The dtype, one rule by what is given (``dtype=`` overrides it):

    - Python numbers, and lists or tuples of them (even of ints, even holding numpy scalars): float32,
      the library's default float (``Tensor(3)``, ``Tensor([1, 2])``); booleans: bool;
    - numpy arrays and numpy scalars keep their dtype (``Tensor(np.int64(3))`` and
      ``Tensor(np.array([1, 2]))`` are int64, ``Tensor(np.zeros(2))`` float64): data you typed stays as typed.

    >>> x = Tensor([1.0, 2.0], requires_grad=True)
    >>> y = (x * x).sum(); y
    Tensor(5., dtype=float32, grad_fn=<sum>)
    >>> y.backward(); x.grad                             # dy/dx = 2x
    array([2., 4.], dtype=float32)
    >>> Tensor(3).dtype, Tensor([1, 2]).dtype, Tensor(np.int64(3)).dtype, Tensor(np.array([1, 2])).dtype
    (dtype('float32'), dtype('float32'), dtype('int64'), dtype('int64'))
    """
    __slots__ = ("data", "grad", "requires_grad", "_node", "__weakref__")
    __array_ufunc__ = None  # ``ndarray + Tensor`` calls Tensor.__radd__ instead of numpy's loop

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        if not is_host(data):                                  # a device array stays where it is
            if dtype is not None and np.dtype(dtype) != data.dtype:
                raise TypeError(f"Tensor: cannot cast a {backend_of(data).name} array of dtype {data.dtype} to "
                                f"{np.dtype(dtype)} on construction; use .astype()")
            if requires_grad and data.dtype.kind != "f":
                raise TypeError(f"only floating-point Tensors can require gradients, got dtype {data.dtype}")
            self.data, self.grad, self.requires_grad, self._node = data, None, bool(requires_grad), None
            return
        _check_numeric(data)
        try:
            arr = np.asarray(data, dtype=dtype if dtype is not None else _default_dtype(data))
        except (TypeError, ValueError) as e:
            raise TypeError(f"Tensor expects numeric data (a number, list or numpy array), "
                            f"got {type(data).__name__}: {e}") from None
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"Tensor expects numeric data, got {type(data).__name__} with dtype {arr.dtype}")
        if requires_grad and arr.dtype.kind != "f":
            raise TypeError(f"only floating-point Tensors can require gradients, got dtype {arr.dtype}")
        self.data, self.grad, self.requires_grad, self._node = arr, None, bool(requires_grad), None

    @classmethod
    def _wrap(cls, arr) -> "Tensor":
        """Fast constructor for the engine: wrap an array without checks."""
        t = object.__new__(cls)
        t.data = arr if type(arr) is np.ndarray or not is_host(arr) else np.asarray(arr)
        t.grad, t.requires_grad, t._node = None, False, None
        return t

    # ---- inspection -------------------------------------------------------------------------------
    shape = property(lambda self: self.data.shape, doc="The array's shape.")
    dtype = property(lambda self: self.data.dtype, doc="The array's dtype.")
    ndim = property(lambda self: self.data.ndim, doc="Number of axes.")
    size = property(lambda self: self.data.size, doc="Number of elements.")
    is_leaf = property(lambda self: self._node is None, doc="True unless made by a recorded operation.")
    device = property(lambda self: backend_of(self.data).name, doc="The backend holding the data: 'cpu', 'cuda'...")
    grad_fn = property(lambda self: self._node, doc="The recorded operation that made it (``<mul>``), None for a leaf.")

    def numpy(self) -> np.ndarray:
        """The data as a host numpy array (the array itself on the CPU; a copy from a device)."""
        return self.data if type(self.data) is np.ndarray else to_host(self.data)

    def item(self):
        """The single element as a Python number."""
        return self.numpy().item()

    def detach(self) -> "Tensor":
        """The same data, cut from the graph."""
        return Tensor._wrap(self.data)

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d Tensor")
        return self.shape[0]

    def __bool__(self):
        return bool(self.numpy())

    def __float__(self):
        return float(self.numpy())

    def __int__(self):
        return int(self.numpy())

    __hash__ = object.__hash__

    def __repr__(self):
        body = np.array2string(self.numpy(), separator=", ", prefix="Tensor(")
        extra = f", dtype={self.dtype}"
        if self.device != "cpu":
            extra += f", device='{self.device}'"
        if self._node is not None:
            extra += f", grad_fn=<{self._node.prim.name}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"Tensor({body}{extra})"

    # ---- gradients ------------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False, create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires a gradient.

        ``grad`` is the upstream gradient; it may be left out only for a single-element Tensor.

        The graph is freed as it is walked, so a second ``backward()`` through it raises, unless
        ``retain_graph=True`` keeps it. ``create_graph=True`` records the backward itself (each VJP's
        Tensor ops), so ``leaf.grad`` can be differentiated again (grad of grad); it implies
        ``retain_graph=True``, since the recorded gradients still point into the graph they came from.

        >>> x = Tensor([3.0], requires_grad=True)
        >>> y = (x ** 3).sum()
        >>> y.backward(retain_graph=True); y.backward(); x.grad      # twice through one graph: 27 + 27
        array([54.], dtype=float32)
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a Tensor that does not require grad "
                               "(no input had requires_grad=True, or it was computed under no_grad())")
        if grad is None:
            if self.size != 1:
                raise RuntimeError(f"backward() without grad= needs a single-element Tensor, got shape "
                                   f"{self.shape}; pass grad= with that shape (or call .sum() first)")
            grad = backend_of(self.data).full(self.shape, 1, self.dtype)
        dy = as_tensor(grad, like=(self,))
        if dy.shape != self.shape:
            raise ValueError(f"backward(grad=...) expects shape {self.shape}, got {dy.shape}")
        for leaf, g in engine.backprop(self, dy, create_graph=create_graph, retain_graph=retain_graph or create_graph):
            if g.dtype != leaf.dtype:                          # a gradient has its leaf's dtype
                g = ops.astype(g, leaf.dtype)
            if leaf.grad is None:
                leaf.grad = backend_of(g.data).copy(g.data)
            else:
                with engine.no_grad():
                    leaf.grad = ops.add(Tensor._wrap(leaf.grad), g).data

    # ---- operators (the rules live in ops.py) --------------------------------------------------
    def __add__(self, other): return ops.add(self, other)
    def __radd__(self, other): return ops.add(other, self)
    def __sub__(self, other): return ops.sub(self, other)
    def __rsub__(self, other): return ops.sub(other, self)
    def __mul__(self, other): return ops.mul(self, other)
    def __rmul__(self, other): return ops.mul(other, self)
    def __truediv__(self, other): return ops.div(self, other)
    def __rtruediv__(self, other): return ops.div(other, self)
    def __pow__(self, other): return ops.power(self, other)
    def __rpow__(self, other): return ops.power(other, self)
    def __matmul__(self, other): return ops.matmul(self, other)
    def __rmatmul__(self, other): return ops.matmul(other, self)
    def __neg__(self): return ops.neg(self)
    def __pos__(self): return self
    def __getitem__(self, index): return ops.getitem(self, index)

    # comparisons and logic give boolean Tensors and are never differentiated
    def __lt__(self, other): return ops.less(self, other)
    def __le__(self, other): return ops.less_equal(self, other)
    def __gt__(self, other): return ops.greater(self, other)
    def __ge__(self, other): return ops.greater_equal(self, other)
    def __eq__(self, other): return ops.equal(self, other)
    def __ne__(self, other): return ops.not_equal(self, other)
    def __and__(self, other): return ops.logical_and(self, other)
    def __or__(self, other): return ops.logical_or(self, other)
    def __invert__(self): return ops.logical_not(self)

    # ---- methods ------------------------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False): return ops.sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return ops.mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return ops.max(self, axis, keepdims)
    def min(self, axis=None, keepdims=False): return ops.min(self, axis, keepdims)

    def reshape(self, *shape):
        """``x.reshape(2, 3)`` or ``x.reshape((2, 3))``; one axis may be -1."""
        return ops.reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    def transpose(self, *axes):
        """Permute axes (reverse them when none are given)."""
        return ops.transpose(self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else (axes or None))

    T = property(lambda self: ops.transpose(self, None), doc="The Tensor with its axes reversed.")

    def exp(self): return ops.exp(self)
    def log(self): return ops.log(self)
    def sqrt(self): return ops.sqrt(self)
    def abs(self): return ops.abs(self)
    def tanh(self): return ops.tanh(self)
    def sigmoid(self): return ops.sigmoid(self)
    def relu(self): return ops.relu(self)
    def clip(self, lo=None, hi=None): return ops.clip(self, lo, hi)
    def astype(self, dtype): return ops.astype(self, dtype)


def as_tensor(x, like=()) -> Tensor:
    """``x`` as a Tensor; a scalar takes the dtype of the first floating Tensor/array in ``like``.

    Scalars (Python numbers, numpy scalars, 0-d arrays) never promote a float Tensor: ``x * 2.0`` and
    ``x * np.float64(2.0)`` stay float32 when ``x`` is float32 (the rule of PyTorch and JAX).

    >>> x64 = Tensor(np.array([1.0, 2.0]))  # float64
    >>> as_tensor(2.0, like=(x64,)).dtype, as_tensor(2.0).dtype
    (dtype('float64'), dtype('float32'))
    >>> as_tensor(np.float64(2.0), like=(Tensor([1.0]),)).dtype
    dtype('float32')
    >>> as_tensor(x64) is x64               # a Tensor passes through unchanged
    True
    """
    if isinstance(x, Tensor):
        return x
    if (isinstance(x, numbers.Number) and not isinstance(x, (bool, np.bool_))) or \
            (isinstance(x, np.ndarray) and x.ndim == 0 and x.dtype.kind in "iuf"):
        for other in like:
            dt = getattr(other, "dtype", None)
            if dt is not None and dt.kind == "f":
                return Tensor._wrap(np.asarray(x, dtype=dt))
    return Tensor(x)


from . import ops  # noqa: E402  (ops needs Tensor; Tensor's operators need ops)
