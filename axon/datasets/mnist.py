"""MNIST handwritten digits: 60,000 training and 10,000 test images of 28x28 grey pixels, labels 0-9.

The four files ship inside the package (``axon/datasets/data/mnist/``, gzip-compressed IDX files by
Yann LeCun, Corinna Cortes and Christopher J.C. Burges; CC BY-SA 3.0), so nothing is downloaded.
``data_dir=`` or the ``AXON_DATA_DIR`` environment variable points elsewhere (a folder holding the
files, or holding an ``mnist/`` folder with them); uncompressed IDX files are accepted too.

Every file is checked before use: its sha256 (md5 for uncompressed files) against the published
checksums, the IDX magic number, and that the header's sizes match the bytes that follow. A
truncated or corrupt file raises ``ValueError`` naming the file and what is wrong.

The IDX format: a big-endian header ``0x00 0x00 <type> <ndim>`` (type 0x08 = uint8), then one
big-endian uint32 per dimension, then the values row-major. Images are ``(N, 28, 28)``, labels ``(N,)``.

>>> x, y = load("test")
>>> x.shape, x.dtype, y.shape, float(x.max())
((10000, 784), dtype('float32'), (10000, 10), 1.0)
"""
from __future__ import annotations

import gzip
import hashlib
import os
import zlib

import numpy as np

__all__ = ["load", "FILES", "NUM_CLASSES", "default_data_dir"]

NUM_CLASSES = 10

# split -> (images file, labels file); name -> (sha256 of the .gz, md5 of the uncompressed file, expected count)
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_CHECKSUMS = {
    "train-images-idx3-ubyte": ("0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
                                "6bbc9ace898e44ae57da46a324031adb", 60000),
    "train-labels-idx1-ubyte": ("1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
                                "a25bea736e30d166cdddb491f175f624", 60000),
    "t10k-images-idx3-ubyte": ("1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
                               "2646ac647ad5339dbf082846283269ea", 10000),
    "t10k-labels-idx1-ubyte": ("b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
                               "27ae3e4e09519cfbb04c329615203637", 10000),
}
_IMAGE_MAGIC, _LABEL_MAGIC = 0x00000803, 0x00000801            # uint8 data with 3 dims / 1 dim
_cache: dict = {}                                              # (path, size, mtime) -> uint8 array


def default_data_dir() -> str:
    """The folder the files are read from: ``AXON_DATA_DIR`` if set, else the package's own copy.

    >>> import os
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"AXON_DATA_DIR": "/srv/data"}):
    ...     default_data_dir()
    '/srv/data'
    >>> with mock.patch.dict(os.environ, {"AXON_DATA_DIR": ""}):          # unset: the copy in the package
    ...     default_data_dir().endswith(os.path.join("datasets", "data", "mnist"))
    True
    """
    return os.environ.get("AXON_DATA_DIR") or os.path.join(os.path.dirname(__file__), "data", "mnist")


def _find(folder: str, name: str) -> str:
    """The path of ``name.gz`` (or uncompressed ``name``) in ``folder`` or ``folder/mnist``."""
    for d in (folder, os.path.join(folder, "mnist")):
        for candidate in (os.path.join(d, name + ".gz"), os.path.join(d, name)):
            if os.path.isfile(candidate):
                return candidate
    raise FileNotFoundError(f"mnist: '{name}.gz' not found in '{folder}' (nor in '{os.path.join(folder, 'mnist')}'); "
                            f"set data_dir= or AXON_DATA_DIR to the folder holding the MNIST files")


def _read_idx(path: str, name: str, verify: bool) -> np.ndarray:
    """Check and parse one IDX file; uint8 array ``(N, 28, 28)`` or ``(N,)``."""
    sha256, md5, count = _CHECKSUMS[name]
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".gz"):
        if verify:
            got = hashlib.sha256(raw).hexdigest()
            if got != sha256:
                raise ValueError(f"mnist: '{path}' is corrupt or not the original MNIST file: sha256 is {got}, "
                                 f"expected {sha256} ({len(raw)} bytes on disk)")
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"mnist: '{path}' is truncated or corrupt: cannot decompress it ({e})") from None
    elif verify:
        got = hashlib.md5(raw).hexdigest()
        if got != md5:
            raise ValueError(f"mnist: '{path}' is corrupt or not the original MNIST file: md5 is {got}, "
                             f"expected {md5}")
    is_images = "images" in name
    ndim = 3 if is_images else 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"mnist: '{path}' is truncated: {len(raw)} bytes, less than the {header}-byte IDX header")
    magic = int.from_bytes(raw[:4], "big")
    expected_magic = _IMAGE_MAGIC if is_images else _LABEL_MAGIC
    if magic != expected_magic:
        raise ValueError(f"mnist: '{path}' has magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
                         f"(uint8 {'images, 3 dims' if is_images else 'labels, 1 dim'}): not an MNIST "
                         f"{'image' if is_images else 'label'} file")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected_dims = (count, 28, 28) if is_images else (count,)
    if dims != expected_dims:
        raise ValueError(f"mnist: '{path}' header says shape {dims}, expected {expected_dims}")
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise ValueError(f"mnist: '{path}' is truncated or has trailing bytes: header says {size} values "
                         f"(shape {dims}), the file holds {len(raw) - header}")
    values = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)   # read-only view of the bytes
    if not is_images and values.max() >= NUM_CLASSES:
        raise ValueError(f"mnist: '{path}' holds label {int(values.max())}, expected labels 0-9")
    return values


def _load_file(folder: str, name: str, verify: bool) -> np.ndarray:
    """``_read_idx`` with a cache keyed by the file's path, size and modification time."""
    path = _find(folder, name)
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, verify)
    if key not in _cache:
        _cache[key] = _read_idx(path, name, verify)
    return _cache[key]


def load(split: str = "train", flatten: bool = True, one_hot: bool = True, dtype="float32",
         data_dir=None, verify: bool = True):
    """Images scaled to [0, 1] and their labels for ``split`` ("train": 60,000; "test": 10,000).

    Returns ``(x, y)``:

    - ``x``: ``(N, 784)`` if ``flatten`` else ``(N, 28, 28, 1)`` (channels-last, ready for a conv),
      pixel / 255 in ``dtype`` (a floating dtype);
    - ``y``: ``(N, 10)`` one-hot rows in ``dtype`` if ``one_hot`` else ``(N,)`` int64 labels 0-9.

    ``verify=False`` skips the checksum (the header and size checks always run), for modified copies.

    >>> x, y = load("test", flatten=False, one_hot=False)
    >>> x.shape, y[:5].tolist()
    ((10000, 28, 28, 1), [7, 2, 1, 0, 4])
    """
    if split not in FILES:
        raise ValueError(f"mnist.load: split must be one of {sorted(FILES)}, got {split!r}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"mnist.load: dtype must be a floating dtype (pixels are scaled to [0, 1]), got {dtype}")
    folder = os.fspath(data_dir) if data_dir is not None else default_data_dir()
    images_name, labels_name = FILES[split]
    images = _load_file(folder, images_name, verify)           # (N, 28, 28) uint8
    labels = _load_file(folder, labels_name, verify)           # (N,) uint8
    x = images.astype(dtype)
    x /= 255                                                   # [0, 255] -> [0, 1], in place, stays in dtype
    x = x.reshape(len(x), 784) if flatten else x[..., None]    # (N, 784) or (N, 28, 28, 1)
    if one_hot:
        y = np.zeros((len(labels), NUM_CLASSES), dtype=dtype)  # (N, 10)
        y[np.arange(len(labels)), labels] = 1
    else:
        y = labels.astype(np.int64)
    return x, y
