"""Recurrent layers: LSTM, GRU and ConvLSTM cells, and the loops that run a cell over a sequence.

A *cell* maps one step's input and the carry to ``(new_carry, output)``, as in Axon:

    lstm_cell(x_t, (c, h), W, U, b) -> ((c', h'), h')          gates i, f, g, o (PyTorch's order)
    gru_cell(x_t, h, W, U, b_i, b_h) -> (h', h')              gates r, z, n (PyTorch's formula)

An *unroll* runs a cell over ``x`` (B, T, ...) and returns ``(outputs (B, T, ...), final carry)``:

- ``static_unroll``: a Python loop of Tensor operations; the graph holds T copies of the cell (as
  Axon's static unroll), so anything differentiates through it, to any order.
- ``dynamic_unroll``: the same loop as *one* primitive: the forward runs without recording and keeps
  only the carries; the backward re-runs one step at a time and backpropagates through it (the
  memory of one step's graph, not T). Grad of grad records the unrolled loop (T cells) instead.
- ``lstm``/``gru`` run the fused kernels of ``axon.kernels.recurrent`` by default (``unroll="fused"``):
  the input projections of every step as one matrix product, then the whole recurrence in one kernel.

``mask`` (B, T), True on real steps, handles padded sequences: on a padded step the carry passes
through unchanged and the output is 0. It is boolean (or integer, nonzero a real step; a float mask
is a TypeError) and stays a Tensor on x's backend, an input of the primitives that use it, so a
masked layer runs on the GPU and inside ``axon.jit``. ``reverse=True`` runs from the last step to
the first (outputs stay at their steps' positions).

Weights are laid out (in, out), as everywhere in axon: ``kernel_input`` (F, 4H) is PyTorch's
``weight_ih_l0.T``, ``kernel_hidden`` (H, 4H) its ``weight_hh_l0.T``, and an LSTM's ``bias`` is
``bias_ih_l0 + bias_hh_l0``.

>>> import numpy as np
>>> r = np.random.default_rng(0)
>>> x = r.standard_normal((2, 5, 3)).astype(np.float32)               # (B, T, F)
>>> w, u, b = r.standard_normal((3, 16)), r.standard_normal((4, 16)), np.zeros(16)
>>> w, u, b = w.astype(np.float32), u.astype(np.float32), b.astype(np.float32)
>>> zeros = np.zeros((2, 4), np.float32)
>>> y, (c, h) = lstm(x, (zeros, zeros), w, u, b)
>>> y.shape, h.shape, bool(np.allclose(y.numpy()[:, -1], h.numpy()))
((2, 5, 4), (2, 4), True)
"""
from __future__ import annotations

import numpy as np

from ... import kernels
from ...autograd import (Tensor, apply, as_tensor, backprop, concatenate, enable_grad, is_grad_enabled, no_grad,
                         primitive, reshape, sigmoid, stack, tanh, where)
from ...backend import backend_of
from ...kernels._common import bool_mask, on_backend_of
from .convolution import conv
from .linear import dense
from ._utils import check_param, tensor

__all__ = ["lstm_cell", "gru_cell", "conv_lstm_cell", "static_unroll", "dynamic_unroll", "lstm", "gru",
           "conv_lstm"]


# ---- cells ---------------------------------------------------------------------------------------------
def _lstm_gates(a, c):
    """c' = f c + i g, h' = o tanh(c') from the pre-activations a (..., 4H) in PyTorch's order i, f, g, o."""
    H = a.shape[-1] // 4
    i, f = sigmoid(a[..., :H]), sigmoid(a[..., H:2 * H])
    g, o = tanh(a[..., 2 * H:3 * H]), sigmoid(a[..., 3 * H:])
    c_new = f * c + i * g
    h_new = o * tanh(c_new)
    return (c_new, h_new), h_new


