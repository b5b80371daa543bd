"""axon.fusion: each pass fuses exactly the safe patterns, and a fused plan gives the unfused plan's numbers."""
import functools

import numpy as np
import pytest

import axon
from axon import fusion
from axon.autograd import PRIMITIVES, Tensor, ops
from axon.tracing import Op, jit
from axon.tree import tree_leaves


def op(name, inputs, outputs, **params):
    """An op of a hand-built plan, with the primitive's own CPU forward."""
    return Op(name, PRIMITIVES[name].forwards["cpu"], tuple(inputs), params, outputs)


def execute(plan_ops, env: dict) -> dict:
    """Run ``plan_ops`` on ``env`` (slot -> array for the inputs and constants); every slot's value after."""
    values = dict(env)
    for o in plan_ops:
        y = o.forward(*[values[s] for s in o.inputs], **o.params)
        for s, part in ([(o.outputs, y)] if type(o.outputs) is int else zip(o.outputs, y)):
            if s is not None:
                values[s] = part
    return values


def trace_values(plan_ops, env: dict, n_slots: int) -> list:
    """slot -> the array it holds, as the tracer records them (an unfused run)."""
    values = execute(plan_ops, env)
    return [values.get(s) for s in range(n_slots)]


def names(plan_ops):
    return [o.name for o in plan_ops]


def close(a, b, dtype):
    tol = 1e-6 if dtype == np.float32 else 1e-12
    return np.asarray(a).dtype == np.asarray(b).dtype and np.allclose(a, b, rtol=tol, atol=tol)


# ---- pass 1: bias + relu --------------------------------------------------------------------------------
def bias_relu_plan(rng, dtype, shape=(6, 5, 7)):
    """relu(x + b), its VJP (dy * (s > 0), the bias gradient summed over the leading axes) by hand."""
    C, lead = shape[-1], tuple(range(len(shape) - 1))
    x, b, dy = (rng.standard_normal(shape).astype(dtype), rng.standard_normal(C).astype(dtype),
                rng.standard_normal(shape).astype(dtype))
    zero = np.zeros((), dtype)
    plan = [op("add", (0, 1), 4), op("relu", (4,), 5),                              # s = x + b, y = relu(s)
            op("greater", (4, 3), 6), op("mul", (2, 6), 7),                          # g = dy * (s > 0)
            op("sum", (7,), 8, axis=lead, keepdims=True), op("reshape", (8,), 9, shape=(C,))]  # db
    env = {0: x, 1: b, 2: dy, 3: zero}
    return plan, env, {3: zero}, [5, 7, 9]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(6, 7), (6, 5, 7), (1, 3)])
def test_bias_relu_fuses_forward_and_backward_and_keeps_the_numbers(dtype, shape):
    plan, env, constants, results = bias_relu_plan(np.random.default_rng(0), dtype, shape)
    values = trace_values(plan, env, 10)
    fused = fusion.bias_relu(plan, values, constants, results)
    assert [(o.name, o.inputs, o.outputs) for o in fused] == [
        ("kernels.bias_relu", (0, 1), 5), ("kernels.bias_relu_backward", (2, 5), (7, 9))]
    got = execute(fused, env)
    for s in results:
        assert close(got[s], values[s], dtype), s


def test_bias_relu_is_not_fused_when_the_pre_activation_is_read_elsewhere_or_returned():
    rng = np.random.default_rng(1)
    plan, env, constants, results = bias_relu_plan(rng, np.float32)
    values = trace_values(plan + [op("exp", (4,), 10)], env, 11)
    read = fusion.bias_relu(plan + [op("exp", (4,), 10)], values, constants, results + [10])
    assert "kernels.bias_relu" not in names(read)                                # s read by exp
    assert "kernels.bias_relu" not in names(fusion.bias_relu(plan, values, constants, results + [4]))  # s returned


def test_bias_relu_needs_a_bias_of_the_last_axis_one_dtype_and_a_zero_threshold():
    rng = np.random.default_rng(2)
    x, b, zero = rng.standard_normal((4, 3)).astype(np.float32), np.ones((4, 1), np.float32), np.zeros((), np.float32)
    plan = [op("add", (0, 1), 3), op("relu", (3,), 4)]
    values = trace_values(plan, {0: x, 1: b}, 5)
    assert names(fusion.bias_relu(plan, values, {}, [4])) == ["add", "relu"]       # a column, not a bias
    b64 = np.ones(3)                                                                 # float32 x + float64 b
    values = trace_values(plan, {0: x, 1: b64}, 5)
    assert names(fusion.bias_relu(plan, values, {}, [4])) == ["add", "relu"]
    plan, env, constants, results = bias_relu_plan(rng, np.float32)
    env[3] = constants[3] = np.full((), 0.5, np.float32)                             # s > 0.5 is another mask
    values = trace_values(plan, env, 10)
    assert "kernels.bias_relu" not in names(fusion.bias_relu(plan, values, constants, results))


def test_bias_relu_backward_keeps_a_bias_gradient_read_twice_apart():
    rng = np.random.default_rng(3)
    plan, env, constants, results = bias_relu_plan(rng, np.float64)
    plan = plan + [op("exp", (8,), 10)]                                             # the summed r is read again
    values = trace_values(plan, env, 11)
    fused = fusion.bias_relu(plan, values, constants, results + [10])
    assert "kernels.bias_relu" in names(fused) and "kernels.bias_relu_backward" not in names(fused)
    got = execute(fused, env)
    assert all(close(got[s], values[s], np.float64) for s in results + [10])


