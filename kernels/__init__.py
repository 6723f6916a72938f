"""Numerical kernels: pure, jit-able integrators that chiraljax dispatches to."""
