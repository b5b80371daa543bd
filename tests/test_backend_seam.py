"""The backend seam, proven with a backend whose arrays are not numpy arrays.

``Boxed`` holds a numpy array but refuses every implicit conversion (``np.asarray``, ``float``,
``len``, indexing, arithmetic): any code path that computes on array data without going through the
primitive table (or ``axon.to_device`` / ``np.asarray(tensor)``) fails loudly here. The "boxed"
backend's forwards unwrap, call the CPU forward, and wrap again, so its results must equal the CPU's
exactly. Training the MNIST MLP and a small CNN through the public API on it is what shows that the
CUDA backend only needs kernels.
"""
from __future__ import annotations

import numpy as np
import pytest

import axon
from axon import backend as B, fusion
from axon.autograd import PRIMITIVES, Tensor, implement

NAME = "test.boxed"


class Boxed:
    """An array that is not a numpy array: ``shape``, ``dtype``, ``ndim``, ``size`` and nothing else."""
    __slots__ = ("a",)
    __array_ufunc__ = None                                     # numpy ufuncs refuse it too

    def __init__(self, a):
        assert type(a) is np.ndarray, type(a)
        self.a = a

    shape = property(lambda self: self.a.shape)
    dtype = property(lambda self: self.a.dtype)
    ndim = property(lambda self: self.a.ndim)
    size = property(lambda self: self.a.size)

    def _refuse(self, *args, **kwargs):
        raise TypeError("a Boxed array was used directly: this code path bypasses the backend seam")

    __array__ = __float__ = __int__ = __bool__ = __len__ = __iter__ = __getitem__ = __setitem__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _refuse
    __pow__ = __neg__ = __lt__ = __le__ = __gt__ = __ge__ = __matmul__ = _refuse
    astype = reshape = copy = sum = mean = _refuse


def _unbox(x):
    if isinstance(x, Boxed):
        return x.a
    if isinstance(x, tuple):
        return tuple(_unbox(v) for v in x)
    if isinstance(x, list):
        return [_unbox(v) for v in x]
    return x


def _box(x):
    if isinstance(x, np.ndarray):
        return Boxed(x)
    if isinstance(x, np.generic):
        return Boxed(np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_box(v) for v in x)
    return x                                                   # None, and saved data that is not an array


def _boxed_forward(cpu_forward):
    def forward(*arrays, **params):
        for a in arrays:
            assert isinstance(a, Boxed), f"a {type(a).__name__} reached a boxed forward"
        return _box(cpu_forward(*_unbox(arrays), **{k: _unbox(v) for k, v in params.items()}))
    return forward


@pytest.fixture
def boxed():
    """Register the boxed backend (every primitive of the table gets a forward) and remove it after."""
    B.register_backend(B.Backend(NAME, (Boxed,), to_host=lambda b: b.a.copy(), from_host=lambda a: Boxed(np.array(a)),
                                 full=lambda shape, v, dtype: Boxed(np.full(shape, v, dtype)),
                                 copy=lambda b: Boxed(b.a.copy())))
    for prim in list(PRIMITIVES.values()):
        implement(prim.name, NAME, _boxed_forward(prim.forwards["cpu"]))
    yield NAME
    for prim in PRIMITIVES.values():
        prim.forwards.pop(NAME, None)
    B.unregister_backend(NAME)


def _all_boxed(tree):
    leaves = [x for x in axon.tree.tree_leaves(tree) if not (isinstance(x, np.ndarray) and x.ndim == 0)]
    return leaves and all(isinstance(x, Boxed) for x in leaves)


def _host(tree):
    return axon.to_device(tree, "cpu")


# ---- the registry and the engine -------------------------------------------------------------------
def test_backend_of_and_to_device_round_trip(boxed):
    tree = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "count": np.asarray(4), "lr": 0.1}
    moved = axon.to_device(tree, boxed)
    assert isinstance(moved["w"], Boxed) and B.backend_of(moved["w"]).name == boxed
    assert moved["count"] is tree["count"] and moved["lr"] == 0.1            # host scalars stay
    back = _host(moved)
    assert type(back["w"]) is np.ndarray
    np.testing.assert_array_equal(back["w"], tree["w"])


def test_tensor_keeps_a_device_array_and_numpy_copies_it_back(boxed):
    t = Tensor(axon.to_device(np.array([1.0, -2.0], np.float32), boxed))
    assert isinstance(t.data, Boxed) and t.device == boxed
    np.testing.assert_array_equal(np.asarray(t), [1.0, -2.0])
    assert float(t.sum()) == -1.0 and "test.boxed" in repr(t)


def test_ops_and_gradients_run_on_the_backend(boxed):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4,))

    def f(x, y):
        z = axon.autograd.where(x > 0, x * y, -x) / (1.0 + y * y)
        return (axon.autograd.tanh(z).sum(axis=0) ** 2).mean() + axon.autograd.maximum(x, 0.2).max()

    cpu = axon.value_and_grad(f, argnums=(0, 1))(a, b)
    dev = axon.value_and_grad(f, argnums=(0, 1))(*axon.to_device((a, b), boxed))
    assert _all_boxed(dev[1])
    np.testing.assert_array_equal(_host(dev[0]), cpu[0])
    for g_dev, g_cpu in zip(_host(dev[1]), cpu[1]):
        np.testing.assert_array_equal(g_dev, g_cpu)


