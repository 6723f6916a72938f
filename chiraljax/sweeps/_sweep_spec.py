"""Sweep-spec files: which network, which axes, which metrics, where the result goes.

A spec is a TOML or JSON file (format in docs/sweep-spec.md, examples in examples/sweep_*.toml)
read by `load_sweep_spec` and run by `run_sweep_spec` (and by `chiraljax sweep SPEC`). The
whole file is checked before anything is computed: unknown tables and keys (with the closest
valid key), types, the network, every axis (parameter name, values and their physical range),
every metric and the output path. Each message names the field, e.g.
`spec.toml: axes[1].name: unknown parameter 'links.1.los_db': did you mean 'links.1.loss_db'?`.

Relative paths in a spec (network file, Python builder, output) are relative to the spec's
folder.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import xarray as xr

from chiraljax._checks import ValidationError, did_you_mean, require
from chiraljax._documents import read_document
from chiraljax.network._network import Network
from chiraljax.network._network_io import SimulationSettings
from chiraljax.solve._methods import Method, Sector
from chiraljax.solve._simulate import REPRESENTATIONS
from chiraljax.sweeps._sweep import AbstractAxis, ChunkDone, Grid, QuasiRandom, Random
from chiraljax.sweeps._sweep_model import (
    check_range,
    load_network_file,
    load_preset,
    metric_function,
    resolve_parameter,
    sweep,
    sweep_method,
    value_range,
)
from chiraljax.sweeps._sweep_store import check_output

#: Top-level tables of a spec and whether each is required.
TABLES: dict[str, bool] = {
    "network": True,
    "simulation": False,
    "axes": True,
    "metrics": True,
    "fixed": False,
    "sweep": False,
    "output": False,
}

_SOURCES = ("file", "preset", "python")
_NETWORK_KEYS = (*_SOURCES, "arguments")
_SIMULATION_KEYS = ("t_span", "representation", "n_save", "rtol", "atol", "max_steps", "steps")
_SWEEP_KEYS = ("mode", "chunk_size", "seed")
_OUTPUT_KEYS = ("path",)

#: Axis kinds: the keys each needs (besides `name` and `kind`) and the optional ones.
AXIS_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "grid": (("values",), ()),
    "linspace": (("lo", "hi", "n"), ()),
    "random": (("lo", "hi", "n"), ("seed",)),
    "quasirandom": (("lo", "hi", "n"), ("method", "seed")),
}


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A validated sweep spec.

    **Fields:**

    - `source`: where the spec came from (file path or '<dict>').
    - `network`: the Network to sweep; `network_source`: how it was named in the spec.
    - `axes`: the axes; `fixed`: parameters held at one value.
    - `metrics`: {name: metric string}.
    - `t_span`, `n_save`: the window and save times of each solve.
    - `method`: the solver of every point (`cj.Sector`, `cj.Full` or `cj.Delay`), resolved from
      the spec's `[simulation]` table, the network file's and the method's defaults
      (`sweep_method`); `representation` and `steps` read it.
    - `mode`, `chunk_size`, `seed`: sweep settings.
    - `out`: the output path from the spec, or None.
    """

    source: str
    network: Network
    network_source: str
    axes: tuple[AbstractAxis, ...]
    fixed: dict[str, float]
    metrics: dict[str, str]
    t_span: tuple[float, float]
    method: Method = Sector()
    n_save: int = 2
    mode: str = "cartesian"
    chunk_size: int | None = None
    seed: int = 0
    out: Path | None = None

    @property
    def representation(self) -> str:
        """'sector', 'full' or 'delay': the representation of `method`."""
        return self.method.representation

    @property
    def steps(self) -> int | None:
        """The method's fixed step count, or None for adaptive steps (and the delay kernel)."""
        return getattr(self.method, "steps", None)

    @property
    def n_points(self) -> int:
        """Points in the sweep (before any is computed)."""
        if self.mode == "zip":
            return self.axes[0].size
        grids = math.prod(axis.size for axis in self.axes if not axis.stochastic)
        samples = next((axis.size for axis in self.axes if axis.stochastic), 1)
        return grids * samples


