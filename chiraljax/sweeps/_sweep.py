r"""Batched parameter sweeps: `jit(vmap(fn))` over a list of points, in chunks, on all devices.

A sweep evaluates a pure JAX metric function `fn({name: scalar}) -> {metric: scalar}` on every
point of a parameter set built from axes:

- `Grid` (explicit values, or `Grid.linspace`), `Random` (uniform) and `QuasiRandom` (scrambled
  Sobol or Halton, `scipy.stats.qmc`).
- `mode="cartesian"` crosses the axes; all random and quasi-random axes are sampled jointly
  (one $d$-dimensional low-discrepancy sequence for the quasi-random ones) and therefore zipped
  into a single `sample` dimension, crossed with the grids. `mode="zip"` zips every axis into
  one `point` dimension (equal lengths).

**How the work is done.** The points are flattened into a list of $N$ and evaluated in chunks
of $c$ points. `jit(vmap(fn))` is compiled once, ahead of time, for a batch of $b$ points,
$b = c$ rounded up to a multiple of the device count $D$; the last chunk is padded (with copies
of its last point) so that the compiled shape never changes. The batch axis is sharded over a
1-d `jax.sharding.Mesh` named `'batch'` with `NamedSharding(mesh, P('batch'))`; fixed values are
replicated. Chunk $k+1$ is dispatched before chunk $k$ is copied back, so saving overlaps with
compute.

**Default chunk size.** A per-point memory estimate $m$ is read off the jaxpr of `fn` at one
point: the bytes of every value it creates, nested jaxprs (loops, conditionals, solver steps)
included and counted once, i.e. as if nothing were freed. The chunk gets a quarter of the memory
of the devices (GPU/TPU: `bytes_limit` of each device times $D$; CPU: the host's physical
memory), $c = \min(\lfloor M / 4m \rfloor, 2^{16}, N)$, at least $D$. The compiled program's own
estimate (`compiled.memory_analysis()`) is recorded in the result's attributes for comparison.
Pass `chunk_size` to override.

**Persistence.** With `out=path` every finished chunk is saved atomically in `<out>.chunks/`
with a hash of the spec (points, fixed values, precision, and the jaxpr of `fn`, so that an
edited metric function is noticed); the final Dataset is written atomically to `out` and the
folder removed. Rerunning the same sweep after an interrupt (Ctrl-C, kill) recomputes only the
missing chunks; rerunning a finished one loads `out`. See `chiraljax.sweeps._sweep_store`.

**Several hosts.** The same script runs on every host (one process per host, or per GPU):

```python
import jax
jax.distributed.initialize()  # or coordinator_address="host0:1234", num_processes=P,
                              #    process_id=i on clusters without auto-detection
import chiraljax as cj
ds = cj.sweep(fn, axes, out="/shared/scan.nc")
```

`jax.devices()` then lists the devices of all hosts, the mesh spans them, each process feeds
the shards of its own devices (`jax.make_array_from_callback`) and receives the replicated
result. Process 0 alone writes files and shows progress, so `out` must be on a filesystem that
all hosts see, and process 0's view of the finished chunks is broadcast to the others when
resuming. On one host `jax.distributed.initialize` is not needed and nothing changes.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import math
import os
import re
import time
import warnings
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, ClassVar, Literal, NamedTuple, TypedDict

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from chiraljax._checks import ValidationError, did_you_mean, require
from chiraljax._compiler import bulk_compiler_options
from chiraljax._limits import require_memory
from chiraljax._precision import PRECISION, real_dtype
from chiraljax._provenance import provenance
from chiraljax.sweeps._sweep_store import (
    ChunkStore,
    check_output,
    discard_sidecar,
    open_chunk_store,
    read_result,
    sidecar_path,
    write_result,
)

Mode = Literal["cartesian", "zip"]

#: Dimension names the engine creates; no axis may use them.
SAMPLE_DIM = "sample"
POINT_DIM = "point"
_MAX_CHUNK = 1 << 16
_MEMORY_FRACTION = 0.25


# ---------------------------------------------------------------------------------- axes


def _check_name(name: object) -> None:
    require(isinstance(name, str) and name != "", f"axis name {name!r}: give a non-empty string naming the parameter")
    require(
        name not in (SAMPLE_DIM, POINT_DIM),
        f"axis name {name!r} is reserved for the sweep's dimensions; rename the parameter",
    )


def _check_count(name: str, n: int) -> None:
    require(
        isinstance(n, (int, np.integer)) and n >= 1, f"axis {name!r}: n={n!r} points; an axis needs at least one point"
    )


def _check_finite_bounds(name: str, lo: float, hi: float) -> None:
    require(math.isfinite(lo) and math.isfinite(hi), f"axis {name!r}: bounds lo={lo}, hi={hi} must be finite numbers")


def _check_interval(name: str, lo: float, hi: float, n: int) -> None:
    _check_count(name, n)
    _check_finite_bounds(name, lo, hi)
    require(lo < hi, f"axis {name!r}: lo={lo} must be smaller than hi={hi}")


class AbstractAxis(eqx.Module):
    """One swept parameter: a name and the values it takes."""

    name: eqx.AbstractVar[str]
    #: Whether the values are drawn at random (such axes are sampled jointly and zipped).
    stochastic: ClassVar[bool] = False

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """Number of values on the axis."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """A JSON-able description of the axis, recorded in the result's attributes."""


