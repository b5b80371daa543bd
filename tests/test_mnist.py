"""axon.datasets.mnist: the shipped IDX files, checked and parsed."""
import gzip
import os
import shutil

import numpy as np
import pytest

from axon.datasets import mnist

DATA = os.path.join(os.path.dirname(mnist.__file__), "data", "mnist")


def test_test_split_values_shapes_and_dtypes():
    x, y = mnist.load("test")
    assert x.shape == (10000, 784) and x.dtype == np.float32
    assert y.shape == (10000, 10) and y.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert (y.sum(axis=1) == 1).all()
    # label counts published with the data (README.md)
    np.testing.assert_array_equal(y.sum(axis=0), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    x4, labels = mnist.load("test", flatten=False, one_hot=False, dtype="float64")
    assert x4.shape == (10000, 28, 28, 1) and x4.dtype == np.float64 and labels.dtype == np.int64
    np.testing.assert_array_equal(labels, y.argmax(axis=1))
    np.testing.assert_allclose(x4.reshape(10000, 784), x, atol=1e-7)
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]


def test_train_split_statistics():
    x, y = mnist.load("train")
    assert x.shape == (60000, 784) and y.shape == (60000, 10)
    assert abs(float(x.mean()) - 0.1307) < 1e-4 and abs(float(x.std()) - 0.3081) < 1e-4
    x[0, 0] = 5.0                                              # the caller's copy is its own
    assert mnist.load("train")[0][0, 0] == 0.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="split must be one of"):
        mnist.load("validation")
    with pytest.raises(ValueError, match="floating dtype"):
        mnist.load("test", dtype="uint8")


@pytest.fixture
def copy_dir(tmp_path):
    """A copy of the test-split files to break."""
    for name in mnist.FILES["test"]:
        shutil.copy(os.path.join(DATA, name + ".gz"), tmp_path / (name + ".gz"))
    return tmp_path


def test_data_dir_and_env_override(copy_dir, monkeypatch):
    x, _ = mnist.load("test", data_dir=copy_dir)
    assert x.shape == (10000, 784)
    nested = copy_dir / "root"
    (nested / "mnist").mkdir(parents=True)
    for name in mnist.FILES["test"]:
        shutil.move(str(copy_dir / (name + ".gz")), nested / "mnist" / (name + ".gz"))
    monkeypatch.setenv("AXON_DATA_DIR", str(nested))           # a folder holding mnist/
    assert mnist.default_data_dir() == str(nested)
    assert mnist.load("test")[0].shape == (10000, 784)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        mnist.load("train")                                    # not in the override folder


def test_uncompressed_files_are_accepted(copy_dir):
    for name in mnist.FILES["test"]:
        raw = gzip.decompress((copy_dir / (name + ".gz")).read_bytes())
        (copy_dir / (name + ".gz")).unlink()
        (copy_dir / name).write_bytes(raw)
    x, y = mnist.load("test", data_dir=copy_dir, one_hot=False)
    assert x.shape == (10000, 784) and y[:3].tolist() == [7, 2, 1]


def _rewrite(path, raw: bytes):
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(raw)


def test_truncated_gzip_names_the_file(copy_dir):
    path = copy_dir / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:50000])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz.*sha256"):
        mnist.load("test", data_dir=copy_dir)
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz.*(truncated|cannot decompress)"):
        mnist.load("test", data_dir=copy_dir, verify=False)


def test_truncated_payload_bad_magic_and_bad_header_are_explained(copy_dir):
    path = copy_dir / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    _rewrite(path, raw[:-10])                                  # a valid gzip of a truncated IDX file
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz.*sha256"):
        mnist.load("test", data_dir=copy_dir)
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz.*10000 values.*holds 9990"):
        mnist.load("test", data_dir=copy_dir, verify=False)
    _rewrite(path, b"\x00\x00\x08\x03" + raw[4:])             # an image magic number in a labels file
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz.*magic number 0x00000803.*0x00000801"):
        mnist.load("test", data_dir=copy_dir, verify=False)
    _rewrite(path, raw[:4] + (5000).to_bytes(4, "big") + raw[8:])
    with pytest.raises(ValueError, match=r"header says shape \(5000,\), expected \(10000,\)"):
        mnist.load("test", data_dir=copy_dir, verify=False)
    _rewrite(path, raw[:6])
    with pytest.raises(ValueError, match="less than the 8-byte IDX header"):
        mnist.load("test", data_dir=copy_dir, verify=False)
    bad_label = bytearray(raw)
    bad_label[8] = 11
    _rewrite(path, bytes(bad_label))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz.*label 11"):
        mnist.load("test", data_dir=copy_dir, verify=False)


def test_a_flipped_byte_fails_the_checksum(copy_dir):
    path = copy_dir / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    flipped = bytearray(raw)
    flipped[1000] ^= 0xFF
    _rewrite(path, bytes(flipped))                             # well-formed, but not the original
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz.*not the original MNIST.*sha256"):
        mnist.load("test", data_dir=copy_dir)