# ---- pass 2: max pooling before bias + relu ----------------------------------------------------------------
POOLS = {   # x shape, conv kernel, pool (window, strides, padding): 1-, 2- and 3-d, padded windows
    "2d": ((3, 8, 8, 2), (3, 3, 2, 5), ((2, 2), (2, 2), ((0, 0), (0, 0)))),
    "2d_padded": ((2, 7, 7, 3), (3, 3, 3, 4), ((3, 3), (2, 2), ((1, 1), (1, 1)))),
    "1d": ((4, 9, 2), (2, 2, 3), ((3,), (2,), ((0, 1),))),
    "3d": ((2, 4, 4, 4, 1), (2, 2, 2, 1, 3), ((2, 2, 2), (2, 2, 2), ((0, 0),) * 3)),
}


def _conv_relu_pool(shape, k_shape, pool):
    n = len(shape) - 2
    def f(x, w, b):
        z = axon.kernels.conv(x, w, (1,) * n, (((0, 0),) * n), (1,) * n)          # (N, *S', C_out)
        return axon.kernels.max_pool(axon.kernels.bias_relu(z, b), *pool)
    return f


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(POOLS))
def test_pool_first_pools_before_the_relu_with_the_same_numbers(case, dtype, monkeypatch):
    monkeypatch.setattr(fusion, "conv_pool", lambda ops, *_: ops)              # this pass alone: conv stays apart
    shape, k_shape, pool = POOLS[case]
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal(shape).astype(dtype), rng.standard_normal(k_shape).astype(dtype)
    b = rng.standard_normal(k_shape[-1]).astype(dtype)
    f = _conv_relu_pool(shape, k_shape, pool)
    (y_plain, plain), (y_fused, fused) = _both(lambda: jit(f), x, w, b)
    assert names(fused.ops) == ["kernels.conv", "kernels.max_pool", "kernels.bias_relu"], str(fused)
    assert y_fused.dtype == dtype and np.array_equal(y_fused, y_plain)        # the forward: bit for bit
    def loss(x, w, b):
        y = f(x, w, b)
        return (y * y).sum()
    ((l_plain, g_plain), plain), ((l_fused, g_fused), fused) = _both(
        lambda: jit(axon.value_and_grad(loss, argnums=(0, 1, 2))), x, w, b)
    assert names(fused.ops).index("kernels.max_pool") < names(fused.ops).index("kernels.bias_relu")
    back = [n for n in names(fused.ops) if n in ("kernels.bias_relu_backward", "kernels.max_pool_backward")]
    assert back == ["kernels.bias_relu_backward", "kernels.max_pool_backward"], str(fused)
    assert close(l_fused, l_plain, dtype)
    for a, c in zip(g_fused, g_plain):                        # db summed over the pooled positions only
        assert close(a, c, dtype)


def test_pool_first_leaves_a_relu_output_read_elsewhere_and_an_average_pool(monkeypatch):
    monkeypatch.setattr(fusion, "conv_pool", lambda ops, *_: ops)
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((2, 6, 6, 1)).astype(np.float32), rng.standard_normal((3, 3, 1, 2)).astype(np.float32)
    b = np.zeros(2, np.float32)
    pool = ((2, 2), (2, 2), ((0, 0), (0, 0)))

    def both(x, w, b):                                        # the relu's output is returned too
        y = axon.kernels.bias_relu(axon.kernels.conv(x, w, (1, 1), ((0, 0), (0, 0)), (1, 1)), b)
        return axon.kernels.max_pool(y, *pool), y

    def average(x, w, b):
        y = axon.kernels.bias_relu(axon.kernels.conv(x, w, (1, 1), ((0, 0), (0, 0)), (1, 1)), b)
        return axon.kernels.avg_pool(y, *pool)
    for f in (both, average):
        _, (_, fused) = _both(lambda: jit(f), x, w, b)
        assert names(fused.ops).index("kernels.bias_relu") == 1, str(fused)


# ---- pass 3: a convolution and its max pooling in one sweep ---------------------------------------------------
CONV_POOLS = {   # x shape, conv kernel, conv padding, pool window; odd sizes leave rows no window reads
    "2d": ((3, 8, 8, 4), (3, 3, 4, 5), ((1, 1), (1, 1)), (2, 2)),
    "2d_odd": ((2, 7, 9, 3), (3, 3, 3, 4), ((1, 1), (1, 1)), (2, 2)),
    "2d_one_channel": ((4, 10, 10, 1), (3, 3, 1, 6), ((1, 1), (1, 1)), (2, 2)),    # the transposed columns
    "2d_window_3x2": ((2, 9, 8, 12), (2, 2, 12, 3), ((0, 1), (0, 1)), (3, 2)),
    "1d": ((4, 11, 2), (3, 2, 3), ((1, 1),), (2,)),
}


def _conv_then_pool(case, relu):
    x_shape, k_shape, padding, window = CONV_POOLS[case]
    n = len(x_shape) - 2
    def f(x, w, b):
        z = axon.kernels.conv(x, w, (1,) * n, padding, (1,) * n)                      # (N, *S, C_out)
        z = axon.kernels.bias_relu(z, b) if relu else z
        return axon.kernels.max_pool(z, window, window, ((0, 0),) * n)
    return f


