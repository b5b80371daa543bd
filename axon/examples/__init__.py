"""Runnable examples: ``python -m axon.examples.mnist`` trains a digit classifier on MNIST."""

__all__ = ["mnist"]
