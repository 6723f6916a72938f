r"""Chiral modules on a shared waveguide: the device of the experiment as a `Network`.

A chiral module (docs/theory.md section 2) is two transmons Q_A, Q_B coupled to the waveguide at
points a quarter wavelength apart at the design frequency w_q. A photon of frequency w picks up

$$\phi(w) = \frac{\pi}{2}\,\frac{w}{w_q}$$

between the two points, so operating away from w_q (a detuned module, a fabrication offset of
w_q) spoils the directionality. The waveguide mediates an exchange
J_wg = (1/2) sqrt(gamma_A gamma_B) sin(phi) (it comes out of the series products in the Markov
compiler, never added here); a direct coupling g = -(1/2) sqrt(gamma_A gamma_B) sin(phi_c)
cancels it, where phi_c is the phase it was calibrated for (`cancellation`).

Two variants:

- `TunableModule`: the waveguide couplings are tunable, gamma_j(t) = s_j u(t) with
  s_{A,B} = 1 +- `imbalance` and u(t) the module's drive (rad/ns). The cancelling coupling
  follows the drive. This is also the model of the 2023 directional-emission device.
- `DataModule` (four qubits, as in the 2025 experiment): Q_A, Q_B couple to the waveguide at
  the fixed rates gamma (1 +- `imbalance`); two data qubits D_A, D_B talk to them through the
  tunable exchanges H = i u(t) D_j^dag Q_j + h.c. With gamma >> |u| the data pair releases a
  directional photon at the rate 4 u^2 / gamma; `DataRelease` gives the exact u(t) for a
  sech photon.

Controls carry the frequency shifts they induce: a tunable coupler moves the frequency of the
qubits it tunes in proportion to its setting, delta(t) = `shift` * u(t) (on Q_A, Q_B for the
tunable variant, on D_A, D_B for the data variant). The network holds the drive under
`"{module}.drive"` and the shift as `Scaled(drive, shift)` under `"{module}.shift"`; build
networks through `ChiralLine.network` so that both stay consistent.

Any number of modules sit on one line (`ChiralLine`), joined by `Interconnect`s (delay, power
transmission, extra phase, joints with reflection amplitudes). An idle module is detuned by
`ChiralLine.idle_detuning` and its drive is off, so that a passing photon goes by nearly
untouched (a detuned qubit reflects a fraction ~ (gamma / 2 Delta)^2).

Two representations of the line:

- `"markov"`: delays shifted out (docs/theory.md section 3: each module runs on its own clock, late
  by the travel time from the sender, so the protocols shift nothing), propagation phases
  kept, each joint of reflection r counted as the extra loss 1 - |r|^2 (a stand-in for the
  reflections, exact for the power that reaches the receiver but blind to echoes).
- `"delay"`: real delays and joints as `Scatterer`s, for the delay kernel; the receiver's
  controls are then run late by the travel time (`ChiralLine.arrival`).

Emitter names are `"{module}.QA"`, `"{module}.QB"` (and `"{module}.DA"`, `"{module}.DB"`).
Frequencies are angular (rad/ns in the presets); `carrier` is the frame frequency w_r, the
frequency of the photons, and a module's `detuning` is its offset from it.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Inexact

from chiraljax._checks import as_array, concrete, replaced, require_finite
from chiraljax._errors import require
from chiraljax._types import Real
from chiraljax.network._network import Coupling, Emitter, Link, Network, Port, Scatterer
from chiraljax.network._pulses import AbstractPulse, Constant, Scaled

DIRECTIONS = ("right", "left")
CANCELLATIONS = ("exact", "design", "none")
REPRESENTATIONS = ("markov", "delay")
# Spacing of the two coupling points of a module in the position coordinate (only the order of
# positions matters to the Network; modules must be further apart than this).
_POINT_SPACING = 0.1


def quarter_wave_phase(frequency, design_frequency):
    """phi(w) = (pi/2) w / w_q: the propagation phase between the two coupling points of a
    module built a quarter wavelength apart at w_q, for a photon of frequency w."""
    return 0.5 * jnp.pi * jnp.asarray(frequency) / jnp.asarray(design_frequency)


def direction_sign(direction: str) -> float:
    """+1 for "right", -1 for "left" (theta = +- pi/2 in docs/theory.md section 2)."""
    require(direction in DIRECTIONS, f"direction must be 'right' or 'left', got {direction!r}")
    return 1.0 if direction == "right" else -1.0


class DataRelease(AbstractPulse):
    r"""The exchange u(t) that makes a data qubit release (or catch) a sech photon exactly
    through a waveguide-coupled qubit of rate gamma.

    With H = i u D^dag Q + h.c. and Q decaying at gamma, the photon
    f = (sqrt(kappa)/2) sech(x), x = kappa (t - t0)/2, needs Q's amplitude -f/sqrt(gamma) and
    D's |c_D|^2 = 1 - int f^2 - f^2/gamma, hence (s = sigmoid(2x), r = kappa/gamma)

    $$u(t) = \frac{\sqrt{\kappa s}\,(\gamma - \kappa \tanh x)}{2\sqrt{\gamma}\sqrt{1 - r s}},$$

    which tends to (1/2) sqrt(kappa gamma s) (rate 4u^2/gamma = gamma_e(t)) when gamma >> kappa
    and is bounded by (1/2) sqrt(kappa (gamma - kappa)). `sense = -1` runs it backwards in time
    about t0, the time-reversed control that absorbs the same photon.

    **Arguments:**

    - `kappa`: photon bandwidth (must be below gamma).
    - `gamma`: waveguide rate of the coupled qubit.
    - `t0`: photon centre.
    - `sense`: +1 to emit, -1 to absorb.
    """

    kappa: Real
    gamma: Real
    t0: Real
    sense: Real

    def __init__(self, kappa, gamma, t0=0.0, sense=1.0):
        require_finite("DataRelease", kappa=kappa, gamma=gamma, t0=t0, sense=sense)
        k, g = concrete(kappa), concrete(gamma)
        if k is not None and g is not None:
            require(
                0 < float(k) < float(g),
                f"DataRelease: kappa must lie in (0, gamma) = (0, {float(g)}), got {float(k)}; "
                "a qubit cannot release a photon faster than its waveguide rate",
            )
        self.kappa, self.gamma = as_array(kappa, float), as_array(gamma, float)
        self.t0, self.sense = as_array(t0, float), as_array(sense, float)

    def __call__(self, t):
        x = 0.5 * self.kappa * self.sense * (t - self.t0)
        s = jax.nn.sigmoid(2.0 * x)
        r = self.kappa / self.gamma
        return (
            jnp.sqrt(self.kappa * s)
            * (self.gamma - self.kappa * jnp.tanh(x))
            / (2.0 * jnp.sqrt(self.gamma) * jnp.sqrt(1.0 - r * s))
        )


def data_halt_time(fraction, kappa, gamma, t0=0.0):
    """The time at which to stop `DataRelease(kappa, gamma, t0)` so that the data pair has lost
    `fraction` of its excitation: solves (1 - s)(1 - r s) = 1 - p for s = sigmoid(kappa (t - t0))
    with r = kappa/gamma (r -> 0 gives the two-qubit value t0 + logit(p)/kappa)."""
    p, r = jnp.asarray(fraction, dtype=float), jnp.asarray(kappa) / jnp.asarray(gamma)
    s = ((1 + r) - jnp.sqrt((1 + r) ** 2 - 4 * r * p)) / (2 * r)
    return t0 + jnp.log(s / (1 - s)) / kappa


def sech_halt_time(fraction, kappa, t0=0.0):
    """The time at which a sech emission (`SechEmission(kappa, t0)`) has released `fraction`
    of the excitation: int_{-inf}^t f^2 = sigmoid(kappa (t - t0)) = p."""
    p = jnp.asarray(fraction, dtype=float)
    return t0 + jnp.log(p / (1 - p)) / kappa


class AbstractModule(eqx.Module):
    """Fields shared by both variants, validated by its constructor (see the module docstring).

    - `name`, `position`: where on the line (Q_A at `position`, Q_B just right of it).
    - `detuning`: offset of all qubits of the module from the carrier (rad/ns).
    - `design_frequency`: w_q, at which the spacing is a quarter wavelength (rad/ns).
    - `imbalance`: relative rate difference, gamma_{A,B} = gamma (1 +- imbalance).
    - `shift`: frequency shift per unit of drive, delta(t) = shift * u(t).
    - `decay`, `dephasing`: 1/T1 and gamma_phi of every qubit of the module.
    - `cancellation`: 'exact' (the direct coupling cancels J_wg at the operating phase),
      'design' (calibrated for phi = pi/2) or 'none' (no direct coupling).
    - `exchange_error`: a miscalibration of the cancelling coupling, added to it in units of
      sqrt(gamma_A gamma_B) (the residual exchange sends a share ~ exchange_error^2 the wrong
      way).
    """

    name: str = eqx.field(static=True)
    position: float = eqx.field(static=True)
    detuning: Real
    design_frequency: Real
    imbalance: Real
    shift: Real
    decay: Real
    dephasing: Real
    exchange_error: Real
    cancellation: str = eqx.field(static=True)

    def __init__(
        self,
        name: str,
        position: float,
        *,
        design_frequency,
        detuning=0.0,
        imbalance=0.0,
        shift=0.0,
        decay=0.0,
        dephasing=0.0,
        exchange_error=0.0,
        cancellation: str = "exact",
    ):
        owner = f"module {name!r}"
        require(
            isinstance(name, str) and name != "" and "-" not in name,
            f"{owner}: name must be a non-empty string without '-'",
        )
        require(
            cancellation in CANCELLATIONS,
            f"{owner}: cancellation must be one of {', '.join(CANCELLATIONS)}, got {cancellation!r}",
        )
        require_finite(owner, detuning=detuning, design_frequency=design_frequency, imbalance=imbalance, shift=shift)
        require_finite(owner, decay=decay, dephasing=dephasing, exchange_error=exchange_error)
        wq, eps = concrete(design_frequency), concrete(imbalance)
        if wq is not None:
            require(float(wq) > 0, f"{owner}: design_frequency must be positive (rad/ns), got {float(wq)}")
        if eps is not None:
            require(abs(float(eps)) < 1, f"{owner}: imbalance must lie in (-1, 1), got {float(eps)}")
        for field, value in (("decay", decay), ("dephasing", dephasing)):
            v = concrete(value)
            if v is not None:
                require(float(v) >= 0, f"{owner}: {field} must be >= 0, got {float(v)}")
        self.name, self.position, self.cancellation = name, float(position), cancellation
        self.detuning = as_array(detuning, float)
        self.design_frequency = as_array(design_frequency, float)
        self.imbalance = as_array(imbalance, float)
        self.shift = as_array(shift, float)
        self.decay = as_array(decay, float)
        self.dephasing = as_array(dephasing, float)
        self.exchange_error = as_array(exchange_error, float)

    @property
    @abc.abstractmethod
    def qubits(self) -> tuple[str, ...]:
        """Names of the emitters of this module."""

    @property
    @abc.abstractmethod
    def storage(self) -> tuple[str, str]:
        """The (A, B) pair that holds the module's state before emission and after absorption."""

    @abc.abstractmethod
    def drive_scale(self):
        """The largest useful value of the drive (for plots and bounds)."""


