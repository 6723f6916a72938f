r"""A device the optimiser cannot see inside: single-shot outcomes of a state transfer, shots counted.

**The experiment.** The sender module emits its photon; the receiver plays a drive waveform on
its coupler's AWG (`chiraljax.optimize._awg`); at a read time `t` (the end of the protocol, or
earlier for a trace) both receiver storage qubits are read out, and a shot reports "1" when an
excitation is found. With the stored excitation `P(t)` and readout errors `e_0 = P(1|0)`,
`e_1 = P(0|1)`, the probability of a "1" is

$$p(t) = e_0 + (1 - e_0 - e_1)\,P(t),$$

and `n` shots give `k ~ Binomial(n, p)`. A readout calibration prepares |0> or |1> and reports
the counts of "1" (`Binomial(n, e_0)`, `Binomial(n, 1 - e_1)`). Every shot is counted by the
device (`shots_spent`, `ledger`): the methods of the device study are compared by it.

**Devices.** `AbstractDevice` is the protocol a lab implements for real hardware
(`CallbackDevice` wraps two functions); `SimulatedDevice` answers from a hidden
`DeviceParameters` through a `DeviceModel`.

**The model** (`DeviceModel`): the preset's transfer (`chiraljax.experiment._protocols.transfer_network`)
with the receiver's drive replaced by the AWG waveform after the drive line, and the receiver
and link parameters of a `DeviceParameters`: the receiver module's detuning, coupler shift
factor, waveguide rate, T1 and dephasing; the link's cable transmission and joint reflections;
the drive line's gain, low-pass time constant and delay; the readout errors. Its stored
excitation `P(t; θ, v)` is differentiable in the parameters θ (for the fit of
`chiraljax.optimize._calibrate`) and in the samples v (for gradient shaping).

**Hidden devices** are drawn from `PRIOR`, the distribution of hardware parameters a lab
expects before any measurement (`draw_device`); the fit uses the same prior.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from chiraljax._checks import concrete
from chiraljax._errors import ChiralJaxError, require
from chiraljax._precision import real_dtype
from chiraljax.experiment._modules import ChiralLine
from chiraljax.experiment._presets import Preset, load_preset
from chiraljax.experiment._protocols import PulsePlan, receiver_drive, transfer, transfer_network
from chiraljax.network._pulses import Scaled, Shifted
from chiraljax.solve._methods import Sector
from chiraljax.solve._simulate import simulate

from ._awg import AWG, DriveLine, Waveform
from ._parameterize import Controls
from ._receiver import receiver_controls

__all__ = [
    "PRIOR",
    "AbstractDevice",
    "CallbackDevice",
    "DeviceError",
    "DeviceModel",
    "DeviceParameters",
    "SimulatedDevice",
    "draw_device",
]


class DeviceError(ChiralJaxError, RuntimeError):
    """A device returned something unusable (counts outside [0, shots], wrong shape)."""


#: The parameters of a device, in the order of `DeviceParameters.vector`.
PARAMETER_NAMES = (
    "detuning",
    "shift",
    "gamma",
    "decay",
    "dephasing",
    "transmission",
    "joint",
    "gain",
    "tau",
    "delay",
    "false_positive",
    "false_negative",
)
#: The receiver module's parameters among them, under the module's own field names.
RECEIVER_NAMES = ("detuning", "shift", "gamma", "decay", "dephasing")


class DeviceParameters(eqx.Module):
    """The hardware parameters of a transfer device (module docstring). Units: ns, rad/ns.

    - `detuning`: receiver module's frequency offset from the carrier.
    - `shift`: receiver coupler's frequency shift per unit of exchange.
    - `gamma`: receiver's waveguide rate.
    - `decay`, `dephasing`: receiver qubits' 1/T1 and pure dephasing rate.
    - `transmission`: the link's cable power transmission (joints excluded).
    - `joint`: reflection amplitude of each of the link's joints.
    - `gain`, `tau`, `delay`: the drive line (`DriveLine`).
    - `false_positive`, `false_negative`: readout errors e_0 = P(1|0), e_1 = P(0|1).
    """

    detuning: Float[Array, ""]
    shift: Float[Array, ""]
    gamma: Float[Array, ""]
    decay: Float[Array, ""]
    dephasing: Float[Array, ""]
    transmission: Float[Array, ""]
    joint: Float[Array, ""]
    gain: Float[Array, ""]
    tau: Float[Array, ""]
    delay: Float[Array, ""]
    false_positive: Float[Array, ""]
    false_negative: Float[Array, ""]

    def __init__(self, **values):
        missing = [n for n in PARAMETER_NAMES if n not in values]
        unknown = [n for n in values if n not in PARAMETER_NAMES]
        require(not unknown, f"DeviceParameters: unknown parameter(s) {', '.join(unknown)}")
        require(not missing, f"DeviceParameters: missing {', '.join(missing)}")
        for name in PARAMETER_NAMES:
            v = concrete(values[name])
            if v is not None:
                require(np.isfinite(v).all(), f"DeviceParameters: {name}={v} must be finite")
            setattr(self, name, jnp.asarray(values[name], real_dtype()))

    def __check_init__(self) -> None:
        def value(name: str) -> float | None:
            v = concrete(getattr(self, name))
            return None if v is None else float(v)

        for name in ("gamma", "gain", "shift"):
            v = value(name)
            require(v is None or v > 0, f"DeviceParameters: {name}={v} must be > 0")
        for name in ("decay", "dephasing", "tau", "delay"):
            v = value(name)
            require(v is None or v >= 0, f"DeviceParameters: {name}={v} must be >= 0")
        v = value("transmission")
        require(v is None or 0 < v <= 1, f"DeviceParameters: transmission={v} must lie in (0, 1]")
        for name in ("joint", "false_positive", "false_negative"):
            v = value(name)
            require(v is None or 0 <= v < 1, f"DeviceParameters: {name}={v} must lie in [0, 1)")
        fp, fn = value("false_positive"), value("false_negative")
        if fp is not None and fn is not None:
            require(fp + fn < 1, "DeviceParameters: readout errors e0 + e1 must be below 1")

    def as_dict(self) -> dict[str, float]:
        """The values as floats."""
        return {n: float(getattr(self, n)) for n in PARAMETER_NAMES}

    def replace(self, **changes) -> DeviceParameters:
        """A copy with some values changed (traced values allowed)."""
        values = {n: getattr(self, n) for n in PARAMETER_NAMES}
        unknown = [n for n in changes if n not in PARAMETER_NAMES]
        require(not unknown, f"DeviceParameters.replace: unknown parameter(s) {', '.join(unknown)}")
        values.update(changes)
        return DeviceParameters(**values)

    @property
    def power_transmission(self) -> float:
        """The link's power transmission with both joints: η (1 - r²)²."""
        return float(self.transmission * (1 - self.joint**2) ** 2)


