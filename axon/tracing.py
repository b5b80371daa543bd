"""Tracing: ``axon.jit`` traces a function of arrays once, then replays the primitives it ran, without the graph.

This module is ``axon.tracing``; ``axon.jit`` is its main function (as ``jax.jit`` is JAX's), and
``axon.tracing.check`` puts a check into a plan (see ``check``).

The first call with given shapes and dtypes runs ``fn`` as usual, but its array arguments enter as
``TracedArray`` placeholders and ``engine.apply`` hands every primitive to a tracer, which runs the
forward on the real arrays and writes down one op:

    op = (forward, input slots, params, output slots)

A *slot* numbers an array of the plan: an argument, an output of an earlier op, or a *constant* (an
array that entered an op from anywhere else: a number, a mask made from shapes, a global). The ops
form a ``Plan``. A later call with the same signature (the arguments' tree structure, every array's
shape and dtype, the values of static arguments, the grad mode) puts its arrays in the input slots and
calls the forwards in order: no Tensors, no Nodes, no graph walk, no VJP rules (the backward pass is
already a list of the primitives the VJPs called). A new shape traces again; plans are cached by signature.

>>> import numpy as np
>>> f = jit(lambda w, x: ((x @ w) ** 2).sum())
>>> w = np.ones((3, 2), np.float32)
>>> f(w, np.ones((4, 3), np.float32))           # traced: runs eagerly, records 3 ops
array(72., dtype=float32)
>>> f(w, np.full((4, 3), 2.0, np.float32))      # replayed
array(288., dtype=float32)
>>> print(next(iter(f.plans.values())))
plan: 2 inputs, 1 constant, 3 ops
  %2 = matmul(%1, %0)
  %4 = power(%2, %3)
  %5 = sum(%4)
  return %5

Soundness: a placeholder refuses to be read on the host, so Python cannot branch on a traced value or
bake it into the plan by accident: ``float(t)``, ``bool(t)``, ``int(t)``, ``t.item()``, ``t.numpy()``
and ``np.asarray(t)`` raise a ``TraceError`` naming the primitive that produced the value. Values
Python must see go in ``static_argnums`` (each new value traces again). Python side effects (prints,
appends) happen once, while tracing; arrays that are not arguments are read by reference (their
contents at each call), and a global rebound later is not seen.
"""
from __future__ import annotations

import functools
import threading
from typing import Callable, NamedTuple

import numpy as np

from .autograd import Tensor, is_grad_enabled
from .autograd.engine import TRACING, forward_for
from .backend import Backend, backend_of, is_host, register_backend, to_host
from .buffers import INTO, donate_in_place, plan_buffers

__all__ = ["jit", "check", "check_range", "dispatch", "TraceError", "TracedArray", "Plan", "Op"]


class TraceError(TypeError):
    """Python needed a value that ``axon.jit`` only knows when the plan runs.

    >>> f = jit(lambda x: float(x.sum()))
    >>> f(np.ones(2))
    Traceback (most recent call last):
    ...
    axon.tracing.TraceError: Python cannot read a traced value (the output of primitive 'sum') by float(): ...
    """


def _array_method(name: str):
    """A numpy-like method of TracedArray, computed with the Tensor op of that name: an array in, an array out.

    An operator meeting a Tensor steps aside (``NotImplemented``), so the Tensor's reflected operator
    runs and the result stays in the graph, as ``ndarray * Tensor`` does.
    """
    def method(self, *args, **kwargs):
        if name in _BINARY and any(isinstance(a, Tensor) for a in args):
            return NotImplemented
        y = getattr(Tensor._wrap(self), name)(*args, **kwargs)
        return y.data if isinstance(y, Tensor) else y
    method.__name__ = name
    return method


_BINARY = {"__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
           "__pow__", "__rpow__", "__matmul__", "__rmatmul__", "__lt__", "__le__", "__gt__", "__ge__", "__eq__",
           "__ne__", "__and__", "__or__"}