def _check_cell(layer, x, carry, kernel_input, kernel_hidden, gates):
    """x (B, F), carry Tensors (B, H), kernels (F, gH) and (H, gH): as Tensors, or a ValueError naming the shapes."""
    x = tensor(layer, x)
    carry = tuple(tensor(layer, c, "carry") for c in carry)
    kernel_input, kernel_hidden = tensor(layer, kernel_input, "kernel_input"), tensor(layer, kernel_hidden, "kernel_hidden")
    H = carry[0].shape[-1]
    if kernel_hidden.shape != (H, gates * H) or kernel_input.shape[-1] != gates * H or \
            any(c.shape != carry[0].shape for c in carry):
        raise ValueError(f"{layer}: expects a carry (B, H), kernel_input (F, {gates}H) and kernel_hidden "
                         f"(H, {gates}H); got carry {[c.shape for c in carry]}, kernel_input {kernel_input.shape}, "
                         f"kernel_hidden {kernel_hidden.shape}")
    return x, carry, kernel_input, kernel_hidden


def lstm_cell(x, carry, kernel_input, kernel_hidden, bias=None):
    """One LSTM step: ``carry = (c, h)`` -> ``((c', h'), h')``, gates in PyTorch's order i, f, g, o.

        a = x W + h U + b = [a_i, a_f, a_g, a_o]      i, f, o = sigmoid(a_i, a_f, a_o)    g = tanh(a_g)
        c' = f c + i g                                 h' = o tanh(c')

    ``x`` (B, F), ``c``/``h`` (B, H), ``kernel_input`` W (F, 4H), ``kernel_hidden`` U (H, 4H), ``bias`` (4H,).

    >>> import numpy as np
    >>> x, c, h = np.zeros((1, 2)), np.ones((1, 1)), np.zeros((1, 1))
    >>> (c2, h2), y = lstm_cell(x, (c, h), np.zeros((2, 4)), np.zeros((1, 4)))
    >>> float(c2.numpy()[0, 0]), round(float(h2.numpy()[0, 0]), 4)      # f = i = o = 1/2, g = 0
    (0.5, 0.2311)
    """
    x, (c, h), kernel_input, kernel_hidden = _check_cell("lstm_cell", x, carry, kernel_input, kernel_hidden, 4)
    bias = check_param("lstm_cell", "bias", bias, kernel_hidden.shape[1:])
    return _lstm_gates(dense(x, kernel_input, bias) + h @ kernel_hidden, c)


def _gru_gates(a, h, b):
    """h' from a = x W + b_i and b = h U + b_h (each (..., 3H), gates r, z, n): PyTorch's formula."""
    H = h.shape[-1]
    r, z = sigmoid(a[..., :H] + b[..., :H]), sigmoid(a[..., H:2 * H] + b[..., H:2 * H])
    n = tanh(a[..., 2 * H:] + r * b[..., 2 * H:])
    h_new = (1 - z) * n + z * h
    return h_new, h_new


def gru_cell(x, h, kernel_input, kernel_hidden, bias_input=None, bias_hidden=None):
    """One GRU step: ``h`` -> ``(h', h')``, with PyTorch's gates and formula.

        r = sigmoid(x W_r + b_ir + h U_r + b_hr)      z = sigmoid(x W_z + b_iz + h U_z + b_hz)
        n = tanh(x W_n + b_in + r (h U_n + b_hn))     h' = (1 - z) n + z h

    ``x`` (B, F), ``h`` (B, H), kernels (F, 3H) and (H, 3H), biases (3H,).

    >>> import numpy as np
    >>> h2, y = gru_cell(np.zeros((1, 2)), np.ones((1, 1)), np.zeros((2, 3)), np.zeros((1, 3)))
    >>> float(h2.numpy()[0, 0])                                # z = 1/2, n = 0: h' = h / 2
    0.5
    """
    x, (h,), kernel_input, kernel_hidden = _check_cell("gru_cell", x, (h,), kernel_input, kernel_hidden, 3)
    bias_input = check_param("gru_cell", "bias_input", bias_input, kernel_hidden.shape[1:])
    bias_hidden = check_param("gru_cell", "bias_hidden", bias_hidden, kernel_hidden.shape[1:])
    return _gru_gates(dense(x, kernel_input, bias_input), h, dense(h, kernel_hidden, bias_hidden))