@dataclass(frozen=True)
class PriorEntry:
    """One parameter's prior: normal in `space` ('linear' or 'log'), relative to the nominal value
    when `relative`, clipped to [`low`, `high`] when drawn."""

    std: float
    relative: bool = False
    space: str = "linear"
    low: float = -math.inf
    high: float = math.inf


#: What a lab expects before measuring (1 sigma): receiver frequency 2π x 150 kHz, coupler shift
#: factor 0.1, waveguide rate 5 %, T1 and dephasing a factor e^0.3, cable transmission 0.05, joint
#: reflection 0.05, drive-line gain 10 %, low-pass τ a factor e^0.5 around 15 ns, delay 10 ns
#: around 20 ns, readout errors 0.01 and 0.02.
PRIOR: dict[str, PriorEntry] = {
    "detuning": PriorEntry(2 * math.pi * 150e-6),
    "shift": PriorEntry(0.1, low=0.5, high=2.0),
    "gamma": PriorEntry(0.05, relative=True),
    "decay": PriorEntry(0.3, space="log"),
    "dephasing": PriorEntry(0.3, space="log"),
    "transmission": PriorEntry(0.05, low=0.4, high=0.95),
    "joint": PriorEntry(0.05, low=0.0, high=0.5),
    "gain": PriorEntry(0.1, low=0.5, high=1.5),
    "tau": PriorEntry(0.5, space="log"),
    "delay": PriorEntry(10.0, low=0.0, high=60.0),
    "false_positive": PriorEntry(0.01, low=0.0, high=0.1),
    "false_negative": PriorEntry(0.02, low=0.0, high=0.2),
}