class TracedArray:
    """A placeholder for an array while ``axon.jit`` traces: it has a shape and a dtype, but no readable values.

    Axon ops take it like any array (``engine.apply`` hands it to the tracer); the arithmetic operators
    and the usual array methods compute with Tensor ops (returning placeholders, as numpy's return arrays);
    anything that reads the values on the host
    (``np.asarray``, ``float``, ``bool``, numpy functions) raises ``TraceError``.

    >>> f = jit(lambda x: x.reshape(2, 2).T * 2.0)   # x is a TracedArray inside: .reshape is ops.reshape
    >>> f(np.arange(4, dtype=np.float32))
    array([[0., 4.],
           [2., 6.]], dtype=float32)
    """
    __slots__ = ("value", "slot", "tracer")
    __hash__ = object.__hash__

    def __init__(self, value, slot: int, tracer: "_Tracer"):
        self.value, self.slot, self.tracer = value, slot, tracer

    shape = property(lambda self: self.value.shape)
    dtype = property(lambda self: self.value.dtype)
    ndim = property(lambda self: self.value.ndim)
    size = property(lambda self: self.value.size)

    # The operators and array methods: each is the Tensor method of the same name (see _array_method).
    __add__, __radd__ = _array_method("__add__"), _array_method("__radd__")
    __sub__, __rsub__ = _array_method("__sub__"), _array_method("__rsub__")
    __mul__, __rmul__ = _array_method("__mul__"), _array_method("__rmul__")
    __truediv__, __rtruediv__ = _array_method("__truediv__"), _array_method("__rtruediv__")
    __pow__, __rpow__ = _array_method("__pow__"), _array_method("__rpow__")
    __matmul__, __rmatmul__ = _array_method("__matmul__"), _array_method("__rmatmul__")
    __lt__ = _array_method("__lt__")
    __le__ = _array_method("__le__")
    __gt__ = _array_method("__gt__")
    __ge__ = _array_method("__ge__")
    __eq__ = _array_method("__eq__")
    __ne__ = _array_method("__ne__")
    __and__ = _array_method("__and__")
    __or__ = _array_method("__or__")
    __neg__ = _array_method("__neg__")
    __invert__ = _array_method("__invert__")
    __getitem__ = _array_method("__getitem__")
    reshape = _array_method("reshape")
    transpose = _array_method("transpose")
    astype = _array_method("astype")
    sum = _array_method("sum")
    mean = _array_method("mean")
    max = _array_method("max")
    min = _array_method("min")
    exp = _array_method("exp")
    log = _array_method("log")
    sqrt = _array_method("sqrt")
    abs = _array_method("abs")
    clip = _array_method("clip")
    T = property(lambda self: Tensor._wrap(self).T.data)

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        return f"TracedArray(shape={self.shape}, dtype={self.dtype}, from {self._origin()})"

    def _origin(self) -> str:
        return self.tracer.origin[self.slot] if not self.tracer.closed else "a trace that has ended"

    def _read(self, what: str):
        if self.tracer.closed:
            raise TraceError(f"{what} on a value traced by axon.jit after its trace ended: a Tensor made while "
                             f"tracing was kept (in a global, a closure, a list) and used outside the function")
        raise TraceError(f"Python cannot read a traced value ({self._origin()}) by {what}: while axon.jit "
                         f"traces, values are placeholders known only when the plan runs. Pass the argument "
                         f"Python needs as static (axon.jit(fn, static_argnums=(i,))), compute with axon ops "
                         f"instead (ops.where for an if), or call the function without jit")

    def __getattr__(self, name):                   # only for names the class lacks (numpy's methods)
        raise AttributeError(f"a traced value has no attribute {name!r} while axon.jit traces: numpy's array "
                             f"methods read the values on the host; use axon ops ({self._origin()})")

    def __array__(self, dtype=None, copy=None): self._read("np.asarray()")
    def __float__(self): self._read("float()")
    def __int__(self): self._read("int()")
    def __bool__(self): self._read("bool()")
    def __index__(self): self._read("using it as an index")
    def item(self): self._read(".item()")
    def tolist(self): self._read(".tolist()")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        self._read(f"numpy's {ufunc.__name__}")

    def __array_function__(self, func, types, args, kwargs):
        self._read(f"numpy's {func.__name__}")


