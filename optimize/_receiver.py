r"""Shaping the receiver's drive of a state transfer on a `ChiralLine` (the paper problem).

The receiver module's drive `u(t)` (the tunable exchange between its data qubits and its
waveguide-coupled qubits, `DataModule`) is a residual spline around the scripted
time-reversed drive `b(t)` under the amplitude bounds `0 < u < u_max` of the coupler,

$$u_x(t) = u_{\max}\,\sigma\big(\sigma^{-1}(b(t)/u_{\max}) + \textstyle\sum_k x_k \phi_k(t)\big),$$

(`BasisParameterization` with a baseline; `x = 0` is the scripted drive exactly). The network
is built by the protocol itself (`transfer_network` with `PulsePlan.receiver_drive = u_x`,
through `ChiralLine.network`), so the coupler-induced frequency shift of the receiver's data
qubits, `δ(t) = shift · u_x(t)`, follows the shaped drive: shaping the exchange also chirps the
receiver. Optionally a frequency correction `c_y(t)` (a flux pulse on the receiver's data
qubits, a spline from zero in `(-c_max, c_max)`) is added to that shift.

The score is the absorption efficiency

$$\varepsilon(x) = P_{\rm stored}(t_1; x) / P_{\rm in},$$

`P_stored` the excitation of the receiver's storage qubits at the end and `P_in` the photon
that reaches the receiver, measured once with the receiver dark (`transfer`): it depends only
on the sender side and the link, so it is a constant of the problem. An ensemble of hardware
parameters (`{network parameter name: values (E,)}`, applied with `Network.with_parameters`
after the network is built) gives the robust objective (mean or soft minimum over members);
the ensemble should vary receiver-side parameters (detunings, couplings, the shift factor), which
leave `P_in` unchanged.

With `steps=n` the solver takes n fixed 8th-order steps (the drives are smooth), which makes
value-and-grad and vmapped batches cheap; `check_steps` compares with the adaptive solver.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from chiraljax._errors import require
from chiraljax._precision import real_dtype
from chiraljax.experiment._modules import ChiralLine
from chiraljax.experiment._protocols import PulsePlan, receiver_drive, transfer, transfer_network
from chiraljax.network._network import Network
from chiraljax.network._pulses import AbstractPulse, Constant
from chiraljax.solve._methods import Sector
from chiraljax.solve._metrics import stored_population
from chiraljax.solve._simulate import simulate

from ._objectives import AbstractObjective, check_aggregate, check_ensemble
from ._parameterize import BasisParameterization, Controls

__all__ = ["FrequencyCorrected", "ReceiverObjective", "receiver_controls"]


class FrequencyCorrected(AbstractPulse):
    """`shift(t) + correction(t)`: the receiver's frequency-shift control with a flux correction."""

    shift: AbstractPulse
    correction: AbstractPulse

    def __call__(self, t):
        return self.shift(t) + self.correction(t)

    def jump_times(self) -> tuple:
        return self.shift.jump_times() + self.correction.jump_times()


def receiver_controls(
    line: ChiralLine,
    sender: str,
    receiver: str,
    plan: PulsePlan,
    *,
    knots: int = 12,
    max_drive: float,
    correction_knots: int = 0,
    max_correction: float = 0.0,
) -> Controls:
    """The parameterisation of the receiver's pulses (module docstring).

    **Arguments:**

    - `line`, `sender`, `receiver`, `plan`: the transfer; the baseline is the plan's scripted
      receiver drive.
    - `knots`: spline knots of the drive residual over the protocol window.
    - `max_drive`: the coupler's largest exchange u_max (rad/ns); the baseline must stay below it.
    - `correction_knots`: spline knots of the frequency correction (0: none).
    - `max_correction`: its bound c_max (rad/ns).

    **Returns:** a `Controls` with `"drive"` (and `"correction"`).
    """
    require(
        plan.receiver_drive is None,
        "receiver_controls: plan.receiver_drive is already set; shape around the scripted drive "
        "(plan.replace(receiver_drive=None))",
    )
    window = plan.span(line.arrival(sender, receiver))
    base = receiver_drive(line, sender, receiver, plan)
    parts = {"drive": BasisParameterization("spline", knots, *window, bounds=(0.0, float(max_drive)), baseline=base)}
    if correction_knots:
        require(max_correction > 0, f"max_correction={max_correction}: a frequency correction needs a bound > 0")
        parts["correction"] = BasisParameterization(
            "spline",
            correction_knots,
            *window,
            bounds=(-float(max_correction), float(max_correction)),
            baseline=Constant(0.0),
        )
    return Controls(parts)


