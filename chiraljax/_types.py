"""The array types of chiraljax's fields, for readers and type checkers (jaxtyping; shapes
are documentation, not checked at run time).

A parameter is a scalar array leaf: concrete when the user built the object, traced inside
`jit`, `vmap` (then with a batch dimension) or `grad`.
"""

from __future__ import annotations

from jaxtyping import Array, Complex, Float, Inexact

#: A real parameter (a rate, a detuning, a time, a transmission).
Real = Float[Array, ""]
#: A real or complex parameter (a coupling strength, an amplitude, a reflection).
Number = Inexact[Array, ""]
#: A state: a density matrix (..., D, D) or amplitudes (..., n); leading dimensions are batches.
State = Complex[Array, "..."]

__all__ = ["Number", "Real", "State"]