class Grid(AbstractAxis):
    """A parameter on explicit values.

    **Arguments:**

    - `name`: the parameter name.
    - `values`: a non-empty 1-d sequence of finite real numbers.
    """

    name: str
    values: np.ndarray

    def __init__(self, name: str, values: Sequence[float] | np.ndarray):
        _check_name(name)
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValidationError(f"axis {name!r}: values must be real numbers, got {values!r}") from None
        require(array.ndim == 1, f"axis {name!r}: values must be 1-d, got shape {array.shape}")
        require(array.size > 0, f"axis {name!r} is empty; give at least one value")
        bad = np.flatnonzero(~np.isfinite(array))
        require(
            bad.size == 0,
            f"axis {name!r}: values must be finite, but value {bad[:1].tolist()} is "
            f"{array[bad[:1]].tolist()}; remove NaN/inf entries",
        )
        self.name = name
        self.values = array

    @classmethod
    def linspace(cls, name: str, lo: float, hi: float, n: int) -> Grid:
        """`n` evenly spaced values from `lo` to `hi` (both included)."""
        _check_count(name, n)
        _check_finite_bounds(name, lo, hi)
        return cls(name, np.linspace(lo, hi, int(n)))

    @property
    def size(self) -> int:
        return int(self.values.size)

    def describe(self) -> dict[str, Any]:
        return {"kind": "grid", "name": self.name, "values": self.values.tolist()}


class Random(AbstractAxis):
    r"""A parameter drawn uniformly from $[lo, hi)$.

    **Arguments:**

    - `name`: the parameter name.
    - `lo`, `hi`: finite bounds, `lo < hi`.
    - `n`: number of draws.
    - `seed`: seeds this axis; None takes the sweep's `key`. Draws are independent per axis name.
    """

    name: str
    lo: float
    hi: float
    n: int
    seed: int | None = None
    stochastic: ClassVar[bool] = True

    def __check_init__(self) -> None:
        _check_name(self.name)
        _check_interval(self.name, self.lo, self.hi, self.n)

    @property
    def size(self) -> int:
        return int(self.n)

    def describe(self) -> dict[str, Any]:
        return {"kind": "random", **_bounds_record(self), "seed": self.seed}


class QuasiRandom(AbstractAxis):
    r"""A parameter on a scrambled low-discrepancy sequence in $[lo, hi)$.

    All quasi-random axes of a sweep are sampled jointly from one $d$-dimensional sequence, so
    they must agree on `method` and `seed`.

    **Arguments:**

    - `name`: the parameter name.
    - `lo`, `hi`: finite bounds, `lo < hi`.
    - `n`: number of samples (Sobol is best balanced for powers of two).
    - `method`: `"sobol"` or `"halton"`.
    - `seed`: the scrambling seed; None takes the sweep's `key`.
    """

    name: str
    lo: float
    hi: float
    n: int
    method: Literal["sobol", "halton"] = "sobol"
    seed: int | None = None
    stochastic: ClassVar[bool] = True

    def __check_init__(self) -> None:
        _check_name(self.name)
        _check_interval(self.name, self.lo, self.hi, self.n)
        require(
            self.method in _QMC_ENGINES,
            f"axis {self.name!r}: method={self.method!r}; use one of {', '.join(_QMC_ENGINES)}",
        )

    @property
    def size(self) -> int:
        return int(self.n)

    def describe(self) -> dict[str, Any]:
        return {"kind": "quasirandom", **_bounds_record(self), "method": self.method, "seed": self.seed}


