"""The backward kernels on the GPU: each fused kernel's VJP is a primitive of its own (``kernels.<name>_backward``).

``axon.kernels`` writes a fused kernel's VJP as a call of a second, never-differentiated primitive
(``vjp=None``) that computes the gradients on arrays; this module gives those primitives their CUDA
forwards, with the same arguments and the same tuple of results (``None`` for a gradient not asked for).
A primitive only gets its forward here when ``axon.kernels`` defines it (older trees have none).

- ``kernels.conv_backward``: dW = cols^T dY per group (the tiled matmul reading the column matrix
  transposed in place), dcols = dY W^T, then col2im adds each column back into its window of dx
  with ``cuda.atomic.add`` (windows overlap);
- ``kernels.max_pool_backward``: dy goes to the saved winner (atomics: windows may share one);
- ``kernels.sum_pool_backward``: every input of a box gets its share (atomics);
- ``kernels.softmax_backward`` / ``kernels.softmax_cross_entropy_backward``: one block per row;
- ``kernels.bias_relu_backward``: the mask, then the column sums (``cuda_zip`` and ``cuda_reduce``);
- ``kernels.batch_norm_statistics`` / ``kernels.batch_norm_backward``: per-channel sums in float64
  (one block per channel, shared-memory trees), then one affine pass;
- ``kernels.adam_step``: the fused Adam/AdamW update, one pass over flat arrays; ``kernels.adam_step_at``:
  the same with the step number and lr as device arrays (its scalars computed by each thread, no host read:
  one launch), and ``adam_apply_at`` (``axon.fusion``'s pass) adds the update to the params in it too;
- ``schedules.value``: a learning-rate schedule is Python, so it runs on the host (the count read back, one
  number a step) and its value goes to the device;
- ``kernels.argmax`` / ``kernels.take_along_axis_backward``: one thread per output.

>>> all(PRIMITIVES[n].forwards.get("cuda") is not None for n in IMPLEMENTED)   # each one that exists here
True
"""
from __future__ import annotations

import math

import numpy as np

from .. import schedules  # noqa: F401  (defines the primitive schedules.value, registered below)
from ..autograd.engine import PRIMITIVES, implement
from ._runtime import REDUCE_THREADS, constant, cuda, empty, full, from_host, launch_1d, nb_type, position, view
from .factories import cuda_zip, row_blocks, split_rows
from .kernels import (_conv_geometry, _fold_sum, _im2col, _pool_dims, _row_kernels, affine2, pool_index, window_index,
                      host_or_device as _host_or_device)
from .matmul import launch_matmul

__all__ = ["IMPLEMENTED", "adam_apply_at"]

T = REDUCE_THREADS
IMPLEMENTED: list = []
"""The backward (and other array-level) primitives given a CUDA forward here."""


def _register(name, forward):
    if name in PRIMITIVES:                                       # defined by this tree's axon.kernels
        implement(name, "cuda", forward)
        IMPLEMENTED.append(name)


# ---- conv ------------------------------------------------------------------------------------------------
@cuda.jit
def _col2im_kernel(dx, dcols, geo, Cg, Kc, M):
    # dx (N*D*H*W*C,) zeroed; dcols (G*M*Kc,): the reverse of _im2col_kernel, adding (windows overlap)
    D, H, W, C = geo[0], geo[1], geo[2], geo[3]
    for e in range(cuda.grid(1), dcols.shape[0], cuda.gridsize(1)):
        n, g, c, i_d, i_h, i_w = window_index(e, geo, Cg, Kc, M)
        if 0 <= i_d < D and 0 <= i_h < H and 0 <= i_w < W:       # padding's gradient is dropped
            cuda.atomic.add(dx, (((n * D + i_d) * H + i_h) * W + i_w) * C + g * Cg + c, dcols[e])