class Op(NamedTuple):
    """One recorded primitive: ``outputs = forward(*[slots[i] for i in inputs], **params)``.

    ``outputs`` is a slot, or a tuple of slots (and ``None``s) for a forward that returns several arrays.

    >>> Op("neg", np.negative, (0,), {}, 1).outputs, Op("split", np.split, (0,), {}, (1, None, 2)).written()
    (1, [1, 2])
    """
    name: str
    forward: Callable
    inputs: tuple
    params: dict
    outputs: object

    def written(self) -> list:
        """The slots this op writes: its ``outputs`` flattened, without the ``None`` entries."""
        return _slots_of(self.outputs)


def _store(values: list, outputs, y) -> None:
    """Put a forward's result ``y`` into the slots ``outputs`` (a slot, None, or a tuple of them)."""
    if type(outputs) is int:
        values[outputs] = y
    elif outputs is not None:
        for s, part in zip(outputs, y):
            _store(values, s, part)


def _slots_of(outputs) -> list:
    """The slots named in an op's ``outputs``."""
    if type(outputs) is int:
        return [outputs]
    return [s for part in (outputs or ()) for s in _slots_of(part)]


class Plan:
    """A traced function: the ops in the order they ran, and where its arguments and results live.

    Calling it with the arguments' arrays (flattened, in trace order) runs the forwards and returns the
    result tree. Each slot is let go after its last use, so memory is freed as eagerly as the graph would.

    >>> f = jit(lambda x: -Tensor(x))
    >>> _ = f(np.ones(2))                                   # the trace makes the plan
    >>> plan = next(iter(f.plans.values()))
    >>> plan([np.arange(2.0)]), [op.name for op in plan.ops]
    (array([-0., -1.]), ['neg'])
    """

    def __init__(self, ops: list, n_inputs: int, constants: dict, results: list, out_sig, n_slots: int,
                 values=None):
        self.ops, self.n_inputs, self.constants = ops, n_inputs, constants
        self.results, self.out_sig = results, out_sig
        self._template = [None] * n_slots                  # every slot empty but the constants'
        for s, a in constants.items():
            self._template[s] = a
        last = {}
        for i, op in enumerate(ops):
            for s in op.inputs:
                last[s] = i
            for s in op.written():
                last.setdefault(s, i)
        keep = set(results) | set(constants)
        dead = [[] for _ in ops]
        for s, i in last.items():
            if s not in keep:
                dead[i].append(s)
        # What the replay loop reads, one tuple per op: (forward, input slots, params, output slots, dead slots).
        self._steps = [(op.forward, op.inputs, op.params, op.outputs, tuple(dead[i])) for i, op in enumerate(ops)]
        self._fresh = [s in constants for s in results]     # a constant result is copied, as eager makes a new one
        # memory planning (axon.buffers): ops that write into buffers this plan keeps, given the trace's arrays
        self.buffer_of, self.buffers = plan_buffers(ops, set(results), values) if values is not None else ({}, [])
        self._planned = None                                 # the steps with their buffers, made on first use
        self._lock = threading.Lock()                        # one replay at a time uses the buffers

    def _planned_steps(self) -> list:
        """``_steps`` with each planned op's forward writing into its buffer (allocated here, once)."""
        buffers = [np.empty(shape, dtype) for shape, dtype in self.buffers]
        steps = list(self._steps)
        for i, b in self.buffer_of.items():
            _, inputs, params, outputs, dead = steps[i]
            steps[i] = (functools.partial(INTO[self.ops[i].name], buffers[b]), inputs, params, outputs, dead)
        return steps

    def __call__(self, leaves: list):
        if not self.buffer_of or not self._lock.acquire(blocking=False):   # (another thread replays: fresh arrays)
            return self._run(self._steps, leaves)
        try:
            if self._planned is None:
                self._planned = self._planned_steps()
            return self._run(self._planned, leaves)
        finally:
            self._lock.release()

    def _run(self, steps, leaves: list):
        values = self._template.copy()
        values[:self.n_inputs] = leaves
        for forward, inputs, params, outputs, dead in steps:
            y = forward(*[values[s] for s in inputs], **params)
            if type(outputs) is int:
                values[outputs] = y
            else:
                _store(values, outputs, y)
            for s in dead:
                values[s] = None
        out = [values[s] if not fresh else backend_of(values[s]).copy(values[s])
               for s, fresh in zip(self.results, self._fresh)]
        return _unflatten(self.out_sig, iter(out))

    def __str__(self):
        def name(s):
            return "_" if s is None else f"%{s}" if type(s) is int else "(" + ", ".join(map(name, s)) + ")"
        n_const = len(self.constants)
        lines = [f"plan: {self.n_inputs} inputs, {n_const} constant{'s' if n_const != 1 else ''}, {len(self.ops)} ops"]
        lines += [f"  {name(op.outputs)} = {op.name}({', '.join(map(name, op.inputs))})" for op in self.ops]
        lines.append("  return " + ", ".join(map(name, self.results)))
        return "\n".join(lines)


