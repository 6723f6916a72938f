"""chiraljax: differentiable simulation and pulse optimisation of chiral waveguide-QED networks.

`import chiraljax as cj` gives the SLH algebra (`cj.SLH`, `cj.series`, `cj.concat`,
`cj.feedback`), spaces and operators, the Network description, pulses and `cj.simulate`.
Computation is in float64 unless `CHIRALJAX_PRECISION=float32` is set before import.
Compiled programs are kept in a persistent cache between processes (see `chiraljax.solve._cache`),
and XLA:CPU compiles with the settings of `chiraljax._compiler` (`CHIRALJAX_XLA_FLAGS=0` keeps JAX's).

The rest (network files, sweeps, modules and protocols, metrics, presets) is imported on first
use, so `cj.sweep` or `from chiraljax import sweep` loads the sweep machinery (xarray, scipy)
only then.
"""

from __future__ import annotations

import importlib
import types
from typing import TYPE_CHECKING, Any

from chiraljax import _startup  # first: pauses the garbage collector while the package loads

try:
    from chiraljax import _compiler  # noqa: F401  (XLA flags, before any backend starts)
    from chiraljax._errors import ChiralJaxError, ValidationError
    from chiraljax._precision import PRECISION, complex_dtype, real_dtype
    from chiraljax.algebra._markov import LindbladModel, compile_markov
    from chiraljax.algebra._operator import Operator
    from chiraljax.algebra._slh import SLH, beam_splitter, concat, feedback, phase_shifter, series
    from chiraljax.algebra._space import Space
    from chiraljax.network._network import Coupling, Emitter, Link, Network, OutputMode, PhotonInput, Port, Scatterer
    from chiraljax.network._pulses import (
        AbstractPulse,
        Chebyshev,
        Constant,
        CubicSpline,
        Fourier,
        Gaussian,
        GaussianAbsorption,
        GaussianEmission,
        GaussianMode,
        Halted,
        PiecewiseConstant,
        Sampled,
        Scaled,
        SechAbsorption,
        SechEmission,
        SechMode,
        Shaped,
        Shifted,
        TimeReversed,
    )
    from chiraljax.solve._cache import compilation_cache_dir
    from chiraljax.solve._methods import Delay, Full, Sector
    from chiraljax.solve._result import Result
    from chiraljax.solve._simulate import simulate
finally:
    _startup.finish()

if TYPE_CHECKING:
    from chiraljax._plots import plot_result, plot_sweep
    from chiraljax.experiment._modules import (
        ChiralLine,
        DataModule,
        DataRelease,
        Interconnect,
        TunableModule,
        directional_state,
        quarter_wave_phase,
    )
    from chiraljax.experiment._presets import Preset, available_presets, load_preset
    from chiraljax.experiment._protocols import (
        ERROR_SOURCES,
        ErrorBudget,
        PulsePlan,
        directional_emission,
        error_budget,
        route,
        transfer,
        w_state,
    )
    from chiraljax.network._mode_io import load_mode, sampled_norm
    from chiraljax.network._network_io import (
        SimulationSettings,
        load_network,
        network_from_dict,
        network_to_dict,
        save_network,
    )
    from chiraljax.solve._metrics import (
        AbsorptionEfficiency,
        AbstractMetric,
        ConservationError,
        Directionality,
        InFlight,
        Output,
        Population,
        StorageWFidelity,
        TotalOutput,
        TransferEfficiency,
        WFidelity,
        absorption_efficiency,
        directional_probability,
        directionality,
        optimal_fraction,
        w_fidelity,
        w_fidelity_halted,
        w_fidelity_optimal,
    )
    from chiraljax.sweeps._sweep import AbstractAxis, Grid, QuasiRandom, Random, sweep_cost
    from chiraljax.sweeps._sweep_model import sweep, sweep_parameters
    from chiraljax.sweeps._sweep_spec import load_sweep_spec, run_sweep_spec

__version__ = "0.1.0"

#: Names imported from their submodule on first access: submodule -> names.
_LAZY_MODULES: dict[str, tuple[str, ...]] = {
    "chiraljax.network._network_io": (
        "SimulationSettings",
        "load_network",
        "network_from_dict",
        "network_to_dict",
        "save_network",
    ),
    "chiraljax.sweeps._sweep": ("AbstractAxis", "Grid", "QuasiRandom", "Random", "sweep_cost"),
    "chiraljax.sweeps._sweep_model": ("sweep", "sweep_parameters"),
    "chiraljax.sweeps._sweep_spec": ("load_sweep_spec", "run_sweep_spec"),
    "chiraljax.experiment._modules": (
        "ChiralLine",
        "DataModule",
        "DataRelease",
        "Interconnect",
        "TunableModule",
        "directional_state",
        "quarter_wave_phase",
    ),
    "chiraljax.solve._metrics": (
        "absorption_efficiency",
        "directional_probability",
        "directionality",
        "optimal_fraction",
        "w_fidelity",
        "w_fidelity_halted",
        "w_fidelity_optimal",
        "AbstractMetric",
        "AbsorptionEfficiency",
        "ConservationError",
        "Directionality",
        "InFlight",
        "Output",
        "Population",
        "StorageWFidelity",
        "TotalOutput",
        "TransferEfficiency",
        "WFidelity",
    ),
    "chiraljax.experiment._protocols": (
        "ERROR_SOURCES",
        "ErrorBudget",
        "PulsePlan",
        "directional_emission",
        "error_budget",
        "route",
        "transfer",
        "w_state",
    ),
    "chiraljax.experiment._presets": ("Preset", "available_presets", "load_preset"),
    "chiraljax.network._mode_io": ("load_mode", "sampled_norm"),
    "chiraljax._plots": ("plot_result", "plot_sweep"),
}
_LAZY: dict[str, str] = {name: module for module, names in _LAZY_MODULES.items() for name in names}

__all__ = [
    "PRECISION",
    "complex_dtype",
    "real_dtype",
    "compilation_cache_dir",
    "ChiralJaxError",
    "ValidationError",
    "Space",
    "Operator",
    "SLH",
    "beam_splitter",
    "concat",
    "feedback",
    "phase_shifter",
    "series",
    "AbstractPulse",
    "Constant",
    "Gaussian",
    "GaussianMode",
    "Halted",
    "Sampled",
    "Scaled",
    "SechAbsorption",
    "SechEmission",
    "SechMode",
    "PiecewiseConstant",
    "CubicSpline",
    "Fourier",
    "Chebyshev",
    "GaussianEmission",
    "GaussianAbsorption",
    "TimeReversed",
    "Shaped",
    "Shifted",
    "Coupling",
    "Emitter",
    "Link",
    "Network",
    "OutputMode",
    "PhotonInput",
    "Port",
    "Scatterer",
    "LindbladModel",
    "compile_markov",
    "Result",
    "simulate",
    "Sector",
    "Full",
    "Delay",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    """Import the submodule that defines `name` on first access and keep the value here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names and the subpackages loaded so far (not the module's own imports)."""
    subpackages = {
        name
        for name, value in globals().items()
        if isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}" and not name.startswith("_")
    }
    return sorted(set(__all__) | subpackages)