class _Reader:
    """Typed access to one table of a spec, with errors that name the field."""

    def __init__(self, where: str, table: Any, allowed: tuple[str, ...]):
        require(isinstance(table, Mapping), f"{where}: expected a table, got {table!r}")
        self.where, self.table = where, table
        for key in table:
            if key not in allowed:
                guess = did_you_mean(str(key), allowed, n=1)
                raise ValidationError(f"{self._field(key)}: unknown key; {guess}valid keys: {', '.join(allowed)}")

    def _field(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else str(key)

    def has(self, key: str) -> bool:
        return key in self.table

    def get(
        self,
        key: str,
        kind: type | tuple[type, ...],
        default: Any = ...,
        *,
        check: Callable[[Any], bool] | None = None,
        expect: str = "",
    ) -> Any:
        if key not in self.table:
            require(default is not ..., f"{self._field(key)}: missing; {expect or 'add it'}")
            return default
        value = self.table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        numeric = float in kinds and isinstance(value, int) and not isinstance(value, bool)
        ok = numeric or (isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds))
        if ok and check is not None:
            ok = check(float(value) if numeric else value)
        require(ok, f"{self._field(key)} = {value!r}: expected {expect or _type_names(kinds)}")
        return float(value) if numeric else value


def _type_names(kinds: tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "a table",
        bool: "true or false",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _finite(value: Any) -> bool:
    return math.isfinite(value)


def _prefixed(where: str, action: Callable[[], Any]) -> Any:
    try:
        return action()
    except ValidationError as err:
        raise ValidationError(f"{where}: {err}") from None


def _load_python(reference: str, arguments: Mapping[str, Any], base: Path, allow_python: bool) -> Network:
    """Run the builder `file.py:function` beside the spec. A spec is data: this runs only with
    the caller's explicit consent, and only for a file in the spec's own folder (never a module
    from anywhere, which could name any function of any installed package)."""
    target, sep, attribute = reference.rpartition(":")
    require(
        bool(sep and target and attribute) and target.endswith(".py"),
        f"network.python = {reference!r}: expected 'file.py:function' with the file beside the spec",
    )
    require(
        allow_python,
        f"network.python = {reference!r} runs Python code; a sweep spec is data, so this needs your "
        "consent: pass --allow-python (chiraljax sweep) or allow_python=True if you trust the file",
    )
    folder = base.resolve()
    path = (folder / target).resolve()
    require(path.parent == folder, f"network.python: {target!r} is not a file beside the spec ({folder})")
    require(path.is_file(), f"network.python: file {str(path)!r} does not exist")
    name = f"_chiraljax_spec_network_{abs(hash(str(path)))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    builder = getattr(module, attribute, None)
    require(callable(builder), f"network.python: {target!r} has no function {attribute!r}")
    network = builder(**arguments)
    require(
        isinstance(network, Network), f"network.python: {reference!r} returned {type(network).__name__}, not a Network"
    )
    return network


def _network(data: Any, base: Path, allow_python: bool) -> tuple[Network, SimulationSettings, str]:
    table = _Reader("network", data, _NETWORK_KEYS)
    given = [key for key in _SOURCES if table.has(key)]
    require(len(given) == 1, f"network: give exactly one of {', '.join(_SOURCES)} (got {', '.join(given) or 'none'})")
    key = given[0]
    reference = table.get(key, str, check=bool, expect="a non-empty string")
    arguments = table.get("arguments", dict, {})
    require(
        key == "python" or not arguments, "network.arguments: only a python builder takes arguments; remove the table"
    )
    settings = SimulationSettings()
    if key == "file":
        network, settings = _prefixed("network.file", lambda: load_network_file(base / reference))
    elif key == "preset":
        network = _prefixed("network.preset", lambda: load_preset(reference))
    else:
        network = _load_python(reference, arguments, base, allow_python)
    return network, settings, f"{key}:{reference}"


def _axis(index: int, data: Any, network: Network) -> AbstractAxis:
    where = f"axes[{index}]"
    require(isinstance(data, Mapping), f"{where}: expected a table with name and kind")
    kind = data.get("kind")
    require(kind in AXIS_KINDS, f"{where}.kind = {kind!r}: use one of {', '.join(AXIS_KINDS)}")
    required, optional = AXIS_KINDS[kind]
    table = _Reader(where, data, ("name", "kind", *required, *optional))
    name = table.get("name", str, check=bool, expect="a parameter name, e.g. 'links.1.loss_db'")
    setter = _prefixed(f"{where}.name", lambda: resolve_parameter(name, network))
    if kind == "grid":
        values = table.get("values", list, check=bool, expect="a non-empty list of numbers")
        for k, value in enumerate(values):
            require(
                isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
                f"{where}.values[{k}] = {value!r}: expected a finite number",
            )
        axis: AbstractAxis = Grid(name, values)
    else:
        lo = table.get("lo", float, check=_finite, expect="a finite number")
        hi = table.get("hi", float, check=_finite, expect="a finite number")
        n = table.get("n", int, check=lambda v: v >= 1, expect="a positive integer")
        require(lo < hi if kind != "linspace" else lo <= hi, f"{where}: lo = {lo} must be smaller than hi = {hi}")
        if kind == "linspace":
            axis = Grid.linspace(name, lo, hi, n)
        elif kind == "random":
            axis = Random(name, lo, hi, n, seed=table.get("seed", int, None))
        else:
            method = table.get(
                "method", str, "sobol", check=lambda v: v in ("sobol", "halton"), expect="'sobol' or 'halton'"
            )
            axis = QuasiRandom(name, lo, hi, n, method=method, seed=table.get("seed", int, None))
    _prefixed(where, lambda: check_range(name, setter, *value_range(axis), "axis"))
    return axis


def parse_sweep_spec(
    data: Mapping[str, Any], base: str | os.PathLike[str] = ".", source: str = "<dict>", *, allow_python: bool = False
) -> SweepSpec:
    """Validate a spec given as a dict (the parsed TOML/JSON) and build the `SweepSpec`.

    **Arguments:**

    - `data`: the spec's tables.
    - `base`: folder that relative paths in the spec are taken from.
    - `source`: name of the spec in messages.
    - `allow_python`: consent to run `network.python` (a `file.py:function` beside the spec);
      without it such a spec is refused before any of its code runs.

    **Returns:**

    A `SweepSpec`; raises `ValidationError` naming the field on any problem.
    """
    base = Path(base)
    _Reader("", data, tuple(TABLES))
    for table, needed in TABLES.items():
        require(
            not needed or table in data,
            f"{table}: missing; a spec needs the tables {', '.join(t for t, n in TABLES.items() if n)}",
        )
    network, settings, network_source = _network(data["network"], base, allow_python)

    # The network file's [simulation] table gives defaults; the spec's own table overrides.
    simulation = _Reader("simulation", data.get("simulation", {}), _SIMULATION_KEYS)
    file_span = None if settings.t_span is None else list(settings.t_span)
    t_span = simulation.get(
        "t_span",
        list,
        file_span,
        check=lambda v: (
            len(v) == 2 and all(isinstance(x, (int, float)) and math.isfinite(x) for x in v) and v[1] > v[0]
        ),
        expect="[t0, t1], finite numbers with t1 > t0",
    )
    require(t_span is not None, "simulation.t_span: missing; give [t0, t1] (the network has no [simulation] t_span)")
    representation = simulation.get(
        "representation", str, None, check=lambda v: v in REPRESENTATIONS, expect=f"one of {', '.join(REPRESENTATIONS)}"
    )
    n_save = simulation.get("n_save", int, 2, check=lambda v: v >= 2, expect="an integer >= 2")
    tolerance = {"check": lambda v: 0 < v < 1, "expect": "a number in (0, 1)"}
    positive = {"check": lambda v: v >= 1, "expect": "a positive integer"}
    options = {
        "rtol": simulation.get("rtol", float, None, **tolerance),
        "atol": simulation.get("atol", float, None, **tolerance),
        "max_steps": simulation.get("max_steps", int, None, **positive),
        "steps": simulation.get("steps", int, None, **positive),
    }

    axes_data = data["axes"]
    require(isinstance(axes_data, list) and len(axes_data) > 0, "axes: give at least one [[axes]] table")
    axes = tuple(_axis(k, axis, network) for k, axis in enumerate(axes_data))

    fixed_data = data.get("fixed", {})
    require(isinstance(fixed_data, Mapping), "fixed: expected a table of parameter = value")
    fixed: dict[str, float] = {}
    for name, value in fixed_data.items():
        where = f"fixed.{name}"
        require(
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
            f"{where} = {value!r}: expected a finite number",
        )
        setter = _prefixed(where, lambda: resolve_parameter(name, network))
        _prefixed(where, lambda: check_range(name, setter, float(value), float(value), "fixed"))
        fixed[name] = float(value)

    metrics_data = data["metrics"]
    require(
        isinstance(metrics_data, Mapping) and len(metrics_data) > 0,
        'metrics: give a table of name = "metric", e.g. transfer = "population:A1+B1"',
    )
    for name, spec in metrics_data.items():
        require(isinstance(spec, str), f"metrics.{name} = {spec!r}: expected a metric string")
        require("/" not in name, f"metrics.{name}: a metric name cannot contain '/'")
        _prefixed(f"metrics.{name}", lambda: metric_function(spec, name))

    sweep_table = _Reader("sweep", data.get("sweep", {}), _SWEEP_KEYS)
    mode = sweep_table.get(
        "mode", str, "cartesian", check=lambda v: v in ("cartesian", "zip"), expect="'cartesian' or 'zip'"
    )
    chunk_size = sweep_table.get("chunk_size", int, None, check=lambda v: v >= 1, expect="a positive integer")
    seed = sweep_table.get("seed", int, 0, check=lambda v: v >= 0, expect="a non-negative integer")
    names = [axis.name for axis in axes] + list(fixed)  # both are traced into the solve, as in `sweep`
    swept = [t for name in names for t in resolve_parameter(name, network).targets]
    method = _prefixed(
        "simulation", lambda: sweep_method(network, swept, settings, representation=representation, **options)
    )
    if mode == "zip":
        sizes = {axis.name: axis.size for axis in axes}
        require(len(set(sizes.values())) == 1, f"sweep.mode = 'zip' needs axes of equal length, got {sizes}")

    output = _Reader("output", data.get("output", {}), _OUTPUT_KEYS)
    path = output.get("path", str, None, check=bool, expect="a file name ending in .nc or .zarr")
    out = None
    if path is not None:
        out = _prefixed("output.path", lambda: check_output(base / path))

    return SweepSpec(
        source=source,
        network=network,
        network_source=network_source,
        axes=axes,
        fixed=fixed,
        metrics=dict(metrics_data),
        t_span=(float(t_span[0]), float(t_span[1])),
        method=method,
        n_save=n_save,
        mode=mode,
        chunk_size=chunk_size,
        seed=seed,
        out=out,
    )


def load_sweep_spec(path: str | os.PathLike[str], *, allow_python: bool = False) -> SweepSpec:
    """Read and validate a sweep-spec file (`.toml` or `.json`).

    **Arguments:**

    - `path`: the spec file.
    - `allow_python`: consent to run the spec's `network.python` builder (a file beside the
      spec); a spec is data, and without consent no code named in it runs.

    **Returns:**

    A `SweepSpec`. Any problem raises `ValidationError` starting with the file name and the
    field.
    """
    path = Path(path)
    data = read_document(path, "sweep spec")
    require(isinstance(data, dict), f"{path}: the top level must be a table/object")
    return _prefixed(str(path), lambda: parse_sweep_spec(data, path.parent, str(path), allow_python=allow_python))


def run_sweep_spec(
    spec: SweepSpec,
    *,
    out: str | os.PathLike[str] | None = None,
    chunk_size: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    devices: list[jax.Device] | None = None,
    callback: Callable[[ChunkDone], None] | None = None,
) -> xr.Dataset:
    """Run a validated spec (resuming an interrupted run at the same output).

    **Arguments:**

    - `spec`: from `load_sweep_spec` or `parse_sweep_spec`.
    - `out`: output path, overriding the spec's `output.path`.
    - `chunk_size`: overrides `sweep.chunk_size`.
    - `overwrite`, `progress`, `devices`, `callback`: as `sweep`.

    **Returns:**

    The result Dataset (also written to the output path when there is one); its attributes
    record the spec file and network source.
    """
    return sweep(
        spec.network,
        spec.axes,
        metrics=spec.metrics,
        t_span=spec.t_span,
        method=spec.method,
        mode=spec.mode,
        fixed=spec.fixed,
        n_save=spec.n_save,
        chunk_size=chunk_size or spec.chunk_size,
        out=out if out is not None else spec.out,
        overwrite=overwrite,
        devices=devices,
        progress=progress,
        key=spec.seed,
        callback=callback,
        attrs={"spec_file": spec.source, "network": spec.network_source},
    )


__all__ = ["AXIS_KINDS", "SweepSpec", "load_sweep_spec", "parse_sweep_spec", "run_sweep_spec"]
