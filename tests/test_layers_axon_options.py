"""Axon's layer options: rms_norm shift/upcast, blur_pool, resize bicubic/lanczos and antialias."""
import numpy as np
import pytest

from axon.autograd import check_grads
from axon.functional import layers as L

r = np.random.default_rng(5)


# ---- rms_norm ----------------------------------------------------------------------------------------
def test_rms_norm_shift_is_torchs_weight_plus_shift():
    torch = pytest.importorskip("torch")
    x, gamma = r.standard_normal((3, 4, 6)), 0.1 * r.standard_normal(6)
    want = torch.nn.functional.rms_norm(torch.tensor(x), (6,), weight=torch.tensor(1.0 + gamma), eps=1e-6)
    np.testing.assert_allclose(L.rms_norm(x, gamma, shift=1.0).numpy(), want.numpy(), rtol=1e-12)
    np.testing.assert_allclose(L.rms_norm(x, shift=0.5).numpy(), 1.5 * L.rms_norm(x).numpy(), rtol=1e-12)
    check_grads(lambda x, g: L.rms_norm(x, g, shift=1.0), (x[:2, :2], gamma), order=1)
    with pytest.raises(ValueError, match=r"upcast must be one of \('normalization', 'all'\), got 'none'"):
        L.rms_norm(x, upcast="none")
    with pytest.raises(TypeError, match="shift must be a number, got str"):
        L.rms_norm(x, shift="1")


def test_rms_norm_upcast_computes_float16_in_float32():
    x = (3 * r.standard_normal((4, 8))).astype(np.float16)
    gamma = r.uniform(0.5, 1.5, 8).astype(np.float16)
    x32 = x.astype(np.float32)
    normed = x32 / np.sqrt((x32 ** 2).mean(-1, keepdims=True) + 1e-6)                 # float32, by hand
    part = L.rms_norm(x, gamma, upcast="normalization")
    whole = L.rms_norm(x, gamma, upcast="all")
    assert part.dtype == whole.dtype == np.float16
    np.testing.assert_array_equal(part.numpy(), normed.astype(np.float16) * gamma)    # gamma in float16
    np.testing.assert_array_equal(whole.numpy(), (normed * gamma.astype(np.float32)).astype(np.float16))
    assert L.rms_norm(x.astype(np.float64), upcast="all").dtype == np.float64       # never lowered


# ---- blur_pool ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", ["last", "first"])
def test_blur_pool_is_torchs_depthwise_binomial_conv(channels):
    torch = pytest.importorskip("torch")
    x = r.standard_normal((2, 7, 5, 3))                                 # (N, H, W, C)
    f = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    w = (torch.outer(f, f) / 16).expand(3, 1, 3, 3)                     # (C, 1, 3, 3)
    want = torch.nn.functional.conv2d(torch.tensor(x.transpose(0, 3, 1, 2)), w, padding=1, groups=3).numpy()
    if channels == "last":
        got = L.blur_pool(x).numpy().transpose(0, 3, 1, 2)
    else:
        got = L.blur_pool(x.transpose(0, 3, 1, 2), channels="first").numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    check_grads(L.blur_pool, (x[:1, :4, :4, :2],), order=1)
    assert L.blur_pool(x.astype(np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match="blur_pool: expects input of rank 4"):
        L.blur_pool(x[:, :, 0])


# ---- resize -------------------------------------------------------------------------------------------
def resize_by_hand(x, n_out, kernel, antialias):
    """jax.image.resize's definition along axis 1 of (N, n, C), a loop over outputs."""
    n_in = x.shape[1]
    width = max(n_in / n_out, 1.0) if antialias else 1.0
    y = np.zeros((x.shape[0], n_out, x.shape[2]))
    for i in range(n_out):
        centre = (i + 0.5) * n_in / n_out - 0.5
        w = np.array([kernel(abs(centre - j) / width) for j in range(n_in)])
        y[:, i] = np.einsum("j,njc->nc", w / w.sum(), x)
    return y


def keys(t):
    return (1.5 * t - 2.5) * t * t + 1 if t < 1 else ((-0.5 * t + 2.5) * t - 4) * t + 2 if t < 2 else 0.0


def lanczos(a):
    return lambda t: 1.0 if t == 0 else (a * np.sin(np.pi * t) * np.sin(np.pi * t / a) / (np.pi * t) ** 2
                                         if t <= a else 0.0)


@pytest.mark.parametrize("method, kernel", [("bicubic", keys), ("lanczos3", lanczos(3)), ("lanczos5", lanczos(5))])
@pytest.mark.parametrize("n_out", [4, 7, 17])
@pytest.mark.parametrize("antialias", [False, True])
def test_resize_kernels_by_hand(method, kernel, n_out, antialias):
    x = r.standard_normal((2, 9, 3))
    got = L.resize(x, n_out, method=method, antialias=antialias).numpy()
    np.testing.assert_allclose(got, resize_by_hand(x, n_out, kernel, antialias), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(L.resize(np.ones((1, 9, 2)), n_out, method=method, antialias=antialias).numpy(), 1.0,
                               rtol=1e-12)                             # rows of weights sum to 1


@pytest.mark.parametrize("size", [(12, 5), (3, 4), (14, 18)])
@pytest.mark.parametrize("method", ["bicubic", "bilinear"])
def test_resize_with_antialias_matches_torch(size, method):
    torch = pytest.importorskip("torch")
    x = r.standard_normal((2, 7, 9, 3))
    want = torch.nn.functional.interpolate(torch.tensor(x.transpose(0, 3, 1, 2)), size=size, mode=method,
                                           antialias=True, align_corners=False).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(L.resize(x, size, method=method, antialias=True).numpy(), want, rtol=1e-10, atol=1e-13)
    if size[0] > 7 and size[1] > 9:                                    # upsampling: antialias changes nothing
        np.testing.assert_allclose(L.resize(x, size, method=method).numpy(), want, rtol=1e-10, atol=1e-13)


def test_resize_kernel_methods_are_differentiable_and_keep_float32():
    x = r.standard_normal((1, 5, 4, 2))
    check_grads(lambda x: L.resize(x, (8, 3), method="lanczos3", antialias=True), (x,), order=1)
    assert L.resize(x.astype(np.float32), (8, 3), method="bicubic").dtype == np.float32
    assert L.resize_output_shape((None, 5, 4, 2), (8, 3), method="lanczos5") == (None, 8, 3, 2)
    with pytest.raises(ValueError, match="resize: method must be one of"):
        L.resize(x, 3, method="cubic")


def test_model_builders_take_the_new_options():
    import axon
    model = axon.input((None, 6, 6, 2)).blur_pool().resize((9, 9), method="lanczos3").rms_norm(shift=1.0)
    params = axon.init(model, seed=0)
    x = r.standard_normal((1, 6, 6, 2)).astype(np.float32)
    by_hand = L.rms_norm(L.resize(L.blur_pool(x), (9, 9), method="lanczos3"), params[list(params)[-1]]["gamma"],
                         shift=1.0)
    np.testing.assert_allclose(axon.predict(model, params, x), by_hand.numpy(), rtol=1e-6)
