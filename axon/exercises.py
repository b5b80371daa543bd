"""Checks for the exercises at the end of chapters 1 and 2: pass your solution, read pass or what is wrong.

Each ``check_*`` function runs a reader's solution on seeded inputs, compares it with an independent
reference (numpy, finite differences, axon's own kernels, a stand-in of known timings), prints one
line, ``exercise 1.1 (sin): pass`` or ``exercise 1.1 (sin): FAIL: <what differs>``, and returns True
or False.

- 1.1 ``check_sin(sin)``: ``sin(x) -> Tensor``, a primitive whose VJP is a primitive too;
- 1.2 ``check_div_rule(db, names)``: ``db(dy, a, b) = -dy a / b**2``, the table's other rules that read y;
- 1.3 ``check_hessian(hessian)``: ``hessian(f, w) -> (n, n)`` array, one Hessian-vector product a column;
- 1.4 ``check_log_softmax(log_softmax)``: ``log_softmax(z) -> Tensor``, stable for ``z = [1000, 0]``;
- 2.1 ``check_matmul_loops(matmul)``: ``matmul(a, b, c)`` adds a @ b into the zeroed c, k innermost;
- 2.2 ``check_four_sums(sum4)``: ``sum4(x) -> float`` with four accumulators, no fastmath;
- 2.3 ``check_im2col(im2col)``: ``im2col(x, kh, kw, stride, pad) -> cols``;
- 2.4 ``check_max_pool(max_pool)``: ``max_pool(x) -> Tensor`` over 2 x 2 windows, stride 2, no argmax;
- 2.5 ``check_speedup(speedup)``: ``speedup(f) -> float``, f's time on one thread over its time on all.

>>> check_sin(lambda x: x)                                  # sin(x) = x is only right near 0
exercise 1.1 (sin): FAIL: values differ from np.sin (largest error 2.66)
False
"""
from __future__ import annotations

import inspect
import math
import time

import numpy as np

from .autograd import PRIMITIVES, Tensor, check_grads, grad, no_grad

__all__ = ["check_sin", "check_div_rule", "check_hessian", "check_log_softmax", "check_matmul_loops",
           "check_four_sums", "check_im2col", "check_max_pool", "check_speedup"]


def _report(title: str, checks) -> bool:
    """Run ``checks()`` (which raises AssertionError with a reason); print pass or FAIL and the reason."""
    try:
        checks()
    except Exception as e:                                     # the reader's code may raise anything
        reason = str(e).split("\n")[0] if isinstance(e, AssertionError) else f"{type(e).__name__}: {e}"
        print(f"exercise {title}: FAIL: {reason}")
        return False
    print(f"exercise {title}: pass")
    return True


def _close(got, want, what: str, rtol=1e-6, atol=1e-9):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"{what}: shape {got.shape}, expected {want.shape}")
    if not np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=False):
        raise AssertionError(f"{what} (largest error {np.nanmax(np.abs(got - want)):.3g})")


def _array(t) -> np.ndarray:
    return np.asarray(t.data if isinstance(t, Tensor) else t)


# ---- chapter 1 ----------------------------------------------------------------------------------------
def check_sin(sin) -> bool:
    """Exercise 1.1: ``sin`` on Tensors: values, first and second derivatives, and sin'''(0) = -1.

    >>> import numpy as np
    >>> from axon.autograd import ops
    >>> check_sin(lambda x: ops.tanh(x))                  # close to sin near 0, not elsewhere
    exercise 1.1 (sin): FAIL: values differ from np.sin (largest error 0.756)
    False
    """
    def checks():
        x = np.random.default_rng(0).uniform(-3.0, 3.0, 7)
        _close(_array(sin(Tensor(x))), np.sin(x), "values differ from np.sin")
        try:
            check_grads(lambda t: sin(t), (x,), order=2)
        except AssertionError as e:
            raise AssertionError(f"{e}".split(":")[0] + " (check_grads, order=2)") from None
        d3 = grad(grad(grad(lambda t: sin(t))))(0.0)
        _close(d3, -1.0, f"the third derivative at 0 is {float(d3):.4g}, not -cos(0) = -1", atol=1e-6)
    return _report("1.1 (sin)", checks)


