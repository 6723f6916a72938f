r"""Calibration experiments on a device and the maximum-likelihood fit of its hidden parameters.

**Data.** Each experiment plays a waveform and reads the receiver at read times `t_j` with
`n_j` shots, giving counts `k_j` (`Experiment`). A readout calibration gives the readout errors
`ê_0 = k_0/n_0` and `ê_1 = 1 - k_1/n_1`, which the fit then holds fixed.

**Fit.** The fitted parameters θ (`FIT_NAMES`: the receiver's detuning, coupler shift factor and
waveguide rate, the cable transmission, the drive line's gain, low-pass time constant and delay)
are written as standard scores of the prior (`chiraljax.optimize._device.PRIOR`),
`θ_i = μ_i + σ_i z_i` (or `μ_i e^{σ_i z_i}` for a log-normal prior), and the maximum a
posteriori estimate minimises

$$-\log \mathcal{L}(z) = -\sum_{e,j} \big[k_{ej}\log p_{ej}(z) + (n_{ej} - k_{ej}) \log(1 - p_{ej}(z))\big]
+ \tfrac12 \lVert z\rVert^2,$$

with `p = ê_0 + (1 - ê_0 - ê_1) P(t_j; θ(z), v_e)` from the `DeviceModel`; the gradient is
exact (reverse mode through the simulator), the minimiser SciPy's L-BFGS-B. The other parameters
(T1, dephasing, the joints' reflection) stay at their nominal values: a model error the fit
absorbs into its parameters. The stated uncertainty is the Laplace approximation with the expected (Fisher)
information of the binomial counts plus the prior's at the optimum,
`F = Σ n ∇p ∇pᵀ / (p(1-p)) + 1`, inverted and mapped to θ by the Jacobian `dθ/dz`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from chiraljax._errors import require
from chiraljax._precision import real_dtype

from ._device import PRIOR, AbstractDevice, DeviceModel, DeviceParameters

__all__ = ["FIT_NAMES", "CalibrationData", "Experiment", "FitResult", "fit_device", "probe_experiments"]

#: The parameters the fit estimates.
FIT_NAMES = ("detuning", "shift", "gamma", "transmission", "gain", "tau", "delay")


@dataclass
class Experiment:
    """One waveform read at `read_times` with `shots[j]` shots each, `counts[j]` of them "1"."""

    label: str
    samples: np.ndarray
    read_times: np.ndarray
    shots: np.ndarray
    counts: np.ndarray


@dataclass
class CalibrationData:
    """Everything measured for the fit: experiments and the readout calibration."""

    experiments: list[Experiment] = field(default_factory=list)
    readout: tuple[int, int, int, int] | None = None  # (k0, n0, k1, n1)

    def readout_errors(self) -> tuple[float, float]:
        """(ê_0, ê_1) from the readout calibration."""
        require(self.readout is not None, "CalibrationData: no readout calibration yet")
        k0, n0, k1, n1 = self.readout
        return k0 / n0, 1.0 - k1 / n1

    def measure_readout(self, device: AbstractDevice, shots: int) -> None:
        """Run the readout calibration (|0> and |1>, `shots` each)."""
        self.readout = (device.readout(0, shots), shots, device.readout(1, shots), shots)

    def measure(self, device: AbstractDevice, model: DeviceModel, label: str, samples, read_times, shots: int) -> None:
        """Play `samples` and read at `read_times` with `shots` each; store the experiment."""
        ts = np.asarray(read_times, dtype=float)
        counts = device.run(model.waveform(samples), ts, shots, purpose="calibration")[0]
        self.experiments.append(
            Experiment(label, np.asarray(samples, dtype=float), ts, np.full(ts.shape, shots), counts)
        )


def probe_experiments(model: DeviceModel, n_times: int = 12) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The calibration probes: the scripted drive at 0.7, 1 and 1.3 of its amplitude and 40 ns
    early and late, each read at `n_times` times spread over the photon's arrival (where the
    stored excitation changes). **Returns:** (label, samples, read_times) per probe."""
    require(isinstance(n_times, int) and n_times >= 2, f"n_times={n_times!r}: at least 2 read times")
    ts = read_times(model, n_times)
    probes = [
        ("scripted", 1.0, 0.0),
        ("weak", 0.7, 0.0),
        ("strong", 1.3, 0.0),
        ("early", 1.0, -40.0),
        ("late", 1.0, 40.0),
    ]
    return [(name, np.asarray(model.scripted_samples(a, d)), ts) for name, a, d in probes]


