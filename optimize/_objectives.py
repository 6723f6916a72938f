r"""Objectives for pulse shaping: protocol metrics, penalties and robust ensemble averages.

An `Objective` maps pulse parameters `x` to a score to maximise,

    J(x) = A_e[ m(simulate(N_e(x))) ] - Σ_p w_p P_p(x),

where `N_e(x)` is the network with its controls set by `x` and its hardware parameters set to
member `e` of an ensemble (just the nominal network when no ensemble is given), `m` a protocol
metric (transfer or absorption efficiency, W-state fidelity, directionality), `A_e` the mean over
the ensemble (the robust objective; or the soft minimum
`A_e[m] = -τ log((1/E) Σ_e exp(-m_e/τ))`, which tends to the worst member as `τ → 0` and to
the mean as `τ → ∞`) and `P_p` penalties on the parameters or pulse shapes. The
ensemble is evaluated with `jax.vmap` over `network.with_parameters`, so the robust objective is
one compiled function whatever the hardware values; its worst member is reported alongside.

Each call of `J` costs `E` simulator evaluations for an ensemble of `E` members (1 without).
"""

from __future__ import annotations

import abc
import inspect
import math
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from chiraljax._errors import require
from chiraljax._precision import real_dtype
from chiraljax.network._network import PARAMETER_BOUNDS, Network
from chiraljax.network._pulses import AbstractPulse
from chiraljax.solve._methods import Sector
from chiraljax.solve._metrics import (
    AbsorptionEfficiency,
    AbstractMetric,
    Directionality,
    Population,
    TransferEfficiency,
    WFidelity,
)
from chiraljax.solve._result import Result
from chiraljax.solve._simulate import REPRESENTATIONS, simulate

from ._parameterize import Controls

__all__ = [
    "AbstractMetric",
    "Population",
    "TransferEfficiency",
    "AbsorptionEfficiency",
    "WFidelity",
    "Directionality",
    "AbstractPenalty",
    "ParameterNorm",
    "Smoothness",
    "AmplitudeLimit",
    "Objective",
    "sample_ensemble",
]


class AbstractPenalty(eqx.Module):
    """A non-negative cost `P(x, pulses)` subtracted from the score."""

    @abc.abstractmethod
    def __call__(self, x: Float[Array, " P"], pulses: dict[str, AbstractPulse]) -> Float[Array, ""]:
        """The cost of parameters x and the pulses they make."""


class ParameterNorm(AbstractPenalty):
    """`P = weight · ||x||^2` (keeps a residual parameterisation near its baseline)."""

    weight: float = eqx.field(static=True)

    def __call__(self, x, pulses):
        return self.weight * jnp.sum(x**2)


def _samples(pulse: AbstractPulse, t_span: tuple[float, float], n: int):
    ts = jnp.linspace(t_span[0], t_span[1], n, dtype=real_dtype())
    return ts, jax.vmap(pulse)(ts)


class Smoothness(AbstractPenalty):
    """`P = weight · mean_t (du/dt)^2` of one control on `n` samples over `t_span` (finite
    differences): discourages fast features that a control line's bandwidth would filter."""

    weight: float = eqx.field(static=True)
    control: str = eqx.field(static=True)
    t_span: tuple[float, float] = eqx.field(static=True)
    n: int = eqx.field(static=True, default=257)

    def __call__(self, x, pulses):
        ts, u = _samples(pulses[self.control], self.t_span, self.n)
        return self.weight * jnp.mean((jnp.diff(jnp.real(u)) / jnp.diff(ts)) ** 2)


class AmplitudeLimit(AbstractPenalty):
    """`P = weight · mean_t max(|u(t)| - limit, 0)^2`: a soft amplitude limit on one control."""

    weight: float = eqx.field(static=True)
    control: str = eqx.field(static=True)
    limit: float = eqx.field(static=True)
    t_span: tuple[float, float] = eqx.field(static=True)
    n: int = eqx.field(static=True, default=257)

    def __call__(self, x, pulses):
        _, u = _samples(pulses[self.control], self.t_span, self.n)
        return self.weight * jnp.mean(jnp.maximum(jnp.abs(u) - self.limit, 0.0) ** 2)


def check_aggregate(aggregate: str, temperature: float) -> None:
    """Refuse an unknown ensemble aggregate or a temperature that is not finite and > 0."""
    require(aggregate in ("mean", "softmin"), f"aggregate={aggregate!r}: choose 'mean' or 'softmin'")
    require(
        math.isfinite(float(temperature)) and float(temperature) > 0,
        f"temperature={temperature!r}: must be a finite number > 0",
    )