#: method -> the name of its engine class in `scipy.stats.qmc` (imported when first sampled).
_QMC_ENGINES = {"sobol": "Sobol", "halton": "Halton"}


def _bounds_record(axis: Random | QuasiRandom) -> dict[str, Any]:
    return {"name": axis.name, "lo": float(axis.lo), "hi": float(axis.hi), "n": int(axis.n)}


def _key_entropy(key: int | jax.Array | None) -> list[int]:
    if key is None:
        return [0]
    if isinstance(key, (int, np.integer)):
        require(key >= 0, f"key={key}: give a non-negative integer seed or a jax PRNG key")
        return [int(key)]
    array = jnp.asarray(key)
    if jnp.issubdtype(array.dtype, jax.dtypes.prng_key):
        array = jax.random.key_data(array)
    return np.asarray(array, dtype=np.uint32).ravel().tolist()


def _entropy(seed: int | None, key_entropy: list[int]) -> list[int]:
    return key_entropy if seed is None else [int(seed)]


def _sample_stochastic(axes: Sequence[AbstractAxis], key_entropy: list[int]) -> dict[str, np.ndarray]:
    """Draw the values of the random and quasi-random axes."""
    values: dict[str, np.ndarray] = {}
    for axis in axes:
        if isinstance(axis, Random):
            sequence = np.random.SeedSequence(
                _entropy(axis.seed, key_entropy), spawn_key=(zlib.crc32(axis.name.encode()),)
            )
            values[axis.name] = np.random.default_rng(sequence).uniform(axis.lo, axis.hi, axis.n)
    joint = [axis for axis in axes if isinstance(axis, QuasiRandom)]
    if joint:
        from scipy.stats import qmc

        first = joint[0]
        for axis in joint[1:]:
            require(
                (axis.method, axis.seed) == (first.method, first.seed),
                f"axes {first.name!r} and {axis.name!r}: quasi-random axes are sampled jointly "
                "and must share method and seed",
            )
            require(
                axis.n == first.n,
                f"axes {first.name!r} (n={first.n}) and {axis.name!r} (n={axis.n}): "
                "quasi-random axes are sampled jointly and need the same n",
            )
        rng = np.random.default_rng(np.random.SeedSequence(_entropy(first.seed, key_entropy)))
        engine = getattr(qmc, _QMC_ENGINES[first.method])(len(joint), scramble=True, rng=rng)
        with warnings.catch_warnings():
            # Sobol warns when n is not a power of two; the points remain valid.
            warnings.simplefilter("ignore", UserWarning)
            unit = engine.random(first.n)
        scaled = qmc.scale(unit, [a.lo for a in joint], [a.hi for a in joint])
        for column, axis in enumerate(joint):
            values[axis.name] = scaled[:, column]
    return values


# ---------------------------------------------------------------------------------- plan


class SweepPlan(eqx.Module):
    """The validated, materialised point set of a sweep.

    **Arguments:**

    - `mode`: `"cartesian"` or `"zip"`.
    - `dims`: names of the result's dimensions.
    - `shape`: their sizes; `prod(shape)` points in all.
    - `coords`: parameter name -> (dimension, values) for the result's coordinates.
    - `points`: parameter name -> flat values, one per point, in C order over `dims`.
    - `fixed`: values passed unchanged to every point.
    - `spec`: JSON-able description (axes, mode, fixed, seed).
    """

    mode: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    coords: dict[str, tuple[str, np.ndarray]]
    points: dict[str, np.ndarray]
    fixed: dict[str, np.ndarray]
    spec: dict[str, Any]

    @property
    def n_points(self) -> int:
        return math.prod(self.shape)


def _check_known(names: Sequence[str], parameters: Collection[str] | None) -> None:
    if parameters is None:
        return
    valid = sorted(parameters)
    for name in (name for name in names if name not in parameters):
        guess = did_you_mean(name, valid, n=5, cutoff=0.5)
        raise ValidationError(f"unknown parameter {name!r}: {guess}(valid names: {', '.join(valid)})")


