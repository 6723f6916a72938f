r"""Pulse parameterisations: maps from a real parameter vector to a control pulse.

A parameterisation turns `x ∈ R^P` into an `AbstractPulse` for one control of a Network (a
coupling rate, an exchange coupling or a detuning). The pulse is built in three layers:

1. a raw function `r(t)`: a linear combination of basis functions on a window
   `[t_start, t_end]` (piecewise constant, natural cubic spline through uniform knots, Fourier
   series, Chebyshev series), optionally added to the transformed baseline (residual form)

       r(t) = T^{-1}(b(t)) + Σ_k x_k φ_k(t);

2. a smooth bound transform `u = T(r)`:
   `T(r) = lo + (hi - lo) σ(r)` (sigmoid, both bounds) or `T(r) = lo + softplus(r)` (lower
   bound only), so every parameter vector gives a pulse inside the bounds;
3. fixed start and end values through a smooth ramp window `w(t)` that vanishes at the ends:

       u_pinned(t) = w(t) u(t) + (1 - w(t)) p(t),

   `p(t)` the straight line from the start to the end value. A convex combination keeps the
   bounds. Bandwidth and smoothness are set by the basis and its truncation: `n` cosine terms
   over a window `T_w` carry frequencies up to `(n - 1) / (2 T_w)`; the spline knot spacing sets
   the shortest feature.

Analytic families (`AnalyticParameterization`) instead shape a whole photon-matched control with
a few physical parameters: the sech and Gaussian photons' emission couplings and their time
reverses, the absorption couplings (docs/theory.md section 5).

`Controls` combines parameterisations of several named controls into one flat vector and
substitutes the pulses into a Network (no recompilation: only array leaves change).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from chiraljax._checks import concrete
from chiraljax._errors import require
from chiraljax._precision import real_dtype
from chiraljax.network import _pulses as pulses
from chiraljax.network._network import Network
from chiraljax.network._pulses import AbstractPulse, Shaped, inverse_bound_transform

__all__ = ["AbstractParameterization", "BasisParameterization", "AnalyticParameterization", "Controls"]

_BASES = ("pwc", "spline", "fourier", "chebyshev")
_TRANSFORMS = ("sigmoid", "softplus")
_FAMILIES = ("sech", "gaussian")
_ROLES = ("emit", "absorb")


class AbstractParameterization(eqx.Module):
    """A map from a parameter vector `x` of shape (P,) to a pulse.

    Subclasses define `size`, `__call__(x) -> AbstractPulse` and `initial() -> x0`.
    """

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """The number of parameters P."""

    @abc.abstractmethod
    def __call__(self, x: Float[Array, " P"]) -> AbstractPulse:
        """The pulse of parameters x."""

    def initial(self) -> Float[Array, " P"]:
        """The parameters of the reference pulse (the baseline, or the family's defaults)."""
        return jnp.zeros((self.size,), real_dtype())

    def scale(self) -> Float[Array, " P"]:
        """A natural step size per parameter (used as the RL action unit)."""
        return jnp.ones((self.size,), real_dtype())


_BASIS_CLASSES = {"pwc": pulses.PiecewiseConstant, "spline": pulses.CubicSpline}
_SERIES_CLASSES = {"fourier": pulses.Fourier, "chebyshev": pulses.Chebyshev}


class BasisParameterization(AbstractParameterization):
    """A pulse from `n` basis coefficients with bounds, pinned ends and an optional baseline.

    **Arguments:**

    - `basis`: `"pwc"` (piecewise constant), `"spline"` (natural cubic spline through knots),
      `"fourier"` or `"chebyshev"`.
    - `n`: number of coefficients (segments, knots or series terms); fewer terms give a
      smoother, narrower-band pulse.
    - `t_start`, `t_end`: the window the basis spans.
    - `bounds`: `(lo, hi)` for a sigmoid bound, `(lo, None)` for a softplus lower bound, or
      `None` for no bound.
    - `start`, `end`: values the pulse is pinned to at `t_start` and `t_end` (and held at
      outside the window), or `None` to leave that end free.
    - `ramp`: duration of the ramp from a pinned value into the free pulse (default a tenth
      of the window).
    - `baseline`: a pulse to shape around (residual form): `x = 0` gives the baseline exactly,
      up to the pins. Its values must lie strictly inside the bounds over the window.
    - `step`: the size of a parameter unit (the raw pulse is `step * Σ x_k φ_k`).
    """

    basis: str = eqx.field(static=True)
    n: int = eqx.field(static=True)
    t_start: float = eqx.field(static=True)
    t_end: float = eqx.field(static=True)
    transform: str | None = eqx.field(static=True)
    lower: float = eqx.field(static=True)
    upper: float = eqx.field(static=True)
    start: float | None = eqx.field(static=True)
    end: float | None = eqx.field(static=True)
    ramp: float = eqx.field(static=True)
    step: float = eqx.field(static=True)
    baseline: AbstractPulse | None

    def __init__(
        self,
        basis: str,
        n: int,
        t_start: float,
        t_end: float,
        *,
        bounds: tuple[float, float | None] | None = None,
        start: float | None = None,
        end: float | None = None,
        ramp: float | None = None,
        baseline: AbstractPulse | None = None,
        step: float = 1.0,
    ):
        require(basis in _BASES, f"basis={basis!r}: choose one of {', '.join(_BASES)}")
        require(
            isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1,
            f"n={n!r}: the number of coefficients must be a positive integer",
        )
        require(basis != "spline" or n >= 2, f"n={n}: a spline needs at least 2 knots")
        t_start, t_end = float(t_start), float(t_end)
        require(
            math.isfinite(t_start) and math.isfinite(t_end) and t_end > t_start,
            f"window ({t_start}, {t_end}): need finite t_start < t_end",
        )
        require(math.isfinite(float(step)) and float(step) > 0, f"step={step!r}: must be a finite number > 0")
        self.basis, self.n, self.t_start, self.t_end = basis, int(n), t_start, t_end
        self.step = float(step)
        self.transform, self.lower, self.upper = _check_bounds(bounds)
        for name, value in (("start", start), ("end", end)):
            if value is not None:
                value = float(value)
                require(
                    math.isfinite(value) and self.lower <= value <= self.upper,
                    f"{name}={value}: the pinned value lies outside the bounds "
                    f"[{self.lower}, {self.upper}]; these constraints cannot be met — move the "
                    "pin inside the bounds or widen them",
                )
        self.start = None if start is None else float(start)
        self.end = None if end is None else float(end)
        width = t_end - t_start
        ramp = 0.1 * width if ramp is None else float(ramp)
        pins = (start is not None) + (end is not None)
        require(
            math.isfinite(ramp) and ramp > 0 and pins * ramp <= width,
            f"ramp={ramp}: must be > 0 and the {max(pins, 1)} ramp(s) must fit in the window of length {width}",
        )
        self.ramp = ramp
        require(
            baseline is None or isinstance(baseline, AbstractPulse),
            f"baseline: expected a pulse, got {type(baseline).__name__}",
        )
        self.baseline = baseline
        if baseline is not None and self.transform is not None:
            samples = concrete(jax.vmap(baseline)(self.sample_times()))
            if samples is not None:
                inside = (samples > self.lower) & (samples < self.upper)
                require(
                    bool(np.all(inside)),
                    f"baseline: takes values in [{samples.min():.6g}, {samples.max():.6g}] on the "
                    f"window, outside the open bounds ({self.lower}, {self.upper}); these "
                    "constraints cannot be met in residual form — widen the bounds",
                )

    @property
    def size(self) -> int:
        return self.n

    def sample_times(self, n: int = 257) -> Float[Array, " n"]:
        """Equally spaced times over the window (for fits, penalties and plots)."""
        return jnp.linspace(self.t_start, self.t_end, n, dtype=real_dtype())

    def raw(self, x: Float[Array, " P"]) -> AbstractPulse:
        """The unconstrained basis pulse `r(t) = step Σ x_k φ_k(t)`."""
        coefficients = self.step * jnp.asarray(x, real_dtype())
        cls = {**_BASIS_CLASSES, **_SERIES_CLASSES}[self.basis]
        return cls(self.t_start, self.t_end, coefficients)

    def __call__(self, x: Float[Array, " P"]) -> Shaped:
        return Shaped(
            self.raw(x),
            self.baseline,
            self.transform,
            self.lower,
            self.upper,
            self.start,
            self.end,
            self.t_start,
            self.t_end,
            self.ramp,
        )

    def fit(self, pulse: AbstractPulse, n_samples: int = 257) -> Float[Array, " P"]:
        """Least-squares parameters whose pulse is closest to `pulse` on the window.

        The fit is linear in the raw (untransformed) space: it solves
        `min_x Σ_i (r_x(t_i) - [T^{-1}(u(t_i)) - T^{-1}(b(t_i))])^2`; pins are ignored.

        **Arguments:**

        - `pulse`: the pulse to approximate (e.g. a poor starting pulse).
        - `n_samples`: number of equally spaced sample times.

        **Returns:** the parameter vector, shape (P,).
        """
        return _fit(self, pulse, self.sample_times(n_samples))


@eqx.filter_jit
def _fit(p: BasisParameterization, pulse: AbstractPulse, ts):
    target = inverse_bound_transform(p.transform, p.lower, p.upper, jax.vmap(pulse)(ts))
    if p.baseline is not None:
        target = target - inverse_bound_transform(p.transform, p.lower, p.upper, jax.vmap(p.baseline)(ts))
    zero = jnp.zeros((p.n,), real_dtype())
    design = jax.jacfwd(lambda x: jax.vmap(p.raw(x))(ts))(zero)
    x, *_ = jnp.linalg.lstsq(design, target)
    return x


def _check_bounds(bounds) -> tuple[str | None, float, float]:
    if bounds is None:
        return None, -math.inf, math.inf
    require(
        isinstance(bounds, (tuple, list)) and len(bounds) == 2, f"bounds={bounds!r}: give (lo, hi), (lo, None) or None"
    )
    lo, hi = bounds
    require(lo is not None and math.isfinite(float(lo)), f"bounds={bounds!r}: lo must be finite")
    if hi is None:
        return "softplus", float(lo), math.inf
    require(
        math.isfinite(float(hi)) and float(hi) > float(lo),
        f"bounds={bounds!r}: need lo < hi; an empty interval cannot be met",
    )
    return "sigmoid", float(lo), float(hi)


class AnalyticParameterization(AbstractParameterization):
    """A photon-matched control with physical parameters `x = (δt0, log(w/w_ref), a)`.

    The pulse is `A(a) · c(t; w, t0_ref + δt0)` with `c` one of

    | family | role | c(t) |
    |---|---|---|
    | sech | emit | `(κ/2)(1 + tanh(κ (t - t0)/2))`, `w = κ` |
    | sech | absorb | `(κ/2)(1 - tanh(κ (t - t0)/2))` (the time reverse) |
    | gaussian | emit | `φ(z)/(σ Φ(-z))`, `z = (t - t0)/σ`, `w = σ` |
    | gaussian | absorb | `φ(z)/(σ Φ(z))` (the time reverse) |

    and the amplitude factor `A(a) = exp(a)`, or with `max_amplitude = m` the bounded
    `A(a) = m σ(a + logit(1/m))`, both equal to 1 at `a = 0`.

    **Arguments:**

    - `family`: `"sech"` or `"gaussian"`.
    - `role`: `"absorb"` or `"emit"`.
    - `width`: reference κ (sech) or σ (Gaussian), > 0.
    - `t0`: reference centre time.
    - `max_amplitude`: optional bound on `A` (must exceed 1 so that `x = 0` is allowed).
    - `free`: which of ("t0", "width", "amplitude") are parameters (the others stay at the
      reference); order is kept.
    """

    family: str = eqx.field(static=True)
    role: str = eqx.field(static=True)
    width: float = eqx.field(static=True)
    t0: float = eqx.field(static=True)
    max_amplitude: float | None = eqx.field(static=True)
    free: tuple[str, ...] = eqx.field(static=True)

    def __init__(
        self,
        family: str,
        role: str = "absorb",
        *,
        width: float = 1.0,
        t0: float = 0.0,
        max_amplitude: float | None = None,
        free: tuple[str, ...] = ("t0", "width", "amplitude"),
    ):
        require(family in _FAMILIES, f"family={family!r}: choose one of {', '.join(_FAMILIES)}")
        require(role in _ROLES, f"role={role!r}: choose one of {', '.join(_ROLES)}")
        require(math.isfinite(float(width)) and float(width) > 0, f"width={width!r}: must be > 0")
        require(math.isfinite(float(t0)), f"t0={t0!r}: must be finite")
        if max_amplitude is not None:
            require(
                math.isfinite(float(max_amplitude)) and float(max_amplitude) > 1,
                f"max_amplitude={max_amplitude!r}: must exceed 1 (the reference amplitude); a "
                "smaller bound cannot be met by the reference pulse — rescale `width` instead",
            )
        free = tuple(free)
        known = ("t0", "width", "amplitude")
        require(
            len(free) >= 1 and all(f in known for f in free) and len(set(free)) == len(free),
            f"free={free!r}: choose a non-empty subset of {known}",
        )
        self.family, self.role = family, role
        self.width, self.t0 = float(width), float(t0)
        self.max_amplitude = None if max_amplitude is None else float(max_amplitude)
        self.free = free

    @property
    def size(self) -> int:
        return len(self.free)

    def __call__(self, x: Float[Array, " P"]) -> AbstractPulse:
        values = dict(zip(self.free, jnp.asarray(x, real_dtype())))
        t0 = self.t0 + values.get("t0", 0.0)
        width = self.width * jnp.exp(values.get("width", 0.0))
        a = values.get("amplitude", 0.0)
        if self.max_amplitude is None:
            amplitude = jnp.exp(a)
        else:
            m = self.max_amplitude
            amplitude = m * jax.nn.sigmoid(a - math.log(m - 1))
        cls = {
            ("sech", "emit"): pulses.SechEmission,
            ("sech", "absorb"): pulses.SechAbsorption,
            ("gaussian", "emit"): pulses.GaussianEmission,
            ("gaussian", "absorb"): pulses.GaussianAbsorption,
        }[(self.family, self.role)]
        return _ScaledPulse(cls(width, t0), amplitude)

    def scale(self) -> Float[Array, " P"]:
        steps = {"t0": 1.0 / self.width if self.family == "sech" else self.width, "width": 0.2, "amplitude": 0.2}
        return jnp.asarray([steps[f] for f in self.free], real_dtype())


class _ScaledPulse(AbstractPulse):
    """`factor · pulse(t)` without the finiteness check of `cj.Scaled` (the factor is traced)."""

    pulse: AbstractPulse
    factor: Float[Array, ""]

    def __call__(self, t):
        return self.factor * self.pulse(t)

    def jump_times(self) -> tuple:
        return self.pulse.jump_times()


class Controls(eqx.Module):
    """Parameterisations of several named controls, read from one flat vector.

    `x = concat(x_c for c in names)`; `apply(network, x)` returns the network with each
    control `c` replaced by `parameterizations[c](x_c)`.

    **Arguments:**

    - `parameterizations`: `{control name: parameterisation}` (order kept).
    """

    parameterizations: dict[str, AbstractParameterization]

    def __init__(self, parameterizations: Mapping[str, AbstractParameterization]):
        require(
            isinstance(parameterizations, Mapping) and len(parameterizations) >= 1,
            "parameterizations: give at least one {control name: parameterisation}",
        )
        for name, p in parameterizations.items():
            require(
                isinstance(p, AbstractParameterization),
                f"parameterizations[{name!r}]: expected a parameterisation, got {type(p).__name__}",
            )
        self.parameterizations = dict(parameterizations)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.parameterizations)

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parameterizations.values())

    def split(self, x: Float[Array, " P"]) -> dict[str, Float[Array, " p"]]:
        """The flat vector cut into one piece per control."""
        require(
            x.shape == (self.size,),
            f"x: expected {self.size} parameters for controls {list(self.names)}, got shape {x.shape}",
        )
        out, start = {}, 0
        for name, p in self.parameterizations.items():
            out[name] = x[start : start + p.size]
            start += p.size
        return out

    def pulses(self, x: Float[Array, " P"]) -> dict[str, AbstractPulse]:
        """The pulse of every control for the parameters `x`."""
        return {n: self.parameterizations[n](xc) for n, xc in self.split(x).items()}

    def apply(self, network: Network, x: Float[Array, " P"]) -> Network:
        """`network` with its controls replaced by the parameterised pulses."""
        missing = [n for n in self.names if n not in network.controls]
        require(
            not missing,
            f"controls {missing}: not controls of the network (it has "
            f"{sorted(network.controls)}); name an existing control",
        )
        pulses = self.pulses(x)
        return eqx.tree_at(lambda net: [net.controls[n] for n in self.names], network, [pulses[n] for n in self.names])

    def initial(self) -> Float[Array, " P"]:
        """The concatenated reference parameters."""
        return jnp.concatenate([p.initial() for p in self.parameterizations.values()])

    def scale(self) -> Float[Array, " P"]:
        """The concatenated natural step sizes."""
        return jnp.concatenate([p.scale() for p in self.parameterizations.values()])