class ReceiverObjective(AbstractObjective):
    """Absorption efficiency of a transfer as a function of the receiver's pulse parameters.

    **Arguments:**

    - `line`, `plan`, `sender`, `receiver`: the transfer (`chiraljax.experiment._protocols`).
    - `controls`: from `receiver_controls`.
    - `steps`: fixed solver steps (None: adaptive at `rtol`, `atol`).
    - `incident`: P_in (default: measured once with the receiver dark).
    - `ensemble`, `aggregate`, `temperature`: the robust objective (as `Objective`).
    - `hardware`: network parameters overridden in every evaluation (a perturbed device).
    """

    line: ChiralLine
    plan: PulsePlan
    incident: Float[Array, ""]
    hardware: dict[str, Array] | None
    sender: str = eqx.field(static=True)
    receiver: str = eqx.field(static=True)
    t_span: tuple[float, float] = eqx.field(static=True)
    steps: int | None = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)

    def __init__(
        self,
        line: ChiralLine,
        plan: PulsePlan,
        sender: str,
        receiver: str,
        controls: Controls,
        *,
        steps: int | None = 64,
        incident=None,
        ensemble: Mapping[str, Any] | None = None,
        aggregate: str = "mean",
        temperature: float = 0.01,
        hardware: Mapping[str, Any] | None = None,
        rtol: float = Sector.rtol,
        atol: float = Sector.atol,
    ):
        require(
            isinstance(controls, Controls) and "drive" in controls.names,
            "controls: build them with receiver_controls (a 'drive' entry is needed)",
        )
        require(
            steps is None or (isinstance(steps, int) and steps >= 1), f"steps={steps!r}: a positive integer or None"
        )
        check_aggregate(aggregate, temperature)
        self.line, self.plan, self.controls = line, plan.replace(receiver_drive=None), controls
        self.sender, self.receiver = sender, receiver
        line.direction(sender, receiver)
        self.t_span = tuple(float(t) for t in plan.span(line.arrival(sender, receiver)))
        self.steps, self.rtol, self.atol = steps, float(rtol), float(atol)
        self.aggregate, self.temperature = aggregate, float(temperature)
        if incident is None:
            incident = transfer(line, sender, receiver, self.plan).incident
        inc = float(np.asarray(incident))
        require(0 < inc <= 1, f"incident={inc}: the photon reaching the receiver must lie in (0, 1]")
        self.incident = jnp.asarray(inc, real_dtype())
        self.hardware = None if not hardware else dict(hardware)
        nominal = self.network_at(controls.initial())
        self.ensemble = None if ensemble is None else check_ensemble(nominal, ensemble)

    # ---- the network --------------------------------------------------------------------

    def pulses(self, x: Float[Array, " P"]) -> dict[str, AbstractPulse]:
        """The receiver's shaped pulses for the parameters `x`."""
        return self.controls.pulses(jnp.asarray(x, real_dtype()))

    def plan_at(self, x: Float[Array, " P"]) -> PulsePlan:
        """The pulse plan with the shaped receiver drive of `x` (for `w_state`, `error_budget`;
        a frequency correction is not part of a plan)."""
        return self.plan.replace(receiver_drive=self.pulses(x)["drive"])

    def network_at(self, x: Float[Array, " P"], member: Mapping[str, Any] | None = None) -> Network:
        """The transfer network with the receiver's pulses of `x` (hardware overrides and an
        ensemble `member` applied)."""
        pulses = self.pulses(x)
        net = transfer_network(self.line, self.sender, self.receiver, self.plan.replace(receiver_drive=pulses["drive"]))
        if "correction" in pulses:
            name = f"{self.receiver}.shift"
            net = eqx.tree_at(
                lambda n: n.controls[name], net, FrequencyCorrected(net.controls[name], pulses["correction"])
            )
        values = {**(self.hardware or {}), **(member or {})}
        return net.with_parameters(values) if values else net

    @property
    def network(self) -> Network:
        """The network at the starting pulse (for `sample_ensemble` and parameter names)."""
        return self.network_at(self.controls.initial())

    # ---- the score ----------------------------------------------------------------------

    def simulate(self, x: Float[Array, " P"], member: Mapping[str, Any] | None = None, **options):
        """Simulate the transfer with the pulses of `x` (options go to `cj.simulate`)."""
        kw = dict(n_save=2, representation="sector", steps=self.steps, rtol=self.rtol, atol=self.atol)
        kw.update(options)
        return simulate(self.network_at(x, member), self.t_span, **kw)

    def _metric(self, x, member=None):
        res = self.simulate(x, member)
        return stored_population(res, self.line.module(self.receiver).storage) / self.incident

    def members(self, x: Float[Array, " P"]) -> Float[Array, " E"]:
        """The absorption efficiency of every ensemble member (shape (1,) without an ensemble)."""
        x = jnp.asarray(x, real_dtype())
        if self.ensemble is None:
            return self._metric(x)[None]
        return jax.vmap(lambda member: self._metric(x, member))(self.ensemble)

    def check_steps(self, x: Float[Array, " P"]) -> float:
        """|fixed-step - adaptive| absorption efficiency at `x` (nominal device)."""
        fixed = float(_forward(self, jnp.asarray(x, real_dtype())))
        return abs(fixed - float(_forward(self.with_steps(None), jnp.asarray(x, real_dtype()))))

    # ---- variants -----------------------------------------------------------------------

    def with_network(self, network: Network) -> ReceiverObjective:
        """The same objective on the hardware of `network` (a perturbed "true" device, e.g.
        `objective.network.with_parameters(...)`): every parameter of it except the shaped
        pulses' coefficients (`.raw.` leaves) overrides the line's in every evaluation."""
        hardware = {k: v for k, v in network.parameters().items() if ".raw." not in k}
        return self._replace(hardware=hardware)

    def with_steps(self, steps: int | None) -> ReceiverObjective:
        """The same objective with another number of fixed steps (None: adaptive)."""
        return self._replace(steps=steps)


@eqx.filter_jit
def _forward(objective: ReceiverObjective, x):
    return objective(x)
