"""Numerical kernels: pure, jit-able integrators that chiraljax dispatches to."""

from ._delay import (
    DelayProblem as DelayProblem,
    DelaySolution as DelaySolution,
    DephasingAverage as DephasingAverage,
    dephasing_average as dephasing_average,
    scatterer_matrix as scatterer_matrix,
    solve_delay as solve_delay,
)