def test_mixing_devices_is_a_clear_error(boxed):
    x = Tensor(axon.to_device(np.ones(3, np.float32), boxed))
    with pytest.raises(ValueError, match=r"different devices \(cpu and test.boxed\)"):
        x + np.ones(3, np.float32)
    assert float((x * 2.0).sum()) == 6.0                     # numbers and 0-d arrays join any device
    assert float((x + np.float32(1)).sum()) == 6.0


def test_a_primitive_without_a_forward_on_the_backend_says_so(boxed):
    prim = axon.autograd.primitive("test.cpu_only", lambda x: x + 1, lambda dy, y, x: (dy,))
    try:
        with pytest.raises(NotImplementedError, match="test.cpu_only.*no forward on the 'test.boxed' backend"):
            axon.autograd.apply(prim, Tensor(axon.to_device(np.ones(2), boxed)))
    finally:
        del PRIMITIVES["test.cpu_only"]


def test_unknown_device_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown device 'tpu': the known devices are 'cpu'"):
        axon.set_backend("tpu")
    model = axon.input((None, 2)).dense(1)
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        model.init(device="gpu0")
    assert axon.get_backend() == "cpu"


def test_environment_variable_sets_the_default(monkeypatch):
    monkeypatch.setattr(B, "_default", {"name": None})
    monkeypatch.setenv("AXON_BACKEND", "nope")
    with pytest.raises(ValueError, match="unknown device 'nope'"):
        B.get_backend()
    monkeypatch.setenv("AXON_BACKEND", "cpu")
    assert B.get_backend() == "cpu"


# ---- whole models through the public API -------------------------------------------------------------
def _mnist_like(n=96, image=False, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 8, 8, 1) if image else (n, 64), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    return x, y


MODELS = {
    "mlp": lambda: axon.input((None, 64)).dense(32, activation="relu").dropout(rate=0.5).dense(10, activation="softmax"),
    "cnn": lambda: (axon.input((None, 8, 8, 1)).conv(4, kernel_size=3, padding="same", activation="relu")
                    .max_pool(kernel_size=2).batch_norm().flatten().dense(10, activation="softmax")),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_training_on_the_boxed_backend_equals_the_cpu(boxed, name, monkeypatch):
    # bit for bit against the CPU's plan as traced: fusion rewrites only CPU forwards (to rounding)
    monkeypatch.setattr(fusion, "ENABLED", False)
    x, y = _mnist_like(image=name == "cnn")
    model = MODELS[name]()
    s = axon.training.step(model, "categorical_cross_entropy", axon.optimizers.adamw(0.01), metrics=["accuracy"])
    cpu = axon.training.train(s, x, y, epochs=2, batch_size=32, verbose=0, seed=1)
    dev = axon.training.train(s, x, y, epochs=2, batch_size=32, verbose=0, seed=1, device=boxed,
                              validation_data=(x[:40], y[:40]))
    assert _all_boxed(dev.params) and _all_boxed(dev.opt_state)          # params and moments stayed on it
    for a, b in zip(axon.tree.tree_leaves(_host(dev.params)), axon.tree.tree_leaves(cpu.params)):
        np.testing.assert_array_equal(a, b)
    assert dev.history["loss"] == cpu.history["loss"] and dev.history["accuracy"] == cpu.history["accuracy"]
    metrics = axon.training.evaluate(model, dev.params, x, y, metrics=["accuracy"], loss="categorical_cross_entropy")
    assert metrics == axon.training.evaluate(model, cpu.params, x, y, metrics=["accuracy"],
                                             loss="categorical_cross_entropy")
    np.testing.assert_array_equal(model.predict(dev.params, x[:5]), model.predict(cpu.params, x[:5]))


@pytest.mark.parametrize("opt", ["sgd", "adam_reference", "rmsprop", "clipped"])
def test_optimizers_update_where_the_params_live(boxed, opt):
    make = {"sgd": lambda: axon.optimizers.sgd(0.1, momentum=0.9),
            "adam_reference": lambda: axon.optimizers.adam(0.01, fused=False),
            "rmsprop": lambda: axon.optimizers.rmsprop(0.01),
            "clipped": lambda: axon.updates.chain(axon.updates.clip_by_global_norm(0.5),
                                                  axon.updates.scale_by_adam(), axon.updates.scale(-0.01))}[opt]
    x, y = _mnist_like(n=64)
    s = axon.training.step(MODELS["mlp"](), "categorical_cross_entropy", make())
    cpu = axon.training.train(s, x, y, epochs=1, batch_size=16, verbose=0)
    dev = axon.training.train(s, x, y, epochs=1, batch_size=16, verbose=0, device=boxed)
    assert _all_boxed(dev.params)
    for a, b in zip(axon.tree.tree_leaves(_host(dev.params)), axon.tree.tree_leaves(cpu.params)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_init_and_predict_take_a_device(boxed):
    model = MODELS["mlp"]()
    params = model.init(seed=0, device=boxed)
    assert _all_boxed(params)
    x = _mnist_like(n=4)[0]
    y = model.predict(params, x)                              # inputs follow the params; a host array comes back
    assert type(y) is np.ndarray
    np.testing.assert_array_equal(y, model.predict(model.init(seed=0), x))
    np.testing.assert_array_equal(axon.predict(model, model.init(seed=0), x, device=boxed), y)