def _conv_backward(dy, x, w, strides, padding, dilation, groups, out_spatial, need_dx, need_dw):
    geo, M, Kc, COg = _conv_geometry(x, w, strides, padding, dilation, groups, out_spatial)
    CO, Cg = w.shape[-1], w.shape[-2]
    dys, _, _ = view(dy)                                          # (M, CO)
    ws, _, _ = view(w)                                            # (Kc, CO)
    dx = full(x.shape, 0, x.dtype) if need_dx else None
    dw = full(w.shape, 0, w.dtype) if need_dw else None
    if M == 0 or Kc == 0:
        return dx, dw
    if need_dw:                                                   # dW[:, group g] = cols[g]^T @ dY[:, group g]
        cols = _im2col(x, geo, groups, Cg, Kc, M)                 # (G, M, Kc), read transposed: (Kc, M)
        launch_matmul(dw.reshape(dw.size), COg, CO, (cols, 0, (M * Kc,), 1, Kc), (dys, 0, (COg,), CO, 1),
                      Kc, COg, M, groups, (groups,))
    if need_dx:                                                   # dcols[g] = dY[:, group g] @ W[:, group g]^T
        dcols = empty((groups * M * Kc,), x.dtype)
        launch_matmul(dcols, M * Kc, Kc, (dys, 0, (COg,), CO, 1), (ws, 0, (COg,), 1, CO), M, Kc, COg, groups,
                      (groups,))
        _col2im_kernel[launch_1d(dcols.size)](dx.reshape(dx.size), dcols, geo, Cg, Kc, M)
    return dx, dw


# ---- pooling ---------------------------------------------------------------------------------------------
@cuda.jit
def _max_pool_backward_kernel(dx, dy, arg, Q, P, C):
    # dy, arg (N*Q*C,), Q = Do*Ho*Wo; dx (N*P*C,) zeroed, P = D*H*W: dx[n, arg, c] += dy (windows may share a winner)
    for e in range(cuda.grid(1), dy.shape[0], cuda.gridsize(1)):
        c, n = e % C, e // (Q * C)
        cuda.atomic.add(dx, (n * P + arg[e]) * C + c, dy[e])