class AbstractObjective(eqx.Module):
    """A score `J(x) = A_e[m_e(x)] - penalty(x)` of pulse parameters (to maximise): the metric
    m_e of every ensemble member e aggregated by A (`"mean"`, or `"softmin"`:
    -τ log((1/E) Σ_e exp(-m_e/τ)), a soft worst case of temperature τ).

    The fields every objective has: `controls` (the parameterisation of the pulses),
    `ensemble` (`{name: values (E,)}` or None), `aggregate` and `temperature`. Subclasses set
    them in their constructor, keep every other constructor argument in the field of the same
    name too (`_replace` builds variants from them), and define `members(x)` (the E metric
    values); `penalty` is zero unless overridden.
    """

    controls: Controls
    ensemble: dict[str, Array] | None
    aggregate: str = eqx.field(static=True)
    temperature: float = eqx.field(static=True)

    @abc.abstractmethod
    def members(self, x: Float[Array, " P"]) -> Float[Array, " E"]:
        """The metric for every ensemble member (shape (1,) without an ensemble)."""

    def _replace(self, **changes: Any) -> AbstractObjective:
        """The same objective with some constructor arguments changed: the others are read from
        the fields of the same name, and the constructor checks them all again."""
        names = [name for name in inspect.signature(type(self).__init__).parameters if name != "self"]
        unknown = sorted(set(changes) - set(names))
        require(not unknown, f"{type(self).__name__}: no constructor argument {', '.join(unknown)}")
        return type(self)(**{name: changes[name] if name in changes else getattr(self, name) for name in names})

    @property
    def size(self) -> int:
        """Number of pulse parameters P."""
        return self.controls.size

    @property
    def evaluations_per_call(self) -> int:
        """Simulator evaluations one call of the objective costs (the ensemble size, or 1)."""
        if self.ensemble is None:
            return 1
        return int(next(iter(self.ensemble.values())).shape[0])

    def with_ensemble(self, ensemble: Mapping[str, Any] | None) -> AbstractObjective:
        """The same objective with another ensemble (`None` for the nominal device)."""
        return self._replace(ensemble=ensemble)

    def with_aggregate(self, aggregate: str, temperature: float | None = None) -> AbstractObjective:
        """The same objective with another ensemble aggregate (`"mean"` or `"softmin"`)."""
        return self._replace(aggregate=aggregate, temperature=self.temperature if temperature is None else temperature)

    def penalty(self, x: Float[Array, " P"]) -> Float[Array, ""]:
        """The summed penalties at `x` (none here)."""
        return jnp.zeros((), real_dtype())

    def __call__(self, x: Float[Array, " P"]) -> Float[Array, ""]:
        """The score `J(x)`: ensemble mean (or soft minimum) of the metric minus penalties."""
        return self._aggregate(self.members(x)) - self.penalty(x)

    def _aggregate(self, values: Float[Array, " E"]) -> Float[Array, ""]:
        if self.aggregate == "mean":
            return jnp.mean(values)
        tau = self.temperature
        return -tau * (jax.nn.logsumexp(-values / tau) - math.log(values.shape[0]))

    def report(self, x: Float[Array, " P"]) -> dict[str, float]:
        """Score, mean / worst / best metric over the ensemble, and the penalty, as floats."""
        values, penalty = _report(self, jnp.asarray(x, real_dtype()))
        values = np.asarray(values)
        return {
            "score": float(self._aggregate(jnp.asarray(values)) - penalty),
            "metric_mean": float(values.mean()),
            "metric_worst": float(values.min()),
            "metric_best": float(values.max()),
            "penalty": float(penalty),
        }