class _Untouchable:
    """Stands for the output y in a VJP call: any use of it raises ``_Touched``."""

    def __getattr__(self, name):
        raise _Touched

    def _touched(self, *args):
        raise _Touched

    __array__ = __float__ = __bool__ = __len__ = __iter__ = __neg__ = _touched
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _touched
    __truediv__ = __rtruediv__ = __pow__ = __rpow__ = __eq__ = __gt__ = __lt__ = __ge__ = __le__ = _touched


class _Touched(Exception):
    pass


# The rules of chapter 1's table (section 1.6), each with the settings its VJP takes.
TABLE_1_6 = {"add": {}, "mul": {}, "div": {}, "exp": {}, "log": {}, "tanh": {}, "sigmoid": {}, "relu": {},
             "sum": {"axis": None, "keepdims": False}, "matmul": {}, "getitem": {"index": 0},
             "max": {"axis": None, "keepdims": False}}


def _rules_using_y(names=TABLE_1_6) -> set:
    """The rules among ``names`` (those of the table in section 1.6) whose VJP reads the output y.

    Each VJP is called with an output that raises when it is used; the inputs are real Tensors.
    """
    found = set()
    for name in names:
        prim = PRIMITIVES[name]
        n_inputs = 2 if name in ("add", "mul", "div", "matmul") else 1
        xs = [Tensor(np.array([0.7, 1.3]), requires_grad=True) for _ in range(n_inputs)]
        y = prim.forwards["cpu"](*(x.data for x in xs), **TABLE_1_6[name])
        dy = Tensor(np.ones_like(y))                             # the shape of the output
        with no_grad():
            try:
                prim.vjp(dy, _Untouchable(), *xs, **TABLE_1_6[name])
            except _Touched:
                found.add(name)
    return found


def check_div_rule(db, rules_using_y) -> bool:
    """Exercise 1.2: ``db(dy, a, b)`` gives -dy a / b**2 (equal to div's rule); which other rules read y.

    ``rules_using_y``: the names of the other rules in the table of section 1.6 whose VJP reads the
    output y (the check finds them by calling each VJP with an output that cannot be read).

    >>> check_div_rule(lambda dy, a, b: -dy * a / b, {"exp"})  # b, not b**2
    exercise 1.2 (div rule): FAIL: db differs from the gradient of a / b with respect to b ...
    False
    """
    def checks():
        rng = np.random.default_rng(1)
        a, b, dy = rng.standard_normal(5), rng.uniform(0.5, 2.0, 5), rng.standard_normal(5)
        reference = grad(lambda b_: ((Tensor(a) / b_) * Tensor(dy)).sum())(b)
        _close(_array(db(Tensor(dy), Tensor(a), Tensor(b))), reference,
               "db differs from the gradient of a / b with respect to b")
        got = set(rules_using_y) - {"div"}
        if got - set(TABLE_1_6):
            raise AssertionError(f"not in the table of section 1.6: {sorted(got - set(TABLE_1_6))}")
        want = _rules_using_y() - {"div"}
        if got != want:
            missing, extra = sorted(want - got), sorted(got - want)
            raise AssertionError(f"the rules of the table reading y are not all found: missing {missing}, "
                                 f"these do not read y: {extra}")
    return _report("1.2 (div rule)", checks)


def check_hessian(hessian) -> bool:
    """Exercise 1.3: ``hessian(f, w)``, built one column H e_i at a time, equals (A + A^T)/2 + diag(exp(w)).

    >>> check_hessian(lambda f, w: np.eye(len(w)))
    exercise 1.3 (Hessian): FAIL: H differs from (A + A^T)/2 + diag(exp(w)) ...
    False
    """
    from .autograd import ops

    def checks():
        rng = np.random.default_rng(2)
        A, w = rng.standard_normal((4, 4)), rng.standard_normal(4)

        def f(w):
            return 0.5 * (w @ (A @ w)) + ops.exp(w).sum()

        _close(hessian(f, w), 0.5 * (A + A.T) + np.diag(np.exp(w)),
               "H differs from (A + A^T)/2 + diag(exp(w))")
    return _report("1.3 (Hessian)", checks)


