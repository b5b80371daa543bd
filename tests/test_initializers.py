"""Initializers: shapes, dtypes, determinism by key, and the statistics that define each one."""
import math

import numpy as np
import pytest

from axon.functional import initializers as I

RANDOM = ["uniform", "normal", "lecun_uniform", "lecun_normal", "glorot_uniform", "glorot_normal",
          "he_uniform", "he_normal", "variance_scaling", "orthogonal"]
ALL = ["zeros", "ones", "identity"] + RANDOM


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", ["float32", "float64", np.float16])
def test_shape_and_dtype(name, dtype):
    w = I.get(name)((7, 5), dtype=dtype, key=0)
    assert w.shape == (7, 5) and w.dtype == np.dtype(dtype)
    assert I.get(name)((7, 5), key=0).dtype == np.float32          # float32 by default


@pytest.mark.parametrize("name", RANDOM)
def test_same_key_same_values_other_key_other_values(name):
    init = I.get(name)
    a, b, c = init((6, 4), key=3), init((6, 4), key=3), init((6, 4), key=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)     # a Generator works as a key too
    np.testing.assert_array_equal(init((6, 4), key=g1), init((6, 4), key=g2))
    assert not np.array_equal(init((6, 4)), init((6, 4)))           # key=None: fresh entropy


def test_compute_fans_dense_conv_and_degenerate_shapes():
    assert I.compute_fans((784, 128)) == (784, 128)
    assert I.compute_fans((3, 3, 16, 32)) == (3 * 3 * 16, 3 * 3 * 32)
    assert I.compute_fans((5, 8, 4)) == (5 * 8, 5 * 4)               # 1-D conv (width, in, out)
    assert I.compute_fans((10,)) == (10, 10)
    assert I.compute_fans(()) == (1, 1)


def test_compute_fans_match_torch_with_its_channels_first_layout():
    torch = pytest.importorskip("torch")
    for shape in [(3, 3, 16, 32), (5, 7, 2, 3, 9), (20, 30)]:
        torch_shape = (shape[-1], shape[-2]) + shape[:-2]             # (out, in, *receptive_field)
        fans = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(torch_shape))
        assert I.compute_fans(shape) == fans