class TunableModule(AbstractModule):
    """Two waveguide-coupled qubits with tunable couplings gamma_{A,B}(t) = (1 +- imbalance) u(t),
    u the module's drive in rad/ns (`SechEmission`, `SechAbsorption`, ...). See `AbstractModule`
    for the arguments; `max_rate` bounds the drive (for plots)."""

    max_rate: Real

    def __init__(self, name: str, position: float, *, max_rate=1.0, **shared: Any):
        super().__init__(name, position, **shared)
        self.max_rate = as_array(max_rate, float)

    @property
    def qubits(self) -> tuple[str, ...]:
        return (f"{self.name}.QA", f"{self.name}.QB")

    @property
    def storage(self) -> tuple[str, str]:
        return (f"{self.name}.QA", f"{self.name}.QB")

    def drive_scale(self):
        return self.max_rate


class DataModule(AbstractModule):
    """Four qubits: Q_A, Q_B on the waveguide at the fixed rate `gamma` (1 +- imbalance), and data
    qubits D_A, D_B with the tunable exchanges i u(t) D_j^dag Q_j + h.c. (`DataRelease`). See
    `AbstractModule` for the other arguments."""

    gamma: Real

    def __init__(self, name: str, position: float, *, gamma, **shared: Any):
        super().__init__(name, position, **shared)
        g = concrete(gamma)
        if g is not None:
            require(np.isfinite(g) and float(g) > 0, f"module {name!r}: gamma must be positive, got {g}")
        self.gamma = as_array(gamma, float)

    @property
    def qubits(self) -> tuple[str, ...]:
        return tuple(f"{self.name}.{q}" for q in ("QA", "QB", "DA", "DB"))

    @property
    def storage(self) -> tuple[str, str]:
        return (f"{self.name}.DA", f"{self.name}.DB")

    def drive_scale(self):
        return 0.5 * self.gamma