def _max_pool_backward(dy, arg, x_shape):
    dx = full(x_shape, 0, dy.dtype)
    if dy.size:
        N, C = x_shape[0], x_shape[-1]
        _max_pool_backward_kernel[launch_1d(dy.size)](dx.reshape(dx.size), view(dy)[0], view(arg)[0],
                                                      dy.size // (N * C), int(np.prod(x_shape[1:-1])), C)
    return (dx,)


@cuda.jit
def _sum_pool_backward_kernel(dx, dy, x, y, scale, p, bins_d, bins_h, bins_w, D, H, W, C, Do, Ho, Wo):
    # the VJP of _sum_pool_kernel: every input of output e's box gets dy * scale (p == 1) or
    # dy x^(p-1) y^(1-p) (0 where y == 0); boxes may overlap, so atomics
    for e in range(cuda.grid(1), dy.shape[0], cuda.gridsize(1)):
        n, od, oh, ow, c = pool_index(e, Do, Ho, Wo, C)
        g = dy[e]
        y_e = y[e]
        for i_d in range(bins_d[od, 0], bins_d[od, 1]):
            for i_h in range(bins_h[oh, 0], bins_h[oh, 1]):
                for i_w in range(bins_w[ow, 0], bins_w[ow, 1]):
                    i = (((n * D + i_d) * H + i_h) * W + i_w) * C + c
                    if p == 1:
                        cuda.atomic.add(dx, i, g * scale[(od * Ho + oh) * Wo + ow])
                    elif y_e != 0:
                        cuda.atomic.add(dx, i, g * x[i] ** (p - 1) * y_e ** (1 - p))


def _sum_pool_backward(dy, x, y, bins, out_shape, scale, p):
    dx = full(x.shape, 0, x.dtype)
    if dy.size:
        dims = _pool_dims(x, out_shape)
        _sum_pool_backward_kernel[launch_1d(dy.size)](dx.reshape(dx.size), view(dy)[0], view(x)[0], view(y)[0],
                                                      constant(np.asarray(scale).astype(x.dtype).ravel()),
                                                      x.dtype.type(p), *(constant(b) for b in bins), *dims)
    return (dx,)


# ---- the softmax family ----------------------------------------------------------------------------------
def _rows_backward_kernel(dtype, cache={}):
    if dtype in cache:
        return cache[dtype]
    acc_type = nb_type(dtype)
    max_and_sum = _row_kernels(dtype)[2]

    @cuda.jit
    def kernel(dx, dy, y, x, kept_shape, x_kept, red_shape, x_red, y_kept, y_red, A, L, what, lowest, zero):
        # softmax: dx = y (dy - sum dy y); log_softmax: dx = dy - exp(y) sum dy; logsumexp: dx = dy softmax(x)
        # x, dx with strides (x_kept, x_red); dy, y with (y_kept, y_red) (for logsumexp one value per row)
        partial = cuda.shared.array(T, acc_type)
        t = cuda.threadIdx.x
        for a in range(cuda.blockIdx.x, A, cuda.gridDim.x):
            base = position(a, 0, kept_shape, x_kept)
            y_base = position(a, 0, kept_shape, y_kept)
            total, m, s = zero, zero, zero
            if what == 2:                                        # m and s again, not exp(x - lse): exact
                m, s = max_and_sum(partial, x, base, red_shape, x_red, L, t, lowest, zero)
            else:
                for l in range(t, L, T):
                    j = position(l, y_base, red_shape, y_red)
                    total += dy[j] * y[j] if what == 0 else dy[j]
                total = _fold_sum(partial, total, t)
            for l in range(t, L, T):
                i = position(l, base, red_shape, x_red)
                j = position(l, y_base, red_shape, y_red)
                if what == 0:
                    dx[i] = y[j] * (dy[j] - total)
                elif what == 1:
                    dx[i] = dy[j] - math.exp(y[j]) * total
                else:
                    dx[i] = dy[j] / s * math.exp(x[i] - m)
    cache[dtype] = kernel
    return kernel


def _softmax_backward(dy, y, x, axis, what):
    dx = empty(x.shape, x.dtype)
    if x.size:
        kept_shape, x_kept, red_shape, x_red = split_rows(x.shape, view(x)[2], axis)
        _, y_kept, _, y_red = split_rows(y.shape, view(y)[2], axis)
        if what == 2:
            y_red = tuple(0 for _ in y_red)                       # one value per row, read by every element
        A, L = int(np.prod(kept_shape)), int(np.prod(red_shape))
        kernel = _rows_backward_kernel(x.dtype)
        kernel[row_blocks(A), T](dx.reshape(dx.size), view(dy)[0], view(y)[0], view(x)[0], kept_shape, x_kept,
                                 red_shape, x_red, y_kept, y_red, A, L, what, x.dtype.type(-np.inf), x.dtype.type(0))
    return (dx,)


def _xent_backward_kernel(dtype, cache={}):
    if dtype in cache:
        return cache[dtype]
    acc_type = nb_type(dtype)
    max_and_sum = _row_kernels(dtype)[2]

    @cuda.jit
    def kernel(dx, dt, dloss, x, tgt, labels, K, use_labels, need_dt, lowest, zero):
        # per row r: m, s as the forward; dx = g (softmax sum t - t) (t one-hot for labels); dt = g (lse - x)
        partial = cuda.shared.array(T, acc_type)
        t = cuda.threadIdx.x
        for r in range(cuda.blockIdx.x, dloss.shape[0], cuda.gridDim.x):
            m, s = max_and_sum(partial, x, r * K, (K,), (1,), K, t, lowest, zero)
            t_sum = zero
            if not use_labels:
                for k in range(t, K, T):
                    t_sum += tgt[r * K + k]
                t_sum = _fold_sum(partial, t_sum, t)
            else:
                t_sum = zero + 1
            g = dloss[r]
            log_s = math.log(s)
            for k in range(t, K, T):
                i = r * K + k
                target = (zero + 1 if k == labels[r] else zero) if use_labels else tgt[i]
                dx[i] = g / s * math.exp(x[i] - m) * t_sum - g * target
                if need_dt:
                    dt[i] = g * ((m - x[i]) + log_s)
    cache[dtype] = kernel
    return kernel


def _xent_backward(dy, x, t, labels, need_dt):
    N, K = x.shape
    dx = empty(x.shape, x.dtype)
    dt = empty(x.shape, x.dtype) if need_dt else None
    use_labels = labels is not None and labels.shape[0] > 0
    if N:
        xs = view(x)[0]
        lab = _host_or_device(labels) if use_labels else constant(np.zeros(1, np.int64))
        tgt = xs if use_labels else view(t)[0]
        kernel = _xent_backward_kernel(x.dtype)
        kernel[row_blocks(N), T](dx.reshape(dx.size), (dt if need_dt else dx).reshape(dx.size), view(dy)[0], xs,
                                 tgt, view(lab)[0], K, use_labels, bool(need_dt), x.dtype.type(-np.inf),
                                 x.dtype.type(0))
    return dx, dt


# ---- bias + relu -------------------------------------------------------------------------------------------
_relu_mask = cuda_zip(lambda g, y: g if y > 0 else 0)


def _bias_relu_backward(dy, y):
    dx = _relu_mask(dy, y)                                        # dx = dy where y > 0
    return dx, PRIMITIVES["sum"].forwards["cuda"](dx, axis=tuple(range(dx.ndim - 1)), keepdims=False)


# ---- batch norm: per-channel sums in float64, one block per channel --------------------------------------
nb_float64 = nb_type(np.float64)


@cuda.jit
def _channel_sums_kernel(sums, a, b, a0, b0, M, C):
    # sums (2, C) float64: sums[0, c] = sum_m (a - a0), sums[1, c] = sum_m (a - a0)(b - b0); a, b (M*C,)
    partial = cuda.shared.array(T, nb_float64)
    t = cuda.threadIdx.x
    for c in range(cuda.blockIdx.x, C, cuda.gridDim.x):
        s1 = 0.0
        s2 = 0.0
        for m in range(t, M, T):
            u = float(a[m * C + c] - a0[c])
            s1 += u
            s2 += u * float(b[m * C + c] - b0[c])
        s1 = _fold_sum(partial, s1, t)                           # (the fold is typed by its arguments)
        s2 = _fold_sum(partial, s2, t)
        if t == 0:
            sums[0, c] = s1
            sums[1, c] = s2




def _channel_sums(a, b, a0, b0):
    C = a.shape[-1]
    M = a.size // C
    sums = empty((2, C), np.float64)
    _channel_sums_kernel[row_blocks(C), T](sums, view(a)[0], view(b)[0], view(a0)[0], view(b0)[0], M, C)
    return sums


@cuda.jit
def _statistics_kernel(mean, var, sums, shift, M):
    for c in range(cuda.grid(1), mean.shape[0], cuda.gridsize(1)):
        mu = sums[0, c] / M
        mean[c] = shift[c] + mu
        var[c] = max(sums[1, c] / M - mu * mu, 0.0)


def _bn_statistics(x):
    C = x.shape[-1]
    shift = view(x)[0][:C]                                       # the first row: the float64 sums stay exact
    sums = _channel_sums(x, x, shift, shift)
    mean, var = empty((C,), np.float64), empty((C,), np.float64)
    _statistics_kernel[launch_1d(C)](mean, var, sums, shift, x.size // C)
    return mean, var


@cuda.jit
def _bn_coefficients_kernel(alpha, beta, gamma_out, dgamma, dbeta, sums, gamma, mean, invstd, M):
    # dbeta = sum dy, dgamma = invstd sum dy (x - mean); dx = alpha dy + beta x + gamma_out per channel
    for c in range(cuda.grid(1), alpha.shape[0], cuda.gridsize(1)):
        sum_dy, sum_dy_xc = sums[0, c], sums[1, c]
        dbeta[c] = sum_dy
        dgamma[c] = invstd[c] * sum_dy_xc
        a = float(gamma[c]) * invstd[c]
        b = -float(gamma[c]) * invstd[c] ** 3 * sum_dy_xc / M
        alpha[c] = a
        beta[c] = b
        gamma_out[c] = -a * sum_dy / M - b * mean[c]


def _bn_backward(dy, x, gamma, mean, invstd, need_dx):
    C = x.shape[-1]
    M = x.size // C
    mean = _host_or_device(mean, np.float64)
    invstd = _host_or_device(invstd, np.float64)
    zeros = full((C,), 0, x.dtype)
    sums = _channel_sums(dy, x, zeros, PRIMITIVES["astype"].forwards["cuda"](mean, x.dtype))
    alpha, beta, gamma_out = (empty((C,), x.dtype) for _ in range(3))
    dgamma, dbeta = empty((C,), x.dtype), empty((C,), x.dtype)
    _bn_coefficients_kernel[launch_1d(C)](alpha, beta, gamma_out, dgamma, dbeta, sums, view(gamma)[0], mean, invstd, M)
    dx = affine2(dy, x, alpha, beta, gamma_out) if need_dx else None
    return dx, dgamma, dbeta


# ---- Adam: one fused pass --------------------------------------------------------------------------------
@cuda.jit(device=True)
def _adam_element(i, u, m_out, v_out, p, g, m, v, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, lr_wd):
    # element i of axon.kernels.adam's step (its scalars, in the arrays' dtype): u = new p - p
    m_i = b1 * m[i] + c1 * g[i]
    v_i = b2 * v[i] + c2 * g[i] * g[i]
    m_out[i] = m_i
    v_out[i] = v_i
    u[i] = -(p[i] * lr_wd) - step_size * m_i / (math.sqrt(v_i) * inv_sqrt_bc2 + eps)


@cuda.jit
def _adam_kernel(u, m_out, v_out, p, g, m, v, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, decay, lr_wd):
    # the step with its scalars given (adam_scalars, computed on the host)
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        _adam_element(i, u, m_out, v_out, p, g, m, v, b1, c1, b2, c2, step_size, inv_sqrt_bc2, eps, lr_wd)


def _adam_step(p, g, m, v, scalars=None, **settings):
    # (p, g, m, v, scalars=adam_scalars(...)) or (p, g, m, v, lr=, b1=, b2=, eps=, weight_decay=, step=):
    # the two forms of the CPU primitive's settings; the scalars are the CPU's own (adam_scalars)
    if scalars is None:
        from ..kernels.adam import adam_scalars
        scalars = adam_scalars(p.dtype, **settings)
    u, m_new, v_new = empty(p.shape, p.dtype), empty(p.shape, p.dtype), empty(p.shape, p.dtype)
    if p.size:
        flat = [view(a)[0] for a in (u, m_new, v_new, p, g, m, v)]
        _adam_kernel[launch_1d(p.size)](*flat, *scalars)
    return u, m_new, v_new


@cuda.jit(device=True)
def _adam_scalars(s, t, rate, b1, b2, eps, weight_decay):
    # s (9,) in the arrays' dtype <- axon.kernels.adam.adam_scalars of step t and learning rate `rate`,
    # computed in float64 and rounded once, on the store (math.pow: the C pow, as Python's b1 ** t)
    step = float(t)
    s[0], s[1], s[2], s[3] = b1, 1.0 - b1, b2, 1.0 - b2
    s[4] = rate / (1.0 - math.pow(b1, step))
    s[5] = 1.0 / math.sqrt(1.0 - math.pow(b2, step))
    s[6], s[7], s[8] = eps, 1.0 - rate * weight_decay, rate * weight_decay


def _adam_at_kernel(dtype, cache={}):
    """The Adam step with its scalars made on the device from ``t`` and ``lr`` (one kernel per dtype).

    Each thread computes the step's nine scalars once, into registers (``_adam_scalars``, a local array
    of the arrays' dtype), then runs its elements: the whole update, every parameter of a flat buffer,
    is one launch, and neither the step number nor the learning rate is read on the host. With
    ``add_base`` the thread writes ``base + u`` (``axon.fusion``'s ``adam_apply``: the update added to
    the params in the same pass) in place of ``u``.
    """
    if dtype in cache:
        return cache[dtype]
    acc = nb_type(dtype)

    @cuda.jit
    def kernel(u, m_out, v_out, base, p, g, m, v, t, lr, b1, b2, eps, weight_decay, add_base):
        # u, m_out, v_out, base, p, g, m, v (n,); t, lr (1,): u = new p - p (or base + u with add_base)
        s = cuda.local.array(9, acc)
        _adam_scalars(s, t[0], lr[0], b1, b2, eps, weight_decay)
        b1_, c1, b2_, c2, step_size, inv_sqrt_bc2, eps_, lr_wd = s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[8]
        for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
            _adam_element(i, u, m_out, v_out, p, g, m, v, b1_, c1, b2_, c2, step_size, inv_sqrt_bc2, eps_, lr_wd)
            if add_base:
                u[i] = base[i] + u[i]

    cache[dtype] = kernel
    return kernel


def _adam_step_at(p, g, m, v, t, lr, b1, b2, eps, weight_decay, base=None):
    # t, lr: 0-d device arrays (the traced step's count and learning rate), read by the device only;
    # one launch (the scalars made by each thread); with base: (base + u, m_new, v_new)
    u, m_new, v_new = empty(p.shape, p.dtype), empty(p.shape, p.dtype), empty(p.shape, p.dtype)
    if p.size:
        t, lr = view(_host_or_device(t))[0], view(_host_or_device(lr))[0]           # (1,) each
        flat = [view(a)[0] for a in (u, m_new, v_new, p if base is None else base, p, g, m, v)]
        _adam_at_kernel(p.dtype)[launch_1d(p.size)](*flat, t, lr, b1, b2, eps, weight_decay, base is not None)
    return u, m_new, v_new


def adam_apply_at(base, p, g, m, v, t, lr, b1, b2, eps, weight_decay) -> tuple:
    """``kernels.adam_step_at`` and ``base + u`` in one launch: ``(base + u, m_new, v_new)``, device arrays.

    The CUDA twin of ``axon.kernels.adam.adam_apply_at`` (what ``axon.fusion``'s ``adam_apply`` pass puts
    in a plan traced on the device); the same numbers as the step and the add apart.

    >>> p, g = from_host(np.ones(2)), from_host(np.array([1.0, -1.0]))
    >>> z = from_host(np.zeros(2))
    >>> new_p, m_new, _ = adam_apply_at(p, p, g, z, z, np.asarray(1), np.asarray(1e-3), 0.9, 0.999, 1e-8, 0.0)
    >>> new_p.copy_to_host(), m_new.copy_to_host()
    (array([0.999, 1.001]), array([ 0.1, -0.1]))
    """
    return _adam_step_at(p, g, m, v, t, lr, b1, b2, eps, weight_decay, base=base)


def _schedule_value(count, schedule):
    # a schedule is a Python function: the count comes to the host (one number a step), its value goes back
    return from_host(PRIMITIVES["schedules.value"].forwards["cpu"](count, schedule=schedule))


# ---- argmax and its gather's backward ---------------------------------------------------------------------
@cuda.jit
def _argmax_kernel(index, x, L, B):
    # x (A*L*B,); index (A*B,): the first largest x[a, :, b], NaN winning (the first NaN)
    for e in range(cuda.grid(1), index.shape[0], cuda.gridsize(1)):
        a, b = e // B, e % B
        best = x[a * L * B + b]
        where = 0
        for l in range(1, L):
            v = x[(a * L + l) * B + b]
            if (v > best or v != v) and best == best:
                best = v
                where = l
        index[e] = where


def _alb(shape, axis):
    return int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1:]))


