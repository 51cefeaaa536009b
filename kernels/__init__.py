"""Numba-compiled per-timestep kernels: pure functions on preallocated arrays.

This package imports nothing else of the project but the exception tree of
``twinpass.core``. Public wrappers validate shapes and
dtypes; the private ``@njit`` kernels assume valid arguments.
"""