class Interconnect(eqx.Module):
    """The waveguide between two neighbouring modules.

    **Arguments:**

    - `delay`: travel time tau (ns).
    - `transmission`: power transmission eta of the cable (loss in dB: eta = 10^(-dB/10)),
      joints excluded.
    - `phase`: extra phase beyond the propagation phase w_r tau (which the line adds).
    - `joints`: reflection amplitudes r_k of the joints (connectors, package transitions),
      evenly spaced along the link; each transmits sqrt(1 - |r_k|^2).
    """

    delay: Real
    transmission: Real
    phase: Real
    joints: Inexact[Array, " J"]

    def __init__(self, delay=0.0, transmission=1.0, phase=0.0, joints=()):
        require_finite("Interconnect", delay=delay, transmission=transmission, phase=phase)
        d, eta = concrete(delay), concrete(transmission)
        if d is not None:
            require(float(d) >= 0, f"Interconnect: delay must be >= 0, got {float(d)}")
        if eta is not None:
            require(0 <= float(eta) <= 1, f"Interconnect: transmission must lie in [0, 1], got {float(eta)}")
        r = np.atleast_1d(np.asarray(joints, dtype=complex)) if len(np.atleast_1d(joints)) else np.zeros(0, complex)
        require(bool(np.all(np.abs(r) < 1)), f"Interconnect: joint reflections must have |r| < 1, got {r}")
        self.delay = as_array(delay, float)
        self.transmission = as_array(transmission, float)
        self.phase = as_array(phase, float)
        self.joints = jnp.asarray(r)

    def power_transmission(self):
        """eta times prod (1 - |r_k|^2): the power that crosses the link."""
        return self.transmission * jnp.prod(1.0 - jnp.abs(self.joints) ** 2)


