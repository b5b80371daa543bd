"""The autograd engine: every primitive against finite differences (1st and 2nd order) and torch."""
import sys

import numpy as np
import pytest

import axon.autograd as ag
from axon.autograd import Tensor, check_grads, grad, no_grad, value_and_grad

r = np.random.default_rng(0)


def pos(*shape):
    """Positive inputs (for log, sqrt, fractional powers)."""
    return np.abs(r.standard_normal(shape)) + 0.5


def rnd(*shape):
    return r.standard_normal(shape)


def gapped(*shape):
    """Distinct values at least 0.1 apart, away from 0: max/min/relu/abs are differentiable there."""
    n = int(np.prod(shape))
    v = (np.arange(n) + 1) * 0.37 * r.choice([-1, 1], n)
    return r.permutation(v).reshape(shape)


# name -> (axon function, torch function or None, inputs). Broadcasting cases included.
CASES = {
    "add_broadcast": (lambda a, b: a + b, lambda a, b: a + b, (rnd(3, 1), rnd(4))),
    "sub_broadcast": (lambda a, b: a - b, lambda a, b: a - b, (rnd(2, 3), rnd(3))),
    "mul_broadcast": (lambda a, b: a * b, lambda a, b: a * b, (rnd(2, 1, 3), rnd(4, 1))),
    "div": (lambda a, b: a / b, lambda a, b: a / b, (rnd(2, 3), pos(3))),
    "rdiv_scalar": (lambda a: 2.0 / a, lambda a: 2.0 / a, (pos(2, 3),)),
    "neg": (lambda a: -a, lambda a: -a, (rnd(2, 3),)),
    "power_tensor": (ag.power, lambda a, b: a ** b, (pos(2, 3), rnd(3))),
    "power_scalar": (lambda a: a ** 3, lambda a: a ** 3, (rnd(2, 3),)),
    "rpow": (lambda a: 2.0 ** a, lambda a: 2.0 ** a, (rnd(2, 3),)),
    "matmul": (lambda a, b: a @ b, lambda a, b: a @ b, (rnd(2, 3), rnd(3, 4))),
    "matmul_batched": (ag.matmul, lambda a, b: a @ b, (rnd(5, 2, 3), rnd(3, 4))),
    "matmul_batched_both": (ag.matmul, lambda a, b: a @ b, (rnd(2, 1, 2, 3), rnd(3, 3, 2))),
    "matmul_vec_mat": (ag.matmul, lambda a, b: a @ b, (rnd(3), rnd(3, 4))),
    "matmul_mat_vec": (ag.matmul, lambda a, b: a @ b, (rnd(2, 2, 3), rnd(3))),
    "matmul_vec_vec": (ag.matmul, lambda a, b: a @ b, (rnd(3), rnd(3))),
    "exp": (ag.exp, lambda a: a.exp(), (rnd(3, 2),)),
    "log": (ag.log, lambda a: a.log(), (pos(3, 2),)),
    "sqrt": (ag.sqrt, lambda a: a.sqrt(), (pos(3, 2),)),
    "abs": (ag.abs, lambda a: a.abs(), (gapped(3, 2),)),
    "tanh": (ag.tanh, lambda a: a.tanh(), (rnd(3, 2),)),
    "sigmoid": (ag.sigmoid, lambda a: a.sigmoid(), (rnd(3, 2) * 3,)),
    "relu": (ag.relu, lambda a: a.relu(), (gapped(3, 2),)),
    "clip": (lambda a: ag.clip(a, -0.5, 0.6), lambda a: a.clamp(-0.5, 0.6), (gapped(4, 3) / 2,)),
    "clip_low_only": (lambda a: ag.clip(a, -0.5, None), lambda a: a.clamp(min=-0.5), (gapped(4, 3) / 2,)),
    "sum_all": (ag.sum, lambda a: a.sum(), (rnd(3, 2),)),
    "sum_axis": (lambda a: ag.sum(a, 1), lambda a: a.sum(1), (rnd(3, 2),)),
    "sum_axes_keepdims": (lambda a: ag.sum(a, (0, 2), keepdims=True),
                          lambda a: a.sum((0, 2), keepdim=True), (rnd(3, 2, 4),)),
    "mean_axis": (lambda a: ag.mean(a, -1), lambda a: a.mean(-1), (rnd(3, 2),)),
    "mean_all": (ag.mean, lambda a: a.mean(), (rnd(3, 2),)),
    "max_axis": (lambda a: ag.max(a, 0), lambda a: a.max(0).values, (gapped(3, 2),)),
    "max_all": (ag.max, lambda a: a.max(), (gapped(3, 2),)),
    "min_axis_keepdims": (lambda a: ag.min(a, 1, keepdims=True), lambda a: a.min(1, keepdim=True).values,
                          (gapped(3, 4),)),
    "reshape": (lambda a: ag.reshape(a, (6, -1)), lambda a: a.reshape(6, -1), (rnd(3, 2, 2),)),
    "transpose": (lambda a: ag.transpose(a, (2, 0, 1)), lambda a: a.permute(2, 0, 1), (rnd(3, 2, 4),)),
    "T": (lambda a: a.T, lambda a: a.T, (rnd(3, 2),)),
    "getitem_slices": (lambda a: a[1:, ::2], lambda a: a[1:, ::2], (rnd(3, 4),)),
    "getitem_int_none": (lambda a: a[1, None, :], lambda a: a[1, None, :], (rnd(3, 4),)),
    "getitem_int_array": (lambda a: a[np.array([0, 0, 2, 1])], lambda a: a[[0, 0, 2, 1]], (rnd(3, 4),)),
    "getitem_2d_arrays": (lambda a: a[np.array([0, 2, 2]), np.array([1, 1, 3])],
                          lambda a: a[[0, 2, 2], [1, 1, 3]], (rnd(3, 4),)),
    # getitem with its index array as an input (what axon.jit records for a traced index), and its VJP
    "getitem_at": (lambda a: ag.apply(ag.ops._getitem_at, a, np.array([0, 0, 2, 1]), index=(False, (("at", 0),))),
                   lambda a: a[[0, 0, 2, 1]], (rnd(3, 4),)),
    "scatter_add_at": (lambda a: ag.apply(ag.ops._scatter_add_at, a, np.array([0, 2, 2]), index=(False, (("at", 0),)),
                                          shape=(4, 2)),
                       lambda a: __import__("torch").zeros(4, 2, dtype=a.dtype).index_add(
                           0, __import__("torch").tensor([0, 2, 2]), a), (rnd(3, 2),)),
    "getitem_mask": (lambda a: a[np.array([True, False, True])], lambda a: a[[True, False, True]], (rnd(3, 4),)),
    "concatenate": (lambda a, b: ag.concatenate([a, b], 1), lambda a, b: __import__("torch").cat([a, b], 1),
                    (rnd(3, 2), rnd(3, 4))),
    "stack": (lambda a, b: ag.stack([a, b], -1), lambda a, b: __import__("torch").stack([a, b], -1),
              (rnd(3, 2), rnd(3, 2))),
    "where": (lambda a, b: ag.where(np.array([True, False, True]), a, b),
              lambda a, b: __import__("torch").where(__import__("torch").tensor([True, False, True]), a, b),
              (rnd(2, 3), rnd(3))),
    "maximum": (ag.maximum, lambda a, b: __import__("torch").maximum(a, b), (gapped(2, 3), gapped(3) + 0.05)),
    "minimum": (ag.minimum, lambda a, b: __import__("torch").minimum(a, b), (gapped(2, 3), gapped(3) + 0.05)),
    "pad": (lambda a: ag.pad(a, ((1, 2), (0, 1))),
            lambda a: __import__("torch").nn.functional.pad(a, (0, 1, 1, 2)), (rnd(2, 3),)),
    "broadcast_to": (lambda a: ag.broadcast_to(a, (4, 2, 3)), lambda a: a.broadcast_to((4, 2, 3)), (rnd(2, 1),)),
    "astype": (lambda a: ag.astype(a, np.float64) * 2, lambda a: a.double() * 2, (rnd(3),)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_primitive_matches_finite_differences(name):
    f, _, args = CASES[name]
    check_grads(f, args, order=1)


@pytest.mark.parametrize("name", list(CASES))
def test_primitive_second_order(name):
    f, _, args = CASES[name]
    check_grads(f, args, order=2)


@pytest.mark.parametrize("name", list(CASES))
def test_primitive_matches_torch(name):
    torch = pytest.importorskip("torch")
    f, tf, args = CASES[name]
    xs = [Tensor(a, requires_grad=True) for a in args]
    ts = [torch.tensor(a, requires_grad=True) for a in args]
    y, ty = f(*xs), tf(*ts)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-6, atol=1e-8)
    u = r.standard_normal(y.shape)
    (y * u).sum().backward()
    (ty * torch.tensor(u)).sum().backward()
    for x, t in zip(xs, ts):
        np.testing.assert_allclose(x.grad, t.grad.numpy(), rtol=1e-6, atol=1e-8)


def test_every_primitive_is_covered():
    """A new primitive without a test here fails this test."""
    exercised = set()
    for f, _, args in CASES.values():
        y = f(*[Tensor(a, requires_grad=True) for a in args])
        exercised |= {t._node.prim.name for t in ag.toposort(y) if t._node is not None}
    # every primitive defined in ops.py; scatter_add (getitem's VJP) runs in the second-order tests
    from axon.autograd import ops
    engine_prims = {p.name for p in vars(ops).values() if isinstance(p, ag.Primitive) and p.vjp is not None}
    assert len(engine_prims - {"scatter_add"}) > 25
    assert engine_prims - {"scatter_add"} - exercised == set()


def test_one_way_to_make_a_primitive():
    """``primitive(name, forward, vjp)`` makes every primitive (library, tests, chapters); no ``Primitive(...)``."""
    import re
    from pathlib import Path
    root = Path(ag.__file__).parents[2]
    files = [*root.glob("axon/**/*.py"), *root.glob("tests/*.py"), *root.glob("tutorials/*.md"),
             root / "CONTRIBUTING.md", root / "README.md"]
    calls = [f"{f.relative_to(root)}:{i}" for f in files for i, line in enumerate(f.read_text().split("\n"), 1)
             if re.search(r"(?<![\w.\"])Primitive\(", line) and f.name != "engine.py" and f != Path(__file__)]
    assert not calls, f"Primitive(...) called outside primitive(): {calls}"
    prim = ag.primitive("test.one_way", np.negative, lambda dy, y, x: (-dy,))
    try:
        assert ag.PRIMITIVES["test.one_way"] is prim and isinstance(prim, ag.Primitive)
    finally:
        del ag.PRIMITIVES["test.one_way"]


COMPARISONS = {"less": np.less, "less_equal": np.less_equal, "greater": np.greater,
               "greater_equal": np.greater_equal, "equal": np.equal, "not_equal": np.not_equal}


@pytest.mark.parametrize("name", list(COMPARISONS))
def test_comparisons_match_numpy_and_are_never_recorded(name):
    a, b = gapped(3, 4), gapped(4)
    b[1] = a[0, 1]                                             # one tie, so equality is exercised
    x = Tensor(a, requires_grad=True)
    y = getattr(ag.ops, name)(x, b)
    np.testing.assert_array_equal(y.numpy(), COMPARISONS[name](a, b))
    assert y.dtype == bool and not y.requires_grad and y._node is None


def test_logic_and_sign():
    p, q = Tensor([True, True, False]), Tensor([True, False, False])
    np.testing.assert_array_equal((p & q).numpy(), [True, False, False])
    np.testing.assert_array_equal((p | q).numpy(), [True, True, False])
    np.testing.assert_array_equal((~p).numpy(), [False, False, True])
    x = Tensor([-2.0, 0.0, 5.0], requires_grad=True)
    np.testing.assert_array_equal(ag.ops.sign(x).numpy(), [-1.0, 0.0, 1.0])
    assert not ag.ops.sign(x).requires_grad


# ---- the Tensor ------------------------------------------------------------------------------------
def test_dtypes_float32_default_float64_kept():
    assert Tensor([1, 2]).dtype == np.float32
    assert Tensor(3.0).dtype == np.float32
    assert Tensor(np.ones(2)).dtype == np.float64
    x = Tensor(np.ones((2, 2), np.float32), requires_grad=True)
    y = ((x * 2.0 + 1) / 3 - 0.5) ** 2
    assert y.dtype == np.float32
    y.exp().mean().backward()
    assert x.grad.dtype == np.float32
    x64 = Tensor(np.ones(3), requires_grad=True)
    (x64 * 2.0).sum().backward()
    assert x64.grad.dtype == np.float64


@pytest.mark.parametrize("data, dtype", [
    (3, np.float32), (3.5, np.float32), ([1, 2], np.float32), ((1, 2), np.float32), ([[1], [2]], np.float32),
    ([np.int64(1), 2], np.float32),                                   # a list: Python's rule, whatever it holds
    (True, np.bool_), ([True, False], np.bool_),
    (np.int64(3), np.int64), (np.float64(3), np.float64), (np.float16(3), np.float16),   # numpy keeps its dtype
    (np.array([1, 2]), np.int64), (np.array(3.0), np.float64), (np.zeros(2, np.int32), np.int32),
])
def test_dtype_rule_python_data_is_float32_numpy_keeps_its_dtype(data, dtype):
    """The rule in Tensor's docstring: Python numbers and lists -> float32 (bools -> bool), numpy as it is."""
    assert Tensor(data).dtype == dtype
    assert Tensor(data, dtype=np.float64).dtype == np.float64          # dtype= overrides the rule


def test_repr_numpy_detach_and_properties():
    x = Tensor([[1.0, 2.0]], requires_grad=True)
    assert "requires_grad=True" in repr(x) and "float32" in repr(x)
    y = x * 2
    assert "grad_fn=<mul>" in repr(y)
    assert y.shape == (1, 2) and y.ndim == 2 and y.size == 2
    assert isinstance(y.numpy(), np.ndarray)
    d = y.detach()
    assert not d.requires_grad and d.is_leaf
    np.testing.assert_array_equal(d.numpy(), [[2.0, 4.0]])


def test_comparisons_have_no_grad():
    x = Tensor([1.0, -2.0], requires_grad=True)
    for c in (x > 0, x >= 0, x < 0, x <= 0, x == 1.0, x != 1.0):
        assert c.dtype == bool and not c.requires_grad
    np.testing.assert_array_equal((x > 0).numpy(), [True, False])


def test_grad_accumulates_across_backward_calls():
    x = Tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, [3 + 2, 3 + 4])