#: The drive line and readout a lab assumes before measuring (the prior's centre).
LINE_NOMINAL = {"gain": 1.0, "tau": 15.0, "delay": 20.0, "false_positive": 0.02, "false_negative": 0.05}


def draw_device(nominal: DeviceParameters, seed: int) -> DeviceParameters:
    """A hidden device drawn from `PRIOR` around `nominal` (reproducible for a seed)."""
    require(isinstance(seed, (int, np.integer)) and seed >= 0, f"draw_device: seed={seed!r} must be an integer >= 0")
    rng = np.random.default_rng([int(seed), 7919])
    values = {}
    for name in PARAMETER_NAMES:
        prior, mu = PRIOR[name], float(getattr(nominal, name))
        z = rng.standard_normal()
        if prior.space == "log":
            v = mu * math.exp(prior.std * z)
        else:
            v = mu + prior.std * (abs(mu) if prior.relative else 1.0) * z
        values[name] = float(np.clip(v, prior.low, prior.high))
    return DeviceParameters(**values)


class DeviceModel(eqx.Module):
    """The transfer of a preset as a function of `DeviceParameters` and AWG samples (module docstring).

    **Arguments:**

    - `preset`: a transfer preset with a `[shaping]` `max_drive` (default `"paper"`).
    - `awg`: the receiver's AWG channel (default: 1 GS/s, 14 bits, full scale = `max_drive`).
    - `knots`: spline knots of the shaped drive (`receiver_controls`; default the preset's).
    - `steps`: fixed 8th-order solver steps (default the preset's `[shaping]` steps).
    """

    line: ChiralLine
    plan: PulsePlan
    controls: Controls
    awg: AWG = eqx.field(static=True)
    sender: str = eqx.field(static=True)
    receiver: str = eqx.field(static=True)
    t_span: tuple[float, float] = eqx.field(static=True)
    steps: int = eqx.field(static=True)
    preset_name: str = eqx.field(static=True)

    def __init__(self, preset: str | Preset = "paper", *, awg: AWG | None = None, knots=None, steps=None):
        p = preset if isinstance(preset, Preset) else load_preset(preset)
        require(p.receiver is not None, f"DeviceModel: preset {p.name!r} has no receiver; choose a transfer preset")
        shaping = p.shaping
        require(shaping.get("max_drive") is not None, f"DeviceModel: preset {p.name!r} has no [shaping] max_drive")
        self.line, self.sender, self.receiver, self.preset_name = p.line, p.sender, p.receiver, p.name
        self.plan = p.plan.replace(receiver_drive=None)
        self.controls = receiver_controls(
            p.line,
            p.sender,
            p.receiver,
            self.plan,
            knots=shaping["knots"] if knots is None else int(knots),
            max_drive=shaping["max_drive"],
        )
        self.awg = AWG(full_scale=float(shaping["max_drive"]), channel=f"{p.receiver}.coupler") if awg is None else awg
        require(isinstance(self.awg, AWG), f"DeviceModel: awg must be an AWG, got {type(self.awg).__name__}")
        self.t_span = tuple(float(t) for t in self.plan.span(p.line.arrival(p.sender, p.receiver)))
        st = shaping.get("steps") if steps is None else steps
        require(isinstance(st, int) and st >= 8, f"DeviceModel: steps={st!r} must be an integer >= 8")
        self.steps = int(st)

    # ---- parameters ----------------------------------------------------------------------

    @property
    def nominal(self) -> DeviceParameters:
        """The preset's receiver and link, and the assumed drive line and readout (`LINE_NOMINAL`)."""
        rx = self.line.module(self.receiver)
        (k,) = self.line.between(self.sender, self.receiver)
        ic = self.line.interconnects[k]
        joints = np.abs(np.asarray(ic.joints))
        require(
            joints.size == 0 or np.allclose(joints, joints[0]),
            "DeviceModel: the link's joints must share one reflection",
        )
        return DeviceParameters(
            **{name: getattr(rx, name) for name in RECEIVER_NAMES},
            transmission=ic.transmission,
            joint=float(joints[0]) if joints.size else 0.0,
            **LINE_NOMINAL,
        )

    def line_at(self, p: DeviceParameters) -> ChiralLine:
        """The line with the receiver and link parameters of `p`."""
        i = self.line.index(self.receiver)
        (k,) = self.line.between(self.sender, self.receiver)
        rx = self.line.modules[i]
        rx = eqx.tree_at(
            lambda m: [getattr(m, name) for name in RECEIVER_NAMES], rx, [getattr(p, name) for name in RECEIVER_NAMES]
        )
        ic = self.line.interconnects[k]
        ic = eqx.tree_at(
            lambda c: (c.transmission, c.joints), ic, (p.transmission, jnp.full(ic.joints.shape, p.joint + 0j))
        )
        modules = tuple(rx if j == i else m for j, m in enumerate(self.line.modules))
        interconnects = tuple(ic if j == k else c for j, c in enumerate(self.line.interconnects))
        return eqx.tree_at(lambda line: (line.modules, line.interconnects), self.line, (modules, interconnects))

    # ---- waveforms -----------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of pulse parameters of the shaped drive."""
        return self.controls.size

    def samples(self, x: Float[Array, " P"]) -> Float[Array, " n"]:
        """The AWG samples of the shaped drive of parameters `x` (the waveform as played)."""
        return self.awg.render(self.controls.pulses(jnp.asarray(x, real_dtype()))["drive"], *self.t_span)

    def scripted_samples(self, scale: float = 1.0, shift: float = 0.0) -> Float[Array, " n"]:
        """Samples of the scripted time-reversed drive, scaled by `scale` and late by `shift` ns,
        as the AWG plays them (probe waveforms of a calibration)."""
        base = receiver_drive(self.line, self.sender, self.receiver, self.plan)
        return self.awg.render(Shifted(Scaled(base, scale), shift), *self.t_span)

    def waveform(self, samples) -> Waveform:
        """The `Waveform` (integer codes) of played samples."""
        return Waveform(self.awg.codes(samples), self.awg, self.t_span[0])

    # ---- the physics ---------------------------------------------------------------------

    def stored(
        self, p: DeviceParameters, samples: Float[Array, " n"], ts: Float[Array, " T"], adjoint: str = "reverse"
    ) -> Float[Array, " T"]:
        """P(t) at the read times `ts`: the excitation in the receiver's storage qubits
        (`adjoint="forward"` for `jax.jvp`/`jax.jacfwd`)."""
        line = DriveLine(p.gain, p.tau, jnp.maximum(p.delay, 0.0))
        drive = line.pulse(samples, self.awg, self.t_span[0])
        dev = self.line_at(p)
        net = transfer_network(dev, self.sender, self.receiver, self.plan.replace(receiver_drive=drive))
        res = simulate(net, self.t_span, ts=ts, method=Sector(steps=self.steps, adjoint=adjoint))
        storage = self.line.module(self.receiver).storage
        return sum(res.population(q) for q in storage)

    def click_probability(self, p: DeviceParameters, stored: Float[Array, "*batch"]) -> Float[Array, "*batch"]:
        """p = e0 + (1 - e0 - e1) P: the chance that a shot reports an excitation."""
        return p.false_positive + (1.0 - p.false_positive - p.false_negative) * stored

    def incident(self, p: DeviceParameters) -> float:
        """The photon that reaches the receiver on the device `p` (measured with it dark)."""
        return float(transfer(self.line_at(p), self.sender, self.receiver, self.plan).incident)

    def absorption(self, p: DeviceParameters, samples, incident: float | None = None) -> np.ndarray:
        """The absorption efficiency P(t_end) / incident of each waveform (samples (n,) or
        (B, n)) on the device `p` (`incident`: the photon reaching the receiver, if known)."""
        s = jnp.asarray(samples, real_dtype())
        end = jnp.asarray([self.t_span[1]], real_dtype())
        incident = self.incident(p) if incident is None else incident
        values = np.asarray(_stored_batch(self, p, jnp.atleast_2d(s), end))[:, 0] / incident
        return values if s.ndim == 2 else values[0]