def _check_fixed(fixed: Mapping[str, Any]) -> dict[str, np.ndarray]:
    converted: dict[str, np.ndarray] = {}
    for name, value in fixed.items():
        try:
            array = np.asarray(value)
        except (TypeError, ValueError):
            raise ValidationError(f"fixed[{name!r}]: not an array ({value!r})") from None
        require(array.dtype.kind in "biuf", f"fixed[{name!r}]: expected real numbers, got dtype {array.dtype}")
        require(bool(np.all(np.isfinite(array))), f"fixed[{name!r}] contains NaN or inf; give finite values")
        converted[name] = array.astype(real_dtype()) if array.dtype.kind == "f" else array
    return converted


def plan_sweep(
    axes: Sequence[AbstractAxis],
    *,
    mode: Mode = "cartesian",
    fixed: Mapping[str, Any] | None = None,
    parameters: Collection[str] | None = None,
    key: int | jax.Array | None = None,
) -> SweepPlan:
    """Validate the axes and build the list of points, without computing anything.

    **Arguments:**

    - `axes`: the swept parameters.
    - `mode`: `"cartesian"` (product; random axes zipped into one `sample` dimension) or
      `"zip"` (all axes zipped into one `point` dimension, equal lengths).
    - `fixed`: parameters held at one value (scalars or arrays), passed to every point.
    - `parameters`: the valid parameter names; None accepts any name.
    - `key`: seed (int or jax PRNG key) of random axes that have no seed of their own.

    **Returns:**

    A `SweepPlan`.
    """
    require(mode in ("cartesian", "zip"), f"mode={mode!r}; use 'cartesian' or 'zip'")
    axes = list(axes)
    require(len(axes) > 0, "axes is empty; give at least one axis to sweep")
    for axis in axes:
        require(isinstance(axis, AbstractAxis), f"axes: {axis!r} is not an axis; use Grid, Random or QuasiRandom")
    fixed_values = _check_fixed(fixed or {})
    names = [axis.name for axis in axes] + list(fixed_values)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    require(
        not duplicates,
        f"parameter {', '.join(map(repr, duplicates))} is given more than once (axes and "
        "fixed together); give each parameter once",
    )
    _check_known(names, parameters)
    if mode == "zip":
        sizes = {axis.name: axis.size for axis in axes}
        require(
            len(set(sizes.values())) == 1,
            f"mode='zip' needs axes of equal length, got {sizes}; make them equal or use mode='cartesian'",
        )
    else:
        sizes = {axis.name: axis.size for axis in axes if axis.stochastic}
        require(
            len(set(sizes.values())) <= 1,
            f"random axes are sampled jointly and zipped, so they need equal n, got {sizes}",
        )

    key_entropy = _key_entropy(key)
    values = _sample_stochastic(axes, key_entropy)
    values.update({axis.name: axis.values for axis in axes if isinstance(axis, Grid)})

    if mode == "zip":
        dims: tuple[str, ...] = (POINT_DIM,)
        dim_of = {axis.name: POINT_DIM for axis in axes}
    else:
        dim_of = {axis.name: SAMPLE_DIM if axis.stochastic else axis.name for axis in axes}
        dims = tuple(dict.fromkeys(dim_of[axis.name] for axis in axes))
    shape = tuple(next(values[n].size for n in dim_of if dim_of[n] == d) for d in dims)
    n_points = math.prod(shape)
    # the index grid and one value per axis and point, then at least one result per point
    require_memory(
        f"the sweep grid of {n_points:.4g} points ({' x '.join(str(n) for n in shape)})",
        8.0 * n_points * (2 * len(shape) + len(axes) + 1),
        "use fewer points per axis",
    )
    index = np.indices(shape).reshape(len(shape), -1)
    points = {name: values[name][index[dims.index(dim_of[name])]] for name in dim_of}
    spec = {
        "mode": mode,
        "axes": [axis.describe() for axis in axes],
        "fixed": {name: value.tolist() for name, value in fixed_values.items()},
        "key": key_entropy,
    }
    return SweepPlan(
        mode=mode,
        dims=dims,
        shape=shape,
        coords={name: (dim_of[name], values[name]) for name in dim_of},
        points=points,
        fixed=fixed_values,
        spec=spec,
    )


# ---------------------------------------------------------------------------------- probe


class _Probe(NamedTuple):
    metrics: tuple[str, ...]
    dtypes: tuple[np.dtype, ...]
    bytes_per_point: int
    fingerprint: str