def test_shared_subexpression_gets_both_paths():
    x = Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    (x @ x.T).sum().backward()
    np.testing.assert_allclose(x.grad, [[8, 12], [8, 12]])


def test_ten_thousand_op_chain_does_not_recurse():
    limit = sys.getrecursionlimit()
    x = Tensor(np.ones(3), requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.full(3, 1.0001 ** 10_000), rtol=1e-9)
    assert sys.getrecursionlimit() == limit


def test_graph_is_freed_unless_retained():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, [4.0, 8.0])
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_no_grad_records_nothing():
    x = Tensor([1.0], requires_grad=True)
    with no_grad():
        y = x * 2
    assert not y.requires_grad and y._node is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_backward_with_explicit_grad_and_create_graph():
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x ** 3
    y.backward(grad=np.array([1.0, 0.0, 2.0], np.float32))
    np.testing.assert_allclose(x.grad, [3.0, 0.0, 54.0])


# ---- errors ----------------------------------------------------------------------------------------
def test_backward_on_non_scalar_says_so():
    x = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"single-element.*\(2,\)"):
        (x * 2).backward()
    with pytest.raises(ValueError, match=r"expects shape \(2,\), got \(3,\)"):
        (x * 2).backward(grad=np.ones(3))


def test_shape_errors_name_both_shapes():
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(2, 3\)"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\) and \(2, 4\) cannot be broadcast"):
        Tensor(np.ones((2, 3))) + np.ones((2, 4))
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\).*\(4,\)"):
        ag.reshape(np.ones((2, 3)), (4,))
    with pytest.raises(ValueError, match=r"concatenate: shapes"):
        ag.concatenate([np.ones((2, 3)), np.ones((3, 2))], axis=0)
    with pytest.raises(ValueError, match=r"broadcast_to: cannot broadcast shape \(3,\) to \(2, 4\)"):
        ag.broadcast_to(np.ones(3), (2, 4))


