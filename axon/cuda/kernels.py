"""Placeholder while the fused kernels are ported (filled in below)."""
__all__ = []