def _leaf_name(path: tuple[Any, ...]) -> str:
    parts = []
    for entry in path:
        for attribute in ("key", "name", "idx"):
            if hasattr(entry, attribute):
                parts.append(str(getattr(entry, attribute)))
                break
    return ".".join(parts) or "value"


def _jaxpr_bytes(jaxpr: Any) -> int:
    """Bytes of every value a jaxpr creates, nested jaxprs counted once each."""
    inner = getattr(jaxpr, "jaxpr", jaxpr)
    total = sum(math.prod(v.aval.shape) * v.aval.dtype.itemsize for v in inner.invars)
    for equation in inner.eqns:
        total += sum(
            math.prod(v.aval.shape) * v.aval.dtype.itemsize for v in equation.outvars if hasattr(v.aval, "shape")
        )
        for param in equation.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                if hasattr(sub, "eqns") or hasattr(getattr(sub, "jaxpr", None), "eqns"):
                    total += _jaxpr_bytes(sub)
    return total


_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")


def _probe(fn: Callable[..., Any], plan: SweepPlan) -> _Probe:
    """Trace `fn` at one point: check its outputs, estimate its memory, fingerprint it."""
    point = {name: jnp.zeros((), real_dtype()) for name in plan.points}

    def at_point(p: dict[str, jax.Array], fx: dict[str, jax.Array]) -> Any:
        return fn({**fx, **p})

    fixed = {name: jnp.asarray(value) for name, value in plan.fixed.items()}
    try:
        closed = jax.make_jaxpr(at_point, return_shape=True)(point, fixed)
    except KeyError as err:
        raise ValidationError(
            f"the metric function asked for parameter {err.args[0]!r}, which is neither an "
            f"axis nor fixed (have {sorted(point) + sorted(fixed)}); add it to axes or fixed"
        ) from None
    jaxpr, shapes = closed
    leaves = jax.tree_util.tree_flatten_with_path(shapes)[0]
    require(len(leaves) > 0, "the metric function returned nothing; return a dict of scalars")
    metrics = tuple(_leaf_name(path) for path, _ in leaves)
    for name, (_, leaf) in zip(metrics, leaves):
        require(
            leaf.shape == (),
            f"metric {name!r} has shape {leaf.shape} per point; return scalars (reduce it, or "
            "return its entries as separate metrics)",
        )
        require(
            np.dtype(leaf.dtype).kind in "biuf",
            f"metric {name!r} has dtype {leaf.dtype}; return real numbers (e.g. abs or real of a complex amplitude)",
        )
    require(len(set(metrics)) == len(metrics), f"metric names {metrics} are not unique")
    digest = hashlib.sha256(_ADDRESS.sub("0x", str(jaxpr)).encode())
    for const in jaxpr.consts:
        digest.update(np.asarray(const).tobytes())
    return _Probe(
        metrics=metrics,
        dtypes=tuple(np.dtype(leaf.dtype) for _, leaf in leaves),
        bytes_per_point=max(_jaxpr_bytes(jaxpr), 8),
        fingerprint=digest.hexdigest(),
    )


def _spec_hash(plan: SweepPlan, probe: _Probe) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(plan.spec, sort_keys=True).encode())
    digest.update(probe.fingerprint.encode())
    digest.update(str(real_dtype()).encode())
    for name in sorted(plan.points):
        digest.update(name.encode())
        digest.update(plan.points[name].tobytes())
    return digest.hexdigest()[:32]


# ---------------------------------------------------------------------------------- engine


