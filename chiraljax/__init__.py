"""chiraljax: differentiable simulation and pulse optimisation of chiral waveguide-QED networks.

`import chiraljax as cj` gives the SLH algebra (`cj.SLH`, `cj.series`, `cj.concat`,
`cj.feedback`), spaces and operators, the Network description, pulses and `cj.simulate`.
Computation is in float64 unless `CHIRALJAX_PRECISION=float32` is set before import.
"""

from ._precision import PRECISION, complex_dtype, real_dtype
from ._errors import ChiralJaxError, ValidationError
from ._space import Space
from ._operator import Operator
from ._slh import SLH, beam_splitter, concat, feedback, phase_shifter, series
from ._pulses import (AbstractPulse, Constant, Gaussian, GaussianMode, Halted, Sampled, Scaled,
                      SechAbsorption, SechEmission, SechMode, Shifted)
from ._network import (Coupling, Emitter, Link, Network, OutputMode, PhotonInput, Port, Scatterer)
from ._network_io import SimulationSettings, load_network, network_from_dict, network_to_dict, save_network
from ._markov import LindbladModel, compile_markov
from ._result import Result
from ._simulate import simulate
from ._sweep import AbstractAxis, Grid, QuasiRandom, Random, sweep_cost
from ._sweep_model import sweep, sweep_parameters
from ._sweep_spec import load_sweep_spec, run_sweep_spec
from ._modules import (ChiralLine, DataModule, DataRelease, Interconnect, TunableModule, directional_state,
                       quarter_wave_phase)
from ._metrics import (absorption_efficiency, directional_probability, directionality, optimal_fraction,
                       w_fidelity, w_fidelity_halted, w_fidelity_optimal)
from ._protocols import (ERROR_SOURCES, ErrorBudget, PulsePlan, directional_emission, error_budget, route,
                         transfer, w_state)
from ._presets import Preset, available_presets, load_preset

__version__ = "0.1.0"