def conv_lstm_cell(x, carry, kernel_input, kernel_hidden, bias=None, strides=1, padding="same"):
    """One ConvLSTM step (channels-last): ``lstm_cell`` with the two products replaced by convolutions.

        a = conv(x, W, strides, padding) + conv(h, U, "same") + b      then i, f, g, o as in ``lstm_cell``

    ``x`` (B, *spatial, C), ``c``/``h`` (B, *spatial', H), ``kernel_input`` (*k, C, 4H),
    ``kernel_hidden`` (*k', H, 4H), ``bias`` (4H,).

    >>> import numpy as np
    >>> x, c, h = np.ones((1, 5, 5, 2)), np.zeros((1, 5, 5, 3)), np.zeros((1, 5, 5, 3))
    >>> (c2, h2), y = conv_lstm_cell(x, (c, h), np.full((3, 3, 2, 12), 0.1), np.zeros((3, 3, 3, 12)))
    >>> y.shape
    (1, 5, 5, 3)
    """
    x, c, h = tensor("conv_lstm_cell", x), tensor("conv_lstm_cell", carry[0], "carry"), tensor("conv_lstm_cell", carry[1], "carry")
    kernel_hidden = tensor("conv_lstm_cell", kernel_hidden, "kernel_hidden")
    if kernel_hidden.shape[-2:] != (h.shape[-1], 4 * h.shape[-1]):
        raise ValueError(f"conv_lstm_cell: kernel_hidden must be (*kernel_size, H, 4H) for a hidden state with "
                         f"H = {h.shape[-1]} channels, got shape {kernel_hidden.shape}")
    a = conv(x, kernel_input, bias, strides=strides, padding=padding) + conv(h, kernel_hidden, padding="same")
    if a.shape[:-1] != h.shape[:-1]:
        raise ValueError(f"conv_lstm_cell: the input's convolution gives shape {a.shape}, which does not match the "
                         f"carry's {h.shape} (check strides and padding)")
    return _lstm_gates(a, c)


# ---- unrolling a cell ----------------------------------------------------------------------------------
def _flat_carry(carry):
    """The carry as a tuple of Tensors, and a function rebuilding the caller's structure (a Tensor or a tuple)."""
    if isinstance(carry, (tuple, list)):
        return tuple(as_tensor(c) for c in carry), tuple
    return (as_tensor(carry),), lambda leaves: leaves[0]


def _keep(layer, mask, x):
    """The mask (B, T) as a boolean Tensor on ``x``'s backend (None: every step is real)."""
    if mask is None:
        return None
    m = bool_mask(layer, mask, x)
    if m.shape != x.shape[:2]:
        raise ValueError(f"{layer}: mask must be (B, T) = {x.shape[:2]} for an input of shape {x.shape}, got "
                         f"{m.shape}")
    return m


def _check_sequence(layer, x):
    x = tensor(layer, x)
    if x.ndim < 3:
        raise ValueError(f"{layer}: expects a sequence (B, T, ...), got shape {x.shape}")
    return x


def _step(cell_fn, x_t, carry, params, keep_t):
    """One step; on padded rows (keep_t False) the carry is kept and the output is 0."""
    new, out = cell_fn(x_t, carry, *params)
    if keep_t is None:
        return new, out
    leaves, build = _flat_carry(new)
    old, _ = _flat_carry(carry)
    k = reshape(keep_t, keep_t.shape + (1,) * (out.ndim - 1))             # (B,) -> (B, 1, ...): a step's features
    kept = tuple(where(k, n, o) for n, o in zip(leaves, old))
    return build(kept), where(k, out, np.zeros((), out.dtype))


