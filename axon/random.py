"""Explicit random keys: the same key (and salt) always gives the same numbers.

A *key* is an int seed, a ``numpy.random.Generator`` or ``None``. ``rng(key, *salt)`` turns it into a
Generator; the salt (ints or strings: a layer name, a step number) derives independent streams, so
layer ``dense_1`` gets the same initial weights whatever layers come before it, and step 17 of a
run gets the same dropout mask after resuming from a checkpoint.

>>> a = rng(0, "dense_0", "kernel").standard_normal(2)
>>> b = rng(0, "dense_0", "kernel").standard_normal(2)
>>> bool((a == b).all())
True
"""
from __future__ import annotations

import zlib
from typing import NamedTuple

import numpy as np

__all__ = ["rng", "split", "Key", "derive"]


class Key(NamedTuple):
    """A key and its salt, not yet made a Generator: what a layer gets, so a primitive can take the key as an input.

    ``key`` is an int, a 0-d integer array or Tensor (inside ``axon.jit``, a placeholder: each call of
    the plan brings a new key, and the numbers drawn from it are new); ``rng(Key(k, salt))`` is
    ``rng(k, *salt)``.

    >>> bool((rng(Key(0, ("dropout_0",))).random(3) == rng(0, "dropout_0").random(3)).all())
    True
    """
    key: object
    salt: tuple


def _salt_int(s) -> int:
    """An int from a salt: ints as they are, strings by a stable CRC32 (Python's hash is randomized)."""
    if isinstance(s, (int, np.integer)):
        return int(s) & 0xFFFFFFFF
    return zlib.crc32(str(s).encode())


def rng(key=None, *salt) -> np.random.Generator:
    """A numpy Generator for ``key`` (int seed, Generator, or None for fresh entropy) and ``salt``.

    A Generator key with no salt is returned as it is (so callers may pass their own stream).

    >>> a = rng(0, "dense_0").standard_normal(3)
    >>> bool((a == rng(0, "dense_0").standard_normal(3)).all())  # same key and salt: same numbers
    True
    >>> bool((a == rng(0, "dense_1").standard_normal(3)).any())  # another salt: another stream
    False
    >>> g = np.random.default_rng(1); rng(g) is g                # a Generator without salt passes through
    True
    """
    if isinstance(key, np.random.Generator):
        if not salt:
            return key
        key = int(key.integers(2**32))
    if isinstance(key, Key):
        key, salt = key.key, key.salt + salt
    if getattr(key, "ndim", None) == 0 and key.dtype.kind in "iu":   # a 0-d integer array or Tensor
        key = int(key)                                 # (a placeholder of axon.jit refuses: draw in a primitive)
    if key is None:
        return np.random.default_rng()                         # fresh entropy: not reproducible
    if not isinstance(key, (int, np.integer)):
        raise TypeError(f"a random key must be an int seed, a numpy Generator or None, got {type(key).__name__}")
    seq = np.random.SeedSequence([int(key) & 0xFFFFFFFFFFFFFFFF] + [_salt_int(s) for s in salt])
    return np.random.default_rng(seq)


def derive(key, *salt):
    """The key a layer gets: ``key`` with ``salt`` added (a ``Key``); a Generator gives a Generator, None stays None.

    ``rng(derive(k, "dropout_0"))`` draws what ``rng(k, "dropout_0")`` draws; a primitive such as
    dropout's mask takes ``derive(...).key`` as an input array instead (so ``axon.jit`` replays it).

    >>> derive(7, "dropout_0"), derive(None, "dropout_0")
    (Key(key=7, salt=('dropout_0',)), None)
    """
    if key is None or isinstance(key, np.random.Generator):
        return None if key is None else rng(key, *salt)
    if isinstance(key, Key):
        return Key(key.key, key.salt + salt)
    return Key(key, tuple(salt))


def split(key, n: int) -> list[int]:
    """``n`` independent int keys derived from ``key``.

    >>> keys = split(0, 3)
    >>> len(keys), len(set(keys)), keys == split(0, 3)  # distinct, and the same every time
    (3, 3, True)
    """
    return [int(k) for k in rng(key, "split").integers(0, 2**63 - 1, size=n)]