def read_times(model: DeviceModel, n_times: int) -> np.ndarray:
    """`n_times` read times from the photon's arrival to the end of the protocol: from where the
    scripted absorption reaches 2 % of its final value, evenly spaced, the end included."""
    kappa = float(model.plan.kappa)
    t_start = float(model.plan.t0) - 2.5 / kappa
    return np.linspace(max(t_start, model.t_span[0]), model.t_span[1], n_times)


@dataclass
class FitResult:
    """A fit: `parameters` (all of them, the fitted ones at their estimate), `std` (Laplace
    1-sigma of each fitted parameter), `names`, `covariance` (in θ), `nll` (at the optimum),
    `iterations`, `success`, `message`."""

    parameters: DeviceParameters
    std: dict[str, float]
    names: tuple[str, ...]
    covariance: np.ndarray
    nll: float
    iterations: int
    success: bool
    message: str
    z: np.ndarray | None = None
    covariance_z: np.ndarray | None = None

    def posterior_samples(self, model: DeviceModel, n: int, seed: int = 0) -> list[DeviceParameters]:
        """`n` devices drawn from the Laplace posterior N(ẑ, F⁻¹) in the prior's standard scores
        (so each lies inside the prior's physical ranges), the readout errors as fitted."""
        require(isinstance(n, int) and n >= 1, f"posterior_samples: n={n!r} must be a positive integer")
        require(self.z is not None, "posterior_samples: this fit carries no posterior")
        post = _Posterior(model, model.nominal, self.names)
        rng = np.random.default_rng([int(seed), 31337])
        zs = rng.multivariate_normal(self.z, self.covariance_z, size=n, method="eigh")
        e0, e1 = self.parameters.false_positive, self.parameters.false_negative
        return [post.parameters(jnp.asarray(z, real_dtype()), e0, e1) for z in zs]

    def to_json(self) -> dict:
        values = self.parameters.as_dict()
        return {
            "estimate": {n: values[n] for n in self.names},
            "std": self.std,
            "nll": self.nll,
            "iterations": self.iterations,
            "success": self.success,
            "message": self.message,
        }


class _Posterior(eqx.Module):
    """-log L(z) of the module docstring, over stacked experiments."""

    model: DeviceModel
    nominal: DeviceParameters
    names: tuple[str, ...] = eqx.field(static=True)

    def theta(self, z):
        values = {}
        for i, name in enumerate(self.names):
            prior, mu = PRIOR[name], getattr(self.nominal, name)
            if prior.space == "log":
                values[name] = mu * jnp.exp(prior.std * z[i])
            else:  # held inside the prior's physical range (a delay below zero has no meaning)
                value = mu + prior.std * (jnp.abs(mu) if prior.relative else 1.0) * z[i]
                values[name] = jnp.clip(value, prior.low, prior.high)
        return values

    def parameters(self, z, e0, e1) -> DeviceParameters:
        return self.nominal.replace(**self.theta(z), false_positive=e0, false_negative=e1)

    def __call__(self, z, samples, ts, shots, counts, e0, e1):
        p = self.parameters(z, e0, e1)
        stored = jax.vmap(lambda s: self.model.stored(p, s, ts))(samples)
        q = jnp.clip(self.model.click_probability(p, stored), 1e-12, 1 - 1e-12)
        loglik = jnp.sum(counts * jnp.log(q) + (shots - counts) * jnp.log1p(-q))
        return -loglik + 0.5 * jnp.sum(z**2)


@eqx.filter_jit
def _value_and_grad(post: _Posterior, z, *data):
    return jax.value_and_grad(lambda zz: post(zz, *data))(z)


