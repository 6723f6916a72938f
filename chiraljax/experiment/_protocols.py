r"""The protocols of the experiment on a `ChiralLine`: directional emission, state transfer
(routing past idle modules), the W state by halted emission, and the error budget.

Timing. The sender's drive is centred at `plan.t0`; every other module's controls run late by
`line.arrival(sender, module)` (the travel time in the 'delay' representation, 0 in the
'markov' one whose clocks are already shifted, docs/theory.md section 3), plus the receiver's own
timing error `plan.receiver_timing`. The run starts `plan.lead`/kappa before t0 and ends
`plan.window`/kappa_min after it, extended by the travel time.

- Directional emission: the sender alone (its neighbours removed) starts in
  (|A> + e^{i theta}|B>)/sqrt(2), theta = +-pi/2, and releases a sech photon of bandwidth
  kappa; directionality = P_dir / (P_R + P_L).
- Transfer (Cirac-Zoller-Kimble-Mabuchi): the sender emits the time-symmetric photon toward the
  receiver, which runs the time-reversed drive (bandwidth `plan.receiver_kappa`). Every other
  module is idle (drive off, detuned by `line.idle_detuning`). Transfer efficiency = excitation
  in the receiver's storage qubits at the end; absorption efficiency eps = that over the photon
  that reaches the receiver, measured by a second run with the receiver (and every module
  beyond it) dark, divided by the transmission of the links beyond it. Ideal modules give
  transfer = eta exactly, eps = 1.
- W state: the sender's drive is halted once it has released `fraction` of the excitation (1/2:
  at the pulse centre for the two-qubit module), the receiver's when the photon stops arriving.
  Fidelity with the convention of `chiraljax.solve._metrics` (chi maximised unless given).
- Error budget: the infidelity 1 - F is split over the sources loss, reflections, decoherence,
  frequency mismatch and pulse mismatch by switching them off: F(S) is the metric with the
  sources in S switched off; each source gets its Shapley share
  phi_k = sum_{S not containing k} |S|! (n - |S| - 1)! / n! [F(S + k) - F(S)], which is the
  mean gain from switching k off over all orders, so the shares add up exactly to
  F(all off) - F(none off); what is left, 1 - F(all off), is the residual that no listed
  source explains (finite gamma/kappa of four-qubit modules, the finite window). The gain from
  switching each source off alone is reported too.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from chiraljax._checks import concrete, replaced
from chiraljax._errors import require
from chiraljax._types import Real
from chiraljax.experiment._modules import (
    ChiralLine,
    Interconnect,
    absorption_drive,
    direction_sign,
    directional_state,
    emission_drive,
    halt_time,
    math_prod,
)
from chiraljax.network._network import Network
from chiraljax.network._pulses import AbstractPulse, Halted, Shifted
from chiraljax.solve._metrics import (
    absorption_efficiency,
    directionality,
    emitted,
    optimal_fraction,
    single_excitation_block,
    stored_population,
    w_fidelity,
    w_phase,
)
from chiraljax.solve._result import Result
from chiraljax.solve._simulate import simulate


class PulsePlan(eqx.Module):
    """The pulses of a protocol.

    **Arguments:**

    - `kappa`: bandwidth of the emitted sech photon (rad/ns).
    - `t0`: centre of the emitted photon (ns).
    - `receiver_kappa`: bandwidth the receiver's drive is tuned for (default `kappa`; a
      different value is a pulse mismatch).
    - `receiver_timing`: timing error of the receiver's drive (ns; a pulse mismatch).
    - `receiver_drive`: a shaped drive u(t) for the receiver (on the receiver's clock, timing
      included) that replaces the scripted time-reversed one; the coupler shift follows it,
      since the network is built through `ChiralLine.network`. The W state halts it when the
      scripted drive would halt. `None`: the scripted drive.
    - `lead`: the protocol starts `lead`/kappa before t0 (the sech drive is truncated there:
      the sender has released sigmoid(-lead) of its excitation by then, 2.5e-3 for 6);
      a long lead costs decoherence while the excitation waits.
    - `window`: the run ends `window`/kappa after t0 (plus the travel time).
    - `n_save`: number of saved time points.
    """

    kappa: Real
    t0: Real
    receiver_kappa: Real
    receiver_timing: Real
    receiver_drive: AbstractPulse | None
    lead: float = eqx.field(static=True)
    window: float = eqx.field(static=True)
    n_save: int = eqx.field(static=True)

    def __init__(
        self,
        kappa,
        t0=0.0,
        receiver_kappa=None,
        receiver_timing=0.0,
        lead: float = 6.0,
        window: float = 12.0,
        n_save: int = 201,
        receiver_drive: AbstractPulse | None = None,
    ):
        rk = kappa if receiver_kappa is None else receiver_kappa
        for field_name, value in (("kappa", kappa), ("receiver_kappa", rk)):
            v = concrete(value)
            require(
                v is None or (np.isfinite(v) and float(v) > 0),
                f"PulsePlan: {field_name} must be positive (rad/ns), got {value}",
            )
        require(lead > 0 and window > 0 and n_save >= 2, "PulsePlan: lead and window must be > 0 and n_save >= 2")
        require(
            receiver_drive is None or isinstance(receiver_drive, AbstractPulse),
            f"PulsePlan: receiver_drive must be a pulse or None, got {type(receiver_drive).__name__}",
        )
        self.receiver_drive = receiver_drive
        self.kappa, self.t0 = jnp.asarray(kappa, dtype=float), jnp.asarray(t0, dtype=float)
        self.receiver_kappa = jnp.asarray(rk, dtype=float)
        self.receiver_timing = jnp.asarray(receiver_timing, dtype=float)
        self.lead, self.window, self.n_save = float(lead), float(window), int(n_save)

    def span(self, extra=0.0) -> tuple[float, float]:
        """(t0 - lead/kappa, t0 + window/kappa_min + extra) as floats."""
        k = min(float(self.kappa), float(self.receiver_kappa))
        t0 = float(self.t0)
        return (
            t0 - self.lead / float(self.kappa),
            t0 + self.window / k + float(extra) + abs(float(self.receiver_timing)),
        )

    def replace(self, **changes) -> PulsePlan:
        """A copy with some fields replaced (the constructor's checks run again)."""
        return replaced(self, **changes)


@dataclass(frozen=True)
class EmissionOutcome:
    """Directional emission: `p_right`, `p_left` (photon probability out of each end),
    `directionality` (share in the requested `direction`), and the run."""

    direction: str
    p_right: float
    p_left: float
    directionality: float
    network: Network
    result: Result


@dataclass(frozen=True)
class TransferOutcome:
    """State transfer: `transfer_efficiency` (excitation stored by the receiver),
    `incident` (photon reaching it), `absorption_efficiency` = transfer / incident,
    `link_transmission` (cables and joints), and the runs."""

    sender: str
    receiver: str
    direction: str
    transfer_efficiency: float
    incident: float
    absorption_efficiency: float
    link_transmission: float
    network: Network
    result: Result
    incident_result: Result | None = None


@dataclass(frozen=True)
class WStateOutcome:
    """W state by halted emission: `fidelity` (chi maximised), `chi` (the maximising local
    phase), `fraction` (emitted share asked for), `kept` (sender's storage population),
    `received` (receiver's), and the run."""

    sender: str
    receiver: str
    direction: str
    fidelity: float
    chi: float
    fraction: float
    kept: float
    received: float
    network: Network
    result: Result


@dataclass(frozen=True)
class RouteOutcome:
    """Routing past idle modules: the transfer on the full line, the same transfer on the line
    with the idle modules taken out (their interconnects merged), and the `excess_loss`
    (reference minus routed transfer efficiency) due to the idle modules."""

    routed: TransferOutcome
    reference: TransferOutcome
    excess_loss: float


def _clock(line: ChiralLine, sender: str, name: str, plan: PulsePlan, receiver: str | None):
    late = line.arrival(sender, name)
    return late + plan.receiver_timing if name == receiver else late


def _run(network: Network, plan: PulsePlan, extra, **kwargs) -> Result:
    return simulate(network, plan.span(extra), n_save=plan.n_save, **kwargs)


def directional_emission(line: ChiralLine, sender: str, direction: str, plan: PulsePlan) -> EmissionOutcome:
    """Emit a sech photon from `sender` toward `direction` ('right' or 'left') on the line
    holding that module alone.

    **Returns:** an `EmissionOutcome`.
    """
    direction_sign(direction)
    solo = line.sub(sender)
    module = solo.module(sender)
    net = solo.network(
        {sender: emission_drive(module, plan.kappa, plan.t0)}, initial=directional_state(module, direction)
    )
    res = _run(net, plan, 0.0)
    p_r, p_l = float(emitted(res, "right")), float(emitted(res, "left"))
    return EmissionOutcome(direction, p_r, p_l, float(directionality(res, direction)), net, res)


def transfer_network(
    line: ChiralLine, sender: str, receiver: str, plan: PulsePlan, *, dark: tuple[str, ...] = ()
) -> Network:
    """The network of a transfer: `sender` emits toward `receiver`, which absorbs; the rest idle."""
    direction = line.direction(sender, receiver)
    tx = line.module(sender)
    drives = {sender: emission_drive(tx, plan.kappa, plan.t0), receiver: receiver_drive(line, sender, receiver, plan)}
    return line.network(drives, initial=directional_state(tx, direction), dark=dark)


def receiver_drive(line: ChiralLine, sender: str, receiver: str, plan: PulsePlan) -> AbstractPulse:
    """The receiver's drive on its own clock: `plan.receiver_drive` if given, else the scripted
    time-reversed drive for bandwidth `plan.receiver_kappa`, late by the arrival time plus
    `plan.receiver_timing`."""
    if plan.receiver_drive is not None:
        return plan.receiver_drive
    return Shifted(
        absorption_drive(line.module(receiver), plan.receiver_kappa, plan.t0),
        _clock(line, sender, receiver, plan, receiver),
    )


def _beyond(line: ChiralLine, receiver: str, direction: str) -> tuple[str, ...]:
    i = line.index(receiver)
    return line.names[i:] if direction == "right" else line.names[: i + 1]


def transfer(
    line: ChiralLine, sender: str, receiver: str, plan: PulsePlan, *, measure_incident: bool = True
) -> TransferOutcome:
    """Send the state of `sender` to `receiver` by time-symmetric emission and time-reversed
    absorption, past any idle modules between them (module docstring).

    **Arguments:**

    - `line`, `sender`, `receiver`, `plan`: the device, the two modules, the pulses.
    - `measure_incident`: also run the photon past a dark receiver to measure what reaches it
      (needed for the absorption efficiency; NaN without it).

    **Returns:** a `TransferOutcome`.
    """
    direction = line.direction(sender, receiver)
    extra = line.arrival(sender, receiver)
    net = transfer_network(line, sender, receiver, plan)
    res = _run(net, plan, extra)
    moved = float(stored_population(res, line.module(receiver).storage))
    eta = float(line.link_transmission(sender, receiver))
    incident, inc_res = float("nan"), None
    if measure_incident:
        beyond = _beyond(line, receiver, direction)
        inc_res = _run(transfer_network(line, sender, receiver, plan, dark=beyond), plan, extra)
        after = float(line.link_transmission(beyond[0], beyond[-1]))
        incident = float(emitted(inc_res, direction)) / after
    return TransferOutcome(
        sender,
        receiver,
        direction,
        moved,
        incident,
        float(absorption_efficiency(moved, incident)),
        eta,
        net,
        res,
        inc_res,
    )


def _without(line: ChiralLine, keep: tuple[str, ...]) -> ChiralLine:
    """The line with only the modules in `keep`; the interconnects across removed modules are
    merged (delays add, transmissions multiply, phases add, joints concatenate)."""
    idx = [line.index(n) for n in line.names if n in keep]
    merged = []
    for a, b in zip(idx, idx[1:]):
        parts = line.interconnects[a:b]
        merged.append(
            Interconnect(
                sum(float(p.delay) for p in parts),
                float(math_prod(p.transmission for p in parts)),
                sum(float(p.phase) for p in parts),
                np.concatenate([np.asarray(p.joints) for p in parts]),
            )
        )
    return line.replace(modules=[line.modules[i] for i in idx], interconnects=merged)


def route(line: ChiralLine, sender: str, receiver: str, plan: PulsePlan) -> RouteOutcome:
    """Transfer from any module to any other past the idle (detuned) modules between them,
    and the loss those idle modules add compared with a line without them.

    **Returns:** a `RouteOutcome`.
    """
    routed = transfer(line, sender, receiver, plan, measure_incident=False)
    reference = transfer(_without(line, (sender, receiver)), sender, receiver, plan, measure_incident=False)
    return RouteOutcome(routed, reference, reference.transfer_efficiency - routed.transfer_efficiency)


def w_state_network(line: ChiralLine, sender: str, receiver: str, plan: PulsePlan, fraction=0.5) -> Network:
    """The network of the W-state protocol (halted emission, halted absorption)."""
    direction = line.direction(sender, receiver)
    tx = line.module(sender)
    t_stop = halt_time(tx, fraction, plan.kappa, plan.t0)
    drives = {
        sender: Halted(emission_drive(tx, plan.kappa, plan.t0), t_stop),
        receiver: Halted(
            receiver_drive(line, sender, receiver, plan), t_stop + _clock(line, sender, receiver, plan, receiver)
        ),
    }
    return line.network(drives, initial=directional_state(tx, direction))


def w_state(
    line: ChiralLine,
    sender: str,
    receiver: str,
    plan: PulsePlan,
    fraction: float | str = 0.5,
    *,
    eta_eps: float | None = None,
) -> WStateOutcome:
    """Entangle `sender` and `receiver` in a W state by halted emission.

    **Arguments:**

    - `fraction`: share of the excitation the sender releases (1/2 for the symmetric W state),
      or "optimal" for eta eps / (1 + eta eps), which needs `eta_eps`.
    - `eta_eps`: end-to-end efficiency (from `transfer`), for the optimal fraction.

    **Returns:** a `WStateOutcome`.
    """
    if fraction == "optimal":
        require(
            eta_eps is not None and 0 < eta_eps <= 1,
            "w_state: fraction='optimal' needs eta_eps in (0, 1] (the transfer efficiency)",
        )
        fraction = float(optimal_fraction(eta_eps))
    require(
        isinstance(fraction, (int, float)) and 0 < float(fraction) < 1,
        f"w_state: fraction must lie in (0, 1) or be 'optimal', got {fraction!r}",
    )
    direction = line.direction(sender, receiver)
    net = w_state_network(line, sender, receiver, plan, fraction)
    res = _run(net, plan, line.arrival(sender, receiver))
    first, second = line.module(sender).storage, line.module(receiver).storage
    theta = 0.5 * math.pi * direction_sign(direction)
    block = single_excitation_block(res, first + second)
    return WStateOutcome(
        sender,
        receiver,
        direction,
        float(w_fidelity(res, first, second, direction)),
        float(w_phase(block, theta, theta)),
        float(fraction),
        float(stored_population(res, first)),
        float(stored_population(res, second)),
        net,
        res,
    )


# ---- error budget -------------------------------------------------------------------------


def _no_loss(line: ChiralLine, plan: PulsePlan):
    ics = [eqx.tree_at(lambda c: c.transmission, ic, jnp.ones(())) for ic in line.interconnects]
    return line.replace(interconnects=ics), plan


def _no_reflections(line: ChiralLine, plan: PulsePlan):
    ics = [eqx.tree_at(lambda c: c.joints, ic, jnp.zeros_like(ic.joints)) for ic in line.interconnects]
    return line.replace(interconnects=ics), plan


def _no_decoherence(line: ChiralLine, plan: PulsePlan):
    mods = [eqx.tree_at(lambda m: (m.decay, m.dephasing), m, (jnp.zeros(()), jnp.zeros(()))) for m in line.modules]
    return line.replace(modules=mods), plan


def _no_frequency_mismatch(line: ChiralLine, plan: PulsePlan):
    mods = [
        eqx.tree_at(
            lambda m: (m.detuning, m.shift, m.design_frequency),
            m,
            (jnp.zeros(()), jnp.zeros(()), jnp.asarray(line.carrier, dtype=float)),
        )
        for m in line.modules
    ]
    return line.replace(modules=mods), plan


def _no_pulse_mismatch(line: ChiralLine, plan: PulsePlan):
    # The receiver runs the exact time reverse of the sender's drive (a shaped drive is dropped).
    return line, plan.replace(receiver_kappa=plan.kappa, receiver_timing=0.0, receiver_drive=None)


#: The error sources of the budget and how each is switched off.
ERROR_SOURCES: dict[str, Callable] = {
    "loss": _no_loss,
    "reflections": _no_reflections,
    "decoherence": _no_decoherence,
    "frequency mismatch": _no_frequency_mismatch,
    "pulse mismatch": _no_pulse_mismatch,
}


@dataclass(frozen=True)
class ErrorBudget:
    """Split of an infidelity 1 - F over error sources (module docstring).

    **Fields:** `metric` ('w_state' or 'transfer'), `value` (F with every source on),
    `ideal` (F with every listed source off), `shares` {source: Shapley share},
    `alone` {source: F(source off) - F}, `residual` = 1 - ideal, `total` = 1 - value;
    sum(shares) + residual == total.
    """

    metric: str
    value: float
    ideal: float
    shares: dict[str, float]
    alone: dict[str, float]
    residual: float
    total: float = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "total", 1.0 - self.value)

    def closure(self) -> float:
        """|sum(shares) + residual - total| (zero up to rounding by construction)."""
        return abs(sum(self.shares.values()) + self.residual - self.total)


