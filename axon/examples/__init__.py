"""Runnable examples.

- ``python -m axon.examples.mnist`` trains a digit classifier on MNIST;
- ``python -m axon.examples.text`` trains a character-level GRU (or ``--model transformer``) on Hamlet.
"""

__all__ = ["mnist", "text"]
