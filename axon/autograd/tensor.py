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

__all__ = ["Tensor", "as_tensor"]


def _default_dtype(x):
    """float32 for Python numbers and lists; an array's own dtype otherwise."""
    if isinstance(x, (np.ndarray, np.generic)):
        return None
    if isinstance(x, (bool, np.bool_)) or (isinstance(x, (list, tuple)) and np.asarray(x).dtype == bool):
        return None
    return np.float32


class Tensor:
    """An n-dimensional array with reverse-mode gradients.

    ``data`` is a numpy array: float32 unless an array of another dtype (float64, say) is given.
    ``requires_grad=True`` makes it a leaf whose ``.grad`` (a numpy array) ``backward()`` fills in.

    >>> x = Tensor([1.0, 2.0], requires_grad=True)
    >>> y = (x * x).sum(); y
    Tensor(5., dtype=float32, grad_fn=<sum>)
    >>> y.backward(); x.grad                             # dy/dx = 2x
    array([2., 4.], dtype=float32)
    >>> Tensor([1, 2]).dtype, Tensor(np.zeros(2)).dtype  # lists become float32; arrays keep their dtype
    (dtype('float32'), dtype('float64'))
    """
    __slots__ = ("data", "grad", "requires_grad", "_node", "__weakref__")
    __array_ufunc__ = None  # ``ndarray + Tensor`` calls Tensor.__radd__ instead of numpy's loop

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
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
        t.data = arr if type(arr) is np.ndarray else np.asarray(arr)
        t.grad, t.requires_grad, t._node = None, False, None
        return t

    # ---- inspection -------------------------------------------------------------------------------
    shape = property(lambda self: self.data.shape, doc="The array's shape.")
    dtype = property(lambda self: self.data.dtype, doc="The array's dtype.")
    ndim = property(lambda self: self.data.ndim, doc="Number of axes.")
    size = property(lambda self: self.data.size, doc="Number of elements.")
    is_leaf = property(lambda self: self._node is None, doc="True unless made by a recorded operation.")
    grad_fn = property(lambda self: self._node, doc="The recorded operation that made it (``<mul>``), None for a leaf.")

    def numpy(self) -> np.ndarray:
        """The underlying numpy array (shared, not copied)."""
        return self.data

    def item(self):
        """The single element as a Python number."""
        return self.data.item()

    def detach(self) -> "Tensor":
        """The same data, cut from the graph."""
        return Tensor._wrap(self.data)

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    def __len__(self):
        return len(self.data)

    def __bool__(self):
        return bool(self.data)

    def __float__(self):
        return float(self.data)

    __hash__ = object.__hash__

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", prefix="Tensor(")
        extra = f", dtype={self.dtype}"
        if self._node is not None:
            extra += f", grad_fn=<{self._node.prim.name}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"Tensor({body}{extra})"

    # ---- gradients ------------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False, create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires a gradient.

        ``grad`` is the upstream gradient; it may be left out only for a single-element Tensor.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a Tensor that does not require grad "
                               "(no input had requires_grad=True, or it was computed under no_grad())")
        if grad is None:
            if self.size != 1:
                raise RuntimeError(f"backward() without grad= needs a single-element Tensor, got shape "
                                   f"{self.shape}; pass grad= with that shape (or call .sum() first)")
            grad = np.ones_like(self.data)
        dy = as_tensor(grad, like=(self,))
        if dy.shape != self.shape:
            raise ValueError(f"backward(grad=...) expects shape {self.shape}, got {dy.shape}")
        for leaf, g in engine.backprop(self, dy, create_graph=create_graph, retain_graph=retain_graph or create_graph):
            g = g.data
            leaf.grad = g.copy() if leaf.grad is None else leaf.grad + g

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

    # comparisons give boolean Tensors and are never differentiated
    def __lt__(self, other): return Tensor._wrap(self.data < _data(other))
    def __le__(self, other): return Tensor._wrap(self.data <= _data(other))
    def __gt__(self, other): return Tensor._wrap(self.data > _data(other))
    def __ge__(self, other): return Tensor._wrap(self.data >= _data(other))
    def __eq__(self, other): return Tensor._wrap(self.data == _data(other))
    def __ne__(self, other): return Tensor._wrap(self.data != _data(other))

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


def _data(x):
    return x.data if isinstance(x, Tensor) else x


def as_tensor(x, like=()) -> Tensor:
    """``x`` as a Tensor; a Python number takes the dtype of the first floating Tensor/array in ``like``.

    So ``x * 2.0`` stays float32 when ``x`` is float32 (numpy's "weak" scalars).

    >>> x64 = Tensor(np.array([1.0, 2.0]))  # float64
    >>> as_tensor(2.0, like=(x64,)).dtype, as_tensor(2.0).dtype
    (dtype('float64'), dtype('float32'))
    >>> as_tensor(x64) is x64               # a Tensor passes through unchanged
    True
    """
    if isinstance(x, Tensor):
        return x
    if isinstance(x, numbers.Number) and not isinstance(x, np.generic):
        for other in like:
            dt = getattr(other, "dtype", None)
            if dt is not None and dt.kind == "f":
                return Tensor._wrap(np.asarray(x, dtype=dt))
    return Tensor(x)


from . import ops  # noqa: E402  (ops needs Tensor; Tensor's operators need ops)