class _Tracer:
    """Records the ops of one traced call; ``engine.apply`` calls ``run`` for every primitive."""

    def __init__(self, real):
        self.real = real              # the backend the arguments live on: the plan's forwards are its
        self.values = []              # slot -> the array it held while tracing (kept, so ids stay unique)
        self.origin = []              # slot -> what made it, for error messages
        self.constant_of = {}         # id(array) -> slot, for arrays that came from outside
        self.ops = []
        self.checked = set()          # the (check, slot, bounds) recorded already (check_range)
        self.closed = False

    def new(self, value, origin: str) -> TracedArray:
        self.values.append(value)
        self.origin.append(origin)
        return TracedArray(value, len(self.values) - 1, self)

    def slot(self, a) -> int:
        """The slot of ``a``: a placeholder's own, or a new constant's (the same array twice: one slot)."""
        if type(a) is TracedArray:
            if a.tracer is not self:
                a._read("using it in another trace")
            return a.slot
        s = self.constant_of.get(id(a))
        if s is None:
            s = self.constant_of[id(a)] = self.new(a, "a constant").slot
        return s

    def run(self, prim, arrays: list, params: dict):
        """Run ``prim``'s forward on the real arrays, record it, and return its outputs as placeholders."""
        inputs = tuple(self.slot(a) for a in arrays)
        real = [self.values[s] for s in inputs]
        if all(type(a) is np.ndarray for a in real):
            forward = prim.forwards["cpu"]
        else:                                          # another backend: the engine's choice, made at each call
            forward = functools.partial(dispatch, prim)
        return self.record(prim.name, forward, inputs, real, params)

    def record(self, name: str, forward, inputs: tuple, real: list, params: dict):
        y = _untraced(forward, real, params)
        host_scalar = []

        def wrap(o):
            if o is None:
                return None, None
            if isinstance(o, tuple):
                parts = [wrap(p) for p in o]
                return tuple(s for s, _ in parts), tuple(t for _, t in parts)
            if type(o) is not np.ndarray and is_host(o):      # a numpy scalar: as an array, as Tensor._wrap does
                if not isinstance(o, (np.generic, int, float, bool)):
                    raise TraceError(f"primitive {name!r} returned a {type(o).__name__}, which axon.jit cannot "
                                     f"keep in a slot (forwards return arrays, tuples of arrays, or None)")
                o = np.asarray(o)
                host_scalar.append(True)
            t = self.new(o, f"the output of primitive {name!r}")
            return t.slot, t

        outputs, placeholders = wrap(y)
        if host_scalar:
            forward = functools.partial(_as_arrays, forward)
        self.ops.append(Op(name, forward, inputs, params, outputs))
        return placeholders


def _untraced(forward, arrays: list, params: dict):
    """``forward(*arrays, **params)`` with the tracer set aside: a forward made of axon ops (``dynamic_unroll``'s
    loop) computes them on the real arrays, as when a plan replays it, instead of recording them as ops too."""
    tracer, TRACING.tracer = TRACING.tracer, None
    try:
        return forward(*arrays, **params)
    finally:
        TRACING.tracer = tracer


def dispatch(prim, *arrays, **params):
    """A primitive's forward chosen from its inputs' backend at each call (0-d host arrays moved there).

    What a plan traced on another backend than the CPU records as an op's forward.

    >>> from axon.autograd.engine import PRIMITIVES
    >>> dispatch(PRIMITIVES["neg"], np.ones(2))
    array([-1., -1.])
    """
    arrays = list(arrays)
    return forward_for(prim, arrays)(*arrays, **params)


