"""The exercise checkers of chapters 1 and 2 (axon.exercises): a reference solution passes, a wrong one fails."""
import re
import time
from pathlib import Path

import numpy as np
import pytest
from numba import njit

from axon import exercises, kernels
from axon.autograd import PRIMITIVES, Tensor, apply, grad, ops, primitive


def _verdict(capsys, check, *solution):
    """(returned, printed line) of one checker run."""
    ok = check(*solution)
    return ok, capsys.readouterr().out


@pytest.fixture
def sin_prims():
    """sin and cos as primitives, each VJP written with the other (the reference for exercise 1.1)."""
    names = ("test_ex.sin", "test_ex.cos", "test_ex.bad_cos")
    cos = primitive(names[1], np.cos, lambda dy, y, x: (-dy * apply(sin, x),))
    sin = primitive(names[0], np.sin, lambda dy, y, x: (dy * apply(cos, x),))
    bad_cos = primitive(names[2], np.cos, lambda dy, y, x: (dy * apply(sin, x),))   # sign dropped
    bad_sin = primitive("test_ex.bad_sin", np.sin, lambda dy, y, x: (dy * apply(bad_cos, x),))
    yield (lambda x: apply(sin, x)), (lambda x: apply(bad_sin, x))
    for name in names + ("test_ex.bad_sin",):
        del PRIMITIVES[name]


def test_sin(capsys, sin_prims):
    right, wrong = sin_prims
    assert _verdict(capsys, exercises.check_sin, right) == (True, "exercise 1.1 (sin): pass\n")
    ok, out = _verdict(capsys, exercises.check_sin, wrong)            # first order right, second wrong
    assert not ok and "FAIL: second-order gradient" in out


def test_div_rule(capsys):
    right = lambda dy, a, b: -dy * a / b ** 2
    reusing = {"exp", "tanh", "sigmoid", "max"}                        # the table's rules that read y
    assert _verdict(capsys, exercises.check_div_rule, right, reusing) == (True, "exercise 1.2 (div rule): pass\n")
    assert _verdict(capsys, exercises.check_div_rule, right, reusing | {"div"})[0]   # div itself: allowed
    ok, out = _verdict(capsys, exercises.check_div_rule, right, reusing - {"max"} | {"log"})
    assert not ok and "missing ['max']" in out and "do not read y: ['log']" in out
    ok, out = _verdict(capsys, exercises.check_div_rule, right, reusing | {"sqrt"})   # reads y, not in the table
    assert not ok and "not in the table of section 1.6: ['sqrt']" in out
    ok, out = _verdict(capsys, exercises.check_div_rule, lambda dy, a, b: dy * a / b ** 2, reusing)
    assert not ok and "db differs" in out


def test_rules_using_y_reads_the_table():
    """The probe finds exactly the rules of section 1.6's table that read y, by calling their VJPs."""
    assert exercises._rules_using_y() == {"div", "exp", "tanh", "sigmoid", "max"}
    assert set(exercises.TABLE_1_6) <= set(PRIMITIVES)


def test_the_checked_table_is_the_chapters_table():
    """Exercise 1.2 asks for rules "in the table of section 1.6": the checker knows the same rows."""
    chapter = (Path(__file__).parents[1] / "tutorials" / "01_autodiff.md").read_text()
    section = chapter[chapter.index("## 1.6"):chapter.index("### Adding your own primitive")]
    rows = re.findall(r"^\| `(\w+)` \|", section, flags=re.M)
    assert rows == list(exercises.TABLE_1_6)


def test_hessian(capsys):
    def hessian(f, w):                                                 # one Hessian-vector product per column
        hvp = lambda v: grad(lambda w_: (grad(f)(w_) * v).sum())(w)
        return np.stack([hvp(e) for e in np.eye(len(w))], axis=1)
    assert _verdict(capsys, exercises.check_hessian, hessian) == (True, "exercise 1.3 (Hessian): pass\n")
    ok, out = _verdict(capsys, exercises.check_hessian, lambda f, w: hessian(f, w)[::-1])
    assert not ok and "H differs" in out


def test_log_softmax(capsys):
    def stable(z):
        m = ops.max(z)
        return z - m - ops.log(ops.exp(z - m).sum())
    assert _verdict(capsys, exercises.check_log_softmax, stable)[0]
    ok, out = _verdict(capsys, exercises.check_log_softmax, lambda z: z - ops.log(ops.exp(z).sum()))
    assert not ok and "not finite" in out
    ok, out = _verdict(capsys, exercises.check_log_softmax,          # right values, m's gradient dropped
                       lambda z: z - Tensor(np.asarray(z).max()) - ops.log(ops.exp(z - Tensor(np.asarray(z).max())).sum()))
    assert ok                                                           # the gradient through m cancels anyway
    ok, out = _verdict(capsys, exercises.check_log_softmax, lambda z: stable(z) * 1.0001)
    assert not ok and "values differ" in out


def test_matmul_loops(capsys):
    @njit(cache=False)
    def ikj_to_ijk(a, b, c):                                          # k innermost
        M, K = a.shape
        N = b.shape[1]
        for i in range(M):
            for j in range(N):
                s = c[i, j]
                for k in range(K):
                    s += a[i, k] * b[k, j]
                c[i, j] = s

    @njit(cache=False)
    def off_by_one(a, b, c):
        M, K = a.shape
        for i in range(M):
            for j in range(b.shape[1]):
                for k in range(K - 1):
                    c[i, j] += a[i, k] * b[k, j]

    assert _verdict(capsys, exercises.check_matmul_loops, ikj_to_ijk)[0]
    ok, out = _verdict(capsys, exercises.check_matmul_loops, off_by_one)
    assert not ok and "differs from a @ b" in out


