"""The device description: emitters, ports on a bidirectional waveguide, links and scatterers.

A `Network` is an `eqx.Module`: names, topology and sizes are static fields; every number a user
may sweep or differentiate (rates, detunings, couplings, delays, transmissions, phases,
reflections, pulse parameters, T1 and T2 rates) is an array leaf. `network.parameters()` lists
those leaves under dotted names and `network.with_parameters({...})` replaces them, so a sweep
or a gradient never rebuilds or recompiles the structure.

The waveguide is a line. Ports (an emitter's coupling point) and scatterers (joints, mirrors)
sit on it in order of `position`; `links[i]` joins element i to element i + 1 with a delay tau,
a power transmission eta and a propagation phase phi (the total phase, w_r tau included):
the field crossing it is multiplied by sqrt(eta) e^{i phi} and arrives tau later.
A port of total rate gamma couples gamma_R = f gamma to the right-moving and
gamma_L = (1 - f) gamma to the left-moving channel (f = `right_fraction`, 1/2 for a point
coupling to a symmetric line).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Inexact

from chiraljax._checks import ValidationError, as_array, as_dtype, concrete, did_you_mean, require, safe_sqrt
from chiraljax._precision import real_dtype
from chiraljax._types import Number, Real
from chiraljax.network._pulses import AbstractPulse

#: Characters that metric strings ("population:A1+B1"), wildcard parameter names
#: ("emitters.*.dephasing") and --at NAME=VALUE use as separators, so no name may hold them.
#: (A dot is allowed: parameter names are matched whole, "emitters.M0.QA.decay".)
RESERVED_IN_NAMES = "+:*=,[]"


def _require_addressable(kind: str, name: Any) -> None:
    """A name must be a non-empty string without the separators of parameter paths and metric
    strings, or the name could not be addressed in a sweep, a metric or a network file."""
    require(
        isinstance(name, str) and name.strip() != "",
        f"Network: every {kind} name must be a non-empty string, got {name!r}",
    )
    bad = sorted({c for c in name if c in RESERVED_IN_NAMES or c.isspace()})
    require(
        not bad,
        f"Network: the {kind} name {name!r} contains {' '.join(repr(c) for c in bad)}, which metric "
        "strings and parameter names use as separators; use letters, digits, '_', '-' or '.'",
    )


def _require_known(name: str, known, message: str) -> None:
    """Refuse `name` when it is not in `known` (a dict or an ordered dict of names), with the
    closest names; the suggestions are computed only for a wrong name, so validating a large
    network stays linear in its size."""
    if name not in known:
        raise ValidationError(message + _suggest(name, known))


def _suggest(name: str, known) -> str:
    guess = did_you_mean(name, known)
    return f"{f' ({guess.strip()})' if guess else ''}; known: {', '.join(repr(k) for k in known) or 'none'}"


def _numeric(owner: str, field: str, arr) -> None:
    """Refuse a concrete value that is not made of numbers (a string, None, an object)."""
    if arr is not None and arr.dtype.kind not in "fiuc":
        raise ValidationError(f"{owner}: {field} must be a number, got {arr.tolist()!r}")


def _real(owner: str, field: str, value, *, low: float | None = None, high: float | None = None):
    arr = concrete(value)
    # the messages are formatted on failure only (printing an array costs more than the checks)
    if arr is not None and arr.ndim == 0 and arr.dtype.kind in "fiu":
        # a real number (most fields): checked in Python, 3x faster than NumPy's reductions
        number = float(arr)
        if not math.isfinite(number):
            raise ValidationError(f"{owner}: {field} must be finite, got {arr}")
        if low is not None and not number >= low:
            raise ValidationError(f"{owner}: {field} must be >= {low}, got {arr.real}")
        if high is not None and not number <= high:
            raise ValidationError(f"{owner}: {field} must be <= {high}, got {arr.real}")
        return np.asarray(arr, dtype=real_dtype())
    _numeric(owner, field, arr)
    if arr is not None:
        if not np.isrealobj(arr) and np.any(np.iscomplex(arr)):
            raise ValidationError(f"{owner}: {field} must be real, got {arr}")
        if not np.all(np.isfinite(arr)):
            raise ValidationError(f"{owner}: {field} must be finite, got {arr}")
        if low is not None and not np.all(arr.real >= low):
            raise ValidationError(f"{owner}: {field} must be >= {low}, got {arr.real}")
        if high is not None and not np.all(arr.real <= high):
            raise ValidationError(f"{owner}: {field} must be <= {high}, got {arr.real}")
    return as_array(value, float)


def _complex(owner: str, field: str, value):
    arr = concrete(value)
    _numeric(owner, field, arr)
    if arr is not None and not np.all(np.isfinite(arr)):
        raise ValidationError(f"{owner}: {field} must be finite, got {arr}")
    return as_array(value, complex)


class Emitter(eqx.Module):
    """A qubit or transmon.

    **Arguments:**

    - `name`: unique name.
    - `detuning`: Delta = w - w_r in the rotating frame (rad per time unit).
    - `decay`: intrinsic population decay rate gamma' = 1/T1 into other baths.
    - `dephasing`: pure dephasing rate gamma_phi (D[sqrt(gamma_phi/2) sigma_z]; a coherence
      decays at gamma'/2 + gamma_phi, so 1/T2 = 1/(2 T1) + gamma_phi).
    - `levels`: 2 for a qubit, more for a transmon.
    - `anharmonicity`: alpha in H = alpha/2 n (n - 1) (transmons).
    - `detuning_control`: name of a control added to the detuning (a frequency shift), or None.
    """

    name: str = eqx.field(static=True)
    detuning: Real
    decay: Real
    dephasing: Real
    anharmonicity: Real
    levels: int = eqx.field(static=True)
    detuning_control: str | None = eqx.field(static=True)

    def __init__(
        self,
        name: str,
        detuning=0.0,
        decay=0.0,
        dephasing=0.0,
        *,
        levels: int = 2,
        anharmonicity=0.0,
        detuning_control: str | None = None,
    ):
        owner = f"Emitter {name!r}"
        require(isinstance(name, str) and name != "", "Emitter: name must be a non-empty string")
        require(int(levels) >= 2, f"{owner}: levels must be >= 2, got {levels}")
        self.name = name
        self.detuning = _real(owner, "detuning", detuning)
        self.decay = _real(owner, "decay", decay, low=0.0)
        self.dephasing = _real(owner, "dephasing", dephasing, low=0.0)
        self.anharmonicity = _real(owner, "anharmonicity", anharmonicity)
        self.levels = int(levels)
        self.detuning_control = detuning_control


class Port(eqx.Module):
    """A coupling point of an emitter to the waveguide.

    **Arguments:**

    - `name`: unique name among ports and scatterers.
    - `emitter`: the name of the emitter (an emitter with several ports is a giant atom).
    - `position`: where on the line (any unit; only the order matters, links carry delays).
    - `rate`: total rate gamma into the waveguide, or its scale when `control` is given:
      gamma(t) = rate * control(t).
    - `right_fraction`: share f of the rate going into the right-moving channel.
    - `control`: name of the control shaping the rate, or None for a constant rate.
    """

    name: str = eqx.field(static=True)
    emitter: str = eqx.field(static=True)
    position: float = eqx.field(static=True)
    rate: Real
    right_fraction: Real
    control: str | None = eqx.field(static=True)

    def __init__(
        self, name: str, emitter: str, position: float, rate=1.0, *, right_fraction=0.5, control: str | None = None
    ):
        owner = f"Port {name!r}"
        self.name, self.emitter, self.position = name, emitter, float(position)
        self.rate = _real(owner, "rate", rate, low=0.0)
        self.right_fraction = _real(owner, "right_fraction", right_fraction, low=0.0, high=1.0)
        self.control = control


class Scatterer(eqx.Module):
    """A point scatterer on the line (a joint, an impedance step, a mirror).

    It maps the incoming right-moving amplitude a (from the left) and left-moving amplitude b
    (from the right) to outgoing ones:  out_R = t a + r' b,  out_L = r a + t b, with
    r' = -r^* t / t^* so that the matrix [[t, r'], [r, t]] is unitary when |r|^2 + |t|^2 = 1.
    Give `transmission` with |r|^2 + |t|^2 < 1 for a lossy element.

    **Arguments:**

    - `name`: unique name among ports and scatterers.
    - `position`: where on the line.
    - `reflection`: r, complex reflection amplitude seen from the left.
    - `transmission`: t, complex transmission amplitude; omit it for a lossless element, whose
      t = sqrt(1 - |r|^2) then follows the reflection.
    """

    name: str = eqx.field(static=True)
    position: float = eqx.field(static=True)
    reflection: Number
    transmission: Number | None

    def __init__(self, name: str, position: float, reflection=0.0, transmission=None):
        owner = f"Scatterer {name!r}"
        self.name, self.position = name, float(position)
        self.reflection = _complex(owner, "reflection", reflection)
        self.transmission = None if transmission is None else _complex(owner, "transmission", transmission)
        power = self.passive_power()
        require(power != 0.0, f"{owner}: reflection and transmission are both 0")

    def passive_power(self) -> float | None:
        """|r|^2 + |t|^2 when both are concrete (None when traced), refused above 1: a
        scatterer must be unitary (= 1) or lossy (< 1), never a source."""
        r, t = concrete(self.reflection), concrete(self.transmission_amplitude())
        if r is None or t is None:
            return None
        power = abs(complex(r)) ** 2 + abs(complex(t)) ** 2
        require(
            power <= 1.0 + 1e-9,
            f"Scatterer {self.name!r}: |reflection|^2 + |transmission|^2 = {power:.9g} > 1, not a passive "
            "element; make the scattering matrix unitary (= 1, e.g. transmission = sqrt(1 - |reflection|^2)) "
            "or lossy (< 1)",
        )
        return power

    @property
    def lossless(self) -> bool:
        """True when no transmission was given: t = sqrt(1 - |r|^2) follows the reflection."""
        return self.transmission is None

    def transmission_amplitude(self):
        """t: the given transmission, or sqrt(1 - |r|^2) for a lossless element (so that changing
        the reflection alone, e.g. in a sweep, keeps the element unitary)."""
        if self.transmission is None:
            r = concrete(self.reflection)
            if r is not None:  # NumPy: no operation in a trace around it (an eager jax.grad)
                return as_array(np.sqrt(np.maximum(1.0 - np.abs(r) ** 2, 0.0)), complex)
            return safe_sqrt(1.0 - jnp.abs(self.reflection) ** 2).astype(complex)
        return self.transmission

    def matrix(self):
        """The 2 x 2 scattering matrix [[t, r'], [r, t]] on (in_R from the left, in_L from the right)."""
        t, r = self.transmission_amplitude(), self.reflection
        safe = jnp.where(jnp.abs(t) > 0, jnp.conj(t), 1.0)
        r_prime = jnp.where(jnp.abs(t) > 0, -jnp.conj(r) * t / safe, r)
        return jnp.array([[t, r_prime], [r, t]])


class Link(eqx.Module):
    """The waveguide between two neighbouring elements: delay tau, power transmission eta and
    total propagation phase phi; the field is multiplied by sqrt(eta) e^{i phi}."""

    delay: Real
    transmission: Real
    phase: Real

    def __init__(self, delay=0.0, transmission=1.0, phase=0.0):
        self.delay = _real("Link", "delay", delay, low=0.0)
        self.transmission = _real("Link", "transmission", transmission, low=0.0, high=1.0)
        self.phase = _real("Link", "phase", phase)


class Coupling(eqx.Module):
    """A direct exchange coupling H = g(t) a^dag b + h.c., g(t) = strength * control(t)."""

    a: str = eqx.field(static=True)
    b: str = eqx.field(static=True)
    strength: Number
    control: str | None = eqx.field(static=True)

    def __init__(self, a: str, b: str, strength=0.0, *, control: str | None = None):
        require(a != b, f"Coupling: an emitter cannot couple to itself ({a!r})")
        self.a, self.b, self.control = a, b, control
        self.strength = _complex(f"Coupling {a!r}-{b!r}", "strength", strength)


class PhotonInput(eqx.Module):
    """`photons` photons (a Fock state, one by default) in the normalised mode u(t) entering at
    one end of the waveguide (`end="left"` feeds the right-moving channel). Simulated with a
    virtual source cavity: a harmonic oscillator that starts with `photons` quanta and, with
    the coupling u^*(t) / sqrt(1 - int |u|^2), releases any state of the mode u (Kiilerich and
    Molmer 2019). Inputs in distinct, orthogonal, smooth modes may share an end (Lindblad
    solvers): their sources are cascaded in the order the network lists them, the upstream ones
    emitting pre-distorted modes (`chiraljax.network._input_cascade`)."""

    name: str = eqx.field(static=True)
    end: str = eqx.field(static=True)
    mode: AbstractPulse
    photons: int = eqx.field(static=True)

    def __init__(self, name: str, mode: AbstractPulse, end: str = "left", *, photons: int = 1):
        require(end in ("left", "right"), f"PhotonInput {name!r}: end must be 'left' or 'right', got {end!r}")
        require(isinstance(mode, AbstractPulse), f"PhotonInput {name!r}: mode must be a pulse")
        require(
            isinstance(photons, (int, np.integer)) and not isinstance(photons, bool) and photons >= 1,
            f"PhotonInput {name!r}: photons must be a positive integer, got {photons!r}",
        )
        self.name, self.end, self.mode, self.photons = name, end, mode, int(photons)


class OutputMode(eqx.Module):
    """A detector of the normalised mode v(t) at one end of the waveguide (a virtual cavity):
    its final population is the probability that the output field is in mode v."""

    name: str = eqx.field(static=True)
    end: str = eqx.field(static=True)
    mode: AbstractPulse

    def __init__(self, name: str, mode: AbstractPulse, end: str = "right"):
        require(end in ("left", "right"), f"OutputMode {name!r}: end must be 'left' or 'right', got {end!r}")
        require(isinstance(mode, AbstractPulse), f"OutputMode {name!r}: mode must be a pulse")
        self.name, self.end, self.mode = name, end, mode


class Network(eqx.Module):
    """Emitters on a bidirectional waveguide.

    **Arguments:**

    - `emitters`: the emitters.
    - `ports`: their coupling points; `scatterers`: joints and mirrors on the line.
    - `links`: one per gap between consecutive elements (ports and scatterers sorted by
      position); default: ideal links (no delay, no loss, no phase).
    - `couplings`: direct exchange couplings between emitters.
    - `controls`: named pulses used by ports, couplings and detunings.
    - `inputs`: single photons sent in at either end; `outputs`: output modes to detect.
    - `initial`: single-excitation amplitudes {emitter: c_j}; empty for the ground state.
    - `end_reflections`: (r_left, r_right) reflection amplitudes of the two ends (0: matched).
    """

    emitters: tuple[Emitter, ...]
    ports: tuple[Port, ...]
    scatterers: tuple[Scatterer, ...]
    links: tuple[Link, ...]
    couplings: tuple[Coupling, ...]
    controls: dict[str, AbstractPulse]
    inputs: tuple[PhotonInput, ...]
    outputs: tuple[OutputMode, ...]
    initial: dict[str, Any]
    end_reflections: Inexact[Array, 2]

    def __init__(
        self,
        emitters,
        ports,
        *,
        links=None,
        scatterers=(),
        couplings=(),
        controls=None,
        inputs=(),
        outputs=(),
        initial=None,
        end_reflections=(0.0, 0.0),
    ):
        self.emitters = tuple(emitters)
        self.ports = tuple(ports)
        self.scatterers = tuple(scatterers)
        self.couplings = tuple(couplings)
        # Dicts are kept in sorted key order, the order JAX flattens and rebuilds them in: a
        # network rebuilt from its leaves (tree_at, tree.map, vmap) then iterates like the original,
        # and a plan cached by the tree structure fits both.
        self.controls = dict(sorted((controls or {}).items()))
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.initial = {k: as_array(v, complex) for k, v in sorted((initial or {}).items())}
        self.end_reflections = _complex("Network", "end_reflections", end_reflections)
        n_elements = len(self.ports) + len(self.scatterers)
        self.links = tuple(links) if links is not None else tuple(Link() for _ in range(max(n_elements - 1, 0)))
        self._validate()

    def _validate(self) -> None:
        names = [e.name for e in self.emitters]
        for kind, items in (
            ("emitter", names),
            ("port", [p.name for p in self.ports]),
            ("scatterer", [s.name for s in self.scatterers]),
            ("control", list(self.controls)),
            ("input/output", [x.name for x in self.inputs + self.outputs]),
        ):
            for name in items:
                _require_addressable(kind, name)
        known = dict.fromkeys(names)  # ordered, with O(1) membership
        require(len(self.emitters) >= 1, "Network: give at least one emitter")
        if len(set(names)) != len(names):
            raise ValidationError(f"Network: emitter names must be unique, got {names}")
        for e in self.emitters:
            require(isinstance(e, Emitter), f"Network: emitters must be Emitter objects, got {type(e).__name__}")
            if e.detuning_control is not None:
                _require_known(
                    e.detuning_control, self.controls, f"Emitter {e.name!r}: unknown control {e.detuning_control!r}"
                )
        element_names = [p.name for p in self.ports] + [s.name for s in self.scatterers]
        if len(set(element_names)) != len(element_names):
            raise ValidationError(f"Network: port and scatterer names must be unique, got {element_names}")
        for p in self.ports:
            require(isinstance(p, Port), f"Network: ports must be Port objects, got {type(p).__name__}")
            _require_known(p.emitter, known, f"Port {p.name!r}: unknown emitter {p.emitter!r}")
            if p.control is not None:
                _require_known(p.control, self.controls, f"Port {p.name!r}: unknown control {p.control!r}")
        positions = [el.position for el in self.elements]
        if len(set(positions)) != len(positions):
            require(
                False, f"Network: two elements share a position ({positions}); every port and scatterer needs its own"
            )
        if len(self.links) != max(len(positions) - 1, 0):
            raise ValidationError(
                f"Network: {len(positions)} elements on the line need {max(len(positions) - 1, 0)} links, "
                f"got {len(self.links)}"
            )
        for c in self.couplings:
            for side in (c.a, c.b):
                _require_known(side, known, f"Coupling {c.a!r}-{c.b!r}: unknown emitter {side!r}")
            if c.control is not None:
                _require_known(c.control, self.controls, f"Coupling {c.a!r}-{c.b!r}: unknown control {c.control!r}")
        for name, pulse in self.controls.items():
            require(
                isinstance(pulse, AbstractPulse),
                f"Network: control {name!r} must be a pulse, got {type(pulse).__name__}",
            )
        io_names = [x.name for x in self.inputs + self.outputs]
        if len(set(io_names)) != len(io_names):
            raise ValidationError(f"Network: input/output names must be unique, got {io_names}")
        if set(io_names) & set(names):
            raise ValidationError(f"Network: input/output names {set(io_names) & set(names)} clash with emitters")
        for name, amp in self.initial.items():
            _require_known(name, known, f"Network: initial state names unknown emitter {name!r}")
            a = concrete(amp)
            if a is not None:
                require(bool(np.isfinite(a)), f"Network: initial amplitude of {name!r} is not finite")
        amps = [concrete(a) for a in self.initial.values()]
        if self.initial and all(a is not None for a in amps):
            norm = float(sum(abs(complex(a)) ** 2 for a in amps))
            # The amplitudes are stored in the working precision (float32 rounds at ~1e-7).
            tolerance = max(1e-9, 10 * float(np.finfo(amps[0].dtype).eps))
            if not abs(norm - 1.0) < tolerance:
                raise ValidationError(f"Network: initial amplitudes have norm^2 {norm:.12g}; normalise them to 1")
        r = concrete(self.end_reflections)
        if r is not None:
            require(r.shape == (2,), "Network: end_reflections must be a pair (r_left, r_right)")
            if not np.all(np.abs(r) <= 1 + 1e-12):
                raise ValidationError(f"Network: |end_reflections| must be <= 1, got {r}")

    def _repr_html_(self) -> str:
        """The notebook display: a drawing of the line and tables (`chiraljax._display`)."""
        from chiraljax._display import network_html

        return network_html(self)

    @property
    def elements(self) -> tuple:
        """Ports and scatterers sorted along the line (left to right)."""
        return tuple(sorted(self.ports + self.scatterers, key=lambda el: el.position))

    @property
    def emitter_names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.emitters)

    def emitter(self, name: str) -> Emitter:
        """The emitter of that name."""
        for e in self.emitters:
            if e.name == name:
                return e
        raise KeyError(name)

    @property
    def has_delays(self) -> bool:
        """True when some link has a nonzero delay (known only for concrete values)."""
        for link in self.links:
            d = concrete(link.delay)
            if d is None or float(d) > 0:
                return True
        return False

    @property
    def has_reflections(self) -> bool:
        """True when a scatterer or an end can reflect (concrete values; traced counts as yes)."""
        if self.scatterers:
            return True
        r = concrete(self.end_reflections)
        return r is None or bool(np.any(np.abs(r) > 0))

    # ---- named parameters --------------------------------------------------------------

    def _parameter_paths(self) -> dict[str, Any]:
        """Dotted names -> functions selecting that leaf from a Network."""
        paths: dict[str, Any] = {}
        for i, e in enumerate(self.emitters):
            for f in ("detuning", "decay", "dephasing", "anharmonicity"):
                paths[f"emitters.{e.name}.{f}"] = lambda n, i=i, f=f: getattr(n.emitters[i], f)
        for i, p in enumerate(self.ports):
            for f in ("rate", "right_fraction"):
                paths[f"ports.{p.name}.{f}"] = lambda n, i=i, f=f: getattr(n.ports[i], f)
        for i, s in enumerate(self.scatterers):
            for f in ("reflection",) + (() if s.lossless else ("transmission",)):
                paths[f"scatterers.{s.name}.{f}"] = lambda n, i=i, f=f: getattr(n.scatterers[i], f)
        for i, _ in enumerate(self.links):
            for f in ("delay", "transmission", "phase"):
                paths[f"links.{i}.{f}"] = lambda n, i=i, f=f: getattr(n.links[i], f)
        for i, c in enumerate(self.couplings):
            paths[f"couplings.{c.a}-{c.b}.strength"] = lambda n, i=i: n.couplings[i].strength
        for cname, pulse in self.controls.items():
            for f, _ in _pulse_fields(pulse):
                paths[f"controls.{cname}.{f}"] = lambda n, c=cname, f=f: _get_path(n.controls[c], f)
        for k, x in enumerate(self.inputs):
            for f, _ in _pulse_fields(x.mode):
                paths[f"inputs.{x.name}.{f}"] = lambda n, k=k, f=f: _get_path(n.inputs[k].mode, f)
        for k, x in enumerate(self.outputs):
            for f, _ in _pulse_fields(x.mode):
                paths[f"outputs.{x.name}.{f}"] = lambda n, k=k, f=f: _get_path(n.outputs[k].mode, f)
        return paths

    def parameters(self) -> dict[str, Any]:
        """Every traced number of the model under a dotted name, e.g. `links.0.transmission`,
        `ports.A1.rate`, `controls.emit.kappa`."""
        return {name: get(self) for name, get in self._parameter_paths().items()}

    def with_parameters(self, values: Mapping[str, Any]) -> Network:
        """A copy with the named parameters replaced (values may be traced: use inside jit,
        vmap and grad). Unknown names are refused with the closest valid names; concrete values
        must be finite and inside the physical range of their kind (`PARAMETER_BOUNDS`; traced
        values are not checked)."""
        leaves, treedef = jax.tree.flatten(self)
        index = self._parameter_leaves(treedef)
        for name, value in values.items():
            if name not in index:  # the suggestions are computed for a wrong name only
                guess = did_you_mean(name, index)
                require(
                    False,
                    f"Network: no parameter {name!r}"
                    + (f" ({guess.strip()})" if guess else "")
                    + "; list them with network.parameters()",
                )
            _check_parameter_value(name, value)
        if not values:
            return self
        for name, value in values.items():
            leaves[index[name]] = as_dtype(value, jnp.result_type(leaves[index[name]]))
        return jax.tree.unflatten(treedef, leaves)

    def _parameter_leaves(self, treedef) -> dict[str, int]:
        """Dotted names -> positions of their leaves among the network's leaves (`treedef` its
        structure; cached per structure: the names and positions depend on nothing else)."""
        index = _PARAMETER_LEAVES.get(treedef)
        if index is None:
            marked = jax.tree.unflatten(treedef, list(range(treedef.num_leaves)))  # each leaf its position
            index = {name: get(marked) for name, get in self._parameter_paths().items()}
            if len(_PARAMETER_LEAVES) >= _PARAMETER_LEAVES_SIZE:
                _PARAMETER_LEAVES.pop(next(iter(_PARAMETER_LEAVES)))
            _PARAMETER_LEAVES[treedef] = index
        return index


# Leaf positions of the named parameters, per network structure (`Network._parameter_leaves`).
_PARAMETER_LEAVES: dict = {}
_PARAMETER_LEAVES_SIZE = 256


#: Physical range of parameters, by the last part of the dotted name: (low, high), None = open.
PARAMETER_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "transmission": (0.0, 1.0),
    "right_fraction": (0.0, 1.0),
    "decay": (0.0, None),
    "dephasing": (0.0, None),
    "rate": (0.0, None),
    "delay": (0.0, None),
    "kappa": (0.0, None),
}