def _as_arrays(forward, *arrays, **params):
    """``forward``'s result with host scalars made 0-d arrays, as ``Tensor._wrap`` makes them."""
    def fix(o):
        if isinstance(o, tuple):
            return tuple(fix(p) for p in o)
        return o if o is None or type(o) is np.ndarray or not is_host(o) else np.asarray(o)
    return fix(forward(*arrays, **params))


def _active(what: str) -> _Tracer:
    tracer = TRACING.tracer
    if tracer is None:
        raise TraceError(f"{what} of a value traced by axon.jit after its trace ended")
    return tracer


def _copy(a):
    tracer = _active("a copy")
    s = tracer.slot(a)
    return tracer.record("copy", tracer.real.copy, (s,), [tracer.values[s]], {})


# Placeholders are the arrays of a backend of their own, so the seam keeps them apart from host arrays
# (``Tensor`` keeps them as they are, ``np.asarray(tensor)`` asks ``to_host``, which refuses). New arrays
# made "on" it (``full``, ``from_host``) are real arrays of the traced backend: constants of the plan.
register_backend(Backend(
    "jit", (TracedArray,), to_host=lambda a: a._read("float(), int(), bool(), .item(), .numpy() or np.asarray()"),
    from_host=lambda a: _active("from_host").real.from_host(a),
    full=lambda shape, value, dtype: _active("full").real.full(shape, value, dtype), copy=_copy, device=False))


def check(bad, error: Callable, *values) -> None:
    """Raise ``error(*values)`` (host arrays) when the boolean Tensor ``bad`` is true: a check of values.

    Eagerly it is ``if bool(bad): raise error(...)``. While ``axon.jit`` traces, the check becomes an op
    of the plan, run at every replay on that call's arrays, so input validation that reads values
    (labels in range, say) keeps guarding the compiled function instead of making it untraceable.

    >>> from axon.autograd import ops
    >>> def root(x):
    ...     check(ops.max(Tensor(x) < 0), lambda x: ValueError(f"root: negative input {x.min()}"), x)
    ...     return ops.sqrt(x)
    >>> f = jit(root)
    >>> f(np.array([4.0, 9.0]))
    array([2., 3.])
    >>> f(np.array([4.0, -1.0]))                       # the replay runs the check
    Traceback (most recent call last):
    ...
    ValueError: root: negative input -1.0
    """
    tracer = TRACING.tracer
    flag = bad.data if isinstance(bad, Tensor) else bad
    arrays = [v.data if isinstance(v, Tensor) else v for v in values]
    if tracer is None:
        if bool(np.asarray(to_host(flag))):
            raise error(*[to_host(a) for a in arrays])
        return
    inputs = tuple(tracer.slot(a) for a in [flag, *arrays])
    tracer.record("check", functools.partial(_check_forward, error), inputs, [tracer.values[s] for s in inputs], {})


def check_range(a, lo: int, hi: int, error: Callable) -> bool:
    """Under a trace of host arrays, make ``lo <= a < hi`` one op of the plan; whether it did.

    The op raises ``error(smallest, largest)`` at a replay whose ``a`` has a value outside ``[lo, hi)``.
    It is recorded once per array and bounds in a trace: a loss and the kernel it calls check the same
    labels once. Not tracing, or tracing a device's arrays, it does nothing and returns False (the
    caller checks with Tensor ops, as ``kernels._common.in_range`` does).

    >>> def pick(x, i):
    ...     assert check_range(Tensor(i).data, 0, 3, lambda lo, hi: IndexError(f"index in [{lo}, {hi}]"))
    ...     return Tensor(x) * 2.0
    >>> f = jit(pick)
    >>> f(np.ones(3), np.array([0, 2]))
    array([2., 2., 2.])
    >>> f(np.ones(3), np.array([0, 5]))
    Traceback (most recent call last):
    ...
    IndexError: index in [0, 5]
    """
    tracer = TRACING.tracer
    if tracer is None or type(a) is not TracedArray or type(a.value) is not np.ndarray:
        return False
    key = ("check_range", a.slot, lo, hi)
    if key not in tracer.checked:
        tracer.checked.add(key)
        tracer.record("check_range", functools.partial(_check_range_forward, lo, hi, error), (a.slot,), [a.value], {})
    return True


def _check_range_forward(lo, hi, error, a):
    if a.size and not (lo <= a.min() and a.max() < hi):
        raise error(int(a.min()), int(a.max()))