@eqx.filter_jit
def _information(post: _Posterior, z, samples, ts, shots, counts, e0, e1):
    """Fisher information of the binomial likelihood plus the prior's: Σ n ∇q ∇qᵀ / (q(1-q)) + 1."""

    def clicks(zz):
        p = post.parameters(zz, e0, e1)
        stored = jax.vmap(lambda s: post.model.stored(p, s, ts, adjoint="forward"))(samples)
        return post.model.click_probability(p, stored)

    q = jnp.clip(clicks(z), 1e-12, 1 - 1e-12)
    jac = jax.jacfwd(clicks)(z)  # (E, T, K)
    w = shots / (q * (1 - q))
    return jnp.einsum("et,etk,etl->kl", w, jac, jac) + jnp.eye(z.shape[0])


@eqx.filter_jit
def _theta_jacobian(post: _Posterior, z):
    return jax.jacfwd(lambda zz: jnp.stack(list(post.theta(zz).values())))(z)


def _stack(data: CalibrationData) -> tuple[np.ndarray, ...]:
    """Experiments on one read-time grid: (samples (E, n), ts (T,), shots (E, T), counts (E, T));
    an experiment read at fewer times has zero shots at the others."""
    grid = np.unique(np.concatenate([e.read_times for e in data.experiments]))
    samples = np.stack([e.samples for e in data.experiments])
    shots = np.zeros((len(data.experiments), grid.size))
    counts = np.zeros_like(shots)
    for i, e in enumerate(data.experiments):
        j = np.searchsorted(grid, e.read_times)
        shots[i, j], counts[i, j] = e.shots, e.counts
    return samples, grid, shots, counts


def fit_device(
    model: DeviceModel,
    data: CalibrationData,
    *,
    names: tuple[str, ...] = FIT_NAMES,
    start: DeviceParameters | None = None,
    max_iterations: int = 200,
) -> FitResult:
    """The maximum a posteriori fit of `names` to the calibration data (module docstring).

    **Arguments:**

    - `model`: the `DeviceModel`; its `nominal` parameters are the prior's centre.
    - `data`: experiments and a readout calibration.
    - `names`: which parameters to fit (default `FIT_NAMES`).
    - `start`: where the minimiser starts (default: the prior's centre).
    - `max_iterations`: L-BFGS-B iterations at most.

    **Returns:** a `FitResult`.
    """
    require(len(data.experiments) >= 1, "fit_device: no experiments to fit")
    unknown = [n for n in names if n not in PRIOR]
    require(not unknown, f"fit_device: unknown parameter(s) {', '.join(unknown)}")
    e0, e1 = data.readout_errors()
    post = _Posterior(model, model.nominal, tuple(names))
    samples, ts, shots, counts = _stack(data)
    args = [jnp.asarray(a, real_dtype()) for a in (samples, ts, shots, counts)] + [
        jnp.asarray(e0, real_dtype()),
        jnp.asarray(e1, real_dtype()),
    ]
    z0 = np.zeros(len(names)) if start is None else _standard_scores(post, start)

    def fun(z):
        v, g = _value_and_grad(post, jnp.asarray(z, real_dtype()), *args)
        return float(v), np.asarray(g, dtype=float)

    res = scipy.optimize.minimize(fun, z0, jac=True, method="L-BFGS-B", options={"maxiter": int(max_iterations)})
    z = jnp.asarray(res.x, real_dtype())
    info = np.asarray(_information(post, z, *args))
    cov_z = np.linalg.pinv(0.5 * (info + info.T))
    jac = np.asarray(_theta_jacobian(post, z))
    cov = jac @ cov_z @ jac.T
    std = {n: float(math.sqrt(max(cov[i, i], 0.0))) for i, n in enumerate(names)}
    return FitResult(
        post.parameters(z, e0, e1),
        std,
        tuple(names),
        cov,
        float(res.fun),
        int(res.nit),
        bool(res.success),
        str(res.message),
        np.asarray(z),
        cov_z,
    )


def _standard_scores(post: _Posterior, p: DeviceParameters) -> np.ndarray:
    z = []
    for name in post.names:
        prior, mu, v = PRIOR[name], float(getattr(post.nominal, name)), float(getattr(p, name))
        if prior.space == "log":
            z.append(math.log(v / mu) / prior.std)
        else:
            z.append((v - mu) / (prior.std * (abs(mu) if prior.relative else 1.0)))
    return np.asarray(z)