def static_unroll(cell_fn, x, carry, *params, mask=None, reverse=False):
    """Run ``cell_fn(x_t, carry, *params) -> (carry, y_t)`` over the steps of ``x`` (B, T, ...), recording each.

    Returns ``(y (B, T, ...), final carry)``. The graph holds one copy of the cell per step, so any
    cell differentiates through it, to any order.

    >>> import numpy as np
    >>> cell = lambda x_t, s, w: (s + x_t * w, s + x_t * w)          # a running sum, weighted
    >>> y, s = static_unroll(cell, np.ones((1, 3, 1)), np.zeros((1, 1)), np.float64(2.0))
    >>> y.numpy().ravel(), s.numpy().ravel()
    (array([2., 4., 6.]), array([6.]))
    """
    x = _check_sequence("static_unroll", x)
    T = x.shape[1]
    keep = _keep("static_unroll", mask, x)
    outs = [None] * T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        carry, outs[t] = _step(cell_fn, x[:, t], carry, params, None if keep is None else keep[:, t])
    return stack(outs, axis=1), carry


def _scan_parts(inputs, n_carry, masked):
    """The scan's inputs after ``x``, ``(*carry leaves, *params[, mask])``, as (carry leaves, params, mask or None)."""
    n = len(inputs) - masked
    return inputs[:n_carry], inputs[n_carry:n], inputs[n] if masked else None


def _scan_forward(x, *inputs, cell_fn, n_carry, build, masked, reverse, shapes):
    """The loop without recording: (outputs and final carry packed flat, the carry before each step).

    A primitive has one output array, so the outputs and the carry leaves travel as one flat vector;
    their shapes go into ``shapes`` (a dict the caller reads to unpack them). The mask, when
    ``masked``, is the last input (an input, not a setting: a traced mask is each call's own).
    """
    leaves, params, keep = _scan_parts(tuple(Tensor._wrap(a) for a in inputs), n_carry, masked)
    carry = build(leaves)
    T, xs = x.shape[1], Tensor._wrap(x)
    outs, before = [None] * T, [None] * T
    with no_grad():
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            before[t] = tuple(c.data for c in _flat_carry(carry)[0])
            carry, out = _step(cell_fn, xs[:, t], carry, params, None if keep is None else keep[:, t])
            outs[t] = out.data
        y = stack([Tensor._wrap(o) for o in outs], axis=1)                       # (B, T, ...)
        final = _flat_carry(carry)[0]
        packed = concatenate([reshape(y, (-1,))] + [reshape(c, (-1,)) for c in final])   # Tensor ops: any backend
    shapes.update(y=y.shape, carry=[c.shape for c in final])
    return packed.data, tuple(before)


def _leaf(t):
    """A fresh leaf with ``t``'s values, to differentiate one step on its own."""
    leaf = t.detach() if isinstance(t, Tensor) else Tensor._wrap(t)
    leaf.requires_grad = True
    return leaf


def _ones_like(t):
    """A Tensor of ones shaped and typed as ``t``, on ``t``'s backend (the seed of a backward pass)."""
    return Tensor._wrap(backend_of(t.data).full(t.shape, 1, t.dtype))


def _scan_vjp(dy, packed, x, *inputs, cell_fn, n_carry, build, masked, reverse, shapes, saved):
    if is_grad_enabled():                          # backward(create_graph=True): the unrolled graph, recorded
        return _scan_vjp_recorded(dy, x, inputs, cell_fn, n_carry, build, masked, reverse, shapes)
    before = saved
    _, param_inputs, keep = _scan_parts(inputs, n_carry, masked)
    dy_out, dcarry = _unpack(dy, shapes["y"], shapes["carry"])
    T = x.shape[1]
    dxs = [None] * T
    dparams = [None] * len(param_inputs)
    for t in (range(T) if reverse else range(T - 1, -1, -1)):  # the forward's steps, last first
        x_t = _leaf(x[:, t])
        carry_t = tuple(_leaf(c) for c in before[t])
        params = tuple(_leaf(p) for p in param_inputs)
        with enable_grad():
            new, out = _step(cell_fn, x_t, build(carry_t), params, None if keep is None else keep[:, t])
            total = (out * dy_out[:, t]).sum()
            for c, d in zip(_flat_carry(new)[0], dcarry):
                total = total + (c * d).sum()
        grads = {id(t_): g for t_, g in backprop(total, _ones_like(total), keep=(x_t, *carry_t, *params))}
        got = lambda t_: grads[id(t_)] if id(t_) in grads else t_.detach() * 0  # noqa: E731  (unused: 0)
        dxs[t] = got(x_t)
        dcarry = tuple(got(c) for c in carry_t)
        dparams = [got(p) if d is None else d + got(p) for d, p in zip(dparams, params)]
    return (stack(dxs, axis=1), *dcarry, *dparams) + ((None,) if masked else ())     # (the mask: no gradient)


