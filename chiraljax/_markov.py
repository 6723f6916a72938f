"""Compile a Network in the Markov limit through the SLH algebra.

Each direction of the waveguide is a cascade: the right-moving channel visits the elements left
to right, the left-moving one right to left. A port of emitter j contributes the component
(1, sqrt(gamma_R(t)) a_j, 0) to the right-moving cascade and (1, sqrt(gamma_L(t)) a_j, 0) to the
left-moving one; a link of power transmission eta and phase phi is a phase shifter followed by
a beam splitter whose second output is a discarded loss channel. Series products build L and the
waveguide-mediated exchange (J_wg = sqrt(gamma_A gamma_B) sin(phi)/2 between a quarter-wave
pair comes out of them: it is never added by hand). Delays are shifted out (Markov limit).

Virtual cavities (Kiilerich and Molmer 2019) carry photon inputs and output modes: a source of
mode u couples to the channel by g_u(t) = u^*(t)/sqrt(1 - int_0^t |u|^2) at the start of the
cascade, a detector of mode v by g_v(t) = -v^*(t)/sqrt(int_0^t |v|^2) at its end.

The result is a `LindbladModel`: the space, H(t), named output channels with their L_k(t), and
the pure-dephasing rates, ready for the full-space or the excitation-sector kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import require
from ._network import Network, Port
from ._operator import Operator
from ._pulses import AbstractPulse, _concrete, safe_sqrt
from ._slh import SLH, concat
from ._space import Space

_MODE_EPS = 1e-10


@dataclass(frozen=True)
class Channel:
    """A named output channel: `operator` is its L_k(t); `kind` is 'end' (leaves the waveguide
    at an end), 'loss' (link loss), 'decay' (intrinsic T1) or 'dephasing' (carries no photon)."""

    name: str
    kind: str
    operator: Operator


@dataclass(frozen=True)
class LindbladModel:
    """A Markov model ready for a Lindblad kernel.

    **Fields:**

    - `space`: emitters first, then virtual source and detector cavities.
    - `hamiltonian`: H(t).
    - `channels`: every Lindblad operator with its name and kind (dephasing ones last).
    - `dephasing`: gamma_phi per subsystem (coherences between states whose occupation of
      subsystem j differs by dn decay at gamma_phi dn^2).
    - `initial`: the initial state vector on `space`.
    - `jump_times`: where some control jumps.
    - `emitter_names`, `virtual_names`: subsystem names by role.
    """

    space: Space
    hamiltonian: Operator
    channels: tuple[Channel, ...]
    dephasing: Any
    initial: Any
    jump_times: tuple
    emitter_names: tuple[str, ...]
    virtual_names: tuple[str, ...]

    @property
    def photon_channels(self) -> tuple[Channel, ...]:
        """Channels that carry excitations away (all but dephasing)."""
        return tuple(c for c in self.channels if c.kind != "dephasing")


class _Roots:
    """sqrt(u(t)) of each control u, one callable per control, so that every port driven by the
    same control shares one time-dependent factor (and one evaluation per time)."""

    def __init__(self, network: Network):
        self._network, self._made = network, {}

    def __call__(self, control: str) -> Callable:
        if control not in self._made:
            pulse = self._network.controls[control]
            self._made[control] = lambda t: safe_sqrt(pulse(t))
        return self._made[control]


def _port_operator(space: Space, roots: _Roots, port: Port, fraction) -> Operator:
    """sqrt(f gamma(t)) a_j with gamma(t) = rate * control(t)."""
    op = Operator.constant(space, space.destroy(port.emitter), safe_sqrt(fraction * port.rate))
    return op if port.control is None else op.scale(roots(port.control))


class _SourceCoupling:
    """g_u(t) = u^*(t) / sqrt(1 - int_{t0}^t |u|^2): the virtual source cavity's coupling."""

    def __init__(self, mode: AbstractPulse, t0):
        self.mode, self.t0 = mode, t0

    def __call__(self, t):
        return jnp.conj(self.mode(t)) / jnp.sqrt(jnp.maximum(1.0 - _cumulative(self.mode, self.t0, t), _MODE_EPS))