@eqx.filter_jit
def _stored_batch(model: DeviceModel, p: DeviceParameters, samples, ts):
    return jax.vmap(lambda s: model.stored(p, s, ts))(samples)


@eqx.filter_jit
def _samples_batch(model: DeviceModel, xs):
    return jax.vmap(model.samples)(xs)


def samples_of(model: DeviceModel, xs) -> np.ndarray:
    """The AWG samples of a batch of pulse parameters (B, P) -> (B, n)."""
    return np.asarray(_samples_batch(model, jnp.asarray(xs, real_dtype())))


# ---- the devices -------------------------------------------------------------------------


@dataclass
class ShotLedger:
    """Shots a device has spent, in total and by purpose."""

    total: int = 0
    by_purpose: dict[str, int] = field(default_factory=dict)

    def add(self, shots: int, purpose: str) -> None:
        self.total += int(shots)
        self.by_purpose[purpose] = self.by_purpose.get(purpose, 0) + int(shots)


class AbstractDevice(abc.ABC):
    """What a device answers (module docstring). Subclasses implement `_run` and `_readout`;
    `run` and `readout` validate, count the shots and check the answers."""

    def __init__(self, awg: AWG, start: float, stop: float):
        self.awg, self.start, self.stop = awg, float(start), float(stop)
        self.ledger = ShotLedger()

    @property
    def shots_spent(self) -> int:
        """All shots spent on this device so far."""
        return self.ledger.total

    @abc.abstractmethod
    def _run(self, waveforms: Sequence[Waveform], read_times: np.ndarray, shots: int) -> np.ndarray:
        """Counts of "1", shape (len(waveforms), len(read_times))."""

    @abc.abstractmethod
    def _readout(self, prepared: int, shots: int) -> int:
        """Counts of "1" after preparing |prepared> (0 or 1)."""

    def run(
        self, waveforms: Waveform | Sequence[Waveform], read_times=None, shots: int = 1000, purpose: str = "run"
    ) -> np.ndarray:
        """Play each waveform and read the receiver at each read time (default: the end of the
        protocol), `shots` times per (waveform, time). **Returns:** counts of "1", shape (W, T)."""
        single = isinstance(waveforms, Waveform)
        waveforms = [waveforms] if single else list(waveforms)
        require(len(waveforms) >= 1, "device.run: give at least one waveform")
        require(all(isinstance(w, Waveform) for w in waveforms), "device.run: waveforms must be Waveform objects")
        for w in waveforms:
            require(w.awg == self.awg, f"device.run: a waveform is for AWG {w.awg}, the device plays {self.awg}")
        ts = np.atleast_1d(np.asarray(self.stop if read_times is None else read_times, dtype=float))
        require(ts.ndim == 1 and ts.size >= 1, "device.run: read_times must be a 1-D list of times")
        require(
            bool(np.all((ts >= self.start) & (ts <= self.stop))),
            f"device.run: read times must lie in the protocol window [{self.start:.1f}, {self.stop:.1f}] ns",
        )
        _check_shots(shots)
        counts = np.asarray(self._run(waveforms, ts, int(shots)))
        _check_counts(counts, (len(waveforms), ts.size), shots)
        self.ledger.add(len(waveforms) * ts.size * int(shots), purpose)
        return counts.astype(np.int64)

    def readout(self, prepared: int, shots: int = 1000) -> int:
        """Prepare |prepared> (0 or 1) in the storage qubits and read it `shots` times. **Returns:** counts of "1"."""
        require(prepared in (0, 1), f"device.readout: prepared={prepared!r} must be 0 or 1")
        _check_shots(shots)
        k = np.asarray(self._readout(int(prepared), int(shots)))
        _check_counts(k.reshape(1, 1), (1, 1), shots)
        self.ledger.add(int(shots), "readout")
        return int(k)