def _memory_budget(devices: Sequence[jax.Device]) -> int:
    stats = devices[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"]) * len(devices)
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def default_chunk_size(bytes_per_point: int, n_points: int, devices: Sequence[jax.Device]) -> int:
    """Points per chunk from a per-point memory estimate (see the module docstring).

    **Arguments:**

    - `bytes_per_point`: estimated memory of one point.
    - `n_points`: points in the sweep.
    - `devices`: the devices the batch is sharded over.

    **Returns:**

    The chunk size: at least one point per device, a multiple of the device count unless the
    whole sweep fits in one chunk.
    """
    fit = int(_memory_budget(devices) * _MEMORY_FRACTION) // max(bytes_per_point, 1)
    size = min(max(fit, len(devices)), _MAX_CHUNK)
    if size >= n_points:
        return n_points
    return max(size - size % len(devices), len(devices))


class RunOptions(TypedDict, total=False):
    """How a sweep runs, whatever it evaluates: the keywords `sweep` documents (chunk_size,
    out, overwrite, devices, progress, key, callback); a Network sweep passes them on as they are."""

    chunk_size: int | None
    out: str | os.PathLike[str] | None
    overwrite: bool
    devices: Sequence[jax.Device] | None
    progress: bool
    key: int | jax.Array | None
    callback: Callable[[ChunkDone], None] | None


def check_run_options(owner: str, options: Mapping[str, Any]) -> None:
    """Refuse keywords that are not `RunOptions`, with the closest names."""
    known = list(RunOptions.__annotations__)
    for name in options:
        require(
            name in known, f"{owner}: unknown option {name!r}; {did_you_mean(name, known)}options: {', '.join(known)}"
        )


class ChunkDone(NamedTuple):
    """Reported to `sweep`'s `callback` after each computed chunk is stored."""

    index: int
    start: int
    stop: int
    n_chunks: int


class SweepCost(NamedTuple):
    """What a sweep cost, read from its result's attributes."""

    points_per_second: float
    compile_time_s: float
    eval_time_s: float
    points_computed: int
    n_devices: int


def sweep_cost(result: xr.Dataset) -> SweepCost:
    """The cost of the sweep that produced `result` (timings of the run that finished it)."""
    attrs = result.attrs
    return SweepCost(
        points_per_second=float(attrs["points_per_second"]),
        compile_time_s=float(attrs["compile_time_s"]),
        eval_time_s=float(attrs["eval_time_s"]),
        points_computed=int(attrs["points_computed"]),
        n_devices=int(attrs["n_devices"]),
    )


@dataclasses.dataclass(frozen=True)
class _Runner:
    """The compiled batch function and the shardings it expects."""

    compiled: Callable[..., Any]  # the jitted, lowered and compiled batch function
    batch: int
    points_sharding: NamedSharding
    fixed_sharding: NamedSharding

    def put(self, values: np.ndarray, sharding: NamedSharding) -> jax.Array:
        # make_array_from_callback hands each process only the shards of its own devices, which
        # is what multi-host runs need and costs nothing on one host.
        return jax.make_array_from_callback(values.shape, sharding, lambda index: values[index])

    def __call__(self, points: Mapping[str, np.ndarray], fixed: Mapping[str, jax.Array]) -> Any:
        padded = {}
        for name, values in points.items():
            pad = self.batch - values.size
            padded[name] = self.put(np.pad(values, (0, pad), mode="edge"), self.points_sharding)
        return self.compiled(padded, fixed)


def _compile(
    fn: Callable[..., Any], plan: SweepPlan, devices: Sequence[jax.Device], batch: int
) -> tuple[_Runner, dict[str, jax.Array], float, int | None]:
    mesh = Mesh(np.asarray(devices), ("batch",))
    points_sharding = NamedSharding(mesh, PartitionSpec("batch"))
    replicated = NamedSharding(mesh, PartitionSpec())

    def batched(points: dict[str, jax.Array], fixed: dict[str, jax.Array]) -> Any:
        return jax.vmap(lambda p: fn({**fixed, **p}))(points)

    runner_jit = jax.jit(batched, in_shardings=(points_sharding, replicated), out_shardings=replicated)
    point_types = {name: jax.ShapeDtypeStruct((batch,), real_dtype(), sharding=points_sharding) for name in plan.points}
    start = time.perf_counter()
    compiled = runner_jit.lower(point_types, plan.fixed).compile(
        compiler_options=bulk_compiler_options(devices[0].platform)
    )
    compile_time = time.perf_counter() - start
    analysis = compiled.memory_analysis()
    temp_bytes = None if analysis is None else int(analysis.temp_size_in_bytes)
    runner = _Runner(compiled, batch, points_sharding, replicated)
    fixed = {name: runner.put(value, replicated) for name, value in plan.fixed.items()}
    return runner, fixed, compile_time, temp_bytes


def _agree(value: np.ndarray) -> np.ndarray:
    """Process 0's `value` on every process (a no-op on one host)."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.broadcast_one_to_all(value))


def _to_dataset(
    plan: SweepPlan,
    arrays: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
    variable_attrs: Mapping[str, Mapping[str, str]],
) -> xr.Dataset:
    """The result: metrics over the sweep's dimensions, with CF `long_name` (the variable's
    name unless `variable_attrs` says better) and `units` where known."""
    dataset = xr.Dataset(
        data_vars={name: (plan.dims, v.reshape(plan.shape)) for name, v in arrays.items()},
        coords=dict(plan.coords),
        attrs=dict(attrs),
    )
    for name in list(dataset.data_vars) + list(dataset.coords):
        dataset[name].attrs.update({"long_name": str(name), **dict(variable_attrs.get(str(name), {}))})
    return dataset


def _evaluate(
    runner: _Runner,
    fixed: Mapping[str, jax.Array],
    plan: SweepPlan,
    bounds: Sequence[tuple[int, int]],
    todo: Sequence[int],
    finish: Callable[[int, list[np.ndarray]], None],
) -> None:
    """Run the chunks in `todo`, dispatching each before the previous one is copied back."""
    pending: tuple[int, Any] | None = None
    for index in todo:
        start, stop = bounds[index]
        output = runner({name: v[start:stop] for name, v in plan.points.items()}, fixed)
        if pending is not None:
            finish(pending[0], jax.tree_util.tree_leaves(pending[1]))
        pending = (index, output)
    if pending is not None:
        finish(pending[0], jax.tree_util.tree_leaves(pending[1]))


def sweep(
    fn: Callable[[dict[str, jax.Array]], Any],
    axes: Sequence[AbstractAxis],
    *,
    mode: Mode = "cartesian",
    fixed: Mapping[str, Any] | None = None,
    parameters: Collection[str] | None = None,
    chunk_size: int | None = None,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    devices: Sequence[jax.Device] | None = None,
    progress: bool = True,
    key: int | jax.Array | None = None,
    callback: Callable[[ChunkDone], None] | None = None,
    attrs: Mapping[str, Any] | None = None,
    variable_attrs: Mapping[str, Mapping[str, str]] | None = None,
) -> xr.Dataset:
    r"""Evaluate `fn` at every point of a parameter sweep, in chunks, on all devices.

    Everything is validated (axes, names, output path, the outputs of `fn` traced at one
    point) before anything is computed. `jit(vmap(fn))` is compiled once.

    **Arguments:**

    - `fn`: pure JAX function from {parameter: scalar} (axes and fixed values together) to a
      dict, or any pytree, of real scalars (the metrics). Nested names are joined with dots.
    - `axes`: `Grid`, `Random` and `QuasiRandom` axes.
    - `mode`: `"cartesian"` (dims are the grid axis names, plus `sample` for the jointly drawn
      random axes) or `"zip"` (one `point` dim).
    - `fixed`: parameters held at one value (scalars or arrays), passed to every point.
    - `parameters`: the valid parameter names; an unknown name is refused with the closest
      valid ones. None accepts any name.
    - `chunk_size`: points per chunk; None estimates it from memory (module docstring).
    - `out`: `.nc` (or `.zarr`) path; chunks are saved as they finish and an interrupted sweep
      resumes from them when rerun with the same arguments; a finished one is loaded.
    - `overwrite`: replace an existing result or unfinished sweep at `out` that has a
      different spec, instead of refusing.
    - `devices`: devices to shard the batch over; default `jax.devices()` (all hosts).
    - `progress`: show a progress bar with points per second (on stderr).
    - `key`: int seed or jax PRNG key for random axes without a seed of their own (default 0).
    - `callback`: called with a `ChunkDone` after each computed chunk has been stored.
    - `attrs`: extra attributes (JSON-able scalars or strings) stored with the result.
    - `variable_attrs`: {metric or parameter name: {"long_name": ..., "units": ...}}, CF
      attributes of the result's variables (default: the name as long_name).

    **Returns:**

    An `xarray.Dataset` with one variable per metric and the parameters as coordinates. Its
    attributes hold the spec (`sweep_spec`, JSON), `spec_hash`, `points_per_second`,
    `compile_time_s`, `eval_time_s`, `points_computed` (by this run), `n_devices`,
    `chunk_size`, `batch_size`, `bytes_per_point_estimate`, `compiled_temp_bytes` (-1 if
    unknown) and `precision`.
    """
    plan = plan_sweep(axes, mode=mode, fixed=fixed, parameters=parameters, key=key)
    require(
        chunk_size is None or (isinstance(chunk_size, (int, np.integer)) and chunk_size >= 1),
        f"chunk_size={chunk_size!r}: give a positive integer, or None for the automatic size",
    )
    devices = list(jax.devices() if devices is None else devices)
    require(len(devices) > 0, "devices is empty; give at least one device, or None for all")
    out_path = None if out is None else check_output(out)
    probe = _probe(fn, plan)
    spec_hash = _spec_hash(plan, probe)
    n_points = plan.n_points
    requested = None if chunk_size is None else min(int(chunk_size), n_points)
    size = requested or default_chunk_size(probe.bytes_per_point, n_points, devices)
    writer = jax.process_index() == 0

    store = None
    if out_path is not None:
        previous = read_result(out_path)
        if previous is not None and previous.attrs.get("spec_hash") == spec_hash:
            if writer:
                discard_sidecar(out_path)  # left behind by a kill just after the final write
            return previous
        require(
            not out_path.exists() or overwrite,
            f"out={str(out)!r} already holds a different result; choose another path or pass overwrite=True",
        )
        if writer:
            store = open_chunk_store(
                out_path,
                spec_hash=spec_hash,
                n_points=n_points,
                metrics=probe.metrics,
                chunk_size=requested,
                default_chunk_size=size,
                overwrite=overwrite,
            )
        size = int(_agree(np.asarray(store.chunk_size if writer else size)))
        store = store or ChunkStore(sidecar_path(out_path), size, n_points)
    n_chunks = -(-n_points // size)
    bounds = [(i * size, min((i + 1) * size, n_points)) for i in range(n_chunks)]
    done = np.zeros(n_chunks, bool)
    if store is not None:
        done = _agree(store.done(probe.metrics) if writer else done)

    batch = -(-size // len(devices)) * len(devices)
    runner, fixed_arrays, compile_time, temp_bytes = _compile(fn, plan, devices, batch)

    results = {m: np.empty(n_points, dtype) for m, dtype in zip(probe.metrics, probe.dtypes)}
    for index in np.flatnonzero(done):
        start, stop = bounds[index]
        for name, values in store.load(int(index)).items():
            results[name][start:stop] = values
    todo = [int(i) for i in np.flatnonzero(~done)]
    computed = sum(bounds[i][1] - bounds[i][0] for i in todo)

    from chiraljax.sweeps._sweep_progress import progress_bar

    with progress_bar(progress and writer) as bar:
        task = bar.add_task("sweep", total=n_points, completed=n_points - computed, resumed=n_points - computed)

        def finish(index: int, leaves: list[np.ndarray]) -> None:
            start, stop = bounds[index]
            arrays = {m: np.asarray(leaf)[: stop - start] for m, leaf in zip(probe.metrics, leaves)}
            if store is not None and writer:
                store.save(index, arrays)
            for name, values in arrays.items():
                results[name][start:stop] = values
            bar.advance(task, stop - start)
            if callback is not None:
                callback(ChunkDone(index, start, stop, n_chunks))

        start_time = time.perf_counter()
        _evaluate(runner, fixed_arrays, plan, bounds, todo, finish)
        eval_time = time.perf_counter() - start_time

    attrs = {
        "sweep_spec": json.dumps(plan.spec),
        "spec_hash": spec_hash,
        "mode": plan.mode,
        "points_per_second": computed / eval_time if computed else float("nan"),
        "compile_time_s": compile_time,
        "eval_time_s": eval_time,
        "points_computed": computed,
        "n_points": n_points,
        "n_devices": len(devices),
        "chunk_size": size,
        "batch_size": batch,
        "bytes_per_point_estimate": probe.bytes_per_point,
        "compiled_temp_bytes": -1 if temp_bytes is None else temp_bytes,
        "precision": PRECISION,
        "chiraljax_version": provenance()["chiraljax"],
        "jax_version": provenance()["jax"],
        **dict(attrs or {}),
    }
    dataset = _to_dataset(plan, results, attrs, variable_attrs or {})
    if out_path is not None and writer:
        write_result(dataset, out_path)
        discard_sidecar(out_path)
    return dataset


__all__ = [
    "AbstractAxis",
    "ChunkDone",
    "Grid",
    "QuasiRandom",
    "Random",
    "SweepCost",
    "SweepPlan",
    "default_chunk_size",
    "plan_sweep",
    "sweep",
    "sweep_cost",
]
