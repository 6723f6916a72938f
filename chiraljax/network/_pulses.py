"""Control pulses: scalar functions of time with traced parameters.

A pulse is an `eqx.Module` whose array fields are leaves (jit, vmap and grad see them) and whose
`__call__(t)` returns the control value at time t. `jump_times()` lists the instants where the
pulse (or its derivative) jumps, so that solvers can place a step boundary there.

The sech family implements the time-symmetric protocol of Cirac, Zoller, Kimble and Mabuchi:
a photon f(t) = (sqrt(kappa)/2) sech(kappa (t - t0)/2) is emitted by the coupling

    gamma_e(t) = (kappa/2)(1 + tanh(kappa (t - t0)/2))

and fully absorbed by the time reverse gamma_a(t) = (kappa/2)(1 - tanh(kappa (t - t0)/2)).
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Inexact

from chiraljax._checks import as_array, concrete, require, require_finite
from chiraljax._types import Number, Real


class AbstractPulse(eqx.Module):
    """A scalar control u(t)."""

    @abc.abstractmethod
    def __call__(self, t) -> Any:
        """u(t) (complex for a chirped pulse)."""

    def jump_times(self) -> tuple:
        """Times at which u(t) jumps (empty for a smooth pulse)."""
        return ()

    def __mul__(self, factor) -> Scaled:
        return Scaled(self, factor)

    __rmul__ = __mul__


class Constant(AbstractPulse):
    """u(t) = value."""

    value: Number

    def __init__(self, value):
        require_finite("Constant", value=value)
        self.value = jnp.asarray(value)

    def __call__(self, t):
        return self.value + 0.0 * t


class _SechRate(AbstractPulse):
    """(kappa/2)(1 + sign tanh(kappa (t - t0)/2)) with sign = +1 (emission) or -1 (absorption)."""

    kappa: Real
    t0: Real
    sign: ClassVar[float] = 1.0

    def __init__(self, kappa, t0=0.0):
        name = type(self).__name__
        require_finite(name, kappa=kappa, t0=t0)
        k = concrete(kappa)
        if k is not None:
            require(float(k) > 0, f"{name}: kappa must be positive, got {float(k)}")
        self.kappa, self.t0 = as_array(kappa, float), as_array(t0, float)

    def __call__(self, t):
        return 0.5 * self.kappa * (1.0 + self.sign * jnp.tanh(0.5 * self.kappa * (t - self.t0)))


class SechEmission(_SechRate):
    """gamma_e(t) = (kappa/2)(1 + tanh(kappa (t - t0)/2)): releases a sech photon of bandwidth kappa
    centred at t0 from an excited emitter."""

    sign: ClassVar[float] = 1.0


class SechAbsorption(_SechRate):
    """gamma_a(t) = (kappa/2)(1 - tanh(kappa (t - t0)/2)): absorbs a sech photon centred at t0."""

    sign: ClassVar[float] = -1.0


class SechMode(AbstractPulse):
    """The normalised photon envelope f(t) = (sqrt(kappa)/2) sech(kappa (t - t0)/2), for photon
    inputs and output modes; int |f|^2 dt = 1."""

    kappa: Real
    t0: Real

    def __init__(self, kappa, t0=0.0):
        require_finite("SechMode", kappa=kappa, t0=t0)
        self.kappa, self.t0 = as_array(kappa, float), as_array(t0, float)

    def __call__(self, t):
        return 0.5 * jnp.sqrt(self.kappa) / jnp.cosh(0.5 * self.kappa * (t - self.t0))


class Gaussian(AbstractPulse):
    """u(t) = amplitude exp(-(t - t0)^2 / (2 sigma^2))."""

    amplitude: Number
    t0: Real
    sigma: Real

    def __init__(self, amplitude, t0, sigma):
        require_finite("Gaussian", amplitude=amplitude, t0=t0, sigma=sigma)
        s = concrete(sigma)
        if s is not None:
            require(float(s) > 0, f"Gaussian: sigma must be positive, got {float(s)}")
        self.amplitude, self.t0, self.sigma = jnp.asarray(amplitude), as_array(t0, float), as_array(sigma, float)

    def __call__(self, t):
        return self.amplitude * jnp.exp(-0.5 * ((t - self.t0) / self.sigma) ** 2)


class GaussianMode(AbstractPulse):
    """The normalised Gaussian envelope (2 pi sigma^2)^(-1/4) exp(-(t - t0)^2 / (4 sigma^2)),
    whose intensity |f|^2 is a normal density of width sigma."""

    t0: Real
    sigma: Real

    def __init__(self, t0, sigma):
        require_finite("GaussianMode", t0=t0, sigma=sigma)
        self.t0, self.sigma = as_array(t0, float), as_array(sigma, float)

    def __call__(self, t):
        return (2 * math.pi * self.sigma**2) ** -0.25 * jnp.exp(-0.25 * ((t - self.t0) / self.sigma) ** 2)


class Scaled(AbstractPulse):
    """u(t) = factor * pulse(t)."""

    pulse: AbstractPulse
    factor: Number

    def __init__(self, pulse: AbstractPulse, factor):
        require_finite("Scaled", factor=factor)
        self.pulse, self.factor = pulse, jnp.asarray(factor)

    def __call__(self, t):
        return self.factor * self.pulse(t)

    def jump_times(self) -> tuple:
        return self.pulse.jump_times()


class Shifted(AbstractPulse):
    """u(t) = pulse(t - delay): a pulse run late (the receiver's clock in a delayed cascade)."""

    pulse: AbstractPulse
    delay: Real

    def __init__(self, pulse: AbstractPulse, delay):
        require_finite("Shifted", delay=delay)
        self.pulse, self.delay = pulse, as_array(delay, float)

    def __call__(self, t):
        return self.pulse(t - self.delay)

    def jump_times(self) -> tuple:
        return tuple(s + self.delay for s in self.pulse.jump_times())


class Halted(AbstractPulse):
    """u(t) = pulse(t) for t < t_stop and 0 after: a control switched off at t_stop (halted
    emission for the W state)."""

    pulse: AbstractPulse
    t_stop: Real

    def __init__(self, pulse: AbstractPulse, t_stop):
        require_finite("Halted", t_stop=t_stop)
        self.pulse, self.t_stop = pulse, as_array(t_stop, float)

    def __call__(self, t):
        return jnp.where(t < self.t_stop, self.pulse(t), 0.0 * self.pulse(t))

    def jump_times(self) -> tuple:
        return self.pulse.jump_times() + (self.t_stop,)


class Sampled(AbstractPulse):
    """A pulse given by samples u_k at times t_k: linear interpolation (`kind="linear"`) or
    piecewise constant on [t_k, t_{k+1}) (`kind="hold"`, jumps at every t_k); 0 outside."""

    times: Float[Array, " n"]
    values: Inexact[Array, " m"]
    kind: str = eqx.field(static=True)

    def __init__(self, times, values, kind: str = "linear"):
        require(kind in ("linear", "hold"), f"Sampled: kind must be 'linear' or 'hold', got {kind!r}")
        require_finite("Sampled", times=times, values=values)
        t = concrete(times)
        if t is not None:
            require(t.ndim == 1 and t.size >= 2, "Sampled: times must be a 1-D array of at least 2 samples")
            require(bool(np.all(np.diff(t) > 0)), "Sampled: times must be strictly increasing")
        v = concrete(values)
        if t is not None and v is not None:
            require(
                v.shape[0] == t.shape[0] - (kind == "hold"),
                f"Sampled: {t.shape[0]} times need {t.shape[0] - (kind == 'hold')} values for kind={kind!r}, "
                f"got {v.shape[0]}",
            )
        self.times, self.values, self.kind = as_array(times, float), jnp.asarray(values), kind

    def __call__(self, t):
        inside = (t >= self.times[0]) & (t <= self.times[-1])
        if self.kind == "linear":
            value = jnp.interp(t, self.times, self.values.real) + (
                1j * jnp.interp(t, self.times, self.values.imag) if jnp.iscomplexobj(self.values) else 0.0
            )
        else:
            k = jnp.clip(jnp.searchsorted(self.times, t, side="right") - 1, 0, self.values.shape[0] - 1)
            value = self.values[k]
        return jnp.where(inside, value, 0.0 * value)

    def jump_times(self) -> tuple:
        if self.kind == "hold":
            return tuple(self.times[k] for k in range(self.times.shape[0]))
        return (self.times[0], self.times[-1])


# ---- pulses of a shaped drive: bases over a window, analytic families, and the constrained
# pulse of pulse shaping (`chiraljax.optimize` builds them from parameter vectors) ------------

# Smallest distance to a bound when a baseline value is mapped through the inverse transform.
_BOUND_MARGIN = 1e-9


def _local(t, t_start: float, t_end: float):
    """Position in the window scaled to [0, 1], held at the ends outside it."""
    return jnp.clip((t - t_start) / (t_end - t_start), 0.0, 1.0)


class PiecewiseConstant(AbstractPulse):
    """`u(t) = v_k` on the k-th of `n` equal segments of `[t_start, t_end]`; the end values hold
    outside the window. Jumps at the interior segment edges (solvers put steps there)."""

    t_start: float = eqx.field(static=True)
    t_end: float = eqx.field(static=True)
    values: Float[Array, " n"]

    def __call__(self, t):
        n = self.values.shape[0]
        k = jnp.clip(jnp.floor(_local(t, self.t_start, self.t_end) * n), 0, n - 1).astype(int)
        return self.values[k]

    def jump_times(self) -> tuple:
        n = self.values.shape[0]
        return tuple(self.t_start + (self.t_end - self.t_start) * k / n for k in range(1, n))


def _spline_second_derivatives(n: int) -> np.ndarray:
    """The matrix mapping knot values to the natural spline's second derivatives (unit spacing):
    M_{k-1} + 4 M_k + M_{k+1} = 6 (y_{k-1} - 2 y_k + y_{k+1}), M_0 = M_{n-1} = 0."""
    if n < 3:
        return np.zeros((n, n))
    inner = n - 2
    a = 4 * np.eye(inner) + np.eye(inner, k=1) + np.eye(inner, k=-1)
    d = np.zeros((inner, n))
    for k in range(inner):
        d[k, k : k + 3] = (6.0, -12.0, 6.0)
    out = np.zeros((n, n))
    out[1:-1] = np.linalg.solve(a, d)
    return out


class CubicSpline(AbstractPulse):
    """The natural cubic spline through `n` uniformly spaced knots `(t_k, v_k)` spanning
    `[t_start, t_end]` (twice continuously differentiable); the end values hold outside."""

    t_start: float = eqx.field(static=True)
    t_end: float = eqx.field(static=True)
    values: Float[Array, " n"]

    def __call__(self, t):
        n = self.values.shape[0]
        if n == 1:
            return self.values[0] + 0.0 * t
        s = _local(t, self.t_start, self.t_end) * (n - 1)
        k = jnp.clip(jnp.floor(s), 0, n - 2).astype(int)
        u = s - k
        m = jnp.asarray(_spline_second_derivatives(n), self.values.dtype) @ self.values
        y0, y1, m0, m1 = self.values[k], self.values[k + 1], m[k], m[k + 1]
        return (1 - u) * y0 + u * y1 + ((1 - u) ** 3 - (1 - u)) * m0 / 6 + (u**3 - u) * m1 / 6


class Fourier(AbstractPulse):
    """The half-range cosine series `u(t) = Σ_{k=0}^{n-1} c_k cos(π k s)`, `s = (t - t_start) /
    (t_end - t_start)` clipped to [0, 1]: a band-limited pulse (highest frequency
    `(n - 1) / (2 T_w)`) whose even extension has no jump at the window's ends, so a pulse that
    differs at its two ends is still represented without Gibbs ringing."""

    t_start: float = eqx.field(static=True)
    t_end: float = eqx.field(static=True)
    coefficients: Float[Array, " n"]

    def __call__(self, t):
        n = self.coefficients.shape[0]
        s = _local(t, self.t_start, self.t_end)
        return jnp.cos(jnp.pi * jnp.arange(n) * s) @ self.coefficients


class Chebyshev(AbstractPulse):
    """`u(t) = Σ_k c_k T_k(y)`, `y = 2 s - 1 ∈ [-1, 1]`, `T_k(cos θ) = cos(k θ)`: a polynomial
    of degree n - 1 over the window, held at its end values outside."""

    t_start: float = eqx.field(static=True)
    t_end: float = eqx.field(static=True)
    coefficients: Float[Array, " n"]

    def __call__(self, t):
        n = self.coefficients.shape[0]
        y = 2 * _local(t, self.t_start, self.t_end) - 1

        def step(carry, c):
            previous, current = carry
            return (current, 2 * y * current - previous), current

        # The three-term recurrence T_{k+1} = 2 y T_k - T_{k-1} is smooth at y = ±1 (unlike
        # cos(k arccos y), whose derivative is 0/0 there).
        _, powers = jax.lax.scan(step, (y, jnp.ones_like(y)), None, length=n)
        return self.coefficients @ powers


class GaussianEmission(AbstractPulse):
    """The coupling that emits the Gaussian photon `|f|^2 = N(t0, σ^2)` from an excited emitter:
    `γ_e(t) = |f|^2 / (1 - ∫_{-∞}^t |f|^2) = φ(z) / (σ Φ(-z))`, `z = (t - t0)/σ`."""

    sigma: Real
    t0: Real

    def __call__(self, t):
        from jax.scipy.special import log_ndtr  # imported on first use (30 ms)

        z = (t - self.t0) / self.sigma
        return jnp.exp(-0.5 * z**2 - 0.5 * math.log(2 * math.pi) - log_ndtr(-z)) / self.sigma


class GaussianAbsorption(AbstractPulse):
    """The time reverse of `GaussianEmission`: `γ_a(t) = |f|^2 / ∫_{-∞}^t |f|^2 = φ(z) / (σ Φ(z))`,
    which absorbs the Gaussian photon completely."""

    sigma: Real
    t0: Real

    def __call__(self, t):
        from jax.scipy.special import log_ndtr

        z = (t - self.t0) / self.sigma
        return jnp.exp(-0.5 * z**2 - 0.5 * math.log(2 * math.pi) - log_ndtr(z)) / self.sigma


class TimeReversed(AbstractPulse):
    """`u(t) = pulse(2 t_c - t)`: the pulse run backwards about the time `t_c`."""

    pulse: AbstractPulse
    centre: Real

    def __call__(self, t):
        return self.pulse(2 * self.centre - t)

    def jump_times(self) -> tuple:
        return tuple(2 * self.centre - s for s in self.pulse.jump_times())


def _transform(kind: str | None, lo: float, hi: float, r):
    if kind is None:
        return r
    if kind == "sigmoid":
        return lo + (hi - lo) * jax.nn.sigmoid(r)
    return lo + jax.nn.softplus(r)


def inverse_bound_transform(kind: str | None, lo: float, hi: float, u):
    """The inverse of the bound transform T of `Shaped` (sigmoid into [lo, hi], softplus above
    lo, or none), kept a margin inside the bounds."""
    if kind is None:
        return u
    if kind == "sigmoid":
        p = jnp.clip((u - lo) / (hi - lo), _BOUND_MARGIN, 1 - _BOUND_MARGIN)
        return jnp.log(p) - jnp.log1p(-p)
    v = jnp.maximum(u - lo, _BOUND_MARGIN)
    # softplus^{-1}(v) = log(e^v - 1), written to stay finite for large and small v.
    return v + jnp.log(-jnp.expm1(-v))


def _ramp(x):
    """0 at x <= 0, 1 at x >= 1, sin^2 in between (continuous first derivative)."""
    return jnp.sin(0.5 * jnp.pi * jnp.clip(x, 0.0, 1.0)) ** 2


class Shaped(AbstractPulse):
    """A constrained pulse `w(t) T(r(t) + T^{-1}(b(t))) + (1 - w(t)) p(t)` (see the module
    docstring): raw pulse `r`, optional baseline `b`, bound transform `T`, pins `p`, ramp `w`."""

    raw: AbstractPulse
    baseline: AbstractPulse | None
    transform: str | None = eqx.field(static=True)
    lower: float = eqx.field(static=True)
    upper: float = eqx.field(static=True)
    start: float | None = eqx.field(static=True)
    end: float | None = eqx.field(static=True)
    t_start: float = eqx.field(static=True)
    t_end: float = eqx.field(static=True)
    ramp: float = eqx.field(static=True)

    def __call__(self, t):
        r = self.raw(t)
        if self.baseline is not None:
            r = r + inverse_bound_transform(self.transform, self.lower, self.upper, self.baseline(t))
        u = _transform(self.transform, self.lower, self.upper, r)
        if self.start is None and self.end is None:
            return u
        w = jnp.ones_like(u)
        start = self.end if self.start is None else self.start
        end = self.start if self.end is None else self.end
        if self.start is not None:
            w = w * _ramp((t - self.t_start) / self.ramp)
        if self.end is not None:
            w = w * _ramp((self.t_end - t) / self.ramp)
        p = start + (end - start) * _local(t, self.t_start, self.t_end)
        return w * u + (1 - w) * p

    def jump_times(self) -> tuple:
        base = () if self.baseline is None else self.baseline.jump_times()
        return self.raw.jump_times() + base
