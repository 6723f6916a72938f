"""Solving a network: `simulate`, the solver methods (`Sector`, `Full`, `Delay`), the `Result`,
metrics, QuTiP interoperability, and the program and compilation caches.
"""