def _scan_vjp_recorded(dy, x, inputs, cell_fn, n_carry, build, masked, reverse, shapes):
    """The VJP for grad of grad: ``static_unroll`` on the inputs themselves, differentiated with recording on.

    The loop runs on identity copies of ``dy``, ``x`` and the inputs; during this walk the copies count
    as leaves (their nodes are set aside), so it stops at them instead of going on into the graph that
    made them (twice the work, and a parent reached through another parent would be counted twice).
    Put back, their nodes connect the recorded gradients to that graph for the next differentiation.
    """
    copies = tuple(reshape(t, t.shape) for t in (dy, x, *inputs))            # identity nodes
    dy_c, x_c = copies[0], copies[1]
    carry_c, params_c, keep = _scan_parts(copies[2:], n_carry, masked)
    y, carry = static_unroll(cell_fn, x_c, build(carry_c), *params_c, mask=keep, reverse=reverse)
    dy_out, dcarry = _unpack(dy_c, shapes["y"], shapes["carry"])
    total = (y * dy_out).sum()
    for c, d in zip(_flat_carry(carry)[0], dcarry):
        total = total + (c * d).sum()
    wanted = tuple(c for c in copies[1:] if c.requires_grad)
    nodes = [c._node for c in copies]
    for c in copies:
        c._node = None                                                      # leaves, for this walk only
    try:
        found = {id(t): g for t, g in backprop(total, _ones_like(total), keep=wanted, create_graph=True,
                                               retain_graph=True)}
    finally:
        for c, node in zip(copies, nodes):
            c._node = node
    return tuple(found.get(id(c)) for c in copies[1:])


def _unpack(packed, y_shape, carry_shapes):
    """Split the flat (outputs, carry leaves) vector back into Tensors of their shapes."""
    n = int(np.prod(y_shape))
    y = reshape(packed[:n], y_shape)
    leaves = []
    for shape in carry_shapes:
        m = int(np.prod(shape))
        leaves.append(reshape(packed[n:n + m], shape))
        n += m
    return y, tuple(leaves)


# The VJP differentiates fresh copies of one step at a time; recorded (grad of grad), the whole unrolled loop.
_scan = primitive("scan", _scan_forward, _scan_vjp, saves=True)


def dynamic_unroll(cell_fn, x, carry, *params, mask=None, reverse=False):
    """``static_unroll`` as one primitive: the same ``(y, final carry)``, one node in the graph instead of T cells.

    The forward runs the loop without recording and keeps the carry before each step; the backward
    re-runs one step at a time and backpropagates through it, so memory holds one step's graph.
    Under ``backward(create_graph=True)`` (grad of grad) the backward records the whole unrolled
    loop instead, as ``static_unroll`` would, so it differentiates to any order.

    >>> import numpy as np
    >>> cell = lambda x_t, s, w: (s + x_t * w, s + x_t * w)
    >>> w = Tensor(np.float64(2.0), requires_grad=True)
    >>> y, s = dynamic_unroll(cell, np.ones((1, 3, 1)), np.zeros((1, 1)), w)
    >>> s.sum().backward(); s.numpy().ravel(), float(w.grad)       # s = 3 w
    (array([6.]), 3.0)
    """
    x = _check_sequence("dynamic_unroll", x)
    keep = _keep("dynamic_unroll", mask, x)
    leaves, build = _flat_carry(carry)
    params = tuple(as_tensor(p, like=(x,)) for p in params)
    shapes = {}
    masks = () if keep is None else (keep,)
    packed = apply(_scan, x, *leaves, *params, *masks, cell_fn=cell_fn, n_carry=len(leaves), build=build,
                   masked=bool(masks), reverse=bool(reverse), shapes=shapes)
    y, final = _unpack(packed, shapes["y"], shapes["carry"])
    return y, build(final)