#: Units of parameters, by the last part of the dotted name (hbar = 1; times in the user's time
#: unit, rates and frequencies in radians per time unit): the CF `units` of sweep coordinates.
PARAMETER_UNITS: dict[str, str] = {
    **dict.fromkeys(("transmission", "right_fraction", "reflection", "factor", "amplitude"), "1"),
    **dict.fromkeys(
        ("decay", "dephasing", "rate", "kappa", "detuning", "strength", "anharmonicity", "gamma", "shift"),
        "rad/time_unit",
    ),
    **dict.fromkeys(("delay", "t0", "t1", "width", "duration", "t_stop"), "time_unit"),
    "phase": "rad",
    "loss_db": "dB",
}


def transmission_from_db(loss_db: Any) -> Any:
    """Power transmission eta = 10^(-dB / 10) of a loss in decibels (docs/theory.md section 0)."""
    return 10.0 ** (-loss_db / 10.0)


def db_from_transmission(transmission: Any) -> Any:
    """The loss in decibels, -10 log10(eta), of a power transmission (inf for eta = 0)."""
    with np.errstate(divide="ignore"):
        return -10.0 * np.log10(transmission)


def _check_parameter_value(name: str, value: Any) -> None:
    """Refuse a concrete non-finite or out-of-range value of parameter `name`."""
    v = concrete(value)
    if v is None or v.dtype == object:
        return
    require(bool(np.all(np.isfinite(v))), f"Network: parameter {name!r} must be finite, got {value!r}")
    low, high = PARAMETER_BOUNDS.get(name.rsplit(".", 1)[-1], (None, None))
    if np.iscomplexobj(v):
        return
    require(low is None or bool(np.all(v >= low)), f"Network: parameter {name!r} must be >= {low}, got {value!r}")
    require(high is None or bool(np.all(v <= high)), f"Network: parameter {name!r} must be <= {high}, got {value!r}")


def _pulse_fields(pulse, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted field name, value) for every array leaf of a pulse, nested pulses included."""
    out = []
    for f in getattr(pulse, "__dataclass_fields__", {}):
        value = getattr(pulse, f)
        if isinstance(value, AbstractPulse):
            out.extend(_pulse_fields(value, f"{prefix}{f}."))
        elif eqx.is_array(value):
            out.append((f"{prefix}{f}", value))
    return out


def _get_path(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj
