r"""Three ways of shaping the receiver's pulse on a device, counted in shots.

Every method starts from the same waveform parameters `x0` (the scripted drive, `x = 0` of the
`DeviceModel`'s spline), gets the same shot budget, and spends shots only through the device
(`AbstractDevice.run` and `readout` count them). After every batch of measurements a method
names its **deployable** pulse (what it would hand to the experiment now: the policy mean,
the CMA-ES mean, the best simplex vertex, the pulse shaped on the fitted model), and the record
keeps `(shots spent, absorption efficiency of that pulse)`. On a `SimulatedDevice` the
efficiency is its exact value on the hidden device (`true_absorption`: for scoring only; no
method sees it); on hardware it is NaN and only the measured estimate is kept.

1. **Model-free RL** (`ppo_on_device`): PPO (`chiraljax.optimize._ppo`), the reward of a
   candidate is its click fraction `k/n` from `shots_per_evaluation` shots.
2. **Black-box** (`cmaes_on_device`: CMA-ES of the `cma` package; `nelder_mead_on_device`:
   SciPy's Nelder-Mead), on the same noisy rewards.
3. **Model-based** (`model_based_on_device`): readout calibration, calibration experiments
   (`chiraljax.optimize._calibrate.probe_experiments`), the maximum-likelihood fit of the hidden
   parameters, L-BFGS shaping on the fitted model through the AWG and drive-line model, a
   verification measurement; then rounds that add a trace of the current pulse to the data,
   refit, reshape and verify, while the budget lasts.

A method that cannot use its whole budget says so in `stop_reason` and `shots_used`; a budget
below what one step of a method needs is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from chiraljax._checks import require_budget
from chiraljax._errors import require
from chiraljax._precision import real_dtype

from ._calibrate import CalibrationData, fit_device, probe_experiments, read_times
from ._device import AbstractDevice, DeviceModel, DeviceParameters, SimulatedDevice, samples_of
from ._gradient import GradientConfig, gradient_optimize
from ._ppo import PPOConfig, ppo_optimize

__all__ = [
    "DeviceRun",
    "ModelBasedSettings",
    "cmaes_on_device",
    "model_based_on_device",
    "nelder_mead_on_device",
    "ppo_on_device",
]


@dataclass
class DeviceRun:
    """The record of one method on one device (module docstring).

    - `shots`, `absorption`, `estimate`: after each batch, the shots spent so far, the exact
      absorption efficiency of the deployable pulse (NaN on hardware) and the method's own
      measured estimate of its reward (click fraction or efficiency; NaN if none).
    - `budget`, `shots_used`, `stop_reason`, `x` (the final deployable parameters), `extra`.
    """

    method: str
    seed: int
    budget: int
    shots: list[int] = field(default_factory=list)
    absorption: list[float] = field(default_factory=list)
    estimate: list[float] = field(default_factory=list)
    shots_used: int = 0
    stop_reason: str = ""
    x: list[float] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def record(self, device: AbstractDevice, model: DeviceModel, x, estimate: float = math.nan) -> None:
        """Append the point (shots spent, exact absorption of `x`, `estimate`)."""
        self.shots.append(int(device.shots_spent))
        self.absorption.append(_true_absorption(device, model, x))
        self.estimate.append(float(estimate))
        self.x = np.asarray(x, dtype=float).tolist()

    def finish(self, device: AbstractDevice, reason: str) -> DeviceRun:
        self.shots_used, self.stop_reason = int(device.shots_spent), reason
        return self

    def shots_to_reach(self, level: float) -> int | None:
        """Shots spent when the deployable pulse first reached `level` (None if never)."""
        for s, a in zip(self.shots, self.absorption):
            if a >= level:
                return s
        return None

    @property
    def final(self) -> float:
        """The absorption efficiency of the last deployable pulse."""
        return self.absorption[-1] if self.absorption else math.nan

    def to_json(self) -> dict:
        return asdict(self)


def _true_absorption(device: AbstractDevice, model: DeviceModel, x) -> float:
    if not isinstance(device, SimulatedDevice):
        return math.nan
    return float(device.true_absorption(samples_of(model, np.asarray(x)[None])[0]))  # the compiled render


def _start(model: DeviceModel, x0) -> np.ndarray:
    """The starting parameters as a finite vector of the model's size, or a `ValidationError`."""
    x = np.asarray(x0, dtype=float)
    require(
        x.shape == (model.size,) and bool(np.all(np.isfinite(x))),
        f"x0: expected {model.size} finite pulse parameters, got an array of shape {x.shape}",
    )
    return x