def _conv_pool_args(case, dtype, seed=11):
    x_shape, k_shape, _, _ = CONV_POOLS[case]
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(k_shape).astype(dtype),
            rng.standard_normal(k_shape[-1]).astype(dtype))


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(CONV_POOLS))
def test_conv_pool_fuses_the_conv_and_its_pool_with_the_same_numbers(case, dtype, relu):
    x, w, b = _conv_pool_args(case, dtype)
    f = _conv_then_pool(case, relu)
    (y_plain, _), (y_fused, fused) = _both(lambda: jit(f), x, w, b)
    assert names(fused.ops)[0] == "fused[kernels.conv,kernels.max_pool]", str(fused)
    assert "kernels.conv" not in names(fused.ops) and "kernels.max_pool" not in names(fused.ops)
    assert y_fused.dtype == dtype and y_fused.shape == y_plain.shape and close(y_fused, y_plain, dtype)

    def loss(x, w, b):                                        # weights per output, so every window's maximum counts
        y = f(x, w, b)
        return (y * (1.0 + np.arange(y.size, dtype=dtype).reshape(y.shape) / y.size)).sum()
    ((l_plain, g_plain), plain), ((l_fused, g_fused), fused) = _both(
        lambda: jit(axon.value_and_grad(loss, argnums=(0, 1, 2))), x, w, b)
    assert "fused[kernels.max_pool_backward,kernels.conv_backward]" in names(fused.ops), str(fused)
    assert not {"kernels.conv_backward", "kernels.max_pool_backward"} & set(names(fused.ops))
    assert "kernels.conv_backward" in names(plain.ops)
    assert close(l_fused, l_plain, dtype)
    for a, c in zip(g_fused, g_plain):                        # dw summed over other blocks: 1e-6 of its scale
        assert a.shape == c.shape and a.dtype == c.dtype and close_to_scale(a, c, dtype)


def close_to_scale(a, c, dtype):
    """``a`` within 1e-6 (float32; 1e-12 float64) of ``c``'s largest magnitude: sums taken in another order."""
    tol = 1e-6 if dtype == np.float32 else 1e-12
    return float(np.abs(a - c).max()) <= tol * (float(np.abs(c).max()) or 1.0)