# ---- whole layers --------------------------------------------------------------------------------------
_UNROLLS = ("fused", "static", "dynamic")


def _zero_padding(hs, keep):
    """The fused kernels' carries hs (B, T, H) as a layer's outputs: 0 on padded steps (keep (B, T) False)."""
    if keep is None:
        return hs
    return where(reshape(keep, keep.shape + (1,)), hs, np.zeros((), hs.dtype))


def _check_unroll(layer, unroll, allowed=_UNROLLS):
    if unroll not in allowed:
        raise ValueError(f"{layer}: unroll must be one of {', '.join(map(repr, allowed))}, got {unroll!r}")


def _check_rnn(layer, x, carry, kernel_input, kernel_hidden, gates, unroll):
    _check_unroll(layer, unroll)
    x = _check_sequence(layer, x)
    if x.ndim != 3:
        raise ValueError(f"{layer}: expects x (B, T, F), got shape {x.shape}")
    x_t = x[:, 0] if x.shape[1] else np.zeros((x.shape[0], x.shape[2]), x.dtype)
    return (x, *_check_cell(layer, x_t, carry, kernel_input, kernel_hidden, gates)[1:])


def lstm(x, carry, kernel_input, kernel_hidden, bias=None, mask=None, reverse=False, unroll="fused"):
    """An LSTM over ``x`` (B, T, F) from ``carry = (c0, h0)``: returns ``(y (B, T, H), (c_T, h_T))``.

    The cell is ``lstm_cell``; the input products of all steps are one ``(B T, F) @ (F, 4H)`` product.
    ``unroll``: ``"fused"`` (the kernel ``axon.kernels.lstm_sequence``), ``"static"`` or ``"dynamic"``
    (``static_unroll``/``dynamic_unroll`` of the cell); all three give the same values and gradients.
    Matches ``torch.nn.LSTM(batch_first=True)`` with ``kernel_input = weight_ih_l0.T``,
    ``kernel_hidden = weight_hh_l0.T`` and ``bias = bias_ih_l0 + bias_hh_l0``.

    >>> import numpy as np
    >>> x = np.ones((1, 4, 2), np.float32)
    >>> w, u, zeros = np.full((2, 4), 0.5, np.float32), np.zeros((1, 4), np.float32), np.zeros((1, 1), np.float32)
    >>> y, (c, h) = lstm(x, (zeros, zeros), w, u)
    >>> y.numpy().round(3).ravel()
    array([0.37 , 0.545, 0.622, 0.659], dtype=float32)
    """
    x, (c0, h0), kernel_input, kernel_hidden = _check_rnn("lstm", x, carry, kernel_input, kernel_hidden, 4, unroll)
    bias = check_param("lstm", "bias", bias, kernel_hidden.shape[1:])
    keep = _keep("lstm", mask, x)
    if unroll == "fused":                                      # the bias is added inside the kernel
        xw = dense(x, kernel_input)                            # (B, T, F) -> (B, T, 4H): every step at once
        y = kernels.lstm_sequence(xw, h0, c0, kernel_hidden, bias, mask=keep, reverse=reverse)   # (2, B, T, H)
        last = 0 if reverse else -1
        return _zero_padding(y[0], keep), (y[1][:, last], y[0][:, last])
    xw = dense(x, kernel_input, bias)                          # (B, T, F) -> (B, T, 4H)
    cell = lambda xw_t, carry, u: _lstm_gates(xw_t + carry[1] @ u, carry[0])  # noqa: E731
    run = static_unroll if unroll == "static" else dynamic_unroll
    return run(cell, xw, (c0, h0), kernel_hidden, mask=keep, reverse=reverse)


