"""Numerical kernels: pure, jit-able integrators that chiraljax dispatches to."""

from ._delay import DelayProblem as DelayProblem
from ._delay import DelaySolution as DelaySolution
from ._delay import DephasingAverage as DephasingAverage
from ._delay import TrajectoryAverage as TrajectoryAverage
from ._delay import dephasing_average as dephasing_average
from ._delay import scatterer_matrix as scatterer_matrix
from ._delay import solve_delay as solve_delay
from ._delay import trajectory_average as trajectory_average