def test_non_numeric_input_says_what_it_got():
    with pytest.raises(TypeError, match="str"):
        Tensor("abc")
    with pytest.raises(TypeError, match="object"):
        Tensor(np.array([{}], dtype=object))
    with pytest.raises(TypeError, match="floating-point"):
        Tensor(np.array([1, 2]), requires_grad=True)


def test_higher_order_refused_clearly_for_black_box_primitive():
    prim = ag.primitive("test_black_box", lambda x: x * 2,
                        lambda dy, y, x: (Tensor._wrap(dy.data * 2),), higher_order=False)
    x = Tensor([1.0], requires_grad=True)
    y = ag.apply(prim, x)
    with pytest.raises(NotImplementedError, match="test_black_box.*higher-order"):
        y.sum().backward(create_graph=True)
    del ag.PRIMITIVES["test_black_box"]


# ---- function transforms ----------------------------------------------------------------------------
def test_grad_over_nested_params():
    params = {"dense": {"w": np.array([[1.0, 2.0]]), "b": np.array([0.5])}, "scale": [np.array(3.0)]}

    def f(p, x):
        return ((x @ p["dense"]["w"] + p["dense"]["b"]) * p["scale"][0]).sum()

    x = np.array([[1.0], [2.0]])
    g = grad(f)(params, x)
    assert set(g) == {"dense", "scale"} and isinstance(g["scale"], list)
    np.testing.assert_allclose(g["dense"]["w"], [[9.0, 9.0]])
    np.testing.assert_allclose(g["dense"]["b"], [12.0])            # b is broadcast over 2x2 outputs, times 3
    np.testing.assert_allclose(g["scale"][0], (x @ params["dense"]["w"] + 0.5).sum())