def test_conv_pool_against_torch():
    """The fused forward and both gradients equal torch's conv2d then max_pool2d, in float64."""
    torch = pytest.importorskip("torch")
    x, w, _ = _conv_pool_args("2d_odd", np.float64)
    f = jit(axon.value_and_grad(lambda x, w: (_conv_then_pool("2d_odd", False)(x, w, None) ** 2).sum(),
                                argnums=(0, 1)))
    f(x, w)
    loss, (dx, dw) = f(x, w)
    assert "fused[kernels.max_pool_backward,kernels.conv_backward]" in names(next(iter(f.plans.values())).ops)
    xt = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)                # (N, C, H, W)
    wt = torch.tensor(np.transpose(w, (3, 2, 0, 1)), requires_grad=True)        # (C_out, C_in, KH, KW)
    yt = torch.nn.functional.max_pool2d(torch.nn.functional.conv2d(xt, wt, padding=1), 2)
    (yt ** 2).sum().backward()
    assert np.allclose(loss, (yt ** 2).sum().item(), rtol=1e-12)
    assert np.allclose(dx, np.moveaxis(xt.grad.numpy(), 1, -1), rtol=1e-10, atol=1e-12)
    assert np.allclose(dw, np.transpose(wt.grad.numpy(), (2, 3, 1, 0)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", ["2d", "2d_one_channel", "2d_odd"])
def test_conv_pool_split_across_threads_equals_the_serial_kernel(case, monkeypatch):
    from axon.kernels import conv_pool as kernel
    x, w, _ = _conv_pool_args(case, np.float64)
    x_shape, k_shape, padding, window = CONV_POOLS[case]
    out_spatial = tuple(s + lo + hi - k + 1 for s, (lo, hi), k in zip(x_shape[1:-1], padding, k_shape))
    geometry = dict(strides=(1, 1), padding=padding, dilation=(1, 1), groups=1, out_spatial=out_spatial)
    out_shape = tuple(o // k for o, k in zip(out_spatial, window))
    runs = []
    for macs in (1 << 40, 1):                                 # serial, then every chunk its own thread
        monkeypatch.setattr(kernel, "_PARALLEL_MACS", macs)
        q, arg = kernel.conv_max_pool(x, w, **geometry, window=window, out_shape=out_shape)
        dq = np.random.default_rng(3).standard_normal(q.shape)
        runs.append((q, arg) + kernel.conv_max_pool_backward(dq, arg, x, w, **geometry, window=window,
                                                              need_dx=True, need_dw=True))
    for a, c in zip(*runs):
        assert np.allclose(a, c, rtol=1e-12, atol=1e-12)
    assert np.array_equal(runs[0][1], runs[1][1])


def test_conv_pool_leaves_what_it_cannot_fuse(monkeypatch):
    """Overlapping or padded windows, groups, a conv output read elsewhere, an argmax read elsewhere."""
    rng = np.random.default_rng(12)
    x, w = rng.standard_normal((2, 8, 8, 4)).astype(np.float32), rng.standard_normal((3, 3, 4, 4)).astype(np.float32)
    same = ((1, 1), (1, 1))
    conv = lambda x, w, groups=1: axon.kernels.conv(x, w if groups == 1 else w[:, :, :2], (1, 1), same, (1, 1), groups)
    cases = {
        "overlapping": lambda x, w: axon.kernels.max_pool(conv(x, w), (3, 3), (2, 2), ((0, 0), (0, 0))),
        "padded": lambda x, w: axon.kernels.max_pool(conv(x, w), (2, 2), (2, 2), ((1, 1), (1, 1))),
        "groups": lambda x, w: axon.kernels.max_pool(conv(x, w, groups=2), (2, 2), (2, 2), ((0, 0), (0, 0))),
        "conv_read_twice": lambda x, w: (lambda z: axon.kernels.max_pool(z, (2, 2), (2, 2), ((0, 0), (0, 0))).sum()
                                         + z.sum())(conv(x, w)),
    }
    for name, f in cases.items():
        for g in (f, axon.grad(lambda x, w: f(x, w).sum(), argnums=(0, 1))):
            (plain, _), (got, fused) = _both(lambda: jit(g), x, w)
            assert not any(n.startswith("fused[kernels.conv") or "conv_backward]" in n for n in names(fused.ops)), \
                f"{name}: {fused}"
            for a, c in zip(tree_leaves(got), tree_leaves(plain)):
                assert close(a, c, np.float32)
    long_x = rng.standard_normal((1, 5000, 64)).astype(np.float32)                  # (N, W, C)
    long_w = rng.standard_normal((3, 64, 8)).astype(np.float32)
    line = lambda x, w: axon.kernels.max_pool(axon.kernels.conv(x, w, (1,), ((1, 1),), (1,)), (2,), (2,), ((0, 0),))
    (plain, _), (got, fused) = _both(lambda: jit(line), long_x, long_w)         # a line of 3.8 MB of columns
    assert "kernels.conv" in names(fused.ops) and close(got, plain, np.float32), str(fused)
    cpu = lambda n: PRIMITIVES[n].forwards["cpu"]
    geometry = dict(strides=(1, 1), padding=same, dilation=(1, 1), groups=1, out_spatial=(4, 4))
    from axon.kernels.pool import _window_bins
    xs, ws = np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 2))
    y = cpu("kernels.conv")(xs, ws, **geometry)
    bins, out_shape, _ = _window_bins("max_pool", y, (2, 2), (2, 2), ((0, 0), (0, 0)))
    q, arg = cpu("kernels.max_pool")(y, bins=bins, out_shape=out_shape)
    (dz,) = cpu("kernels.max_pool_backward")(np.ones_like(q), arg, x_shape=y.shape)
    plan = [op("kernels.conv", (0, 1), 2, **geometry),
            op("kernels.max_pool", (2,), (3, 4), bins=bins, out_shape=out_shape),
            op("kernels.max_pool_backward", (5, 4), (6,), x_shape=y.shape),
            op("kernels.conv_backward", (6, 0, 1), (7, 8), **geometry, need_dx=True, need_dw=True)]
    values = [xs, ws, y, q, arg, np.ones_like(q), dz, None, None]
    assert names(fusion.conv_pool(plan, values, {}, [3, 7, 8, 6])) == names(plan)       # dy a result: apart
    assert names(fusion.conv_pool(plan, values, {}, [3, 7, 8])) == [
        "fused[kernels.conv,kernels.max_pool]", "fused[kernels.max_pool_backward,kernels.conv_backward]"]
    other = dict(geometry, padding=((2, 2), (2, 2)), dilation=(2, 2))              # the same output shape
    plan[3] = op("kernels.conv_backward", (6, 0, 1), (7, 8), **other, need_dx=True, need_dw=True)
    assert names(fusion.conv_pool(plan, values, {}, [3, 7, 8])) == names(plan)      # another conv's backward


# ---- pass 5: Adam's update and its apply ---------------------------------------------------------------
@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_apply_is_the_update_then_the_add_bit_for_bit(dtype, weight_decay, parallel, monkeypatch):
    from axon.kernels import adam as adam_module
    monkeypatch.setattr(adam_module, "PARALLEL_MIN", 1 if parallel else 1 << 30)
    rng = np.random.default_rng(4)
    p, g, m = (rng.standard_normal((37, 29)).astype(dtype) for _ in range(3))
    v = np.abs(rng.standard_normal((37, 29))).astype(dtype)
    t, lr = np.asarray(7), np.asarray(3e-3)
    settings = dict(b1=0.9, b2=0.999, eps=1e-8, weight_decay=weight_decay)
    step_at = PRIMITIVES["kernels.adam_step_at"].forwards["cpu"]
    u, m2, v2 = step_at(p, g, m, v, t, lr, **settings)
    plan = [Op("kernels.adam_step_at", step_at, (0, 1, 2, 3, 4, 5), settings, (6, 7, 8)),
            Op("add", PRIMITIVES["add"].forwards["cpu"], (0, 6), {}, 9)]
    (op,) = fusion.adam_apply(plan, [p, g, m, v, t, lr, u, m2, v2, p + u], {}, [9, 7, 8])
    new, m3, v3 = op.forward(*[[p, g, m, v, t, lr][i] for i in op.inputs], **op.params)
    for a, b in ((new, p + u), (m3, m2), (v3, v2)):
        assert a.dtype == b.dtype == dtype and np.array_equal(a, b)


def test_adam_apply_leaves_an_update_read_elsewhere_or_returned():
    rng = np.random.default_rng(5)
    p, g, m, v = (rng.standard_normal(8) for _ in range(4))
    v, t, lr, settings = np.abs(v), np.asarray(1), np.asarray(0.1), dict(b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0)
    step_at = PRIMITIVES["kernels.adam_step_at"].forwards["cpu"]
    u, m2, v2 = step_at(p, g, m, v, t, lr, **settings)
    plan = [Op("kernels.adam_step_at", step_at, (0, 1, 2, 3, 4, 5), settings, (6, 7, 8)),
            Op("add", PRIMITIVES["add"].forwards["cpu"], (0, 6), {}, 9)]
    values = [p, g, m, v, t, lr, u, m2, v2, p + u]
    assert names(fusion.adam_apply(plan, values, {}, [9, 6])) == ["kernels.adam_step_at", "add"]   # u returned
    neg = Op("neg", PRIMITIVES["neg"].forwards["cpu"], (6,), {}, 10)
    assert names(fusion.adam_apply(plan + [neg], values + [-u], {}, [9, 10])) == ["kernels.adam_step_at", "add", "neg"]


# ---- pass 6: the cross-entropy's sum ----------------------------------------------------------------------
@pytest.mark.parametrize("targets", ["labels", "probabilities"])
@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_xent_sum_is_the_mean_loss_and_its_gradient_bit_for_bit(dtype, parallel, targets, monkeypatch):
    from axon.kernels import softmax_family
    monkeypatch.setattr(softmax_family, "PARALLEL_MIN", 1 if parallel else 1 << 30)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((37, 11)).astype(dtype)
    t = rng.integers(0, 11, 37) if targets == "labels" else rng.dirichlet(np.ones(11), 37).astype(dtype)

    def loss(x, t):
        return axon.kernels.softmax_cross_entropy(x, t).mean()

    (plain, unfused), (got, fused) = _both(lambda: jit(axon.value_and_grad(loss)), x, t)
    for a, b in zip(tree_leaves(got), tree_leaves(plain)):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert "fused[kernels.softmax_cross_entropy,sum]" in names(fused.ops), str(fused)
    assert "broadcast_to" in names(unfused.ops) and "broadcast_to" not in names(fused.ops), str(fused)
    assert len(fused.ops) == len(unfused.ops) - 3


def test_xent_sum_leaves_losses_read_elsewhere_or_summed_along_an_axis():
    rng = np.random.default_rng(7)
    x, labels = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)

    def weighted(x):                                           # the losses are read twice: not fused
        losses = axon.kernels.softmax_cross_entropy(x, labels)
        return (losses.sum() + (losses * losses).sum())

    def by_axis(x):
        return axon.kernels.softmax_cross_entropy(x, labels).sum(axis=0)

    for f in (weighted, by_axis):
        (plain, _), (got, fused) = _both(lambda: jit(axon.grad(f)), x)
        assert "fused[kernels.softmax_cross_entropy,sum]" not in names(fused.ops), str(fused)
        np.testing.assert_allclose(got, plain, rtol=1e-12)