class _DetectorCoupling:
    """g_v(t) = -v^*(t) / sqrt(int_{t0}^t |v|^2), zero until the integral exceeds a small epsilon."""

    def __init__(self, mode: AbstractPulse, t0):
        self.mode, self.t0 = mode, t0

    def __call__(self, t):
        acc = _cumulative(self.mode, self.t0, t)
        on = acc > _MODE_EPS
        return jnp.where(on, -jnp.conj(self.mode(t)) / jnp.sqrt(jnp.where(on, acc, 1.0)), 0.0)


_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(64)


def _cumulative(mode: AbstractPulse, t0, t):
    """int_{t0}^t |u(s)|^2 ds by 64-point Gauss-Legendre quadrature (smooth modes), in 8 panels."""
    edges = jnp.linspace(t0, t, 9)
    a, b = edges[:-1, None], edges[1:, None]
    s = 0.5 * (b - a) * jnp.asarray(_GL_NODES)[None, :] + 0.5 * (a + b)
    vals = jnp.abs(jax.vmap(jax.vmap(mode))(s)) ** 2
    return jnp.sum(0.5 * (b - a)[:, 0] * (vals @ jnp.asarray(_GL_WEIGHTS)))


def _cascade(network: Network, space: Space, roots: _Roots, elements, direction: str, start: Operator | None,
             end: Operator | None) -> tuple[SLH, list[str]]:
    """One direction's cascade. Returns the SLH (channel 0 the main output, then link losses)
    and the names of the loss channels."""
    one = SLH.trivial(space, 1)
    g = SLH.emitter(space, start) if start is not None else one
    loss_names: list[str] = []
    order = list(range(len(elements)))
    if direction == "L":
        order = order[::-1]
    for step, idx in enumerate(order):
        if step > 0:
            link_idx = idx if direction == "L" else idx - 1
            link = network.links[link_idx]
            n = g.channels
            g = concat(g, SLH.trivial(space, 1))
            eta = link.transmission
            a, b = jnp.sqrt(eta), jnp.sqrt(1.0 - eta)
            ph = jnp.exp(1j * link.phase)
            S = jnp.eye(n + 1, dtype=complex)
            S = S.at[0, 0].set(a * ph).at[0, n].set(-b).at[n, 0].set(b * ph).at[n, n].set(a)
            g = SLH.scatterer(space, S) << g
            loss_names.append(f"loss:link{link_idx}:{direction}")
        el = elements[idx]
        if isinstance(el, Port):
            frac = el.right_fraction if direction == "R" else 1.0 - el.right_fraction
            comp = SLH.emitter(space, _port_operator(space, roots, el, frac))
            if g.channels > 1:
                comp = concat(comp, SLH.trivial(space, g.channels - 1))
            g = comp << g
    if end is not None:
        comp = SLH.emitter(space, end)
        if g.channels > 1:
            comp = concat(comp, SLH.trivial(space, g.channels - 1))
        g = comp << g
    return g, loss_names


def required_excitations(network: Network) -> int:
    """The excitation number the dynamics needs: initial excitations plus input photons."""
    return (1 if network.initial else 0) + len(network.inputs)


