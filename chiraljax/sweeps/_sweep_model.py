r"""Sweeps of a Network: the generic sweep engine wired to `simulate`.

`sweep(network, axes, metrics=..., t_span=...)` evaluates, at every point of a parameter set,

$$ m_j(p) = f_j\big(\mathrm{simulate}(N \leftarrow p),\ N \leftarrow p\big), $$

where $N \leftarrow p$ is the Network with the swept parameters replaced
(`network.with_parameters`, so the structure never changes and one compile serves every point)
and $f_j$ are the metrics. The engine (`chiraljax.sweeps._sweep`) compiles `jit(vmap(...))` once, runs
it in chunks sharded over all devices, shows progress and saves chunks so that an interrupted
sweep resumes.

**Parameter names.** Axes and fixed values name the Network's parameters with the dotted
names of `network.parameters()` (`links.1.transmission`, `emitters.A0.decay`,
`controls.emit.kappa`, ...) or with these derived names (a table, `DERIVED`):

| name | sets | relation |
|---|---|---|
| `links.<i>.loss_db` | `links.<i>.transmission` | $\eta = 10^{-L/10}$ |
| `emitters.<name>.t1` | `emitters.<name>.decay` | $\gamma = 1/T_1$ |

A `*` (or `?`, `[AB]`: shell-style patterns) in a name sets every matching parameter to the
same value, e.g. `emitters.*.dephasing`, `links.*.loss_db` or `emitters.?1.detuning`. Values are checked against the physical range of the parameter they set
(transmissions in [0, 1], rates and delays >= 0, $T_1 > 0$, ...) before anything is computed,
because inside the compiled program a value outside it would give a silent wrong answer.

**Metrics.** A metric is a name -> either a string (table `METRICS`) or a function
`f(result, network) -> scalar`:

| string | value |
|---|---|
| `population:A1+B1` | summed final excitation of the named subsystems |
| `output:right` | photons that left through a channel by $t_1$ (`Result.channel_names`); `+` sums |
| `total_output:end` (or `:end,loss`) | summed output of all channels of the given kinds |
| `conservation_error` | $\lvert n_{\rm final} + \sum_k N_k - n_{\rm initial} \rvert$ |
| `in_flight` | excitation still travelling on delayed links at $t_1$ |
| `directionality:right` | share of the emitted photon leaving to the right (or `:left`) |
| `w_fidelity:A0+B0,A1+B1,right` | W-state fidelity of sender and receiver qubits (`chiraljax.solve._metrics`) |

A list of strings uses each string as the metric's name.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib.util
import inspect
import json
import os
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Unpack

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from chiraljax import _plots  # noqa: F401  (registers dataset.chiraljax.plot on sweep results)
from chiraljax._checks import ValidationError, did_you_mean, require
from chiraljax._precision import single_precision
from chiraljax.network._network import (
    PARAMETER_BOUNDS,
    PARAMETER_UNITS,
    Network,
    db_from_transmission,
    transmission_from_db,
)
from chiraljax.network._network_io import SimulationSettings, load_network
from chiraljax.solve import _metrics
from chiraljax.solve._methods import METHODS, Delay, Full, Method, Sector
from chiraljax.solve._result import Result
from chiraljax.solve._simulate import REPRESENTATIONS, auto_representation, simulate
from chiraljax.sweeps._sweep import AbstractAxis, Grid, Mode, RunOptions, check_run_options
from chiraljax.sweeps._sweep import sweep as sweep_function
from chiraljax.sweeps._sweep_store import check_output

MetricFunction = Callable[[Result, Network], Any]


# ------------------------------------------------------------------------- parameters


class _Derived(NamedTuple):
    """A convenience parameter: `name` (a template with `{key}`) sets the base parameter
    `target` (same key) to `transform(value)`; `low`/`high` bound the value the user gives;
    `inverse` reads it back from the base value."""

    name: str
    target: str
    transform: Callable[[Any], Any]
    low: float | None
    high: float | None
    open_low: bool
    inverse: Callable[[Any], Any]


def _t1(decay):
    with np.errstate(divide="ignore"):
        return 1.0 / np.asarray(decay, dtype=float)


#: Derived parameter names: template, the base parameter it sets, value -> base value, bounds,
#: base value -> value.
DERIVED: tuple[_Derived, ...] = (
    _Derived(
        "links.{key}.loss_db", "links.{key}.transmission", transmission_from_db, 0.0, None, False, db_from_transmission
    ),
    _Derived("emitters.{key}.t1", "emitters.{key}.decay", lambda x: 1.0 / x, 0.0, None, True, _t1),
)


def parameter_table(network: Network) -> list[dict[str, Any]]:
    """Every name a sweep of `network` accepts (base and derived), with its current value, its
    physical range and its units: rows {name, value, low, high, units, sets} (`sets` names the
    base parameter a derived name sets, else None)."""
    base = network.parameters()
    rows = []
    for name, value in base.items():
        low, high = PARAMETER_BOUNDS.get(name.rsplit(".", 1)[-1], (None, None))
        rows.append(
            {
                "name": name,
                "value": np.asarray(value).tolist(),
                "low": low,
                "high": high,
                "units": PARAMETER_UNITS.get(name.rsplit(".", 1)[-1]),
                "sets": None,
            }
        )
    for derived in DERIVED:
        for target, value in base.items():
            match = re.fullmatch(_template_regex(derived.target), target)
            if match:
                name = derived.name.format(**match.groupdict())
                rows.append(
                    {
                        "name": name,
                        "value": float(derived.inverse(np.asarray(value, dtype=float))) + 0.0,
                        "low": derived.low,
                        "high": derived.high,
                        "units": PARAMETER_UNITS.get(name.rsplit(".", 1)[-1]),
                        "sets": target,
                    }
                )
    return rows


def _template_regex(template: str) -> str:
    return re.escape(template).replace(r"\{key\}", r"(?P<key>.+)")


class _Setter(NamedTuple):
    """How one user-facing name becomes base-parameter updates."""

    targets: tuple[str, ...]
    transform: Callable[[Any], Any]
    low: float | None
    high: float | None
    open_low: bool


def _identity(x: Any) -> Any:
    return x


def _base_bounds(target: str) -> tuple[float | None, float | None]:
    return PARAMETER_BOUNDS.get(target.rsplit(".", 1)[-1], (None, None))


def _resolve_one(name: str, base: Collection[str]) -> _Setter | None:
    """The setter of one name without wildcards, or None if the name is unknown."""
    if name in base:
        low, high = _base_bounds(name)
        return _Setter((name,), _identity, low, high, False)
    for derived in DERIVED:
        match = re.fullmatch(_template_regex(derived.name), name)
        if match:
            target = derived.target.format(**match.groupdict())
            if target in base:
                return _Setter((target,), derived.transform, derived.low, derived.high, derived.open_low)
    return None


def parameter_names(network: Network) -> list[str]:
    """Every name a sweep of `network` accepts without wildcards: the base parameters of
    `network.parameters()` and the derived names of `DERIVED` that apply to them."""
    return [row["name"] for row in parameter_table(network)]


def _unknown(name: str, known: Sequence[str]) -> ValidationError:
    guess = did_you_mean(name, known, cutoff=0.5)
    return ValidationError(
        f"unknown parameter {name!r}: {guess}list the valid names with chiraljax.sweep_parameters(network)"
    )


def resolve_parameter(name: str, network: Network) -> _Setter:
    """How a sweep sets the parameter `name` of `network` (dotted, derived or wildcard name).

    **Arguments:**

    - `name`: a name of `parameter_names(network)`, or a shell-style pattern (`*`, `?`, `[..]`).
    - `network`: the Network.

    **Returns:**

    A setter: the base parameters it changes, the value transform and the value bounds.
    """
    require(isinstance(name, str) and name != "", f"parameter name {name!r}: give a dotted name")
    base = set(network.parameters())
    if not any(char in name for char in "*?["):
        setter = _resolve_one(name, base)
        if setter is None:
            raise _unknown(name, parameter_names(network))
        return setter
    matches = [n for n in parameter_names(network) if fnmatch.fnmatchcase(n, name)]
    require(
        bool(matches),
        f"parameter pattern {name!r} matches no parameter of the network; list the valid "
        "names with chiraljax.sweep_parameters(network)",
    )
    setters = [_resolve_one(match, base) for match in matches]
    kinds = {(s.transform, s.low, s.high, s.open_low) for s in setters}
    require(
        len(kinds) == 1,
        f"parameter pattern {name!r} matches parameters of different kinds ({', '.join(matches)}); "
        "make the pattern more specific",
    )
    first = setters[0]
    targets = tuple(t for s in setters for t in s.targets)
    return _Setter(targets, first.transform, first.low, first.high, first.open_low)


def value_range(axis: AbstractAxis) -> tuple[float, float]:
    if isinstance(axis, Grid):
        return float(axis.values.min()), float(axis.values.max())
    return float(axis.lo), float(axis.hi)


def check_range(name: str, setter: _Setter, lo: float, hi: float, where: str) -> None:
    if setter.low is not None:
        ok = lo > setter.low if setter.open_low else lo >= setter.low
        relation = ">" if setter.open_low else ">="
        require(ok, f"{where} {name!r}: values must be {relation} {setter.low}, got {lo:g}; change the range")
    if setter.high is not None:
        require(hi <= setter.high, f"{where} {name!r}: values must be <= {setter.high}, got {hi:g}; change the range")


def _updates(setters: Mapping[str, _Setter], values: Mapping[str, Any]) -> dict[str, Any]:
    """Base-parameter values from user-facing values."""
    updates: dict[str, Any] = {}
    for name, value in values.items():
        setter = setters[name]
        base_value = setter.transform(value)
        for target in setter.targets:
            updates[target] = base_value
    return updates


# ---------------------------------------------------------------------------- metrics


def _names(argument: str, field: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in argument.split("+"))
    require(argument != "" and all(parts), f"metric {field!r}: give names joined by '+', e.g. 'population:A1+B1'")
    return parts


def _population(argument: str, field: str) -> MetricFunction:
    return _metrics.Population(*_names(argument, field))


def _output(argument: str, field: str) -> MetricFunction:
    return _metrics.Output(*_names(argument, field))


def _total_output(argument: str, field: str) -> MetricFunction:
    return _metrics.TotalOutput(tuple(k.strip() for k in (argument or "end").split(",")))


def _conservation(argument: str, field: str) -> MetricFunction:
    require(argument == "", f"metric {field!r}: 'conservation_error' takes no argument")
    return _metrics.ConservationError()


def _in_flight(argument: str, field: str) -> MetricFunction:
    require(argument == "", f"metric {field!r}: 'in_flight' takes no argument")
    return _metrics.InFlight()


def _direction(argument: str, field: str) -> str:
    direction = argument.strip()
    require(direction in ("right", "left"), f"metric {field!r}: direction {direction!r}; use 'right' or 'left'")
    return direction


def _directionality(argument: str, field: str) -> MetricFunction:
    direction = _direction(argument, field)
    return _metrics.Directionality(direction, "left" if direction == "right" else "right")


def _w_fidelity(argument: str, field: str) -> MetricFunction:
    parts = argument.split(",")
    require(
        len(parts) == 3,
        f"metric {field!r}: expected 'w_fidelity:A0+B0,A1+B1,right' (sender qubits, receiver qubits, photon direction)",
    )
    first, second = _names(parts[0], field), _names(parts[1], field)
    direction = _direction(parts[2], field)
    return _metrics.StorageWFidelity(first, second, direction)


#: Metric kinds usable as strings 'kind' or 'kind:argument'.
METRICS: dict[str, Callable[[str, str], MetricFunction]] = {
    "population": _population,
    "output": _output,
    "total_output": _total_output,
    "conservation_error": _conservation,
    "in_flight": _in_flight,
    "directionality": _directionality,
    "w_fidelity": _w_fidelity,
}


def metric_function(spec: str | MetricFunction, name: str = "metric") -> MetricFunction:
    """The function `(result, network) -> scalar` of a metric given as a string or callable.

    **Arguments:**

    - `spec`: `'kind'` or `'kind:argument'` with a kind of `METRICS`, or a callable.
    - `name`: the metric's name (for error messages).
    """
    if callable(spec):
        parameters = inspect.signature(spec).parameters
        if len(parameters) == 1:
            return lambda result, network: spec(result)
        return spec
    require(isinstance(spec, str), f"metric {name!r}: give a string or a function, got {spec!r}")
    kind, _, argument = spec.partition(":")
    if kind not in METRICS:
        guess = did_you_mean(kind, METRICS, n=2)
        raise ValidationError(
            f"metric {name!r}: unknown kind {kind!r} in {spec!r}; {guess}use one of {', '.join(METRICS)}"
        )
    return METRICS[kind](argument, name)


def _metric_specs(
    metrics: str | Sequence[str] | Mapping[str, str | MetricFunction] | None,
) -> dict[str, str | MetricFunction]:
    require(
        metrics is not None and len(metrics) > 0, "metrics: give at least one metric, e.g. metrics=['population:A1+B1']"
    )
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, Mapping):
        for spec in metrics:
            require(isinstance(spec, str), f"metrics: {spec!r} needs a name; pass a dict {{name: function}}")
        metrics = {spec: spec for spec in metrics}
    for name in metrics:
        require(
            isinstance(name, str) and name != "" and "/" not in name,
            f"metric name {name!r}: give a non-empty name without '/'",
        )
    return dict(metrics)


def _metric_table(
    metrics: str | Sequence[str] | Mapping[str, str | MetricFunction] | None,
) -> dict[str, MetricFunction]:
    return {name: metric_function(spec, name) for name, spec in _metric_specs(metrics).items()}


# ------------------------------------------------------------------------------ sweep


def _representation(network: Network, swept: Collection[str], representation: str) -> str:
    require(
        representation in REPRESENTATIONS, f"representation={representation!r}; use one of {', '.join(REPRESENTATIONS)}"
    )
    if representation == "auto":
        # A swept delay or reflection is traced, so only the delay kernel can honour it.
        swept_delay = any(name.endswith(".delay") or name.startswith("scatterers.") for name in swept)
        representation = "delay" if swept_delay else auto_representation(network)
    if representation == "delay":
        require(
            importlib.util.find_spec("chiraljax.algebra._delay_model") is not None,
            "representation='delay' (needed for delays or reflections) is not available in this "
            "installation; use representation='sector' for the Markov limit",
        )
    return representation


def sweep_method(
    network: Network,
    swept: Collection[str],
    settings: SimulationSettings,
    *,
    method: Method | None = None,
    representation: str | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int | None = None,
    steps: int | None = None,
) -> Method:
    """The solver every point of a Network sweep runs.

    `method` when it is given (then none of the shorthand keywords). Otherwise the
    representation (the keyword, else the network file's, else 'auto': 'delay' when a delay or
    reflection is swept or present, else 'sector') with each option from the keyword, else the
    network file's `[simulation]` table, else the method's own default (`chiraljax.solve._methods`
    is the one home of the defaults). The delay kernel takes none of the adaptive options; its
    own (`dt`, `trajectories`) come in `method=cj.Delay(...)`."""
    options = {"rtol": rtol, "atol": atol, "max_steps": max_steps, "steps": steps}
    if method is not None:
        require(
            isinstance(method, METHODS),
            f"sweep: method must be cj.Sector, cj.Full or cj.Delay, got {type(method).__name__}",
        )
        given = sorted(k for k, v in {"representation": representation, **options}.items() if v is not None)
        require(not given, f"sweep: give the solver options ({', '.join(given)}) in method=, not both")
        return method
    chosen = _representation(network, swept, representation or settings.representation or "auto")
    if chosen == "delay":
        given = sorted(k for k, v in options.items() if v is not None)
        require(
            not given,
            f"sweep: {', '.join(given)} do not apply to the delay representation; its options go in "
            "method=cj.Delay(dt=..., trajectories=...)",
        )
        return Delay()
    from_file = {"rtol": settings.rtol, "atol": settings.atol, "max_steps": settings.max_steps}
    chosen_options = {k: v if v is not None else from_file.get(k) for k, v in options.items()}
    return (Full if chosen == "full" else Sector)(**{k: v for k, v in chosen_options.items() if v is not None})


def model_metrics(
    network: Network,
    metrics: Mapping[str, MetricFunction],
    setters: Mapping[str, _Setter],
    *,
    t_span: tuple[float, float],
    n_save: int,
    method: Method,
) -> Callable[[dict[str, jax.Array]], dict[str, jax.Array]]:
    """The pure point function the engine vmaps: parameters -> {metric: scalar}."""

    def evaluate(point: dict[str, jax.Array]) -> dict[str, jax.Array]:
        model = network.with_parameters(_updates(setters, point))
        result = simulate(model, t_span, n_save=n_save, method=method)
        values = {}
        for name, metric in metrics.items():
            try:
                value = metric(result, model)
            except ValidationError as err:
                raise ValidationError(f"metric {name!r}: {err}") from None
            values[name] = jnp.real(jnp.asarray(value))
        return values

    return evaluate


def sweep(
    target: Network | str | os.PathLike[str] | Callable[[dict[str, jax.Array]], Any],
    axes: Sequence[AbstractAxis],
    *,
    metrics: str | Sequence[str] | Mapping[str, str | MetricFunction] | None = None,
    t_span: tuple[float, float] | None = None,
    method: Method | None = None,
    representation: str | None = None,
    mode: Mode = "cartesian",
    fixed: Mapping[str, Any] | None = None,
    parameters: Collection[str] | None = None,
    n_save: int = 2,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int | None = None,
    steps: int | None = None,
    attrs: Mapping[str, Any] | None = None,
    **run: Unpack[RunOptions],
) -> xr.Dataset:
    r"""Sweep a Network's parameters (or any JAX function) and return a map of metrics.

    With a Network (or a network file, or a preset name) every point is
    $m_j = f_j(\mathrm{simulate}(N \leftarrow p))$: one compile, `vmap` in chunks, sharded over
    all local devices (see the module docstring for parameter names and metric strings). With
    a plain function `fn(params) -> {metric: scalar}` it is the generic engine
    (`chiraljax.sweeps._sweep.sweep`) and the Network-only arguments must be left out.

    All input (names, values against their physical range, metrics, output path) is checked
    before anything is computed.

    **Arguments:**

    - `target`: a `Network`, a network file (`.toml`/`.json`), a preset name, or a function.
    - `axes`: `Grid`, `Random`, `QuasiRandom` axes named by parameter.
    - `metrics`: metric strings, or {name: string or `f(result, network)` or `f(result)`}.
    - `t_span`: (t0, t1) of each simulation (required for a Network unless its network file
      gives one).
    - `method`: the solver of every point, `cj.Sector(...)`, `cj.Full(...)` or `cj.Delay(...)`
      (default: see `representation`).
    - `representation`: a shorthand for the method, as `simulate` (default: the network file's,
      else 'auto'); 'auto' picks 'delay' when delays or reflections are swept or present, else
      'sector'.
    - `mode`, `fixed`, `attrs`: as the engine; fixed values take the same names as axes.
    - `**run`: how the sweep runs, as the engine takes it (`RunOptions`: `chunk_size`, `out`,
      `overwrite`, `devices`, `progress`, `key`, `callback`).
    - `parameters`: valid names for a function target (a Network knows its own).
    - `n_save`: save times of each solve (two suffice for final-value metrics).
    - `rtol`, `atol`, `max_steps`, `steps`: shorthand options of the Lindblad method (defaults:
      the network file's, else the method's). `steps` (fixed 8th-order stepping, smooth
      controls) makes every point of a batch take the same steps, which is what batched sweeps
      need to run fast; it is checked against a tight adaptive solve before the sweep runs.

    **Returns:**

    An `xarray.Dataset`: one variable per metric over the sweep's dimensions, the swept
    parameters (by the names given) as coordinates, and attributes with the spec, timings and,
    for a Network, `representation`, `t_span` and `metrics` (JSON).
    """
    check_run_options("sweep", run)
    engine_options = dict(mode=mode, **run)
    out = run.get("out")
    extra = dict(attrs or {})
    if callable(target) and not isinstance(target, Network):
        require(
            metrics is None and t_span is None and representation is None and method is None,
            "sweep: metrics, t_span, method and representation apply to a Network; a function returns its own metrics",
        )
        return sweep_function(target, axes, fixed=fixed, parameters=parameters, attrs=extra, **engine_options)
    require(parameters is None, "sweep: parameters applies to a function; a Network lists its own")
    network, settings = load_target(target)
    table = _metric_table(metrics)
    t_span = settings.t_span if t_span is None else t_span
    require(t_span is not None and len(t_span) == 2, f"t_span={t_span!r}: give the simulation window (t0, t1)")
    t0, t1 = (float(x) for x in t_span)
    require(np.isfinite(t0) and np.isfinite(t1) and t1 > t0, f"t_span={t_span!r}: give finite times with t1 > t0")
    require(isinstance(n_save, int) and n_save >= 2, f"n_save={n_save!r}: give an integer >= 2")
    axes = list(axes)
    for axis in axes:
        require(isinstance(axis, AbstractAxis), f"axes: {axis!r} is not an axis; use Grid, Random or QuasiRandom")
    fixed = dict(fixed or {})
    setters: dict[str, _Setter] = {}
    for axis in axes:
        setter = resolve_parameter(axis.name, network)
        check_range(axis.name, setter, *value_range(axis), "axis")
        setters[axis.name] = setter
    for name, value in fixed.items():
        setter = resolve_parameter(name, network)
        array = np.asarray(value, dtype=float)
        require(bool(np.all(np.isfinite(array))), f"fixed[{name!r}] = {value!r}: give a finite value")
        check_range(name, setter, float(array.min()), float(array.max()), "fixed")
        setters[name] = setter
    targets = [t for s in setters.values() for t in s.targets]
    clashes = sorted({t for t in targets if targets.count(t) > 1})
    require(
        not clashes,
        f"parameter {', '.join(map(repr, clashes))} is set by more than one axis or "
        "fixed value; set each parameter once",
    )
    shorthand = dict(representation=representation, rtol=rtol, atol=atol, max_steps=max_steps, steps=steps)
    chosen = sweep_method(network, targets, settings, method=method, **shorthand)
    fn = model_metrics(network, table, setters, t_span=(t0, t1), n_save=n_save, method=chosen)
    if out is not None:  # the output is checked before the fixed-step check computes anything
        check_output(out)
    fixed_steps = getattr(chosen, "steps", None)
    if fixed_steps is not None:  # fixed steps are checked against a tight adaptive solve
        rtol_ref, atol_ref, agreement = fixed_step_check_tolerances()
        reference = dataclasses.replace(chosen, rtol=rtol_ref, atol=atol_ref, steps=None)
        exact = model_metrics(network, table, setters, t_span=(t0, t1), n_save=n_save, method=reference)
        verify_fixed_steps(fn, exact, axes, fixed, int(fixed_steps), agreement)
    described = {name: spec if isinstance(spec, str) else "function" for name, spec in _metric_specs(metrics).items()}
    extra.update(representation=chosen.representation, t_span=[t0, t1], metrics=json.dumps(described))
    return sweep_function(
        fn,
        axes,
        fixed=fixed,
        parameters=list(setters),
        attrs=extra,
        variable_attrs=_variable_attrs(described, [axis.name for axis in axes]),
        **engine_options,
    )


#: long_name of each metric kind ({} is its argument); every metric is a number of photons or a
#: probability, units "1".
METRIC_LONG_NAMES = {
    "population": "excitation of {}",
    "output": "photon number out through {}",
    "total_output": "photon number out through every channel",
    "conservation_error": "conservation error (emitters + outputs + in flight - initial)",
    "in_flight": "excitation in flight in the waveguide",
    "directionality": "directionality of the emission ({})",
    "w_fidelity": "W-state fidelity ({})",
}


def _variable_attrs(metrics: Mapping[str, str], parameters: Sequence[str]) -> dict[str, dict[str, str]]:
    """CF attributes of a Network sweep's variables: `long_name` and `units` of each metric
    (from its kind) and each swept parameter (units by the parameter's kind, `PARAMETER_UNITS`)."""
    out: dict[str, dict[str, str]] = {}
    for name, spec in metrics.items():
        kind, _, argument = spec.partition(":")
        template = METRIC_LONG_NAMES.get(kind)
        out[name] = {"units": "1", **({"long_name": template.format(argument or "all")} if template else {})}
    for name in parameters:
        unit = PARAMETER_UNITS.get(name.rsplit(".", 1)[-1])
        out[name] = {"long_name": f"network parameter {name}", **({"units": unit} if unit else {})}
    return out


#: How far a fixed-step metric may lie from the adaptive one (absolute, and relative to it).
FIXED_STEP_TOLERANCE = 1e-5
#: The same in single precision (`CHIRALJAX_PRECISION=float32`): its adaptive reference, at rtol
#: 1e-5, is good to ~1e-5 (roundoff moves a transfer by 5e-7 on a GPU, 3e-6 on a CPU).
FIXED_STEP_TOLERANCE_FLOAT32 = 1e-4


def fixed_step_check_tolerances() -> tuple[float, float, float]:
    """(rtol, atol) of the adaptive reference solve of `verify_fixed_steps` and the agreement
    asked for: rtol 1e-10, atol 1e-12 and `FIXED_STEP_TOLERANCE` in float64; in float32 (eps
    1.2e-7, where rtol 1e-10 can never be met and the solve runs out of steps) rtol 1e-5, atol
    1e-7 and `FIXED_STEP_TOLERANCE_FLOAT32`."""
    if single_precision():
        return 1e-5, 1e-7, FIXED_STEP_TOLERANCE_FLOAT32
    return 1e-10, 1e-12, FIXED_STEP_TOLERANCE


def verify_fixed_steps(
    fn: Callable,
    reference: Callable,
    axes: Sequence[AbstractAxis],
    fixed: Mapping[str, Any],
    steps: int,
    agreement: float = FIXED_STEP_TOLERANCE,
) -> None:
    """Check fixed stepping before a sweep reports: at the two corners of the axes (every
    axis at its lowest value, then at its highest) each metric from `steps` fixed steps must
    agree with a tight adaptive solve (`fixed_step_check_tolerances`) within `agreement`
    (absolute plus relative). Fixed steps carry no error estimate, and a conservation check
    cannot see a step too coarse for the rates (2 steps gave a transfer of 0.40 instead of
    0.577 with a conservation error of 3e-12)."""
    for corner in (0, 1):
        point = {name: jnp.asarray(value, dtype=float) for name, value in fixed.items()}
        point.update({axis.name: jnp.asarray(value_range(axis)[corner]) for axis in axes})
        coarse, exact = fn(point), reference(point)
        for name, value in exact.items():
            a, b = float(coarse[name]), float(value)
            if not np.isfinite(b):
                continue
            require(
                np.isfinite(a) and abs(a - b) <= agreement * (1 + abs(b)),
                f"steps = {steps}: fixed steps are too coarse for this network; at the "
                f"{'lowest' if corner == 0 else 'highest'} values of the axes the metric {name!r} is "
                f"{a:.9g} with {steps} fixed steps but {b:.9g} adaptively; raise steps or leave it "
                "out for adaptive stepping",
            )


def load_target(target: Network | str | os.PathLike[str]) -> tuple[Network, SimulationSettings]:
    """A Network, and the simulation settings that came with it, from what `sweep` accepts.

    **Arguments:**

    - `target`: a `Network`; a path ending in `.toml` or `.json` (a network file, whose
      `[simulation]` table supplies defaults); or the name of a preset of `chiraljax.presets`.

    **Returns:**

    `(network, settings)`; settings are empty for a Network or a preset.
    """
    if isinstance(target, Network):
        return target, SimulationSettings()
    require(
        isinstance(target, (str, os.PathLike)),
        f"sweep: target must be a Network, a network file or a preset name, got {type(target).__name__}",
    )
    if Path(target).suffix.lower() in (".toml", ".json"):
        return load_network_file(target)
    return load_preset(str(target)), SimulationSettings()


def load_network_file(path: str | os.PathLike[str]) -> tuple[Network, SimulationSettings]:
    """Read a network file (TOML or JSON; docs/network-format.md) and its `[simulation]` table."""
    path = Path(path)
    require(path.is_file(), f"network file {str(path)!r} does not exist; check the path")
    return load_network(path)


def load_preset(name: str) -> Network:
    """The transfer Network of the preset `name` (`chiraljax.experiment._presets`): its sender emits
    toward its receiver with the preset's pulse plan."""
    from chiraljax.experiment._presets import load_preset as load
    from chiraljax.experiment._protocols import transfer_network

    preset = load(name)
    require(
        preset.receiver is not None,
        f"preset {name!r} has no receiver (an emission-only preset); sweep a network file or "
        "a Network built from it instead",
    )
    return transfer_network(preset.line, preset.sender, preset.receiver, preset.plan)


def sweep_parameters(network: Network) -> list[str]:
    """The parameter names `sweep` accepts for `network` (base and derived; `*` also works)."""
    return parameter_names(load_target(network)[0])


__all__ = ["DERIVED", "METRICS", "load_target", "metric_function", "resolve_parameter", "sweep", "sweep_parameters"]