class ChiralLine(eqx.Module):
    """Modules on one waveguide, left to right, and the interconnects between them.

    **Arguments:**

    - `modules`: `TunableModule`s and/or `DataModule`s in increasing `position`.
    - `interconnects`: one per gap (default: ideal, no delay).
    - `carrier`: w_r, the photon (frame) frequency in rad/ns.
    - `idle_detuning`: added to the detuning of every module that takes no part in a protocol.
    - `representation`: 'markov' or 'delay' (module docstring).
    """

    modules: tuple[AbstractModule, ...]
    interconnects: tuple[Interconnect, ...]
    carrier: Real
    idle_detuning: Real
    representation: str = eqx.field(static=True)

    def __init__(self, modules, interconnects=None, *, carrier, idle_detuning=0.0, representation: str = "markov"):
        self.modules = tuple(modules)
        require(len(self.modules) >= 1, "ChiralLine: give at least one module")
        names = [m.name for m in self.modules]
        require(len(set(names)) == len(names), f"ChiralLine: module names must be unique, got {names}")
        pos = [m.position for m in self.modules]
        require(
            all(b - a > 2 * _POINT_SPACING for a, b in zip(pos, pos[1:])),
            f"ChiralLine: modules must be in increasing position, at least {2 * _POINT_SPACING} apart; got {pos}",
        )
        if interconnects is None:
            interconnects = [Interconnect() for _ in range(len(self.modules) - 1)]
        self.interconnects = tuple(interconnects)
        require(
            len(self.interconnects) == len(self.modules) - 1,
            f"ChiralLine: {len(self.modules)} modules need {len(self.modules) - 1} interconnects, "
            f"got {len(self.interconnects)}",
        )
        require(
            representation in REPRESENTATIONS,
            f"ChiralLine: representation must be 'markov' or 'delay', got {representation!r}",
        )
        require_finite("ChiralLine", carrier=carrier, idle_detuning=idle_detuning)
        self.carrier = as_array(carrier, float)
        self.idle_detuning = as_array(idle_detuning, float)
        self.representation = representation

    # ---- lookup -------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modules)

    def index(self, name: str) -> int:
        """Position of the module `name` in the line."""
        require(name in self.names, f"ChiralLine: no module {name!r}; modules: {', '.join(self.names)}")
        return self.names.index(name)

    def module(self, name: str) -> AbstractModule:
        return self.modules[self.index(name)]

    def direction(self, sender: str, receiver: str) -> str:
        """'right' if the receiver sits right of the sender, else 'left'."""
        i, j = self.index(sender), self.index(receiver)
        require(i != j, f"ChiralLine: sender and receiver are the same module {sender!r}")
        return "right" if j > i else "left"

    def between(self, a: str, b: str) -> tuple[int, ...]:
        """Indices of the interconnects between modules a and b."""
        i, j = sorted((self.index(a), self.index(b)))
        return tuple(range(i, j))

    def travel_time(self, a: str, b: str):
        """Sum of the delays between modules a and b (physical, whatever the representation)."""
        return sum((self.interconnects[k].delay for k in self.between(a, b)), jnp.zeros(()))

    def arrival(self, a: str, b: str):
        """How late module b's controls run relative to module a's: the travel time in the
        'delay' representation, 0 in the 'markov' one (its clocks are already shifted)."""
        return self.travel_time(a, b) if self.representation == "delay" else jnp.zeros(())

    def link_transmission(self, a: str, b: str):
        """Power transmission from module a to module b (cables and joints)."""
        return math_prod(self.interconnects[k].power_transmission() for k in self.between(a, b))

    def phase(self, name: str):
        """phi of a module at the carrier."""
        return quarter_wave_phase(self.carrier, self.module(name).design_frequency)

    def sub(self, *names: str) -> ChiralLine:
        """The line holding only the named modules (neighbours only: their interconnects are kept)."""
        idx = sorted(self.index(n) for n in names)
        require(idx == list(range(idx[0], idx[-1] + 1)), f"ChiralLine.sub: modules {names} must be neighbours")
        return ChiralLine(
            [self.modules[i] for i in idx],
            self.interconnects[idx[0] : idx[-1]],
            carrier=self.carrier,
            idle_detuning=self.idle_detuning,
            representation=self.representation,
        )

    def replace(self, **changes) -> ChiralLine:
        """A copy with `modules`, `interconnects`, `carrier`, `idle_detuning` or
        `representation` replaced."""
        return replaced(self, **changes)

    # ---- building the Network -----------------------------------------------------------

    def network(
        self,
        drives: Mapping[str, AbstractPulse] | None = None,
        *,
        initial: Mapping[str, Any] | None = None,
        active: tuple[str, ...] | None = None,
        dark: tuple[str, ...] = (),
    ) -> Network:
        """The Network of the line.

        **Arguments:**

        - `drives`: {module name: drive pulse u(t)}; a module without one gets u = 0.
        - `initial`: single-excitation amplitudes {emitter name: c}; every emitter of the line
          is listed (zeros by default) so that networks of one line share their structure.
        - `active`: modules taking part; the others are idle and detuned by `idle_detuning`
          (default: the modules with a drive).
        - `dark`: modules whose waveguide couplings are switched off (rates times 0).

        **Returns:** a `Network`.
        """
        drives = dict(drives or {})
        for name in drives:
            self.index(name)
        active = tuple(drives) if active is None else tuple(active)
        for name in tuple(active) + tuple(dark):
            self.index(name)
        emitters, ports, couplings, controls, elements = [], [], [], {}, []
        for m in self.modules:
            drive = drives.get(m.name, Constant(0.0))
            require(isinstance(drive, AbstractPulse), f"ChiralLine.network: drive of {m.name!r} must be a pulse")
            controls[f"{m.name}.drive"] = drive
            controls[f"{m.name}.shift"] = Scaled(drive, m.shift)
            detuning = m.detuning + (0.0 if m.name in active else self.idle_detuning)
            on = 0.0 if m.name in dark else 1.0
            phi = quarter_wave_phase(self.carrier, m.design_frequency)
            phi_c = {"exact": phi, "design": 0.5 * jnp.pi, "none": 0.0}[m.cancellation]
            scale_a, scale_b = 1.0 + m.imbalance, 1.0 - m.imbalance
            q_shift = f"{m.name}.shift" if isinstance(m, TunableModule) else None
            for q in ("QA", "QB"):
                emitters.append(Emitter(f"{m.name}.{q}", detuning, m.decay, m.dephasing, detuning_control=q_shift))
            if isinstance(m, TunableModule):
                rates, control = (on * scale_a, on * scale_b), f"{m.name}.drive"
                j_cancel = (m.exchange_error - 0.5 * jnp.sin(phi_c)) * jnp.sqrt(scale_a * scale_b) * on
                couplings.append(Coupling(f"{m.name}.QA", f"{m.name}.QB", j_cancel, control=control))
            else:
                rates, control = (on * m.gamma * scale_a, on * m.gamma * scale_b), None
                j_cancel = (m.exchange_error - 0.5 * jnp.sin(phi_c)) * m.gamma * jnp.sqrt(scale_a * scale_b) * on
                couplings.append(Coupling(f"{m.name}.QA", f"{m.name}.QB", j_cancel))
                for q in ("A", "B"):
                    emitters.append(
                        Emitter(f"{m.name}.D{q}", detuning, m.decay, m.dephasing, detuning_control=f"{m.name}.shift")
                    )
                    couplings.append(Coupling(f"{m.name}.D{q}", f"{m.name}.Q{q}", 1j, control=f"{m.name}.drive"))
            for q, rate, dx in (("A", rates[0], 0.0), ("B", rates[1], _POINT_SPACING)):
                ports.append(Port(f"{m.name}.p{q}", f"{m.name}.Q{q}", m.position + dx, rate, control=control))
            elements.append(("module", m, phi))
        links, scatterers = [], []
        for k, m in enumerate(self.modules):
            links.append(Link(phase=quarter_wave_phase(self.carrier, m.design_frequency)))
            if k == len(self.modules) - 1:
                break
            ic = self.interconnects[k]
            total_phase = self.carrier * ic.delay + ic.phase
            n_joints = int(ic.joints.shape[0])
            if self.representation == "markov" or n_joints == 0:
                delay = ic.delay if self.representation == "delay" else 0.0
                links.append(Link(delay, ic.power_transmission(), total_phase))
                continue
            x0, x1 = m.position + _POINT_SPACING, self.modules[k + 1].position
            seg = 1.0 / (n_joints + 1)
            for j in range(n_joints):
                scatterers.append(Scatterer(f"joint{k}.{j}", x0 + (x1 - x0) * (j + 1) * seg, ic.joints[j]))
            for _ in range(n_joints + 1):
                links.append(Link(ic.delay * seg, ic.transmission**seg, total_phase * seg))
        # Links are listed module by module; with joints the scatterers interleave in position,
        # which is the order Network sorts elements in.
        amps = {e.name: 0.0 for e in emitters}
        for name, amp in (initial or {}).items():
            require(
                name in amps, f"ChiralLine.network: initial names unknown emitter {name!r}; emitters: {', '.join(amps)}"
            )
            amps[name] = amp
        return Network(
            emitters, ports, links=links, scatterers=scatterers, couplings=couplings, controls=controls, initial=amps
        )