def compile_markov(network: Network, t0, *, max_excitations: int | None = 1) -> LindbladModel:
    """Build the Markov-limit Lindblad model of `network` on a sector (k = `max_excitations`) or,
    with `max_excitations=None`, on the full space.

    **Arguments:**

    - `network`: the device.
    - `t0`: start time (the virtual cavities integrate their modes from t0).
    - `max_excitations`: k of the excitation sector, or None for the full space.

    **Returns:** a `LindbladModel`.
    """
    require(not network.scatterers,
            "Markov model: scatterers (joints, mirrors) make the network non-Markovian; "
            "use representation='delay'")
    r_end = _concrete(network.end_reflections)
    require(r_end is None or not np.any(np.abs(r_end) > 0),
            "Markov model: reflecting waveguide ends make the network non-Markovian; use representation='delay'")
    need = required_excitations(network)
    if max_excitations is not None:
        require(max_excitations >= need,
                f"Markov model: the initial state and {len(network.inputs)} input photon(s) need "
                f"{need} excitation(s) but the sector allows only {max_excitations}; raise max_excitations")

    names = [e.name for e in network.emitters]
    dims = [e.levels for e in network.emitters]
    virtual = [x.name for x in network.inputs] + [x.name for x in network.outputs]
    space = Space(tuple(names + virtual), tuple(dims + [2] * len(virtual)), max_excitations)

    def source(end: str) -> Operator | None:
        srcs = [x for x in network.inputs if x.end == end]
        require(len(srcs) <= 1, f"Markov model: at most one photon input per end, got {len(srcs)} at the {end} end")
        if not srcs:
            return None
        x = srcs[0]
        return Operator.constant(space, space.destroy(x.name), _SourceCoupling(x.mode, t0))

    def detector(end: str) -> Operator | None:
        dets = [x for x in network.outputs if x.end == end]
        require(len(dets) <= 1, f"Markov model: at most one output mode per end, got {len(dets)} at the {end} end")
        if not dets:
            return None
        x = dets[0]
        return Operator.constant(space, space.destroy(x.name), _DetectorCoupling(x.mode, t0))

    elements = network.elements
    roots = _Roots(network)
    right, loss_r = _cascade(network, space, roots, elements, "R", source("left"), detector("right"))
    left, loss_l = _cascade(network, space, roots, elements, "L", source("right"), detector("left"))
    waveguide = concat(right, left)

    H = waveguide.H
    for e in network.emitters:
        j = space.subsystem(e.name)
        n = space.number(j)
        H = H + Operator.constant(space, n, e.detuning)
        if e.detuning_control is not None:
            H = H + Operator.constant(space, n, network.controls[e.detuning_control])
        if e.levels > 2:
            H = H + Operator.constant(space, n @ (n - np.eye(space.dim)), 0.5 * e.anharmonicity)
    for c in network.couplings:
        a, b = space.destroy(c.a), space.destroy(c.b)
        op = Operator.constant(space, a.conj().T @ b, c.strength)
        if c.control is not None:
            op = op.scale(network.controls[c.control])
        H = H + op + op.dag()

    channels = [Channel("right", "end", waveguide.L[0])]
    channels += [Channel(nm, "loss", op) for nm, op in zip(loss_r, right.L[1:])]
    channels += [Channel("left", "end", left.L[0])]
    channels += [Channel(nm, "loss", op) for nm, op in zip(loss_l, left.L[1:])]
    for e in network.emitters:
        channels.append(Channel(f"decay:{e.name}", "decay",
                                Operator.constant(space, space.destroy(e.name), safe_sqrt(e.decay))))
    dephasing = jnp.stack([e.dephasing for e in network.emitters] + [jnp.zeros(())] * len(virtual))
    for e in network.emitters:
        channels.append(Channel(f"dephasing:{e.name}", "dephasing",
                                Operator.constant(space, space.number(e.name), safe_sqrt(2.0 * e.dephasing))))

    psi = jnp.zeros(space.dim, dtype=complex)
    occupied = {x.name: 1 for x in network.inputs}
    if network.initial:
        for name, amp in network.initial.items():
            psi = psi + amp * jnp.asarray(space.basis_state({**occupied, name: 1}))
    else:
        psi = jnp.asarray(space.basis_state(occupied))

    jumps: list = []
    for pulse in network.controls.values():
        jumps.extend(pulse.jump_times())
    return LindbladModel(space, H, tuple(channels), dephasing, psi, tuple(jumps), tuple(names), tuple(virtual))