def _check_shots(shots) -> None:
    require(
        isinstance(shots, (int, np.integer)) and not isinstance(shots, bool) and shots >= 1,
        f"shots={shots!r}: must be a positive integer",
    )


def _check_counts(counts: np.ndarray, shape: tuple[int, int], shots: int) -> None:
    if counts.shape != shape:
        raise DeviceError(f"device answered counts of shape {counts.shape}, expected {shape}")
    if not (np.all(np.isfinite(counts)) and np.all(counts == np.round(counts))):
        raise DeviceError("device answered counts that are not whole numbers")
    if np.any(counts < 0) or np.any(counts > shots):
        raise DeviceError(f"device answered counts outside [0, {shots}]")


class CallbackDevice(AbstractDevice):
    """Real hardware behind two functions a lab implements.

    - `run(codes, sample_rate, start, read_times, shots) -> counts (T,)`: play the integer codes
      on the AWG from `start` (ns, on the protocol's clock) and read at each time.
    - `readout(prepared, shots) -> count`.
    """

    def __init__(self, awg: AWG, start: float, stop: float, run: Callable, readout: Callable):
        require(callable(run) and callable(readout), "CallbackDevice: run and readout must be callables")
        super().__init__(awg, start, stop)
        self._run_fn, self._readout_fn = run, readout

    def _run(self, waveforms, read_times, shots):
        return np.stack(
            [np.asarray(self._run_fn(w.codes, self.awg.sample_rate, w.start, read_times, shots)) for w in waveforms]
        )

    def _readout(self, prepared, shots):
        return self._readout_fn(prepared, shots)


