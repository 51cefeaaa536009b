"""Slow, obvious float64 NumPy references written from docs/design.md, used to check the kernels."""