class Objective(AbstractObjective):
    """The score `J(x)` of pulse parameters on a network (to maximise).

    **Arguments:**

    - `network`: the device; its controls named in `controls` are replaced by the pulses.
    - `controls`: a `Controls` (or a `{control: parameterisation}` mapping).
    - `metric`: an `AbstractMetric`.
    - `t_span`: the simulated window `(t0, t1)`.
    - `penalties`: penalties subtracted from the metric.
    - `ensemble`: `{parameter name: values of shape (E,)}` of hardware parameters; the score
      is then the ensemble mean of the metric (robust objective). `None`: nominal network.
    - `aggregate`: `"mean"` (ensemble average) or `"softmin"` (soft worst case, temperature
      `temperature`) over the ensemble.
    - `temperature`: τ of the soft minimum.
    - `representation`, `rtol`, `atol`, `max_steps`: passed to `cj.simulate`.
    """

    network: Network
    metric: AbstractMetric
    penalties: tuple[AbstractPenalty, ...]
    t_span: tuple[float, float] = eqx.field(static=True)
    representation: str = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def __init__(
        self,
        network: Network,
        controls: Controls | Mapping[str, Any],
        metric: AbstractMetric,
        t_span: tuple[float, float],
        *,
        penalties: tuple[AbstractPenalty, ...] = (),
        ensemble: Mapping[str, Any] | None = None,
        representation: str = "auto",
        rtol: float = Sector.rtol,
        atol: float = Sector.atol,
        max_steps: int = 100_000,
        aggregate: str = "mean",
        temperature: float = 0.01,
    ):
        require(isinstance(network, Network), f"network: expected a Network, got {type(network).__name__}")
        if not isinstance(controls, Controls):
            controls = Controls(controls)
        require(isinstance(metric, AbstractMetric), f"metric: expected a metric, got {type(metric).__name__}")
        for p in penalties:
            require(isinstance(p, AbstractPenalty), f"penalties: expected penalties, got {type(p).__name__}")
        require(
            len(t_span) == 2 and float(t_span[1]) > float(t_span[0]), f"t_span={t_span!r}: need (t0, t1) with t1 > t0"
        )
        require(
            representation in REPRESENTATIONS,
            f"representation={representation!r}: choose one of {', '.join(REPRESENTATIONS)}",
        )
        # Fails early (with the control names) if a control is not in the network.
        controls.apply(network, controls.initial())
        self.network, self.controls, self.metric = network, controls, metric
        self.penalties = tuple(penalties)
        self.ensemble = None if ensemble is None else check_ensemble(network, ensemble)
        self.t_span = (float(t_span[0]), float(t_span[1]))
        self.representation = representation
        self.rtol, self.atol, self.max_steps = float(rtol), float(atol), int(max_steps)
        check_aggregate(aggregate, temperature)
        self.aggregate, self.temperature = aggregate, float(temperature)

    def with_network(self, network: Network) -> Objective:
        """The same objective on another network of the same structure (e.g. the "true" one)."""
        return self._replace(network=network)

    def simulate(self, x: Float[Array, " P"], network: Network | None = None) -> Result:
        """Simulate the (nominal, or the given) network with the pulses of `x`."""
        return self._simulate(self.controls.apply(self.network if network is None else network, x))

    def _simulate(self, network: Network) -> Result:
        return simulate(
            network,
            self.t_span,
            n_save=2,
            representation=self.representation,
            rtol=self.rtol,
            atol=self.atol,
            max_steps=self.max_steps,
        )

    def _metric(self, x, network: Network) -> Float[Array, ""]:
        net = self.controls.apply(network, x)
        return self.metric(self._simulate(net), net)

    def members(self, x: Float[Array, " P"]) -> Float[Array, " E"]:
        """The metric for every ensemble member (shape (1,) without an ensemble)."""
        x = jnp.asarray(x, real_dtype())
        if self.ensemble is None:
            return self._metric(x, self.network)[None]
        return jax.vmap(lambda values: self._metric(x, self.network.with_parameters(values)))(self.ensemble)

    def penalty(self, x: Float[Array, " P"]) -> Float[Array, ""]:
        """The summed penalties at `x`."""
        x = jnp.asarray(x, real_dtype())
        pulses = self.controls.pulses(x)
        return sum((p(x, pulses) for p in self.penalties), jnp.zeros((), real_dtype()))


@eqx.filter_jit
def _report(objective: AbstractObjective, x):
    return objective.members(x), objective.penalty(x)


def check_ensemble(network: Network, ensemble: Mapping[str, Any]) -> dict[str, Array]:
    require(
        isinstance(ensemble, Mapping) and len(ensemble) >= 1,
        "ensemble: give {parameter name: values of shape (E,)} or None",
    )
    known = network.parameters()
    out, size = {}, None
    for name, values in ensemble.items():
        require(name in known, f"ensemble: no network parameter {name!r}; list them with network.parameters()")
        values = jnp.asarray(values, dtype=jnp.result_type(known[name]))
        require(values.ndim == 1 and values.shape[0] >= 1, f"ensemble[{name!r}]: expected shape (E,)")
        require(
            size is None or values.shape[0] == size,
            f"ensemble[{name!r}]: has {values.shape[0]} members, others have {size}",
        )
        require(bool(jnp.all(jnp.isfinite(values))), f"ensemble[{name!r}]: contains NaN or inf")
        size = values.shape[0]
        out[name] = values
    return out


def sample_ensemble(
    network: Network, spreads: Mapping[str, float], size: int, key: PRNGKeyArray, *, relative: bool = False
) -> dict[str, Array]:
    """Draw a hardware ensemble around the network's nominal values.

    Member `e` has `p_e = p_0 + s ξ_e` (or `p_0 (1 + s ξ_e)` with `relative`), `ξ_e ~ N(0, 1)`,
    clipped to the parameter's physical range (transmissions in [0, 1], rates >= 0).

    **Arguments:**

    - `network`: the nominal network.
    - `spreads`: `{parameter name: standard deviation s}`.
    - `size`: number of members E.
    - `key`: JAX random key.
    - `relative`: spreads relative to the nominal value instead of absolute.

    **Returns:** `{parameter name: values of shape (E,)}` for `Objective(ensemble=...)`.
    """
    require(int(size) >= 1, f"size={size}: need at least one ensemble member")
    known = network.parameters()
    out = {}
    keys = jax.random.split(key, max(len(spreads), 1))
    for k, (name, spread) in zip(keys, spreads.items()):
        require(name in known, f"spreads: no network parameter {name!r}; list them with network.parameters()")
        require(float(spread) >= 0, f"spreads[{name!r}]={spread}: must be >= 0")
        nominal = jnp.real(known[name])
        xi = jax.random.normal(k, (int(size),), real_dtype())
        values = nominal * (1 + spread * xi) if relative else nominal + spread * xi
        # an ensemble sample outside the parameter's physical range is clipped to it
        lo, hi = PARAMETER_BOUNDS.get(name.rsplit(".", 1)[-1], (None, None))
        lo, hi = -math.inf if lo is None else lo, math.inf if hi is None else hi
        out[name] = jnp.clip(values, lo, hi)
    return out