def math_prod(factors):
    """Product of an iterable of arrays (1 for an empty one)."""
    out = jnp.ones(())
    for f in factors:
        out = out * f
    return out


def directional_state(module: AbstractModule, direction: str) -> dict[str, complex]:
    """Amplitudes (|A> + e^{i theta}|B>)/sqrt(2) of the module's storage pair, theta = +pi/2
    to emit right and -pi/2 to emit left."""
    a, b = module.storage
    return {a: 1 / math.sqrt(2), b: direction_sign(direction) * 1j / math.sqrt(2)}


def emission_drive(module: AbstractModule, kappa, t0=0.0) -> AbstractPulse:
    """The drive that releases a sech photon of bandwidth kappa centred at t0."""
    from chiraljax.network._pulses import SechEmission

    if isinstance(module, DataModule):
        return DataRelease(kappa, module.gamma, t0, 1.0)
    return SechEmission(kappa, t0)


def absorption_drive(module: AbstractModule, kappa, t0=0.0) -> AbstractPulse:
    """The time-reversed drive that catches a sech photon of bandwidth kappa centred at t0."""
    from chiraljax.network._pulses import SechAbsorption

    if isinstance(module, DataModule):
        return DataRelease(kappa, module.gamma, t0, -1.0)
    return SechAbsorption(kappa, t0)


def halt_time(module: AbstractModule, fraction, kappa, t0=0.0):
    """When to stop the emission drive of `module` so that it has released `fraction`."""
    if isinstance(module, DataModule):
        return data_halt_time(fraction, kappa, module.gamma, t0)
    return sech_halt_time(fraction, kappa, t0)
