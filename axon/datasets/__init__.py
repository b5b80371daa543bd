"""Datasets that ship with axon (nothing is downloaded): ``axon.datasets.mnist``.

>>> from axon.datasets import mnist
>>> x, y = mnist.load("test")
>>> x.shape, y.shape
((10000, 784), (10000, 10))
"""
from . import mnist

__all__ = ["mnist"]