class SimulatedDevice(AbstractDevice):
    """A device simulated from hidden parameters (module docstring).

    **Arguments:** `model` (a `DeviceModel`), `hidden` (its `DeviceParameters`, not told to the
    optimisers), `seed` (the shot noise).
    """

    def __init__(self, model: DeviceModel, hidden: DeviceParameters, seed: int = 0):
        require(isinstance(model, DeviceModel), "SimulatedDevice: model must be a DeviceModel")
        require(isinstance(hidden, DeviceParameters), "SimulatedDevice: hidden must be DeviceParameters")
        super().__init__(model.awg, *model.t_span)
        self.model, self._hidden = model, hidden
        self._rng = np.random.default_rng([int(seed), 104729])
        self._incident: float | None = None

    def _run(self, waveforms, read_times, shots):
        samples = jnp.asarray(np.stack([w.samples for w in waveforms]), real_dtype())
        stored = np.asarray(_stored_batch(self.model, self._hidden, samples, jnp.asarray(read_times, real_dtype())))
        p = np.clip(np.asarray(self.model.click_probability(self._hidden, stored)), 0.0, 1.0)
        return self._rng.binomial(shots, p)

    def _readout(self, prepared, shots):
        h = self._hidden
        return self._rng.binomial(shots, float(h.false_positive if prepared == 0 else 1 - h.false_negative))

    # ---- ground truth, for scoring a study (not available on real hardware) ---------------

    def true_absorption(self, samples) -> np.ndarray:
        """The exact absorption efficiency of each waveform (samples (n,) or (B, n)) on this device."""
        if self._incident is None:
            self._incident = self.model.incident(self._hidden)
        return self.model.absorption(self._hidden, samples, self._incident)

    @property
    def hidden(self) -> DeviceParameters:
        """The hidden parameters (for scoring a fit in a study or a test)."""
        return self._hidden