def gru(x, h, kernel_input, kernel_hidden, bias_input=None, bias_hidden=None, mask=None, reverse=False,
        unroll="fused"):
    """A GRU over ``x`` (B, T, F) from ``h`` (B, H): returns ``(y (B, T, H), h_T)``.

    The cell is ``gru_cell``; ``unroll`` as in ``lstm`` (``"fused"`` runs ``axon.kernels.gru_sequence``).
    Matches ``torch.nn.GRU(batch_first=True)`` with the kernels transposed and the two biases as they are.

    >>> import numpy as np
    >>> x, w, u = np.ones((1, 3, 2), np.float32), np.full((2, 3), 0.5, np.float32), np.zeros((1, 3), np.float32)
    >>> y, h = gru(x, np.zeros((1, 1), np.float32), w, u)
    >>> y.numpy().round(3).ravel()
    array([0.205, 0.355, 0.464], dtype=float32)
    """
    x, (h0,), kernel_input, kernel_hidden = _check_rnn("gru", x, (h,), kernel_input, kernel_hidden, 3, unroll)
    bias_input = check_param("gru", "bias_input", bias_input, kernel_hidden.shape[1:])
    bias_hidden = check_param("gru", "bias_hidden", bias_hidden, kernel_hidden.shape[1:])
    keep = _keep("gru", mask, x)
    xw = dense(x, kernel_input, bias_input)                    # (B, T, F) -> (B, T, 3H)
    if unroll == "fused":
        bh = bias_hidden if bias_hidden is not None else on_backend_of(x, np.zeros(kernel_hidden.shape[1], x.dtype))
        hs = kernels.gru_sequence(xw, h0, kernel_hidden, bh, mask=keep, reverse=reverse)   # (B, T, H)
        last = hs[:, 0 if reverse else -1]
        return _zero_padding(hs, keep), last
    cell = lambda xw_t, h, u, bh: _gru_gates(xw_t, h, dense(h, u, bh))  # noqa: E731
    run = static_unroll if unroll == "static" else dynamic_unroll
    bh = bias_hidden if bias_hidden is not None else on_backend_of(x, np.zeros(kernel_hidden.shape[1], x.dtype))
    return run(cell, xw, h0, kernel_hidden, bh, mask=keep, reverse=reverse)


def conv_lstm(x, carry, kernel_input, kernel_hidden, bias=None, strides=1, padding="same", mask=None,
              reverse=False, unroll="static"):
    """A ConvLSTM over ``x`` (B, T, *spatial, C) from ``carry = (c0, h0)`` (B, *spatial', H) each.

    Returns ``(y (B, T, *spatial', H), (c_T, h_T))``; the cell is ``conv_lstm_cell``; ``unroll`` is
    ``"static"`` or ``"dynamic"``.

    >>> import numpy as np
    >>> x, zeros = np.ones((2, 3, 4, 4, 1)), np.zeros((2, 4, 4, 2))
    >>> y, (c, h) = conv_lstm(x, (zeros, zeros), np.full((3, 3, 1, 8), 0.1), np.zeros((3, 3, 2, 8)))
    >>> y.shape, h.shape
    ((2, 3, 4, 4, 2), (2, 4, 4, 2))
    """
    _check_unroll("conv_lstm", unroll, ("static", "dynamic"))
    x = _check_sequence("conv_lstm", x)
    cell = lambda x_t, carry, w, u, b: conv_lstm_cell(x_t, carry, w, u, b, strides=strides, padding=padding)  # noqa: E731
    run = static_unroll if unroll == "static" else dynamic_unroll
    b = bias if bias is not None else on_backend_of(x, np.zeros(np.shape(kernel_hidden)[-1], x.dtype))
    return run(cell, x, tuple(carry), kernel_input, kernel_hidden, b, mask=mask, reverse=reverse)