# ---- pass 7: elementwise chains -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("b_shape", [(7,), (5, 1), (1, 5, 7), (), (3, 5, 7), (3, 1, 1)])
def test_elementwise_chain_is_one_loop_with_numpy_broadcasting(dtype, b_shape, monkeypatch):
    monkeypatch.setattr(fusion, "FUSE_TRANSCENDENTAL", True)            # their expressions too
    monkeypatch.setattr(fusion, "FUSE_MIN_SIZE", 1)
    rng = np.random.default_rng(4)
    x, b = rng.standard_normal((3, 5, 7)).astype(dtype), rng.standard_normal(b_shape).astype(dtype)
    one = np.ones((), dtype)
    plan = [op("add", (0, 1), 3), op("tanh", (3,), 4), op("mul", (4, 4), 5), op("sub", (2, 5), 6),
            op("greater", (3, 2), 7), op("where", (7, 6, 4), 8), op("power", (8, 9), 10)]
    env = {0: x, 1: b, 2: one, 9: np.full((), 2.0, dtype)}
    values = trace_values(plan, env, 11)
    fused = fusion.elementwise(plan, values, {2: one, 9: env[9]}, [10])
    assert names(fused) == ["fused[add,tanh,mul,sub,greater,where,power]"] and fused[0].outputs == 10
    got = execute(fused, env)[10]
    assert got.dtype == dtype and got.shape == (3, 5, 7) and close(got, values[10], dtype)


