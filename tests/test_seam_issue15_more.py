"""The new layers, losses and tools of issue 15 run through the seam: on the test backend whose arrays
refuse any implicit conversion, forward and backward equal the CPU."""
import numpy as np
import pytest

import axon
from axon import backend as B
from axon.autograd import Tensor
from axon.functional import layers as L
from axon.functional import losses

from test_backend_seam import boxed  # noqa: F401  (the fixture)
from test_backend_seam import _host

r = np.random.default_rng(9)


def _on(x, device):
    return Tensor(B.to_device(x, device), requires_grad=True)


CASES = {
    "max_pool_dilated": lambda x: L.max_pool(x, 2, strides=1, window_dilations=2),
    "max_pool_padded_to_window": lambda x: L.max_pool(x, 2, padding=[(1, 2), (2, 1)])[:, :-1, 1:],   # no -inf
    "avg_pool_dilated_real_taps": lambda x: L.avg_pool(x, 2, strides=1, padding=1, window_dilations=2,
                                                       count_include_pad=False),
    "lp_pool_dilated": lambda x: L.lp_pool(x * x + 1, 2, strides=1, window_dilations=(2, 1), norm=3),
    "blur_pool": L.blur_pool,
    "resize_lanczos3_antialias": lambda x: L.resize(x, (3, 7), method="lanczos3", antialias=True),
    "resize_bicubic": lambda x: L.resize(x, (9, 4), method="bicubic"),
    "rms_norm_shift": lambda x: L.rms_norm(x, shift=1.0),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_new_layers_on_the_boxed_backend_equal_the_cpu(boxed, name):  # noqa: F811
    x = r.standard_normal((2, 6, 5, 3)).astype(np.float32)
    dy = None
    outs = {}
    for device in ("cpu", boxed):
        xt = _on(x, device)
        y = CASES[name](xt)
        if dy is None:
            dy = r.standard_normal(y.shape).astype(np.float32)
        (y * _on(dy, device)).sum().backward()
        outs[device] = (_host(y.data), _host(xt.grad))
    for a, b in zip(outs["cpu"], outs[boxed]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_weighted_losses_on_the_boxed_backend_equal_the_cpu(boxed):  # noqa: F811
    logits, labels = r.standard_normal((6, 4)).astype(np.float32), r.integers(0, 4, 6)
    one_hot, bits = np.eye(4, dtype=np.float32)[labels], r.integers(0, 2, (6, 4)).astype(np.float32)
    cw = [1.0, 0.5, 2.0, 3.0]
    fns = [lambda z, d: losses.categorical_cross_entropy(Tensor(B.to_device(one_hot, d)), z, from_logits=True,
                                                         class_weights=cw, reduction="mean"),
           lambda z, d: losses.sparse_categorical_cross_entropy(Tensor(B.to_device(labels, d)), z, from_logits=True,
                                                                class_weights=cw, reduction="mean"),
           lambda z, d: losses.binary_cross_entropy(Tensor(B.to_device(bits, d)), z, from_logits=True, positive_weight=2.0,
                                                    negative_weight=cw, reduction="sum")]
    for fn in fns:
        got = {}
        for device in ("cpu", boxed):
            z = _on(logits, device)
            value = fn(z, device)
            value.backward()
            got[device] = (float(_host(value.data)), _host(z.grad))
        assert got["cpu"][0] == pytest.approx(got[boxed][0], rel=1e-6)
        np.testing.assert_allclose(got["cpu"][1], got[boxed][1], rtol=1e-5, atol=1e-7)


def test_a_block_model_trains_on_the_boxed_backend_as_on_the_cpu(boxed):  # noqa: F811
    enc = axon.block(lambda x: x.dense(4, activation="tanh", name="h"), name="enc")
    a = axon.input((None, 3), name="a")
    model = enc(a) + enc(axon.nx(a, lambda t: -t))
    x = r.standard_normal((32, 3)).astype(np.float32)
    y = np.abs(x[:, :1]) * np.ones((1, 4), np.float32)
    s = axon.training.step(model, "mean_squared_error", axon.optimizers.adam(0.05))
    cpu = axon.training.train(s, {"a": x}, y, epochs=2, batch_size=8, verbose=0, seed=1)
    dev = axon.training.train(s, {"a": x}, y, epochs=2, batch_size=8, verbose=0, seed=1, device=boxed)
    np.testing.assert_allclose(_host(dev.params["enc"]["h/kernel"]), cpu.params["enc"]["h/kernel"],
                               rtol=1e-5, atol=1e-6)