def _var_target(shape, scale, mode):
    fan_in, fan_out = I.compute_fans(shape)
    return scale / {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("distribution", ["normal", "truncated_normal", "uniform"])
@pytest.mark.parametrize("shape", [(400, 300), (3, 3, 40, 60)])
def test_variance_scaling_statistics(mode, distribution, shape):
    scale = 1.7
    w = I.variance_scaling(scale, mode, distribution)(shape, dtype="float64", key=1)
    var = _var_target(shape, scale, mode)
    assert abs(w.mean()) < 4 * math.sqrt(var / w.size) * 2
    assert w.var() == pytest.approx(var, rel=0.03)
    if distribution == "uniform":                                    # bounded by sqrt(3 var), and fills it
        limit = math.sqrt(3 * var)
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
    elif distribution == "truncated_normal":                         # cut at two of its own std devs
        sigma = math.sqrt(var) / 0.87962566103423978
        assert np.abs(w).max() <= 2 * sigma and np.abs(w).max() > 1.99 * sigma
    else:
        assert np.abs(w).max() > 3.5 * math.sqrt(var)                # real normal tails are not cut


@pytest.mark.parametrize("name, mode, scale, dist", [
    ("lecun_uniform", "fan_in", 1.0, "uniform"), ("lecun_normal", "fan_in", 1.0, "truncated_normal"),
    ("glorot_uniform", "fan_avg", 1.0, "uniform"), ("glorot_normal", "fan_avg", 1.0, "truncated_normal"),
    ("he_uniform", "fan_in", 2.0, "uniform"), ("he_normal", "fan_in", 2.0, "truncated_normal"),
])
def test_named_variance_scalings_are_the_right_special_case(name, mode, scale, dist):
    shape = (3, 3, 30, 50)
    w = I.get(name)(shape, dtype="float64", key=2)
    np.testing.assert_array_equal(w, I.variance_scaling(scale, mode, dist)(shape, dtype="float64", key=2))
    assert w.var() == pytest.approx(_var_target(shape, scale, mode), rel=0.03)


def test_glorot_and_he_uniform_limits_match_the_textbook_formulas():
    w = I.glorot_uniform()((300, 500), dtype="float64", key=0)
    assert np.abs(w).max() == pytest.approx(math.sqrt(6 / 800), rel=1e-3)
    w = I.he_uniform()((3, 3, 64, 8), dtype="float64", key=0)
    assert np.abs(w).max() == pytest.approx(math.sqrt(6 / (9 * 64)), rel=1e-2)


def test_uniform_and_normal_statistics():
    u = I.uniform(scale=0.3)((400, 500), dtype="float64", key=0)
    assert u.min() >= -0.3 and u.max() < 0.3
    assert u.var() == pytest.approx(0.09 / 3, rel=0.02) and abs(u.mean()) < 2e-3
    n = I.normal(mean=2.0, scale=0.5)((400, 500), dtype="float64", key=0)
    assert n.mean() == pytest.approx(2.0, abs=5e-3) and n.std() == pytest.approx(0.5, rel=0.01)
    assert I.uniform()((1000,), key=0).max() <= 0.01                # Axon's default scale 1e-2


@pytest.mark.parametrize("shape", [(8, 8), (20, 6), (3, 3, 4, 8), (2, 9)])
def test_orthogonal_gives_orthonormal_columns_or_rows(shape):
    q = I.orthogonal()(shape, dtype="float64", key=0)
    assert q.shape == shape
    m = q.reshape(-1, shape[-1])                                     # (prod(shape[:-1]), out)
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    np.testing.assert_allclose(gram, np.eye(gram.shape[0]), atol=1e-12)
    q2 = I.orthogonal(scale=3.0)(shape, dtype="float64", key=0)
    np.testing.assert_allclose(q2, 3.0 * q)
    q32 = I.orthogonal(distribution="uniform")(shape, key=0).reshape(-1, shape[-1])
    gram32 = q32.T @ q32 if q32.shape[0] >= q32.shape[1] else q32 @ q32.T
    np.testing.assert_allclose(gram32, np.eye(gram32.shape[0]), atol=1e-5)


def test_orthogonal_is_not_biased_in_sign():
    diag = np.array([I.orthogonal()((4, 4), dtype="float64", key=k)[0, 0] for k in range(200)])
    assert 0.3 < (diag > 0).mean() < 0.7


def test_constants():
    np.testing.assert_array_equal(I.zeros()((2, 3)), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(I.ones()((2,), dtype="int64"), [1, 1])
    np.testing.assert_array_equal(I.full(0.25)((2, 2), dtype="float64"), np.full((2, 2), 0.25))
    np.testing.assert_array_equal(I.identity()((3, 3)), np.eye(3, dtype=np.float32))
    np.testing.assert_array_equal(I.identity()((2, 4)), np.eye(2, 4, dtype=np.float32))


def test_get_resolves_names_passes_callables_and_lists_valid_names():
    assert I.get("full", value=3.0)((1,))[0] == 3.0
    f = I.zeros()
    assert I.get(f) is f
    with pytest.raises(ValueError, match="unknown initializer 'glorot'.*glorot_normal, glorot_uniform"):
        I.get("glorot")


def test_bad_input_is_rejected_with_clear_errors():
    with pytest.raises(ValueError, match="variance_scaling: mode must be one of fan_in, fan_out, fan_avg"):
        I.variance_scaling(mode="fan_sum")
    with pytest.raises(ValueError, match="distribution must be one of normal, truncated_normal, uniform"):
        I.variance_scaling(distribution="cauchy")
    with pytest.raises(ValueError, match="he_uniform: scale must be non-negative"):
        I.he_uniform(scale=-1.0)
    with pytest.raises(ValueError, match="orthogonal: distribution"):
        I.orthogonal(distribution="cauchy")
    with pytest.raises(ValueError, match=r"orthogonal: needs a shape with at least 2 axes, got \(5,\)"):
        I.orthogonal()((5,))
    with pytest.raises(ValueError, match=r"identity: needs a 2-D shape, got \(2, 2, 2\)"):
        I.identity()((2, 2, 2))
    with pytest.raises(ValueError, match=r"he_normal: shape must have non-negative sizes"):
        I.he_normal()((3, -1))
    with pytest.raises(TypeError, match="glorot_uniform: random initializers need a floating dtype"):
        I.glorot_uniform()((3, 3), dtype="int32")
    with pytest.raises(TypeError, match="normal: shape must be a tuple of ints"):
        I.normal()("abc")
    with pytest.raises(TypeError, match="random key must be"):
        I.normal()((2,), key="seed")