def test_elementwise_writes_what_later_ops_read_and_splits_at_a_new_shape(monkeypatch):
    monkeypatch.setattr(fusion, "FUSE_TRANSCENDENTAL", True)            # their expressions too
    monkeypatch.setattr(fusion, "FUSE_MIN_SIZE", 1)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    plan = [op("exp", (0,), 1), op("neg", (1,), 2), op("mul", (2, 0), 3),          # one (4, 6) chain
            op("sum", (3,), 4, axis=(1,), keepdims=False),                        # a reduction ends it
            op("abs", (4,), 5), op("sqrt", (5,), 6),                              # a (4,) chain
            op("add", (1, 3), 7)]                                                 # reads exp's output later
    values = trace_values(plan, {0: x}, 8)
    fused = fusion.elementwise(plan, values, {}, [6, 7])
    assert [(o.name, o.outputs) for o in fused] == [
        ("fused[exp,neg,mul]", (1, 3)), ("sum", 4), ("fused[abs,sqrt]", 6), ("add", 7)]
    got = execute(fused, {0: x})
    assert all(close(got[s], values[s], np.float32) for s in (6, 7))
    hoisted = plan[:2] + [op("sum", (0,), 8, axis=None, keepdims=False)] + plan[2:3]   # reads no slot of the run
    values = trace_values(hoisted, {0: x}, 9)
    assert [(o.name, o.outputs) for o in fusion.elementwise(hoisted, values, {}, [3, 8])] == [
        ("sum", 8), ("fused[exp,neg,mul]", 3)]
    monkeypatch.setattr(fusion, "FUSE_MIN_SIZE", 10**9)                          # nothing fused: nothing moves
    assert fusion.elementwise(hoisted, values, {}, [3, 8]) == hoisted


def test_elementwise_leaves_small_mixed_dtype_and_other_backend_ops_alone(monkeypatch):
    monkeypatch.setattr(fusion, "FUSE_TRANSCENDENTAL", True)            # their expressions too
    x32, x64 = np.ones((40, 40), np.float32), np.ones((40, 40))
    plan = [op("exp", (0,), 1), op("neg", (1,), 2)]
    values = trace_values(plan, {0: x32}, 3)
    assert names(fusion.elementwise(plan, values, {}, [2])) == ["fused[exp,neg]"]
    monkeypatch.setattr(fusion, "FUSE_MIN_SIZE", 40 * 40 + 1)                     # too small to pay
    assert names(fusion.elementwise(plan, values, {}, [2])) == ["exp", "neg"]
    monkeypatch.setattr(fusion, "FUSE_MIN_SIZE", 1)
    mixed = [op("exp", (0,), 2), op("add", (2, 1), 3)]                             # float32 + float64
    values = trace_values(mixed, {0: x32, 1: x64}, 4)
    assert names(fusion.elementwise(mixed, values, {}, [3])) == ["exp", "add"]
    from axon.tracing import dispatch                                                  # how a CUDA plan's ops look
    other = [Op("exp", functools.partial(dispatch, PRIMITIVES["exp"]), (0,), {}, 1), op("neg", (1,), 2)]
    values = trace_values(other, {0: x32}, 3)
    assert names(fusion.elementwise(other, values, {}, [2])) == ["exp", "neg"]


def test_elementwise_parallel_loop_agrees_with_the_serial_one(monkeypatch):
    monkeypatch.setattr(fusion, "FUSE_TRANSCENDENTAL", True)            # their expressions too
    rng = np.random.default_rng(6)
    x, b = rng.standard_normal((37, 11)).astype(np.float32), rng.standard_normal(11).astype(np.float32)
    plan = [op("add", (0, 1), 2), op("sigmoid", (2,), 3), op("mul", (3, 0), 4)]
    values = trace_values(plan, {0: x, 1: b}, 5)
    monkeypatch.setattr(fusion, "FUSE_MIN_SIZE", 1)
    serial = fusion.elementwise(plan, values, {}, [4])
    monkeypatch.setattr(fusion, "PARALLEL_MIN", 0)
    parallel = fusion.elementwise(plan, values, {}, [4])
    assert not serial[0].forward.parallel and parallel[0].forward.parallel and "prange" in parallel[0].forward.source
    assert np.array_equal(serial[0].forward(x, b), parallel[0].forward(x, b))
    assert close(serial[0].forward(x, b), values[4], np.float32)


def test_a_fused_loop_is_compiled_once_per_source_and_survives_a_new_process(tmp_path, monkeypatch):
    import subprocess
    import sys
    monkeypatch.setenv("AXON_CACHE_DIR", str(tmp_path))
    code = ("import numpy as np, axon\nfrom axon.autograd import ops, Tensor\n"
            "f = axon.jit(lambda x: ops.sqrt(ops.abs(-Tensor(x))) * 3.0)\nx = np.full((50, 50), 4.0, np.float32)\n"
            "f(x); y = f(x)\nprint(np.allclose(y, 6.0), next(iter(f.plans.values())).ops[0].name)\n"
            "import sys; print('numba.cuda' in sys.modules)")                  # the CPU pass never loads it
    root = str(__import__("pathlib").Path(__file__).resolve().parents[1])
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=300)
        assert out.stdout.split() == ["True", "fused[neg,abs,sqrt,mul]", "False"], out.stderr
    files = sorted(p.name for p in (tmp_path / "fusion").iterdir())
    assert len([f for f in files if f.endswith(".py")]) == 1 and "__pycache__" in files   # written once, cached


# ---- whole plans: fused and unfused replays agree ----------------------------------------------------------
def _both(make, *args):
    """``make()``'s jitted function called twice (trace, replay) with fusion off, then on."""
    out = {}
    for enabled in (False, True):
        fusion.ENABLED, f = enabled, make()
        try:
            f(*args)
            out[enabled] = (f(*args), next(iter(f.plans.values())))
        finally:
            fusion.ENABLED = True
    return out[False], out[True]