def _clicks(device: AbstractDevice, model: DeviceModel, xs, shots: int) -> np.ndarray:
    """Click fractions k/n of each row of `xs`, measured at the end of the protocol."""
    samples = samples_of(model, np.atleast_2d(xs))
    counts = device.run([model.waveform(s) for s in samples], None, shots, purpose="optimisation")
    return counts[:, 0] / shots


# ---- 1. model-free RL ---------------------------------------------------------------------


def ppo_on_device(
    device: AbstractDevice,
    model: DeviceModel,
    x0,
    budget: int,
    seed: int,
    *,
    config: PPOConfig,
    scale: float = 3.0,
    shots_per_evaluation: int = 1000,
) -> DeviceRun:
    """PPO with rewards measured on the device (`shots_per_evaluation` per candidate). The
    deployable pulse is the policy mean, which `config.evaluate_mean` measures each epoch
    (it is the first row of every batch PPO hands to the reward)."""
    x0 = _start(model, x0)
    require(config.evaluate_mean, "ppo_on_device: config.evaluate_mean must be on (the policy mean is recorded)")
    per_epoch = (config.batch_size + 1) * shots_per_evaluation
    require_budget(
        "ppo_on_device: budget", budget, 3 * shots_per_evaluation, "shots", "below what one step of the method needs"
    )
    run = DeviceRun("ppo", seed, int(budget), extra={"shots_per_evaluation": shots_per_evaluation, "scale": scale})

    def reward(xs):
        xs = np.asarray(xs)
        r = _clicks(device, model, xs, shots_per_evaluation)
        run.record(device, model, xs[0], r[0])
        return r

    result = ppo_optimize(
        reward, np.asarray(x0), scale, config, jax.random.key(seed), budget=int(budget) // shots_per_evaluation
    )
    run.extra.update(epochs=int(result.iterations), evaluations=int(result.evaluations), per_epoch_shots=per_epoch)
    run.record(device, model, np.asarray(result.final_x))
    return run.finish(device, result.stop_reason)


# ---- 2. black-box -------------------------------------------------------------------------


def cmaes_on_device(
    device: AbstractDevice,
    model: DeviceModel,
    x0,
    budget: int,
    seed: int,
    *,
    sigma0: float = 0.5,
    popsize: int | None = None,
    shots_per_evaluation: int = 1000,
) -> DeviceRun:
    """CMA-ES (`cma.CMAEvolutionStrategy`) on the measured click fractions; deployable: the mean."""
    import cma

    x0 = _start(model, x0)
    es = cma.CMAEvolutionStrategy(
        x0, sigma0, {"seed": int(seed) + 1, "verbose": -9, **({"popsize": int(popsize)} if popsize else {})}
    )
    require_budget(
        "cmaes_on_device: budget",
        budget,
        es.popsize * shots_per_evaluation,
        "shots",
        "below what one step of the method needs",
    )
    run = DeviceRun("cmaes", seed, int(budget), extra={"shots_per_evaluation": shots_per_evaluation, "sigma0": sigma0})
    run.extra["popsize"] = int(es.popsize)
    run.record(device, model, es.mean)
    reason = f"budget (a generation needs {es.popsize * shots_per_evaluation} shots)"
    while device.shots_spent + es.popsize * shots_per_evaluation <= budget:
        if es.stop():
            reason = "converged: " + ", ".join(sorted(es.stop()))
            break
        xs = np.asarray(es.ask())
        r = _clicks(device, model, xs, shots_per_evaluation)
        es.tell(list(xs), list(-r))
        run.record(device, model, es.mean, float(np.mean(r)))
    return run.finish(device, reason)


def nelder_mead_on_device(
    device: AbstractDevice,
    model: DeviceModel,
    x0,
    budget: int,
    seed: int,
    *,
    step: float = 0.5,
    shots_per_evaluation: int = 1000,
) -> DeviceRun:
    """SciPy's Nelder-Mead on the measured click fractions, from a simplex of edge `step`;
    deployable: the best vertex after each iteration."""
    import scipy.optimize

    x0 = _start(model, x0)
    n = x0.size
    require_budget(
        "nelder_mead_on_device: budget",
        budget,
        (n + 1) * shots_per_evaluation,
        "shots",
        "below what one step of the method needs",
    )
    run = DeviceRun(
        "nelder-mead", seed, int(budget), extra={"shots_per_evaluation": shots_per_evaluation, "step": step}
    )
    run.record(device, model, x0)
    simplex = np.vstack([x0, x0 + step * np.eye(n)])

    def fun(x):
        return -float(_clicks(device, model, x, shots_per_evaluation)[0])

    def callback(intermediate_result):
        run.record(device, model, intermediate_result.x, -float(intermediate_result.fun))

    res = scipy.optimize.minimize(
        fun,
        x0,
        method="Nelder-Mead",
        callback=callback,
        options={
            "initial_simplex": simplex,
            "maxfev": int(budget) // shots_per_evaluation,
            "xatol": 1e-4,
            "fatol": 0.0,
        },
    )
    run.record(device, model, res.x, -float(res.fun))
    return run.finish(
        device, "budget" if res.nfev >= int(budget) // shots_per_evaluation else f"converged: {res.message}"
    )