def _metric(metric: str, line, sender, receiver, plan) -> float:
    if metric == "w_state":
        return w_state(line, sender, receiver, plan).fidelity
    return transfer(line, sender, receiver, plan, measure_incident=False).transfer_efficiency


def error_budget(
    line: ChiralLine,
    sender: str,
    receiver: str,
    plan: PulsePlan,
    metric: str = "w_state",
    sources: dict[str, Callable] | None = None,
) -> ErrorBudget:
    """Split the infidelity of the W state (`metric='w_state'`) or the inefficiency of the
    transfer (`metric='transfer'`) over error sources by switching them off (2^n runs of one
    compiled model).

    **Arguments:**

    - `line`, `sender`, `receiver`, `plan`: the protocol.
    - `metric`: 'w_state' or 'transfer'.
    - `sources`: {name: (line, plan) -> (line, plan) with that source off}; default
      `ERROR_SOURCES`.

    **Returns:** an `ErrorBudget`.
    """
    require(metric in ("w_state", "transfer"), f"error_budget: metric must be 'w_state' or 'transfer', got {metric!r}")
    sources = dict(ERROR_SOURCES if sources is None else sources)
    names = list(sources)
    n = len(names)
    values: dict[frozenset, float] = {}
    for r in range(n + 1):
        for subset in itertools.combinations(names, r):
            ln, pl = line, plan
            for s in subset:
                ln, pl = sources[s](ln, pl)
            values[frozenset(subset)] = _metric(metric, ln, sender, receiver, pl)
    shares = {}
    for k in names:
        others = [s for s in names if s != k]
        total = 0.0
        for r in range(n):
            weight = math.factorial(r) * math.factorial(n - r - 1) / math.factorial(n)
            for subset in itertools.combinations(others, r):
                s = frozenset(subset)
                total += weight * (values[s | {k}] - values[s])
        shares[k] = total
    base, ideal = values[frozenset()], values[frozenset(names)]
    alone = {k: values[frozenset([k])] - base for k in names}
    return ErrorBudget(metric, base, ideal, shares, alone, 1.0 - ideal)