def test_value_and_grad_argnums_and_aux():
    f = lambda a, b: ((a * b).sum(), {"note": 1})
    (value, aux), (ga, gb) = value_and_grad(f, argnums=(0, 1), has_aux=True)(np.array([1.0, 2.0]),
                                                                              np.array([3.0, 4.0]))
    assert float(value) == 11.0 and aux == {"note": 1}
    np.testing.assert_allclose(ga, [3.0, 4.0])
    np.testing.assert_allclose(gb, [1.0, 2.0])


def test_unused_argument_gets_zero_grad():
    g = grad(lambda p: (p["a"] * 2).sum())({"a": np.ones(2), "b": np.ones(3)})
    np.testing.assert_array_equal(g["b"], np.zeros(3))


def test_grad_of_grad_and_hessian_vector_product():
    d3 = grad(grad(grad(lambda x: x ** 4)))                   # 24 x
    assert float(d3(np.array(2.0))) == pytest.approx(48.0)
    # f(x) = sum(x^2 * sin-free cubic): H = diag(6 x); Hv = 6 x v
    f = lambda x: (x ** 3).sum()
    x, v = np.array([1.0, 2.0, -1.0]), np.array([0.5, -1.0, 2.0])
    hvp = grad(lambda x: (grad(f)(x) * v).sum())(x)
    np.testing.assert_allclose(hvp, 6 * x * v)


def test_grad_needs_scalar_output():
    with pytest.raises(TypeError, match=r"single-element.*\(2,\)"):
        grad(lambda x: x * 2)(np.ones(2))
    with pytest.raises(TypeError, match="floating point"):
        grad(lambda x: x.sum())(np.array([1, 2]))


def test_check_grads_can_fail():
    wrong = ag.primitive("test_wrong_vjp", lambda x: x * 2, lambda dy, y, x: (dy * 3,))
    with pytest.raises(AssertionError, match="does not match finite differences"):
        check_grads(lambda x: ag.apply(wrong, x), (rnd(3),))
    del ag.PRIMITIVES["test_wrong_vjp"]


def test_unbroadcast_sums_stretched_axes():
    g = Tensor(np.ones((2, 3, 4)))
    assert ag.unbroadcast(g, (3, 1)).shape == (3, 1)
    np.testing.assert_array_equal(ag.unbroadcast(g, (3, 1)).numpy(), np.full((3, 1), 8.0))
    np.testing.assert_array_equal(ag.unbroadcast(g, ()).numpy(), 24.0)
