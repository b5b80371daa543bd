"""axon.kernels.erf: math.erf in float64, Eigen's vectorised rational approximation in float32."""
import math

import numpy as np
import pytest

from axon.autograd import check_grads
from axon.kernels import erf


def test_float32_erf_is_within_a_few_ulp_of_math_erf():
    x = np.linspace(-6, 6, 200_001).astype(np.float32)       # beyond +-4 erf is +-1 in float32
    x = np.concatenate([x, np.float32([1e-30, -1e-20, 1e-6, 0.0])])
    want = np.array([math.erf(float(v)) for v in x])
    got = erf(x).numpy()
    assert got.dtype == np.float32
    err = np.abs(got.astype(np.float64) - want)
    assert err.max() < 5e-7                                   # about 4 ulp of 1
    tiny = (np.abs(x) < 1e-3) & (x != 0)
    assert (err[tiny] / np.abs(want[tiny])).max() < 5e-7      # relative accuracy near 0 too
    assert np.isnan(erf(np.float32([np.nan])).numpy()).all()
    np.testing.assert_array_equal(erf(np.float32([np.inf, -np.inf])).numpy(), [1.0, -1.0])


def test_float64_erf_is_math_erf_and_differentiable(rng):
    x = rng.standard_normal(17) * 2
    np.testing.assert_array_equal(erf(x).numpy(), [math.erf(v) for v in x])
    check_grads(erf, (x,), order=2)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_erf_keeps_the_dtype(dtype):
    assert erf(np.ones(3, dtype)).dtype == dtype
