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
import jax.numpy as jnp
import numpy as np

from ._checks import concrete, require, require_finite


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

    value: Any

    def __init__(self, value):
        require_finite("Constant", value=value)
        self.value = jnp.asarray(value)

    def __call__(self, t):
        return self.value + 0.0 * t


class _SechRate(AbstractPulse):
    """(kappa/2)(1 + sign tanh(kappa (t - t0)/2)) with sign = +1 (emission) or -1 (absorption)."""

    kappa: Any
    t0: Any
    sign: ClassVar[float] = 1.0

    def __init__(self, kappa, t0=0.0):
        name = type(self).__name__
        require_finite(name, kappa=kappa, t0=t0)
        k = concrete(kappa)
        if k is not None:
            require(float(k) > 0, f"{name}: kappa must be positive, got {float(k)}")
        self.kappa, self.t0 = jnp.asarray(kappa, dtype=float), jnp.asarray(t0, dtype=float)

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

    kappa: Any
    t0: Any

    def __init__(self, kappa, t0=0.0):
        require_finite("SechMode", kappa=kappa, t0=t0)
        self.kappa, self.t0 = jnp.asarray(kappa, dtype=float), jnp.asarray(t0, dtype=float)

    def __call__(self, t):
        return 0.5 * jnp.sqrt(self.kappa) / jnp.cosh(0.5 * self.kappa * (t - self.t0))


class Gaussian(AbstractPulse):
    """u(t) = amplitude exp(-(t - t0)^2 / (2 sigma^2))."""

    amplitude: Any
    t0: Any
    sigma: Any

    def __init__(self, amplitude, t0, sigma):
        require_finite("Gaussian", amplitude=amplitude, t0=t0, sigma=sigma)
        s = concrete(sigma)
        if s is not None:
            require(float(s) > 0, f"Gaussian: sigma must be positive, got {float(s)}")
        self.amplitude, self.t0, self.sigma = (
            jnp.asarray(amplitude),
            jnp.asarray(t0, dtype=float),
            jnp.asarray(sigma, dtype=float),
        )

    def __call__(self, t):
        return self.amplitude * jnp.exp(-0.5 * ((t - self.t0) / self.sigma) ** 2)


class GaussianMode(AbstractPulse):
    """The normalised Gaussian envelope (2 pi sigma^2)^(-1/4) exp(-(t - t0)^2 / (4 sigma^2)),
    whose intensity |f|^2 is a normal density of width sigma."""

    t0: Any
    sigma: Any

    def __init__(self, t0, sigma):
        require_finite("GaussianMode", t0=t0, sigma=sigma)
        self.t0, self.sigma = jnp.asarray(t0, dtype=float), jnp.asarray(sigma, dtype=float)

    def __call__(self, t):
        return (2 * math.pi * self.sigma**2) ** -0.25 * jnp.exp(-0.25 * ((t - self.t0) / self.sigma) ** 2)


class Scaled(AbstractPulse):
    """u(t) = factor * pulse(t)."""

    pulse: AbstractPulse
    factor: Any

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
    delay: Any

    def __init__(self, pulse: AbstractPulse, delay):
        require_finite("Shifted", delay=delay)
        self.pulse, self.delay = pulse, jnp.asarray(delay, dtype=float)

    def __call__(self, t):
        return self.pulse(t - self.delay)

    def jump_times(self) -> tuple:
        return tuple(s + self.delay for s in self.pulse.jump_times())


class Halted(AbstractPulse):
    """u(t) = pulse(t) for t < t_stop and 0 after: a control switched off at t_stop (halted
    emission for the W state)."""

    pulse: AbstractPulse
    t_stop: Any

    def __init__(self, pulse: AbstractPulse, t_stop):
        require_finite("Halted", t_stop=t_stop)
        self.pulse, self.t_stop = pulse, jnp.asarray(t_stop, dtype=float)

    def __call__(self, t):
        return jnp.where(t < self.t_stop, self.pulse(t), 0.0 * self.pulse(t))

    def jump_times(self) -> tuple:
        return self.pulse.jump_times() + (self.t_stop,)


class Sampled(AbstractPulse):
    """A pulse given by samples u_k at times t_k: linear interpolation (`kind="linear"`) or
    piecewise constant on [t_k, t_{k+1}) (`kind="hold"`, jumps at every t_k); 0 outside."""

    times: Any
    values: Any
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
        self.times, self.values, self.kind = jnp.asarray(times, dtype=float), jnp.asarray(values), kind

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