# ---- 3. model-based -----------------------------------------------------------------------


class PosteriorAbsorption(eqx.Module):
    """x -> the mean absorption efficiency over devices drawn from the fit's posterior (the
    robust objective: a pulse good for every device the data allow)."""

    model: DeviceModel
    members: DeviceParameters  # stacked: every leaf has a leading member axis
    incidents: Float[Array, " E"]

    def __call__(self, x):
        end = jnp.asarray([self.model.t_span[1]], real_dtype())
        samples = self.model.samples(x)
        stored = jax.vmap(lambda p: self.model.stored(p, samples, end)[0])(self.members)
        return jnp.mean(stored / self.incidents)


class FittedAbsorption(eqx.Module):
    """x -> absorption efficiency on the model with parameters `p` (incident photon `incident`)."""

    model: DeviceModel
    p: DeviceParameters
    incident: float

    def __call__(self, x):
        end = jnp.asarray([self.model.t_span[1]], real_dtype())
        return self.model.stored(self.p, self.model.samples(x), end)[0] / self.incident


@dataclass(frozen=True)
class ModelBasedSettings:
    """The shots of the model-based loop: `readout` per prepared state, `per_point` per read
    time of a calibration trace (`read_times` of them), `verify` for the verification of a
    pulse; `rounds` refits at most; `max_steps` L-BFGS steps per shaping."""

    readout: int = 250
    per_point: int = 100
    read_times: int = 12
    verify: int = 1000
    rounds: int = 3
    max_steps: int = 40
    posterior_members: int = 0

    def first_round(self) -> int:
        """Shots of the first round (readout, five probes, one verification)."""
        return 2 * self.readout + 5 * self.read_times * self.per_point + self.verify

    def later_round(self) -> int:
        """Shots of each later round (one trace of the current pulse and a verification)."""
        return self.read_times * self.per_point + self.verify


def model_based_on_device(
    device: AbstractDevice,
    model: DeviceModel,
    x0,
    budget: int,
    seed: int,
    *,
    settings: ModelBasedSettings = ModelBasedSettings(),
    progress: Callable[[str], None] | None = None,
) -> DeviceRun:
    """Calibrate, fit, shape by gradient on the fitted model, verify; repeat (module docstring)."""
    x0 = _start(model, x0)
    require_budget(
        "model_based_on_device: budget",
        budget,
        settings.first_round(),
        "shots",
        "below what one step of the method needs",
    )
    say = progress or (lambda message: None)
    run = DeviceRun("model-based", seed, int(budget), extra={"settings": asdict(settings), "fits": []})
    data = CalibrationData()
    data.measure_readout(device, settings.readout)
    for label, samples, ts in probe_experiments(model, settings.read_times):
        data.measure(device, model, label, samples, ts, settings.per_point)
    x = jnp.asarray(x0, real_dtype())
    start = None
    reason = f"rounds ({settings.rounds})"
    for r in range(settings.rounds):
        if r > 0:
            if device.shots_spent + settings.later_round() > budget:
                reason = "budget"
                break
            data.measure(
                device,
                model,
                f"round {r}",
                model.samples(x),
                read_times(model, settings.read_times),
                settings.per_point,
            )
        fit = fit_device(model, data, start=start)
        start = fit.parameters
        say(f"round {r}: fit after {device.shots_spent} shots")
        objective = FittedAbsorption(model, fit.parameters, model.incident(fit.parameters))
        shaping = objective
        if settings.posterior_members:
            members = fit.posterior_samples(model, settings.posterior_members, seed=1000 * seed + r)
            shaping = PosteriorAbsorption(
                model,
                jax.tree.map(lambda *leaves: jnp.stack(leaves), *members),
                jnp.asarray([model.incident(p) for p in members], real_dtype()),
            )
        shaped = gradient_optimize(
            shaping, x, GradientConfig(method="lbfgs", max_steps=settings.max_steps, patience=10, tolerance=1e-6)
        )
        x = jnp.asarray(shaped.best_x, real_dtype())
        k = device.run(model.waveform(model.samples(x)), None, settings.verify, purpose="verification")[0, 0]
        e0, e1 = data.readout_errors()
        estimate = ((k / settings.verify - e0) / (1 - e0 - e1)) / objective.incident
        run.extra["fits"].append(
            {**fit.to_json(), "model_absorption": float(shaped.best_value), "measured": float(estimate)}
        )
        run.record(device, model, x, estimate)
    return run.finish(device, reason)