def _argmax(x, axis):
    A, L, B = _alb(x.shape, axis)
    index = empty((A, B), np.int64)
    if index.size:
        _argmax_kernel[launch_1d(index.size)](index.reshape(index.size), view(x)[0], L, B)
    return index


@cuda.jit
def _take_backward_kernel(dx, dy, index, L, B):
    # dx (A*L*B,) zeroed; dy, index (A*B,): dx[a, index[a, b], b] = dy[a, b] (one place each: no atomics)
    for e in range(cuda.grid(1), dy.shape[0], cuda.gridsize(1)):
        a, b = e // B, e % B
        dx[(a * L + index[e]) * B + b] = dy[e]


def _take_backward(dy, index, x_shape, axis):
    A, L, B = _alb(x_shape, axis)
    dx = full(x_shape, 0, dy.dtype)
    if dy.size:
        _take_backward_kernel[launch_1d(dy.size)](dx.reshape(dx.size), view(dy)[0], view(_host_or_device(index))[0],
                                                  L, B)
    return (dx,)


_register("kernels.conv_backward", _conv_backward)
_register("kernels.max_pool_backward", _max_pool_backward)
_register("kernels.sum_pool_backward", _sum_pool_backward)
_register("kernels.softmax_backward", _softmax_backward)
_register("kernels.softmax_cross_entropy_backward", _xent_backward)
_register("kernels.bias_relu_backward", _bias_relu_backward)
_register("kernels.batch_norm_statistics", _bn_statistics)
_register("kernels.batch_norm_backward", _bn_backward)
_register("kernels.adam_step", _adam_step)
_register("kernels.adam_step_at", _adam_step_at)
_register("schedules.value", _schedule_value)
_register("kernels.argmax", _argmax)
_register("kernels.take_along_axis_backward", _take_backward)