def _check_forward(error, flag, *arrays):
    if bool(np.asarray(to_host(flag))):
        raise error(*[to_host(a) for a in arrays])


# ---- signatures: a tree's containers, its arrays' shapes and dtypes, its other leaves' values ---------------
def _flatten(x, leaves: list, argument: bool = True):
    """A hashable description of the tree ``x``; its arrays are appended to ``leaves`` (Tensors as their data).

    It runs on every call of a jitted function (a training step's params and optimizer state): the exact
    types met there come first, so a replayed MNIST step spends ~5 us here rather than ~15.
    """
    kind = type(x)
    if kind is np.ndarray:
        leaves.append(x)
        return ("array", x.shape, x.dtype, "cpu")
    if kind is dict or isinstance(x, dict):
        return (kind, tuple(x), tuple([_flatten(v, leaves, argument) for v in x.values()]))
    if kind is tuple or isinstance(x, (list, tuple)):      # NamedTuples keep their type
        return (kind, tuple([_flatten(v, leaves, argument) for v in x]))
    if x is None:
        return None
    if isinstance(x, Tensor):
        if argument and x.requires_grad and is_grad_enabled():
            raise TypeError("axon.jit: an argument is a Tensor being differentiated; jit the whole function "
                            "grad differentiates (axon.jit(axon.grad(f))), not a piece of it")
        x = x.data
    if isinstance(x, np.generic):
        x = np.asarray(x)
    if hasattr(x, "shape") and hasattr(x, "dtype"):        # an array of any backend
        leaves.append(x)
        return ("array", x.shape, x.dtype, backend_of(x).name)
    return _static(x)


def _static(x):
    try:
        hash(x)
    except TypeError:
        raise TypeError(f"axon.jit: a static value must be hashable (it keys the plan cache), got "
                        f"{type(x).__name__}") from None
    return ("static", type(x), x)


def _unflatten(sig, leaves):
    """The tree ``sig`` describes, its arrays taken in order from the iterator ``leaves``."""
    if sig is None:
        return None
    head = sig[0]
    if type(head) is str:                                  # a leaf: "array" or "static"
        return next(leaves) if head == "array" else sig[2]
    if issubclass(head, dict):
        return head(zip(sig[1], [_unflatten(s, leaves) for s in sig[2]]))
    children = [_unflatten(s, leaves) for s in sig[1]]
    return head(*children) if hasattr(head, "_fields") else head(children)


def _paths(sig, path: str = "") -> list:
    """Where each array of ``sig`` sits, as Python indexes it (``"[0]['dense_0']['kernel']"``), for errors."""
    if sig is None or sig[0] == "static":
        return []
    if sig[0] == "array":
        return [path]
    keys = sig[1] if issubclass(sig[0], dict) else range(len(sig[1]))
    kids = sig[2] if issubclass(sig[0], dict) else sig[1]
    return [p for k, s in zip(keys, kids) for p in _paths(s, f"{path}[{k!r}]")]


def _argument(path: str) -> str:
    """``"[2][0]"`` as ``"argument 2 at [0]"``: which argument, and where in it (for error messages)."""
    head, _, rest = path[1:].partition("]")
    return f"argument {head}" + (f" at {rest}" if rest else "")


