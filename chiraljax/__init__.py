"""chiraljax: differentiable simulation and pulse optimisation of chiral waveguide-QED networks."""

from ._precision import PRECISION, complex_dtype, real_dtype
from ._errors import ChiralJaxError, ValidationError

__version__ = "0.1.0"