def test_four_sums(capsys):
    def four(x):
        s0 = s1 = s2 = s3 = np.float32(0)
        n4 = len(x) // 4 * 4
        for i in range(0, n4, 4):
            s0 += x[i]
            s1 += x[i + 1]
            s2 += x[i + 2]
            s3 += x[i + 3]
        for i in range(n4, len(x)):
            s0 += x[i]
        return (s0 + s1) + (s2 + s3)

    right = njit(cache=False)(four)
    assert _verdict(capsys, exercises.check_four_sums, right) == (True, "exercise 2.2 (four accumulators): pass\n")
    ok, out = _verdict(capsys, exercises.check_four_sums, njit(cache=False, fastmath=True)(four))
    assert not ok and "fastmath" in out
    ok, out = _verdict(capsys, exercises.check_four_sums, lambda x: float(x[: len(x) // 4 * 4].sum()))
    assert not ok and "length 1:" in out


def test_im2col(capsys):
    def im2col(x, kh, kw, stride, pad):
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        N, H, W, C = x.shape
        Ho, Wo = (H - kh) // stride + 1, (W - kw) // stride + 1
        return np.stack([x[n, i * stride:i * stride + kh, j * stride:j * stride + kw, :].ravel()
                         for n in range(N) for i in range(Ho) for j in range(Wo)])

    assert _verdict(capsys, exercises.check_im2col, im2col) == (True, "exercise 2.3 (im2col): pass\n")
    ok, out = _verdict(capsys, exercises.check_im2col,                 # padding ignored
                       lambda x, kh, kw, stride, pad: im2col(x, kh, kw, stride, 0))
    assert not ok and "stride 2, padding 1" in out


def test_max_pool(capsys):
    def by_comparison(x):                                             # the winner found again: y == x
        N, H, W, C = x.shape
        x = x[:, : H // 2 * 2, : W // 2 * 2]
        windows = ops.reshape(x, (N, H // 2, 2, W // 2, 2, C))
        return ops.max(ops.max(windows, axis=4), axis=2)

    ok, out = _verdict(capsys, exercises.check_max_pool, by_comparison)
    assert ok and out.startswith("exercise 2.4 (max pool): pass\n  ties (a window of zeros): ")
    ok, out = _verdict(capsys, exercises.check_max_pool, lambda x: by_comparison(x) * 2.0)
    assert not ok and "values differ" in out
    ok, out = _verdict(capsys, exercises.check_max_pool,                 # values right, gradient wrong
                       lambda x: by_comparison(x) + 0.0 * ops.sum(x) + (ops.sum(x) - ops.sum(x.data)) * 1e-3)
    assert not ok and "gradients differ" in out
    ok, out = _verdict(capsys, exercises.check_max_pool,
                       lambda x: kernels.max_pool(x, (2, 2), (2, 2), ((0, 0), (0, 0))))
    assert ok and "follows axon's rule" in out


def _speedup(f, repeat=3):
    """A reference solution of exercise 2.5: the best of ``repeat`` runs on one thread over the best on all."""
    n = kernels.num_threads()

    def best():
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        return min(times)
    try:
        kernels.set_num_threads(1)
        one = best()
    finally:
        kernels.set_num_threads(n)
    return one / best()


def test_speedup(capsys):
    n = kernels.num_threads()
    assert _verdict(capsys, exercises.check_speedup, _speedup) == (True, "exercise 2.5 (speedup): pass\n")
    ok, out = _verdict(capsys, exercises.check_speedup, lambda f: _speedup(f) * 3.0)          # a wrong ratio
    assert not ok and "speedup returned" in out
    assert kernels.num_threads() == n

    def not_put_back(f):
        kernels.set_num_threads(1)
        f()
        return 1.0
    if n == 1:                                                          # one thread: nothing more to tell apart
        return
    ok, out = _verdict(capsys, exercises.check_speedup, not_put_back)
    assert not ok and "not put back" in out
    assert kernels.num_threads() == n                                   # the check restored it
    ok, out = _verdict(capsys, exercises.check_speedup, lambda f: (f(), float(n))[1])   # never on one thread
    assert not ok and "never ran on one thread" in out


@pytest.mark.parametrize("chapter", ["01_autodiff.md", "02_fast.md"])
def test_every_exercise_of_the_chapter_names_its_check(chapter):
    """Each numbered exercise at the end of chapters 1 and 2 says ``Check: check_...(...)``, a checker that exists."""
    text = (Path(__file__).parents[1] / "tutorials" / chapter).read_text()
    section = text[text.index("## Exercises"):]
    items = re.split(r"\n(?=\d+\. )", section[section.index("\n1. ") + 1:].split("\n\nNext,")[0])
    assert len(items) >= 4
    for item in items:
        named = re.findall(r"Check:\s+`(check_\w+)\(", " ".join(item.split()))
        assert named, f"{chapter}: exercise {item[:2]} names no check"
        assert all(name in exercises.__all__ for name in named), named


def test_every_checker_is_named_by_an_exercise_and_tested_here():
    chapters = "".join((Path(__file__).parents[1] / "tutorials" / c).read_text()
                       for c in ("01_autodiff.md", "02_fast.md"))
    tested = Path(__file__).read_text()
    for name in exercises.__all__:
        assert f"`{name}(" in chapters, f"{name} is named by no exercise"
        assert f"exercises.{name}," in tested, f"{name} has no test of its own here"
