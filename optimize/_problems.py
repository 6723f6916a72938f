r"""Benchmark problems for pulse shaping: a state transfer between two chiral modules.

`paper` is the transfer of the `paper` preset itself (two four-qubit modules, lossy reflecting
link, coupler-induced chirp): the receiver module's drive is shaped as a residual spline around
its scripted time-reversed drive, the network is built by the protocol (`ChiralLine.network`),
so the coupler shift follows the shaped drive, and the score is the absorption efficiency
(`chiraljax.optimize._receiver`). Units: ns and rad/ns.

The two stand-in problems `ideal` and `distorted` use the module of docs/theory.md section 2: two qubits a quarter wavelength apart
(`φ = π/2`) with a direct coupling `-γ(t)/2` that cancels the waveguide exchange, so that
`(|eg> + i|ge>)/√2` couples only to the right-moving channel at rate `γ(t)`. The sender starts
in that state and emits a sech photon of bandwidth `κ_e` with `γ_e(t) = (κ_e/2)(1 + tanh(κ_e t/2))`;
the link has power transmission `η`; the receiver's coupling `γ_a(t)` (control `"absorb"`) and,
in the distorted problem, its frequency shift (control `"tune"`) are shaped.

| problem | link | receiver | start pulse | metric |
|---|---|---|---|---|
| `ideal` | η = 0.8, lossless qubits | resonant | constant γ_a = 0.3 (poor) | transfer efficiency (limit η) |
| `distorted` | η = 0.6, T1 and dephasing 1e-3 | detuned by 0.3 κ, expects a wider (κ = 1.6), later (t0 = 0.8) photon | that calibrated sech | absorption efficiency |

The distorted problem is a Markov stand-in for the experiment's distortion (mismatched photon
shape, frequency offset, loss, decoherence); its numbers are a reconstruction, not the paper's.
Units there: time in 1/κ_e.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

import chiraljax as cj
from chiraljax._errors import require
from chiraljax.experiment._references import chiral_transfer_network

from ._objectives import AbsorptionEfficiency, Objective, TransferEfficiency
from ._parameterize import AnalyticParameterization, BasisParameterization, Controls
from ._receiver import ReceiverObjective, receiver_controls

__all__ = ["Problem", "PROBLEMS", "get_problem", "paper", "transfer_network"]

T_SPAN = (-12.0, 12.0)
RECEIVERS = ("A1", "B1")


class Problem(NamedTuple):
    """A pulse-shaping task.

    - `name`: its name.
    - `objective`: the `Objective` (nominal network).
    - `x0`: the starting parameters (the unoptimised pulse).
    - `limit`: the best value the metric can reach (the link limit), or NaN if unknown.
    - `ensemble_spreads`: `{parameter: std}` of the hardware uncertainty for the robust case.
    - `true_parameters`: `{parameter: value}` of a perturbed "true" device for sim-to-real.
    - `description`: one line.
    - `rl_scale`: the RL action unit per parameter (chosen for the baseline: the best of
      0.3, 1 and 3 in short PPO trials on the problem; see optimize/results/README.md).
    """

    name: str
    objective: Objective
    x0: jnp.ndarray
    limit: float
    ensemble_spreads: dict[str, float]
    true_parameters: dict[str, float]
    description: str
    rl_scale: float = 3.0


def transfer_network(
    *,
    eta: float = 0.8,
    kappa_e: float = 1.0,
    detuning: float = 0.0,
    decay: float = 0.0,
    dephasing: float = 0.0,
    absorb: cj.AbstractPulse | None = None,
    tune: bool = False,
) -> cj.Network:
    """Two chiral modules: the sender emits a sech photon into a link of transmission `eta`.

    **Arguments:**

    - `eta`: link power transmission.
    - `kappa_e`: the emitted photon's bandwidth.
    - `detuning`: receiver qubits' detuning from the photon.
    - `decay`, `dephasing`: intrinsic T1 and pure dephasing rates of every qubit.
    - `absorb`: the receiver's coupling pulse (default: the matched sech absorption).
    - `tune`: give the receiver qubits a frequency-shift control `"tune"` (zero by default).

    **Returns:** the `cj.Network`.
    """
    base = chiral_transfer_network(2, eta, decay, dephasing)  # the line, ports, links, couplings
    emitters = [
        cj.Emitter(
            e.name,
            detuning=detuning if e.name in RECEIVERS else 0.0,
            decay=decay,
            dephasing=dephasing,
            detuning_control="tune" if (tune and e.name in RECEIVERS) else None,
        )
        for e in base.emitters
    ]
    controls = {
        "emit": cj.SechEmission(kappa_e, 0.0),
        "absorb": absorb if absorb is not None else cj.SechAbsorption(kappa_e, 0.0),
    }
    if tune:
        controls["tune"] = cj.Constant(0.0)
    return cj.Network(
        emitters, base.ports, links=base.links, couplings=base.couplings, controls=controls, initial=base.initial
    )


def ideal(parameterization: str = "spline", n: int = 12, rtol: float = cj.Sector.rtol) -> Problem:
    """The ideal transfer: lossless qubits, link η = 0.8, start from a constant γ_a = 0.3.

    **Arguments:**

    - `parameterization`: a basis (`"spline"`, `"pwc"`, `"fourier"`, `"chebyshev"`) for
      `γ_a(t) ∈ (0, 2)` on the window, or `"sech"` for the analytic family (start: a sech
      absorber mistimed by 3 and too narrow by 2x).
    - `n`: number of basis coefficients.
    - `rtol`: solver tolerance.
    """
    eta = 0.8
    network = transfer_network(eta=eta)
    if parameterization == "sech":
        p = AnalyticParameterization("sech", "absorb", width=1.0, t0=0.0, free=("t0", "width"))
        x0 = jnp.asarray([3.0, np.log(0.5)])
    else:
        p = BasisParameterization(parameterization, n, *T_SPAN, bounds=(0.0, 2.0))
        x0 = p.fit(cj.Constant(0.3))
    objective = Objective(
        network,
        Controls({"absorb": p}),
        TransferEfficiency(*RECEIVERS),
        T_SPAN,
        representation="sector",
        rtol=rtol,
        atol=rtol * 1e-2,
    )
    return Problem(
        "ideal",
        objective,
        x0,
        eta,
        {"emitters.A1.detuning": 0.1, "emitters.B1.detuning": 0.1},
        {"emitters.A1.detuning": 0.15, "emitters.B1.detuning": 0.15},
        "ideal transfer through a link of eta = 0.8 from a constant receiver coupling",
    )


def distorted(n_absorb: int = 10, n_tune: int = 6, rtol: float = 1e-7) -> Problem:
    """The distorted transfer (see the module table): the receiver's coupling is a spline
    residual around the calibrated sech absorber, its frequency shift a spline from zero.

    **Arguments:**

    - `n_absorb`, `n_tune`: spline knots of the coupling and of the frequency shift.
    - `rtol`: solver tolerance.
    """
    eta = 0.6
    baseline = cj.SechAbsorption(1.6, 0.8)
    network = transfer_network(eta=eta, detuning=0.3, decay=1e-3, dephasing=1e-3, absorb=baseline, tune=True)
    controls = Controls(
        {
            "absorb": BasisParameterization("spline", n_absorb, *T_SPAN, bounds=(0.0, 3.0), baseline=baseline),
            "tune": BasisParameterization("spline", n_tune, *T_SPAN, bounds=(-1.0, 1.0), baseline=cj.Constant(0.0)),
        }
    )
    objective = Objective(
        network,
        controls,
        AbsorptionEfficiency(RECEIVERS, "links.1.transmission"),
        T_SPAN,
        representation="sector",
        rtol=rtol,
        atol=rtol * 1e-2,
    )
    spreads = {
        "emitters.A1.detuning": 0.08,
        "emitters.B1.detuning": 0.08,
        "controls.emit.kappa": 0.08,
        "controls.emit.t0": 0.3,
    }
    shift = {
        "emitters.A1.detuning": 0.42,
        "emitters.B1.detuning": 0.42,
        "controls.emit.kappa": 0.9,
        "controls.emit.t0": 0.35,
    }
    return Problem(
        "distorted",
        objective,
        controls.initial(),
        float("nan"),
        spreads,
        shift,
        "mismatched, detuned, lossy transfer (eta = 0.6, T1 and dephasing) from the calibrated sech absorber",
    )


def paper(
    preset: str | cj.Preset = "paper",
    *,
    sender: str | None = None,
    receiver: str | None = None,
    knots: int | None = None,
    steps: int | None | str = "preset",
    correction_knots: int | None = None,
    max_correction: float | None = None,
    incident: float | None = None,
) -> Problem:
    """The transfer of a preset (default `paper`) with the receiver's drive shaped.

    Parameters: the residual spline of the receiver's drive (`knots`, bounded by the coupler's
    `max_drive`), and with `correction_knots` a frequency correction on its data qubits.
    Start: the scripted time-reversed drive (x = 0). Metric: absorption efficiency. The
    settings default to the preset's `[shaping]` table.

    Robust case: the receiver data qubits' detunings (std 2π x 150 kHz each) and the coupler's
    shift factor (std 0.1) are uncertain; the "true" device has both data qubits 2π x 200 kHz
    further off and a shift factor 10 % larger. Both leave the incident photon unchanged.

    **Arguments:**

    - `preset`: a preset (name, file or loaded `Preset`) with a receiver and a `[shaping]`
      `max_drive`.
    - `sender`, `receiver`: the modules of the transfer (default: the preset's).
    - `knots`, `steps`, `correction_knots`, `max_correction`: override the preset's
      `[shaping]` values (`steps=None`: adaptive solver).
    - `incident`: the photon reaching the receiver, if already known (skips its measurement).
    """
    p = preset if isinstance(preset, cj.Preset) else cj.load_preset(preset)
    tx = p.sender if sender is None else sender
    rx_name = p.receiver if receiver is None else receiver
    require(rx_name is not None, f"problem 'paper': preset {p.name!r} has no receiver; choose a transfer preset")
    shaping = p.shaping
    require(
        shaping.get("max_drive") is not None,
        f"problem 'paper': preset {p.name!r} has no [shaping] max_drive (the coupler's largest exchange, rad/ns)",
    )
    controls = receiver_controls(
        p.line,
        tx,
        rx_name,
        p.plan,
        knots=shaping["knots"] if knots is None else int(knots),
        max_drive=shaping["max_drive"],
        correction_knots=shaping["correction_knots"] if correction_knots is None else int(correction_knots),
        max_correction=shaping["max_correction"] if max_correction is None else float(max_correction),
    )
    objective = ReceiverObjective(
        p.line, p.plan, tx, rx_name, controls, steps=shaping["steps"] if steps == "preset" else steps, incident=incident
    )
    data = list(p.line.module(rx_name).storage)
    nominal = objective.network.parameters()
    shift_name = f"controls.{rx_name}.shift.factor"
    spreads = {f"emitters.{q}.detuning": 2 * np.pi * 150e-6 for q in data}
    true = {
        f"emitters.{q}.detuning": float(np.real(nominal[f"emitters.{q}.detuning"])) + 2 * np.pi * 200e-6 for q in data
    }
    if shift_name in nominal:  # absent when a frequency correction wraps the shift control
        spreads[shift_name] = 0.1
        true[shift_name] = 1.1 * float(np.real(nominal[shift_name]))
    return Problem(
        "paper",
        objective,
        controls.initial(),
        float("nan"),
        spreads,
        true,
        f"preset {p.name!r}, {tx} -> {rx_name}: receiver drive shaped ({controls.size} parameters) around "
        "the scripted time-reversed drive; absorption efficiency",
        rl_scale=3.0,
    )


PROBLEMS: dict[str, Callable[..., Problem]] = {"ideal": ideal, "distorted": distorted, "paper": paper}


def get_problem(name: str, **options) -> Problem:
    """The problem of that name (`"ideal"`, `"distorted"` or `"paper"`), built with `options`."""
    require(name in PROBLEMS, f"problem {name!r}: choose one of {', '.join(PROBLEMS)}")
    return PROBLEMS[name](**options)