def check_log_softmax(log_softmax) -> bool:
    """Exercise 1.4: values, stability at z = [1000, 0], and gradients (also at a tie for the max).

    >>> from axon.autograd import ops
    >>> check_log_softmax(lambda z: z - ops.log(ops.exp(z).sum()))  # overflows at 1000
    exercise 1.4 (log_softmax): FAIL: not finite at z = [1000, 0]: [-inf -inf]
    False
    """
    def reference(z):
        m = z.max()
        return z - m - np.log(np.exp(z - m).sum())

    def checks():
        z = np.random.default_rng(3).standard_normal(6)
        _close(_array(log_softmax(Tensor(z))), reference(z), "values differ from z - logsumexp(z)")
        with np.errstate(all="ignore"):
            big = _array(log_softmax(Tensor(np.array([1000.0, 0.0]))))
        if not np.all(np.isfinite(big)):
            raise AssertionError(f"not finite at z = [1000, 0]: {big}")
        _close(big, [0.0, -1000.0], "wrong at z = [1000, 0]")
        c = np.random.default_rng(4).standard_normal(3)
        for point in (z[:3], np.array([2.0, 2.0, -1.0])):           # the second has a tie for the max
            try:
                check_grads(lambda t: (log_softmax(t) * c).sum(), (point,))
            except AssertionError:
                raise AssertionError(f"gradient differs from finite differences at z = {point.round(3)}") from None
    return _report("1.4 (log_softmax)", checks)


# ---- chapter 2 ----------------------------------------------------------------------------------------
def check_matmul_loops(matmul) -> bool:
    """Exercise 2.1: ``matmul(a, b, c)`` adds a @ b into the zeroed ``c``: odd shapes, float32 and float64.

    >>> def wrong(a, b, c):
    ...     c[:] = a[:, :b.shape[1]]                        # not a product
    >>> check_matmul_loops(wrong)
    exercise 2.1 (loop order): FAIL: 5 x 7 @ 7 x 3 (float64) differs from a @ b ...
    False
    """
    def checks():
        rng = np.random.default_rng(5)
        for (M, K, N), dtype in [((5, 7, 3), np.float64), ((1, 1, 1), np.float64), ((13, 11, 17), np.float32),
                                 ((256, 256, 256), np.float32)]:
            a, b = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
            c = np.zeros((M, N), dtype)
            matmul(a, b, c)
            tol = 1e-4 if dtype == np.float32 else 1e-10
            _close(c, a.astype(np.float64) @ b, f"{M} x {K} @ {K} x {N} ({np.dtype(dtype)}) differs from a @ b",
                   rtol=tol, atol=tol)
    return _report("2.1 (loop order)", checks)


def check_four_sums(sum4) -> bool:
    """Exercise 2.2: ``sum4(x)`` sums float32 ``x`` of any length (not only multiples of 4), no fastmath.

    >>> check_four_sums(lambda x: float(x[: len(x) // 4 * 4].sum()))  # drops the remainder
    exercise 2.2 (four accumulators): FAIL: length 1: ...
    False
    """
    def checks():
        rng = np.random.default_rng(6)
        for n in (0, 1, 2, 3, 4, 5, 7, 8, 9, 13, (1 << 20) + 3):
            x = rng.standard_normal(n).astype(np.float32)
            exact = math.fsum(x.astype(np.float64))
            tol = 1e-3 * max(1.0, math.sqrt(n))                    # float32 rounding grows like sqrt(n)
            got = float(sum4(x))
            if not abs(got - exact) <= tol:
                raise AssertionError(f"length {n}: got {got:.6g}, the exact sum is {exact:.6g}")
        options = getattr(sum4, "targetoptions", {})               # a numba dispatcher's njit options
        if options.get("fastmath"):
            raise AssertionError(f"compiled with fastmath={options['fastmath']}: the exercise asks for none")
    return _report("2.2 (four accumulators)", checks)


def check_im2col(im2col) -> bool:
    """Exercise 2.3: ``cols @ W`` of your ``im2col(x, kh, kw, stride, pad)`` equals ``kernels.conv``.

    >>> check_im2col(lambda x, kh, kw, stride, pad: np.zeros((1, kh * kw * x.shape[-1])))
    exercise 2.3 (im2col): FAIL: stride 2, padding 1: cols has shape (1, 27), expected (9, 27)
    False
    """
    from . import kernels

    def checks():
        rng = np.random.default_rng(7)
        for N, stride, pad in [(1, 2, 1), (2, 1, 0), (1, 1, 1), (2, 2, 0)]:
            x = rng.standard_normal((N, 5, 5, 3))                       # (N, H, W, C)
            w = rng.standard_normal((3, 3, 3, 4))                       # (kh, kw, C, O)
            y = kernels.conv(x, w, strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                             dilation=(1, 1)).numpy()                   # (N, Ho, Wo, O)
            cols = np.asarray(im2col(x, 3, 3, stride, pad))
            rows = int(np.prod(y.shape[:3]))
            if cols.shape != (rows, 27):
                raise AssertionError(f"stride {stride}, padding {pad}: cols has shape {cols.shape}, "
                                     f"expected ({rows}, 27)")
            _close(cols @ w.reshape(27, 4), y.reshape(rows, 4),
                   f"stride {stride}, padding {pad}, batch {N}: cols @ W differs from kernels.conv")
    return _report("2.3 (im2col)", checks)