# ---- jit -----------------------------------------------------------------------------------------------
def jit(fn: Callable, static_argnums=(), donate_argnums=()) -> Callable:
    """``fn`` traced once per signature and replayed after: same results, without the Python graph.

    ``fn`` takes (nested dicts/lists/tuples of) arrays and returns them (Tensors in the result come back
    as arrays). Python numbers, strings and ``None`` in the arguments are static: part of the signature,
    so a new value traces again. ``static_argnums`` makes whole arguments static (they must be hashable).
    The traced plans are in ``jitted.plans`` (by signature). Called while another function is being
    traced, ``fn`` simply runs, so its ops join the outer plan.

    ``donate_argnums`` (as in ``jax.jit``): the caller gives up those arguments' arrays, so a replay may
    write results over them (``axon.buffers.donate_in_place``: an optimizer's update of the params and
    moments). Do not use a donated argument after the call; an array passed both donated and not is an error.

    >>> import axon
    >>> loss = lambda p, x: ((x @ p["w"]) ** 2).mean()
    >>> step = jit(axon.grad(loss))
    >>> g = step({"w": np.ones((2, 1), np.float32)}, np.ones((3, 2), np.float32))
    >>> g["w"].ravel(), len(step.plans)
    (array([4., 4.], dtype=float32), 1)
    >>> step({"w": np.ones((2, 1), np.float32)}, np.ones((5, 2), np.float32))["w"].ravel(), len(step.plans)
    (array([4., 4.], dtype=float32), 2)
    """
    if not callable(fn):
        raise TypeError(f"axon.jit: fn must be callable, got {type(fn).__name__}")
    static = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
    donate = (donate_argnums,) if isinstance(donate_argnums, int) else tuple(donate_argnums)
    plans: dict = {}

    @functools.wraps(fn)
    def jitted(*args, **kwargs):
        if TRACING.tracer is not None:                     # inside another trace: record into that one
            return fn(*args, **kwargs)
        leaves, donated = [], set()
        arg_sigs = []
        for i, a in enumerate(args):
            start = len(leaves)
            arg_sigs.append(_static(a) if i in static or i - len(args) in static else _flatten(a, leaves))
            if i in donate:
                donated.update(range(start, len(leaves)))                   # these leaves' slots
        sig = ((tuple, tuple(arg_sigs)), _flatten(kwargs, leaves), is_grad_enabled())   # (layers read the grad mode)
        if donated:
            _check_donated(leaves, donated)
        plan = plans.get(sig)
        if plan is not None:
            return plan(leaves)
        out, plans[sig] = _trace(fn, sig, leaves, donated)
        return out

    jitted.plans = plans
    return jitted


def _check_donated(leaves: list, donated: set) -> None:
    """Refuse an array that is donated and also passed again (donated twice, or in another argument)."""
    ids = [id(a) for a in leaves]
    if len(set(ids)) < len(ids):
        seen = {}
        for i, k in enumerate(ids):
            if k in seen and (i in donated or seen[k] in donated):
                raise ValueError(f"axon.jit: one array is passed as leaves {seen[k]} and {i} of the arguments, and "
                                 f"donated (donate_argnums): its values would be overwritten while still read; "
                                 f"pass a copy")
            seen.setdefault(k, i)


def _trace(fn, sig, leaves: list, donated=frozenset()):
    """Run ``fn`` once on placeholders, recording its ops: ``(its result, the Plan)``."""
    devices = {backend_of(a).name for a in leaves if a.ndim > 0 or not is_host(a)}
    if len(devices) > 1:
        raise ValueError(f"axon.jit: the arguments live on different devices ({' and '.join(sorted(devices))}); "
                         f"move them to one with axon.to_device")
    real = backend_of(next((a for a in leaves if not is_host(a)), np.zeros(0)))
    tracer = _Tracer(real)
    names = [_argument(p) for p in _paths(sig[0])] + [f"keyword argument {p}" for p in _paths(sig[1])]
    placeholders = [tracer.new(a, name) for a, name in zip(leaves, names)]
    it = iter(placeholders)
    args, kwargs = _unflatten(sig[0], it), _unflatten(sig[1], it)
    TRACING.tracer = tracer
    try:
        out = fn(*args, **kwargs)
    finally:
        TRACING.tracer = None
        tracer.closed = True
    out_leaves = []
    out_sig = _flatten(out, out_leaves, argument=False)
    results = [tracer.slot(a) for a in out_leaves]        # an array made outside any op is a constant result
    used = {s for op in tracer.ops for s in op.inputs} | set(results)
    constants = {s: a for a, s in ((tracer.values[s], s) for s in tracer.constant_of.values()) if s in used}
    from .fusion import run as fuse                        # (here: fusion builds Ops of this module)
    tracer.ops = fuse(tracer.ops, tracer.values, constants, results)   # axon.fusion's passes
    if donated:
        tracer.ops = donate_in_place(tracer.ops, set(results), donated)   # axon.buffers
    plan = Plan(tracer.ops, len(leaves), constants, results, out_sig, len(tracer.values), values=tracer.values)
    value = _unflatten(out_sig, iter([tracer.values[s] for s in results]))
    return value, plan