ACTIVATIONS = {"relu": ops.relu, "tanh": ops.tanh, "sigmoid": ops.sigmoid, "gelu": axon.activations.gelu,
               "gelu_tanh": functools.partial(axon.activations.gelu, approximate=True)}


@pytest.mark.parametrize("transcendental", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_a_functional_mlps_gradient_is_the_same_fused(act, dtype, transcendental, monkeypatch):
    monkeypatch.setattr(fusion, "FUSE_TRANSCENDENTAL", transcendental)
    rng = np.random.default_rng(7)
    p = {"w1": rng.standard_normal((20, 48)).astype(dtype) * 0.3, "b1": rng.standard_normal(48).astype(dtype),
         "w2": rng.standard_normal((48, 5)).astype(dtype) * 0.3, "b2": np.zeros(5, dtype)}
    x, y = rng.standard_normal((32, 20)).astype(dtype), np.eye(5, dtype=dtype)[rng.integers(0, 5, 32)]

    def loss(p, x, y):
        h = ACTIVATIONS[act](x @ p["w1"] + p["b1"])                            # (32, 20) -> (32, 48)
        return axon.losses.categorical_cross_entropy(y, h @ p["w2"] + p["b2"], from_logits=True).mean()
    (plain, plain_plan), (fused, fused_plan) = _both(lambda: jit(axon.value_and_grad(loss)), p, x, y)
    assert len(fused_plan.ops) < len(plain_plan.ops)
    assert ("kernels.bias_relu" in names(fused_plan.ops)) == (act == "relu")
    if act != "relu":                                                          # the backward's arithmetic at least
        assert any(n.startswith("fused[") for n in names(fused_plan.ops)), str(fused_plan)
        joins = transcendental or act.startswith("gelu")                        # gelu: arithmetic before erf/tanh
        assert any(n.startswith("fused[add,") for n in names(fused_plan.ops)) == joins, str(fused_plan)
    for a, b in zip(tree_leaves(fused), tree_leaves(plain)):
        assert close(a, b, dtype)


def _models():
    x = axon.input((None, 8, 8, 1))
    h = x.flatten().dense(16, activation="tanh")
    return {
        "mlp": x.flatten().dense(32, activation="tanh").dense(10, activation="softmax"),
        "cnn": x.conv(4, 3, padding="same", activation="relu").max_pool(2).flatten().dense(16, activation="gelu")
               .dense(10, activation="softmax"),
        "residual": axon.add([h, h.dense(16, activation="sigmoid")]).dense(10, activation="softmax"),
        "dropout": x.flatten().dense(32, activation="tanh").dropout(0.3).dense(10, activation="softmax"),
        # no conv bias before the batch norm: its gradient is zero but for rounding, which Adam would scale up to lr
        "batch_norm": x.conv(4, 3, use_bias=False).batch_norm().relu().flatten().dense(10, activation="softmax"),
    }


_OPTIMIZERS = {
    "sgd": lambda: axon.optimizers.sgd(0.1),
    "nesterov_schedule": lambda: axon.optimizers.sgd(axon.schedules.exponential_decay(0.05, 0.9, 3), momentum=0.9,
                                                     nesterov=True),
    "adam_chain": lambda: axon.optimizers.adam(1e-2, fused=False),
    "adamw": lambda: axon.optimizers.adamw(1e-2, weight_decay=0.1),
}


@pytest.mark.parametrize("optimizer", list(_OPTIMIZERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(_models()))
def test_compiled_training_steps_are_the_same_fused(name, dtype, optimizer, monkeypatch):
    monkeypatch.setattr(fusion, "FUSE_MIN_SIZE", 1)                             # fuse even these small arrays
    rng = np.random.default_rng(8)
    x = rng.standard_normal((16, 8, 8, 1)).astype(dtype)
    y = np.eye(10, dtype=dtype)[rng.integers(0, 10, 16)]
    model, runs = _models()[name], []
    for enabled in (False, True):
        monkeypatch.setattr(fusion, "ENABLED", enabled)
        init, step_fn = axon.training.step(model, "categorical_cross_entropy", _OPTIMIZERS[optimizer]())
        state = init(seed=1)
        state = init(params=axon.tree.tree_map(lambda a: a.astype(dtype), state.params))
        losses = []
        for _ in range(3):
            state, metrics = step_fn(state, x, y)
            losses.append(metrics["loss"])
        runs.append((state, losses, next(iter(step_fn.compiled.plans.values()))))
    (plain, plain_losses, plain_plan), (fused, fused_losses, fused_plan) = runs
    assert any(n.startswith("fused[") for n in names(fused_plan.ops)), str(fused_plan)
    assert not any(n.startswith("fused[") for n in names(plain_plan.ops))
    assert np.allclose(fused_losses, plain_losses, rtol=1e-6, atol=0)
    for a, b in zip(tree_leaves(fused.params), tree_leaves(plain.params)):
        assert a.dtype == b.dtype == dtype and close(a, b, dtype)


def test_the_plan_prints_fused_ops_by_their_parts():
    f = jit(lambda x: ops.sqrt(Tensor(x) * 2.0) + 1.0)
    f(np.ones((64, 64), np.float32))
    text = str(next(iter(f.plans.values())))
    assert "fused[mul,sqrt,add](%0, " in text and text.count(" = ") == 1


def test_transcendental_functions_stay_numpys_without_svml(monkeypatch):
    """Without SVML numba calls libm per element, slower than numpy's SIMD loop: tanh splits the chain."""
    monkeypatch.setattr(fusion, "FUSE_TRANSCENDENTAL", False)
    x, b = np.ones((64, 64), np.float32), np.ones(64, np.float32)
    plan = [op("add", (0, 1), 2), op("tanh", (2,), 3), op("mul", (3, 3), 4), op("neg", (4,), 5)]
    values = trace_values(plan, {0: x, 1: b}, 6)
    assert names(fusion.elementwise(plan, values, {}, [5])) == ["add", "tanh", "fused[mul,neg]"]
    monkeypatch.setattr(fusion, "FUSE_TRANSCENDENTAL", True)
    assert names(fusion.elementwise(plan, values, {}, [5])) == ["fused[add,tanh,mul,neg]"]


def test_a_plan_on_the_cuda_backend_fuses_its_chains_only(monkeypatch):
    """On CUDA the elementwise pass makes one generated kernel; the CPU kernels' passes leave the plan alone.

    (NUMBA_ENABLE_CUDASIM=1 runs it on numba's simulator; tests/test_cuda.py, which CI runs so, has more.)
    """
    try:
        import axon.cuda  # noqa: F401
    except RuntimeError as e:
        pytest.skip(f"the CUDA backend cannot run here: {e}")
    monkeypatch.setattr(fusion, "FUSE_MIN_SIZE", 1)
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    b = np.linspace(0, 1, 4, dtype=np.float32)
    f = jit(lambda x, b: ops.relu(ops.exp(-Tensor(x)) + b) * 2.0)     # add + relu: no kernels.bias_relu here
    f(*axon.to_device([x, b], "cuda"))
    y = f(*axon.to_device([x, b], "cuda"))
    assert names(next(iter(f.plans.values())).ops) == ["fused[neg,exp,add,relu,mul]"]
    assert close(y.copy_to_host(), np.maximum(np.exp(-x) + b, 0) * 2, np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_values_flow_through_a_loop_as_through_numpy(dtype, monkeypatch):
    monkeypatch.setattr(fusion, "FUSE_TRANSCENDENTAL", True)            # their expressions too
    monkeypatch.setattr(fusion, "FUSE_MIN_SIZE", 1)
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 1e30], dtype)
    x, z = np.repeat(special, 8), np.tile(special, 8)                             # every pair of specials
    plan = [op("relu", (0,), 2), op("maximum", (2, 1), 3), op("minimum", (3, 0), 4), op("div", (4, 1), 5),
            op("log", (5,), 6), op("sqrt", (0,), 7), op("greater", (7, 1), 8), op("where", (8, 6, 7), 9),
            op("sign", (9,), 10), op("not_equal", (0, 1), 11), op("logical_and", (8, 11), 12)]
    with np.errstate(all="ignore"):
        values = trace_values(plan, {0: x, 1: z}, 13)
        fused = fusion.elementwise(plan, values, {}, [6, 10, 12])
        got = execute(fused, {0: x, 1: z})
    assert len(fused) == 1
    for s in (6, 10, 12):
        assert got[s].dtype == values[s].dtype and np.array_equal(got[s], values[s], equal_nan=True), s


def test_a_cached_loop_file_that_was_changed_is_written_again(tmp_path, monkeypatch):
    monkeypatch.setenv("AXON_CACHE_DIR", str(tmp_path))
    source = "def fused(x0, y0):\n    for i0 in range(y0.shape[0]):\n        y0[i0] = x0[i0] * np.float64(3)"
    kernel = fusion._compile(source, False)
    (path,) = (tmp_path / "fusion").glob("*.py")
    path.write_text(path.read_text().replace("* np.float64(3)", "* np.float64(4)"))   # tampered with
    y = np.empty(2)
    fusion._compile(source, False)(np.ones(2), y)
    assert np.array_equal(y, [3.0, 3.0]) and "np.float64(3)" in path.read_text() and kernel is not None


def test_a_broadcast_only_the_loop_reads_is_read_through_not_copied(monkeypatch):
    monkeypatch.setattr(fusion, "FUSE_MIN_SIZE", 1)
    rng = np.random.default_rng(9)
    g, x = rng.standard_normal((1, 7)).astype(np.float32), rng.standard_normal((5, 7)).astype(np.float32)
    plan = [op("broadcast_to", (0,), 2, shape=(5, 7)), op("mul", (2, 1), 3), op("neg", (3,), 4)]
    values = trace_values(plan, {0: g, 1: x}, 5)
    fused = fusion.elementwise(plan, values, {}, [4])
    assert [(o.name, o.inputs) for o in fused] == [("fused[mul,neg]", (0, 1))]      # reads g itself
    assert close(execute(fused, {0: g, 1: x})[4], values[4], np.float32)
    kept = fusion.elementwise(plan + [op("exp", (2,), 5)], trace_values(plan + [op("exp", (2,), 5)], {0: g, 1: x}, 6),
                              {}, [4, 5])                                           # read by exp too: it stays
    assert names(kept)[0] == "broadcast_to" and [o.inputs for o in kept if o.name == "fused[mul,neg]"] == [(2, 1)]