def check_max_pool(max_pool) -> bool:
    """Exercise 2.4: ``max_pool(x)`` (2 x 2 windows, stride 2) against ``kernels.max_pool``: values, gradients.

    Without ties the two must agree; on a window of zeros the line says whether your gradient follows
    axon's rule for ties (which the pass does not require: the exercise asks what it takes).

    >>> from axon.autograd import ops
    >>> check_max_pool(lambda x: ops.max(x))                # the max of everything, not of each window
    exercise 2.4 (max pool): FAIL: output shape (), expected (2, 2, 3, 3)
    False
    """
    from . import kernels

    def pooled(fn, x, c):                                   # y and d(sum(y * c))/dx
        t = Tensor(x, requires_grad=True)
        y = fn(t)
        if tuple(y.shape) != c.shape:
            raise AssertionError(f"output shape {tuple(y.shape)}, expected {c.shape}")
        (y * Tensor(c)).sum().backward()
        return _array(y), np.asarray(t.grad)

    def reference(x):
        return kernels.max_pool(x, (2, 2), (2, 2), ((0, 0), (0, 0)))

    ties = []

    def checks():
        rng = np.random.default_rng(8)
        x = rng.permutation(2 * 5 * 6 * 3).reshape(2, 5, 6, 3).astype(np.float32)  # distinct: no ties; odd H
        c = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
        for (y, g), (y_ref, g_ref) in [(pooled(max_pool, x, c), pooled(reference, x, c))]:
            _close(y, y_ref, "values differ from kernels.max_pool")
            _close(g, g_ref, "gradients differ from kernels.max_pool's (no ties)")
        zeros = np.zeros((1, 4, 4, 1), np.float32)
        c = np.ones((1, 2, 2, 1), np.float32)
        ties.append(np.allclose(pooled(max_pool, zeros, c)[1], pooled(reference, zeros, c)[1]))

    passed = _report("2.4 (max pool)", checks)
    if passed:
        print("  ties (a window of zeros):", "the gradient follows axon's rule" if ties[0] else
              "the gradient differs from axon's rule: see kernels.max_pool's docstring")
    return passed


def check_speedup(speedup) -> bool:
    """Exercise 2.5: ``speedup(f)`` times ``f()`` on one thread and on all, puts the count back, returns the ratio.

    "All" is the thread count the kernels had when ``speedup`` was called (``kernels.num_threads()``).
    Your ``speedup`` is handed a stand-in for a kernel whose time is known: on n threads it sleeps
    20 / n ms, so on a machine with n threads the right answer is n.

    >>> check_speedup(lambda f: (f(), 0.0)[1])                  # one call, and no ratio
    exercise 2.5 (speedup): FAIL: ...
    False
    """
    from .kernels import threads

    def checks():
        n, seen = threads.num_threads(), []

        def f():                                                # a kernel that parallelises perfectly
            k = threads.num_threads()
            seen.append(k)
            time.sleep(0.020 / k)

        try:
            ratio = speedup(f)
        finally:
            after = threads.num_threads()
            threads.set_num_threads(n)                          # whatever happened, the reader's count is back
        if after != n:
            raise AssertionError(f"the thread count is not put back: {n} before speedup(f), {after} after")
        if 1 not in seen:
            raise AssertionError(f"f never ran on one thread (kernels.set_num_threads(1)); it ran on "
                                 f"{sorted(set(seen))}")
        if n not in seen:
            raise AssertionError(f"f never ran on all {n} threads; it ran on {sorted(set(seen))}")
        if not isinstance(ratio, (int, float, np.floating)) or not 0.7 * n <= ratio <= 1.4 * n:
            raise AssertionError(f"speedup returned {ratio!r}; f takes {n} times as long on one thread as on {n}")
    return _report("2.5 (speedup)", checks)
